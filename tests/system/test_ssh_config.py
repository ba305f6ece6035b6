"""~/.ssh/config in full on both SSH paths: Include, ProxyJump through a real second sshd, ProxyCommand."""

from __future__ import annotations

import pytest

from engine.transfers.hosts import Host, Hosts
from engine.transfers.openssh import OpenSsh
from tests.system.test_transfers import Runner, image, sha

CARRIERS = {"paramiko": False, "openssh": OpenSsh(min_bytes=0)}


def clone(world, carrier: str, host: str, vm_dir):
    base = image(world["images"], size=1 << 20)
    runner = Runner(world["home"], accelerator=CARRIERS[carrier])
    try:
        return runner.run(f"CLONE {world['fe']}:{base} {host}:{vm_dir}/7/images/disk.0\n"), base
    finally:
        runner.close()


@pytest.mark.parametrize("carrier", CARRIERS)
def test_proxy_jump_from_an_included_file(world, own_user, carrier):
    """target01 is host01 reached through host02 as the bastion; the Host blocks live in an included file. With
    the bastion's key gone from known_hosts the copy is refused: the bastion is really passed, its key checked."""
    h1, h2 = world["hosts"]["host01"], world["hosts"]["host02"]
    (own_user / ".ssh/config").write_text("Include cluster.conf\n")
    (own_user / ".ssh/cluster.conf").write_text(
        f"Host target01\n  HostName 127.0.0.1\n  Port {h1.port}\n  ProxyJump bastion\n"
        f"Host bastion\n  HostName 127.0.0.1\n  Port {h2.port}\n"
    )
    Hosts(world["home"]).create(Host("target01", "ssh", str(h1.vm_dir)))
    result, base = clone(world, carrier, "target01", h1.vm_dir)
    assert result.ok, result
    assert sha(h1.vm_dir / "7/images/disk.0") == sha(base)
    (h1.vm_dir / "7/images/disk.0").unlink()
    known = own_user / ".ssh/known_hosts"
    known.write_text("".join(line + "\n" for line in known.read_text().splitlines() if f"]:{h2.port} " not in line))
    result, _ = clone(world, carrier, "target01", h1.vm_dir)
    assert result.outcome == "failed" and not (h1.vm_dir / "7/images/disk.0").exists(), result
    assert "\n" not in result.error


@pytest.mark.parametrize("carrier", CARRIERS)
def test_proxy_command(world, own_user, tmp_path, carrier):
    """The ProxyCommand runs through sh as OpenSSH runs it (here: it leaves a mark, then execs ssh -W)."""
    h1, h2 = world["hosts"]["host01"], world["hosts"]["host02"]
    marker = tmp_path / "proxied"
    ssh = own_user / ".ssh"
    hop = (
        f"ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={ssh}/known_hosts "
        f"-i {ssh}/id_ed25519 -p {h2.port} -W %h:%p 127.0.0.1"
    )
    (ssh / "config").write_text(
        f"Host viacmd\n  HostName 127.0.0.1\n  Port {h1.port}\n  ProxyCommand sh -c 'touch {marker}; exec {hop}'\n"
    )
    Hosts(world["home"]).create(Host("viacmd", "ssh", str(h1.vm_dir)))
    result, base = clone(world, carrier, "viacmd", h1.vm_dir)
    assert result.ok, result
    assert sha(h1.vm_dir / "7/images/disk.0") == sha(base) and marker.exists()


def test_include_globs_and_keeps_the_enclosing_block(tmp_path):
    from engine.transfers.ssh_config import config_text

    ssh = tmp_path / ".ssh"
    (ssh / "conf.d").mkdir(parents=True)
    (ssh / "conf.d/b.conf").write_text("Host b\n  Port 2\n")
    (ssh / "conf.d/a.conf").write_text("  User alice\n")
    (ssh / "config").write_text("Host a\n  Include conf.d/*.conf\n  Port 1\n")
    text = config_text(ssh / "config", ssh)
    assert text.splitlines() == ["Host a", "  User alice", "Host b", "  Port 2", "Host a", "  Port 1"]
