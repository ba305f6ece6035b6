"""A log view following a file (a VM's transfer log): re-read only when the file changed size."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Log

TAIL_LINES = 500


class FileTail(Log):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=TAIL_LINES * 4, id=id)
        self._followed_path: Path | None = None
        self._followed_size = -1

    def follow(self, path: Path) -> None:
        """Show the end of `path`; a cheap stat when nothing changed since the last call."""
        try:
            size = path.stat().st_size
            if path == self._followed_path and size == self._followed_size:
                return
            lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
        except OSError:  # no log yet
            return
        self._followed_path, self._followed_size = path, size
        self.clear()
        self.write_lines(lines)
