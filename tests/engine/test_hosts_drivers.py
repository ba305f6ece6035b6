"""Host records, driver confs and the pieces of the transfer engine that need no network."""

from __future__ import annotations

import dataclasses
import os

import pytest

from engine.errors import InputError
from engine.language.script import parse_script
from engine.transfers.actions import action_host, part_name
from engine.transfers.context_iso import iso_name
from engine.transfers.drivers import driver_names, error_message, load_driver
from engine.transfers.hosts import Host, Hosts, inside_vm_dir
from engine.transfers.journal import Journal, JournalState
from engine.transfers.progress import RunOutcome


def test_host_records_round_trip_through_the_database(home, tmp_path):
    hosts = Hosts(home)
    key = tmp_path / "k"  # the identity file must exist now
    key.write_text("key\n")
    hosts.create(Host("host01", "ssh", "/srv/vms/", "10.0.0.1", 2222, "oneadmin", str(key), 2))
    again = Hosts(home).get("host01")
    assert again == Host("host01", "ssh", "/srv/vms", "10.0.0.1", 2222, "oneadmin", str(key), 2)
    assert [h.name for h in hosts.list()] == ["host01"]
    hosts.delete("host01")
    assert hosts.list() == []
    with pytest.raises(InputError, match="no host named 'host01'"):
        hosts.delete("host01")


def test_bad_host_records_are_refused_with_every_problem(home):
    with pytest.raises(InputError) as caught:
        Hosts(home).create(Host("-x", "nfs", "/../", port=0, max_transfers=0, user="a b", identity="/none/key"))
    text = str(caught.value)
    for expected in (
        "bad host name",
        "unknown driver 'nfs'",
        "must not be /",
        "--port",
        "--max-transfers",
        "--user",
        "--identity /none/key: no such file",
    ):
        assert expected in text
    assert Hosts(home).list() == []


def test_front_end_is_local_with_or_without_a_record(home):
    hosts = Hosts(home)
    fe = hosts.frontend_name
    implicit = hosts.resolve(fe)
    assert implicit.local and implicit.driver == "shared" and implicit.vm_dir == str(home.vms)
    hosts.create(Host(fe, "ssh", "/srv/fe-vms"))
    explicit = hosts.resolve(fe)
    assert explicit.local and explicit.vm_dir == "/srv/fe-vms"
    # issue 5's first-run host: a shared host called `local` on this machine
    hosts.create(Host("local", "shared", str(home.vms)))
    assert not hosts.resolve("local").local and hosts.resolve("local").driver == "shared"
    with pytest.raises(InputError, match="no host named 'elsewhere'"):
        hosts.resolve("elsewhere")


def test_vm_directory_containment_resolves_dot_dot():
    host = Host("h", "ssh", "/srv/vms")
    assert inside_vm_dir(host, "/srv/vms/7/images/disk.0")
    assert not inside_vm_dir(host, "/srv/vms/../etc/passwd")
    assert not inside_vm_dir(host, "/srv/vms")  # the directory itself is never a target
    assert not inside_vm_dir(host, "/srv/vmsX/1")
    assert inside_vm_dir(host, "/srv/vms/7/../8/images")


def test_shipped_drivers_map_every_action_to_a_builtin(home):
    assert driver_names(home) == ["dummy", "shared", "ssh"]
    for name in ("shared", "ssh", "dummy"):
        driver = load_driver(home, name)
        assert driver.base == name and driver.checksum == "cksum"
        assert all(program is None for _, program in driver.programs) and len(driver.programs) == 7


def test_driver_conf_errors_name_file_and_line(home):
    tm = home.root / "tm"
    tm.mkdir()
    conf_text = 'BASE = ftp\nCLONE = builtin\nFROB = builtin\nMV = "nothere.sh"\nCHECKSUM = md5\nCOMPRESS = gzip\n'
    (tm / "odd.conf").write_text(conf_text)
    with pytest.raises(InputError) as caught:
        load_driver(home, "odd")
    lines = str(caught.value).splitlines()
    conf = str(tm / "odd.conf")
    assert any("BASE must be one of shared, ssh, dummy, not 'ftp'" in line for line in lines)
    assert f"{conf}:3: unknown action FROB" in str(caught.value)
    assert f"{conf}:4: MV: {tm}/nothere.sh is not an executable program" in str(caught.value)
    assert f"{conf}:5: CHECKSUM must be cksum or sha256, not 'md5'" in str(caught.value)
    assert f"{conf}:6: COMPRESS must be zstd or no, not 'gzip'" in str(caught.value)
    assert "odd" in driver_names(home)


def test_relative_programs_resolve_next_to_the_conf(home):
    tm = home.root / "tm"
    tm.mkdir()
    program = tm / "clone.sh"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    (tm / "site.conf").write_text('BASE = ssh\nCLONE = "clone.sh"\nDELETE = builtin\n')
    driver = load_driver(home, "site")
    assert driver.program("CLONE") == str(program) and driver.program("DELETE") is None
    assert not driver.handles("MKSWAP")


def test_error_message_prefers_the_markers():
    stderr = "noise\nERROR MESSAGE --8<------\nbad thing\nsecond line\nERROR MESSAGE ------>8--\nmore\n"
    assert error_message(stderr) == "bad thing / second line"
    assert error_message("a\nb\nc\nd\n") == "b / c / d"
    assert error_message("") == "no error message"


def test_the_driver_of_an_action_is_its_hosts():
    script = parse_script("MV h1:/v/1/images fe:/f/1\nMV fe:/f/1/images h2:/v/1/images\nCLONE fe:/i h3:/v/x\n")
    assert [action_host(a, "fe") for a in script.actions] == ["h1", "h2", "h3"]


def test_temporary_names_sit_beside_the_destination():
    assert part_name("/v/7/images/disk.0") == "/v/7/images/.disk.0.part"


def test_iso_names_are_unique_and_legal():
    used: set[str] = set()
    names = [iso_name(n, used) for n in ("context.sh", "Context.SH", "my-init script.sh", "noext")]
    assert names == ["/CONTEXT.SH;1", "/CONTEXT_1.SH;1", "/MY_INIT_SCRIPT.SH;1", "/NOEXT;1"]


def test_journal_finds_the_last_unfinished_run(home):
    journal = Journal(home)
    first = journal.start(3, "MKSWAP 1 h:/v/x\n")
    journal.action_started(first, 0, 4)
    journal.action_finished(first, 0, RunOutcome.DONE, 1 << 20, None, None, line=4)
    entry = journal.unfinished(3, "MKSWAP 1 h:/v/x\n")
    assert entry.done == (0,) and entry.actions[0]["line"] == 4 and entry.actions[0]["bytes"] == 1 << 20
    assert journal.unfinished(4, "MKSWAP 1 h:/v/x\n") is None
    journal.finish(first, JournalState.DONE)
    assert journal.unfinished(3, "MKSWAP 1 h:/v/x\n") is None
    assert os.path.exists(home.db_path)


@pytest.mark.parametrize("value", ["²", "٣٢", "lots"])
def test_a_conf_number_that_is_not_ascii_digits_names_the_file_and_line(home, value):
    from engine.home import Home
    from engine.transfers.openssh import configured_accelerator

    home.config_path.write_text(f"SSH_ACCELERATOR = yes\n\nSSH_ACCELERATOR_MIN_MB = {value}\n")
    with pytest.raises(InputError) as caught:
        configured_accelerator(Home(home.root))
    assert str(caught.value) == f"{home.config_path}:3: SSH_ACCELERATOR_MIN_MB '{value}' is not a whole number of MiB"


@pytest.mark.parametrize(
    "field, value",
    [
        ("address", "-oProxyCommand=touch /tmp/pwned"),
        ("address", "host name"),
        ("address", "user@host"),
        ("address", "h;id"),
        ("address", ""),
        ("user", "-oProxyCommand=x"),
        ("name", "-oProxyCommand=x"),
    ],
)
def test_addresses_users_and_names_ssh_could_read_as_options_are_refused(home, field, value):
    host = dataclasses.replace(Host("evil", "ssh", "/srv/vms"), **{field: value})
    with pytest.raises(InputError) as caught:
        Hosts(home).create(host)
    assert ("--" + field if field != "name" else "bad host name") in str(caught.value)
    assert Hosts(home).list() == []


@pytest.mark.parametrize("address", ["10.0.0.1", "fe80::1%eth0", "::1", "node-7.cluster_a.example.org"])
def test_real_addresses_are_accepted(home, address):
    assert Hosts(home).create(Host("h", "ssh", "/srv/vms", address=address)).address == address


def test_the_openssh_argv_ends_its_options_before_the_destination(tmp_path, monkeypatch):
    """A record stored before addresses were checked still cannot inject an option: `--` precedes it."""
    from engine.transfers.openssh import ssh_argv

    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ssh_argv(Host("evil", "ssh", "/srv/vms", address="-oProxyCommand=touch /tmp/pwned"))
    assert argv[-2:] == ["--", "-oProxyCommand=touch /tmp/pwned"]


def test_a_conf_program_with_a_control_character_is_an_error_naming_the_line(home):
    # os.access raised ValueError ("embedded null byte"): an internal error. Found by tests/engine/test_fuzz.py.
    (home.root / "tm").mkdir()
    (home.root / "tm" / "nul.conf").write_text('BASE = shared\nCLONE = "my\x00clone"\n')
    with pytest.raises(InputError) as caught:
        load_driver(home, "nul")
    (problem,) = caught.value.problems
    assert problem.line == 2 and problem.message.endswith("my\\x00clone' holds a control character")
