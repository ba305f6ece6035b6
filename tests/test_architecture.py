"""The house rules that code review alone would miss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_import_linter_contracts_hold() -> None:
    r = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 1 kept, 0 broken." in r.stdout


def test_cli_path_never_imports_textual(tmp_path) -> None:
    code = (
        "import sys\n"
        "from engine.cli import main\n"
        f"main(['--home', {str(tmp_path)!r}, 'script', 'check', '/dev/null'])\n"
        "import engine.core\n"
        "heavy = ('textual', 'rich', 'tui', 'screens', 'paramiko')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
