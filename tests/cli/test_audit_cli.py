"""`headnode log`: who changed what, recorded by every command that changes the home."""

from __future__ import annotations

import json
import os

from engine.defaults import sample_templates


def test_changes_from_the_cli_are_in_the_log(headnode, home, tmp_path) -> None:
    assert headnode("vnet", "lease", "default", "--vm", "7").returncode == 0
    assert headnode("vnet", "hold", "default", "192.168.122.20", "--note", "printer").returncode == 0
    assert headnode("vnet", "release", "default", "192.168.122.20").returncode == 0
    assert headnode("host", "create", "n1", "--driver", "shared", "--vm-dir", str(tmp_path / "n1")).returncode == 0
    assert headnode("host", "delete", "n1").returncode == 0
    assert headnode("vm", "create", str(sample_templates()["ttylinux.tmpl"])).returncode == 0
    refused = headnode("vnet", "release", "default", "192.168.122.99")
    assert refused.returncode == 1  # a refused change is not recorded

    entries = json.loads(headnode("log", "--json").stdout)
    assert [(e["action"], e["target"], e["detail"]) for e in entries] == [
        ("lease", "default 192.168.122.2", "for VM 7"),
        ("hold", "default 192.168.122.20", "printer"),
        ("release", "default 192.168.122.20", ""),
        ("host create", "n1", "driver shared"),
        ("host delete", "n1", ""),
        ("vm create", "VM 0", "ttylinux"),
    ]
    assert all(e["client"].startswith("cli ") and e["user"] and e["at"] > 0 for e in entries)
    table = headnode("log").stdout.splitlines()
    assert table[0].split() == ["TIME", "USER", "CLIENT", "ACTION", "TARGET", "DETAIL"] and len(table) == 7
    assert headnode("log", "--limit", "2", "--json").stdout.count('"action"') == 2
    # A damaged line (a crash mid-write by another tool) is skipped; the rest still shows.
    with open(home.logs / "audit.jsonl", "a") as audit:
        audit.write('{"action": "le\n')
    assert len(json.loads(headnode("log", "--json").stdout)) == 6
    assert os.stat(home.logs / "audit.jsonl").st_mode & 0o777 == 0o600
