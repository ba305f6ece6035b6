"""The house rules that code review alone would miss."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_import_linter_contracts_hold() -> None:
    r = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 4 kept, 0 broken." in r.stdout


def test_every_package_is_installed() -> None:
    """A regular `pip install .` ships every package of the tree (pyproject lists them by hand; a new sub-package
    left out installs a headnode that fails with ModuleNotFoundError: test_install.py sees it, slowly)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("engine", "tui", "screens")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set()


def test_no_module_imports_itself_in_a_cycle() -> None:
    """No import cycle at run time (type-only imports aside), found as the strongly connected components of the
    module graph that hold more than one module."""
    import grimp

    graph = grimp.build_graph("engine", "tui", "screens", exclude_type_checking_imports=True, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


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


def test_quick_reads_load_no_engine_that_runs_work(tmp_path) -> None:
    """`vm list`, `vm show`, `vnet lease` (what an admin types while transfers run) read the records only: the
    assembled Engine, the executor and the copiers (~165 ms of imports) stay unloaded."""
    code = (
        "import sys\n"
        "from engine.cli import main\n"
        f"home = {str(tmp_path)!r}\n"
        "for argv in (['vm', 'list'], ['vm', 'list', '--json'], ['vnet', 'lease', 'default'], ['vm', 'show', '0']):\n"
        "    main(['--home', home, *argv])\n"
        "heavy = ('engine.core', 'engine.transfers.executor', 'engine.transfers.copier', 'engine.vms.lifecycle')\n"
        "print(sorted(m for m in sys.modules if m in heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr
