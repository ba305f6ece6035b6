"""`headnode host`: what the CLI refuses before anything is stored."""

from __future__ import annotations

import json


def test_an_address_ssh_would_read_as_an_option_is_bad_input(headnode, tmp_path):
    marker = tmp_path / "pwned"
    r = headnode(
        "host", "create", "evil", f"--address=-oProxyCommand=touch {marker}", "--driver", "ssh", "--vm-dir", "/srv"
    )
    assert r.returncode == 2 and "bad --address" in r.stderr and "not starting with '-'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    listed = json.loads(headnode("host", "list", "--json").stdout)
    assert "evil" not in [h["name"] for h in listed] and not marker.exists()
