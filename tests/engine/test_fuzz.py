"""Every parser, fed arbitrary input, only ever raises the project's own errors (HeadnodeError), never a crash.

Inputs are half structure, half noise: attribute names each parser knows, with values of any text (quoted so the
template itself parses and the value reaches the parser behind it), beside raw text. Example counts stay modest so
the suite stays fast; the attack that found the crashes these guard against ran ~470,000 inputs.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import HeadnodeError
from engine.home import Home
from engine.language.numbers import whole_number
from engine.language.script import parse_script
from engine.language.template import format_value, parse_template
from engine.networks import addresses
from engine.networks.definition import network_from_template
from engine.transfers.checksums import from_tool_output
from engine.transfers.drivers import load_driver
from engine.transfers.endpoints import parse_stored
from engine.transfers.hosts import Host, validate_host
from engine.transfers.journal import Journal
from engine.transfers.openssh import configured_accelerator
from engine.vms.planner import Placement, check_template, plan

FEW = settings(max_examples=60, deadline=None)

# Text that looks like what each parser reads: digits of every script, separators, control characters.
NOISE = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "0", "²", "٢٤", "１２", "-1", "9" * 30, "10.0.0.0/٢٤", "a:b", "/a:/b", "\x00", "\x1b[31m", "[", "]", '"', "\\"]
)


def own_errors_only(call: Callable[[], Any]) -> None:
    with contextlib.suppress(HeadnodeError):  # anything else fails the test
        call()


def template_text(names: list[str]) -> st.SearchStrategy[str]:
    """Templates of these attribute names (and vectors of them) with arbitrary values, or raw noise."""
    single = st.builds(lambda n, v: f"{n} = {format_value(v)}", st.sampled_from(names), NOISE)
    vector = st.builds(
        lambda n, items: f"{n} = [ " + ", ".join(f"{k} = {format_value(v)}" for k, v in items) + " ]",
        st.sampled_from(names),
        st.lists(st.tuples(st.sampled_from(names), NOISE), max_size=5, unique_by=lambda kv: kv[0]),
    )
    structured = st.lists(single | vector, max_size=8).map(lambda lines: "\n".join(lines) + "\n")
    return structured | st.text(max_size=200)


NETWORK_NAMES = ["NAME", "TYPE", "BRIDGE", "NETWORK_ADDRESS", "NETWORK_SIZE", "IP_START", "IP_END", "MAC_PREFIX"]
NETWORK_NAMES += ["POLICY", "GLOBAL_PREFIX", "ULA_PREFIX", "LEASES", "IP", "MAC", "GATEWAY"]
VM_NAMES = ["NAME", "DISK", "SOURCE", "TYPE", "SIZE", "FORMAT", "CLONE", "SAVE", "TARGET", "CONTEXT", "FILES", "NIC"]
DRIVER_NAMES = ["BASE", "VERIFY_LOCAL_COPIES", "CHECKSUM", "CLONE", "LN", "MKSWAP", "MKIMAGE", "MV", "DELETE"]
CONF_NAMES = ["FRONTEND_NAME", "SSH_ACCELERATOR", "SSH_ACCELERATOR_MIN_MB", "MAC_PREFIX", "LEASE_SYNC"]
CONF_NAMES += ["DEFAULT_NETWORK", "NAME", "BRIDGE", "NETWORK_ADDRESS"]
ACTIONS = ["CLONE", "LN", "MKSWAP", "MKIMAGE", "CONTEXT", "MV", "DELETE", "clone"]


@FEW
@given(template_text(VM_NAMES))
def test_template_language(text: str) -> None:
    own_errors_only(lambda: parse_template(text, "fuzz.tmpl"))


@FEW
@given(
    st.lists(
        st.builds(lambda a, args: " ".join([a, *args]), st.sampled_from(ACTIONS), st.lists(NOISE, max_size=4))
    ).map("\n".join)
    | st.text(max_size=200)
)
def test_image_script_grammar(text: str) -> None:
    own_errors_only(lambda: parse_script(text, "fuzz.script"))


@FEW
@given(template_text(NETWORK_NAMES), NOISE)
def test_network_definitions(text: str, default_prefix: str) -> None:
    own_errors_only(lambda: network_from_template(parse_template(text, "fuzz.net"), default_prefix))


@FEW
@given(template_text(VM_NAMES), st.integers(0, 10**6))
def test_vm_templates_through_the_planner(text: str, vm_id: int) -> None:
    def planned() -> None:
        template = parse_template(text, "fuzz.tmpl")
        check_template(template)
        for operation in ("prolog", "epilog", "stop", "resume", "migrate", "delete"):
            plan(template, vm_id, Placement("fe", "/fe", "h", "/vms", "old", "/old"), operation)

    own_errors_only(planned)


@FEW
@given(NOISE, NOISE)
def test_addresses_macs_and_prefixes(text: str, prefix: str) -> None:
    for parse in (addresses.parse_ipv4, addresses.parse_mac, addresses.parse_mac_prefix, addresses.mac_to_ip):
        own_errors_only(lambda parse=parse: parse(text))
    own_errors_only(lambda: addresses.parse_ipv6_prefix(text))
    own_errors_only(lambda: addresses.ip_to_mac(text, prefix))
    own_errors_only(lambda: addresses.mac_to_ipv6(text, prefix))
    own_errors_only(lambda: network_from_template(parse_template(f"NETWORK_ADDRESS = {format_value(text)}\n"), "02:00"))


@FEW
@given(template_text(DRIVER_NAMES))
def test_driver_confs(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        home = Home(root).ensure()
        (home.root / "tm").mkdir()
        (home.root / "tm" / "fuzz.conf").write_text(text)
        own_errors_only(lambda: load_driver(home, "fuzz"))


@FEW
@given(template_text(CONF_NAMES))
def test_headnode_conf(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        Path(root, "headnode.conf").write_text(text)

        def configured() -> None:
            home = Home(root)
            config = home.config
            configured_accelerator(home)
            for vector in config.template.vectors("DEFAULT_NETWORK"):
                template = parse_template("".join(f"{k} = {format_value(v)}\n" for k, v in vector.items))
                network_from_template(template, config.mac_prefix)

        own_errors_only(configured)


@FEW
@given(NOISE, NOISE, NOISE, NOISE, st.integers(-(2**31), 2**31) | st.none(), st.integers(-5, 10**6))
def test_host_input(name: str, vm_dir: str, address: str, user: str, port: int | None, transfers: int) -> None:
    host = Host(name, "ssh", vm_dir, address, port, user, None, max_transfers=transfers)
    assert all(isinstance(p.message, str) for p in validate_host(host, ["ssh", "shared"]))
    for algorithm in ("cksum", "sha256"):
        value = from_tool_output(algorithm, address)
        assert value is None or value.startswith(f"{algorithm}:")
    own_errors_only(lambda: parse_stored(name, 0))
    assert whole_number(name) is None or whole_number(name) >= 0


JOURNAL_LINES = st.sampled_from(
    [
        b'{"position":0,"line":1,"started":1.0}',
        b'{"position":0,"ended":2.0,"outcome":"done","bytes":5,"checksum":null,"error":null}',
        b'{"position":1,"ended":2.0,"outcome":"failed","bytes":0,"checksum":null,"error":"x"}',
        b'{"position":[1],"ended":2.0,"outcome":"done","bytes":0}',
        b'{"position":true,"line":1}',
        b'{"position":-1,"line":1}',
        b"[1]",
        b'"text"',
        b"null",
    ]
) | st.binary(max_size=60)


@FEW
@given(st.lists(JOURNAL_LINES, max_size=6), st.booleans())
def test_a_runs_journal_file(lines: list[bytes], ended: bool) -> None:
    """A hand-edited or damaged run file is damage (or a torn last line), never a crash, and what loads is whole."""
    with tempfile.TemporaryDirectory() as folder:
        home = Home(Path(folder))
        journal = Journal(home)
        script = "MKSWAP 1 h:/v/a\nMKSWAP 1 h:/v/b\n"
        run = journal.start(1, script)
        (journal.directory / f"{run}.jsonl").write_bytes(b"\n".join(lines) + (b"\n" if ended else b""))
        (entry,) = journal.runs(1)
        assert all(type(position) is int and position >= 0 for position in entry.done)
        assert all(type(action["position"]) is int for action in entry.actions)
        own_errors_only(lambda: journal.unfinished(1, script))
