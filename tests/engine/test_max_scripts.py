"""MAX_SCRIPTS in headnode.conf: how many image scripts the executor runs at once."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.home import Home
from engine.transfers.executor import configured_max_scripts


def set_max_scripts(home: Home, value: str) -> Home:
    text = home.config_path.read_text()
    assert "MAX_SCRIPTS = 15" in text  # the shipped default
    home.config_path.write_text(text.replace("MAX_SCRIPTS = 15", f"MAX_SCRIPTS = {value}"))
    return Home(home.root)  # its configuration read afresh


def test_the_shipped_default_and_a_setting(home) -> None:
    assert configured_max_scripts(home) == 15
    assert configured_max_scripts(set_max_scripts(home, "100")) == 100


@pytest.mark.parametrize("value", ["0", "many", "²"])
def test_a_bad_setting_names_file_and_line(home, value) -> None:
    changed = set_max_scripts(home, value)
    line = next(n for n, text in enumerate(changed.config_path.read_text().splitlines(), 1) if "MAX_SCRIPTS =" in text)
    with pytest.raises(InputError) as caught:
        configured_max_scripts(changed)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(changed.config_path), line) and "MAX_SCRIPTS" in problem.message
