"""OpenNebula's own files as they are: a tm_*.conf without BASE, and a directory among CONTEXT FILES."""

from __future__ import annotations

import json
from pathlib import Path

import pycdlib

from engine.transfers.context_iso import build_context_iso
from engine.transfers.drivers import load_driver

# OpenNebula 1.4's etc/tm_nfs/tm_nfs.conf, as shipped (no BASE line).
TM_NFS_CONF = """\
#  Copyright 2002-2009, Distributed Systems Architecture Group, Universidad
#  Complutense de Madrid (dsa-research.org)

CLONE   = nfs/tm_clone.sh
LN      = nfs/tm_ln.sh
MKSWAP  = nfs/tm_mkswap.sh
MKIMAGE = nfs/tm_mkimage.sh
DELETE  = nfs/tm_delete.sh
MV      = nfs/tm_mv.sh
CONTEXT = nfs/tm_context.sh
"""


def test_a_conf_without_base_reaches_its_hosts_over_ssh(headnode, home) -> None:
    tm = home.root / "tm"
    (tm / "nfs").mkdir(parents=True)
    for action in ("clone", "ln", "mkswap", "mkimage", "delete", "mv", "context"):
        program = tm / "nfs" / f"tm_{action}.sh"
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    (tm / "tm_nfs.conf").write_text(TM_NFS_CONF)
    driver = load_driver(home, "tm_nfs")  # it was "BASE must be one of shared, ssh, dummy, not None"
    assert driver.base == "ssh" and driver.program("CLONE") == str(tm / "nfs" / "tm_clone.sh")
    r = headnode("host", "create", "node1", "--driver", "tm_nfs", "--vm-dir", "/srv/cloud/one/var")
    assert r.returncode == 0, r.stderr
    script = home.root / "delete.script"
    script.write_text("DELETE node1:/srv/cloud/one/var/1/images\n")
    r = headnode("run", str(script))  # the site's own tm_delete.sh runs
    assert r.returncode == 0 and "(ran tm_delete.sh)" in r.stdout, r.stderr


def _tree(root: Path) -> None:
    (root / "keys" / "more").mkdir(parents=True)
    (root / "keys" / "id.pub").write_text("ssh-ed25519 AAAA admin\n")
    (root / "keys" / "more" / "notes.txt").write_text("nested\n")


def _read(iso: pycdlib.PyCdlib, rr_path: str) -> bytes:
    from io import BytesIO

    out = BytesIO()
    iso.get_file_from_iso_fp(out, rr_path=rr_path)
    return out.getvalue()


def test_a_directory_in_context_files_is_copied_whole(tmp_path: Path) -> None:
    _tree(tmp_path)
    context = tmp_path / "context.sh"
    context.write_text('HOSTNAME="a"\n')
    output = tmp_path / "context.iso"
    with open(output, "xb") as iso_file:
        build_context_iso([str(context), str(tmp_path / "keys")], iso_file, lambda url, path: None)
    iso = pycdlib.PyCdlib()
    iso.open(str(output))
    try:
        assert _read(iso, "/context.sh") == b'HOSTNAME="a"\n'
        assert _read(iso, "/keys/id.pub") == b"ssh-ed25519 AAAA admin\n"
        assert _read(iso, "/keys/more/notes.txt") == b"nested\n"
    finally:
        iso.close()


def test_context_files_are_checked_at_create_and_a_directory_deploys(headnode, home, tmp_path: Path) -> None:
    _tree(tmp_path)
    template = tmp_path / "ctx.tmpl"
    template.write_text(
        "NAME = ctx\nDISK = [ TYPE = swap, SIZE = 1 ]\n"
        f'CONTEXT = [ HOSTNAME = "$NAME", FILES = "{tmp_path}/keys {tmp_path}/nothing.sh" ]\n'
    )
    r = headnode("vm", "create", str(template))  # it was accepted, and refused only at deploy
    assert (r.returncode, r.stderr) == (
        2,
        f"{template}:3: CONTEXT FILES: {tmp_path}/nothing.sh does not exist on the front end\n",
    )
    template.write_text(template.read_text().replace(f" {tmp_path}/nothing.sh", ""))
    assert headnode("vm", "create", str(template)).stdout == "0\n"
    r = headnode("vm", "deploy", "0", "local")  # it was "context file .../keys does not exist on the front end"
    assert r.returncode == 0, r.stderr
    iso = pycdlib.PyCdlib()
    iso.open(str(home.vms / "0" / "images" / "disk.1"))
    try:
        assert _read(iso, "/keys/more/notes.txt") == b"nested\n"
    finally:
        iso.close()
    assert json.loads(headnode("vm", "show", "0", "--json").stdout)["state"] == "running"
