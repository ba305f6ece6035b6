"""known_hosts as OpenSSH reads it (@revoked, @cert-authority), on both SSH paths, and refusals said in one line."""

from __future__ import annotations

import pytest

from engine.transfers.host_check import check_host
from engine.transfers.hosts import Hosts
from engine.transfers.openssh import OpenSsh
from tests.system.sshd import keygen
from tests.system.test_transfers import Runner, image, sha

CARRIERS = {"paramiko": False, "openssh": OpenSsh(min_bytes=0)}


def public_key(path) -> str:
    """`TYPE BASE64` of the public key beside private key `path`."""
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def clone(world, carrier: str, host: str = "host01"):
    """CLONE a small image to `host` through `carrier`; the result and the image."""
    base = image(world["images"], size=1 << 20)
    runner = Runner(world["home"], accelerator=CARRIERS[carrier])
    try:
        vm_dir = world["hosts"][host].vm_dir
        return runner.run(f"CLONE {world['fe']}:{base} {host}:{vm_dir}/7/images/disk.0\n"), base
    finally:
        runner.close()


@pytest.mark.parametrize("carrier", CARRIERS)
def test_revoked_and_cert_authority_lines_of_other_keys_change_nothing(world, own_user, tmp_path, carrier):
    """OpenSSH reads such a file; paramiko's loader crashed on it, so every host failed with an internal error."""
    other = tmp_path / "other_key"
    keygen(other)
    known = own_user / ".ssh/known_hosts"
    known.write_text(
        f"@revoked * {public_key(other)}\n@cert-authority *.example {public_key(other)}\n" + known.read_text()
    )
    result, base = clone(world, carrier)
    assert result.ok, result
    assert sha(world["hosts"]["host01"].vm_dir / "7/images/disk.0") == sha(base)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_revoked_host_key_is_refused_even_when_known(world, own_user, carrier):
    host = world["hosts"]["host01"]
    host_key = public_key(host.dir / "ssh_host_ed25519_key")
    known = own_user / ".ssh/known_hosts"
    known.write_text(known.read_text() + f"@revoked [127.0.0.1]:{host.port} {host_key}\n")
    result, _ = clone(world, carrier)
    assert result.outcome == "failed" and "revoked" in result.error and "\n" not in result.error, result
    assert not (host.vm_dir / "7/images/disk.0").exists()
    report = check_host(world["home"], Hosts(world["home"]).get("host01"), accept_new_key=True)
    assert not report.ok and "revoked" in report.error
    assert known.read_text().count(host_key) == 2  # nothing recorded


def test_a_host_trusted_only_through_a_certificate_authority_is_refused_saying_so(world, own_user, tmp_path):
    """paramiko cannot check host certificates: such a host is unknown to it, and the error says why."""
    ca = tmp_path / "host_ca"
    keygen(ca)
    h2 = world["hosts"]["host02"]
    (own_user / ".ssh/known_hosts").write_text(f"@cert-authority [127.0.0.1]:{h2.port} {public_key(ca)}\n")
    report = check_host(world["home"], Hosts(world["home"]).get("host02"))
    assert not report.ok and report.key_unknown and "@cert-authority" in report.error, report


def test_a_changed_key_on_the_accelerator_path_is_one_line(world, own_user):
    h1, h2 = world["hosts"]["host01"], world["hosts"]["host02"]
    wrong = h2.host_key_line.replace(f"[127.0.0.1]:{h2.port}", f"[127.0.0.1]:{h1.port}")
    (own_user / ".ssh/known_hosts").write_text(wrong + "\n")
    result, _ = clone(world, "openssh")
    assert result.outcome == "failed" and "\n" not in result.error, result
    assert "CHANGED" in result.error and "@@@" not in result.error


def test_a_refused_key_leaves_nothing_on_stderr_but_the_error(world, headnode):
    Hosts(world["home"]).create(world["hosts"]["host03"].record())  # its key is not in known_hosts
    r = headnode("host", "test", "host03")
    assert r.returncode == 1 and "is not in" in r.stdout + r.stderr
    assert "Socket exception" not in r.stderr and "Bad file descriptor" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 1


def test_known_hosts_lines_that_are_not_keys_are_skipped(world, own_user):
    """OpenSSH skips a line it cannot read; so do we."""
    known = own_user / ".ssh/known_hosts"
    known.write_text(
        "garbage\n@revoked\n@cert-authority * ssh-ed25519 !!!\n|1|x|y ssh-ed25519 notbase64\n" + known.read_text()
    )
    assert check_host(world["home"], Hosts(world["home"]).get("host01")).ok
