"""Reading a file a user handed us (a template, a script): every failure is an input error naming the file."""

from __future__ import annotations

from pathlib import Path

from engine.errors import InputError, Problem


def read_input_file(path: str | Path, kind: str, error: type[InputError] = InputError) -> str:
    """The text of `path`; `error` naming it when it is missing, unreadable or not UTF-8 text."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(Problem(f"cannot read {kind}: {exc.strerror}", str(path))) from None
    except UnicodeDecodeError:
        raise error(Problem("not a UTF-8 text file", str(path))) from None
