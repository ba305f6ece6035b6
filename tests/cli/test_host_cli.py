"""`headnode host create` reads its options through the engine's parser, as the console's host form does."""

from __future__ import annotations

import json

from tests.conftest import BAD_HOST, BAD_HOST_PROBLEMS


def options(values: dict[str, str]) -> list[str]:
    return [values["name"], *(f"--{k.replace('_', '-')}={v}" for k, v in values.items() if k != "name")]


def test_create_refuses_what_the_console_refuses_every_problem_at_once(headnode) -> None:
    r = headnode("host", "create", *options(BAD_HOST))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"headnode: {p}" for p in BAD_HOST_PROBLEMS]
    assert [h["name"] for h in json.loads(headnode("host", "list", "--json").stdout)] == ["local"]


def test_create_takes_the_same_text_the_form_does(headnode, tmp_path) -> None:
    good = {**BAD_HOST, "vm_dir": "/srv/n1", "port": "0022", "max_transfers": "2", "compress": "ZSTD"}
    key = tmp_path / "id_test"  # an identity file must exist (issue 12)
    key.write_text("key\n")
    r = headnode("host", "create", *options(good), f"--identity={key}", "--json")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert (created["port"], created["max_transfers"], created["vm_dir"]) == (22, 2, "/srv/n1")
    assert created["compress"] == "zstd"
    assert created["identity"] == str(key)
    r = headnode("host", "create", "n2", "--driver=shared", "--vm-dir=/srv/n2", "--json")
    assert json.loads(r.stdout)["max_transfers"] == 4 and json.loads(r.stdout)["compress"] is None
