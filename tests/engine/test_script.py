"""Image scripts: the grammar, canonical formatting, and whole-script validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.language.script import (
    Clone,
    Context,
    Delete,
    Link,
    Location,
    MakeImage,
    MakeSwap,
    Move,
    ScriptError,
    Url,
    format_action,
    load_script,
    parse_script,
)

GOLDEN = Path(__file__).parent / "golden"


def test_parses_every_action_into_typed_records() -> None:
    script = load_script(GOLDEN / "all_actions.script")
    actions = script.actions
    dest0 = Location("host01", "/var/lib/one/12/images/disk.0")
    assert actions[0] == Clone(Location("head", "/images/ubuntu.img"), dest0)
    assert actions[1] == Clone(Url("https://imgsrv.example.org/a.img"), dest0, 2048)
    assert actions[2].source.scheme == "file"
    assert actions[3] == Link(
        Location("head", "/images/db.img"), Location("host01", "/var/lib/one/12/images/disk.3"), 512
    )
    assert actions[4] == MakeSwap(1024, Location("host01", "/var/lib/one/12/images/disk.1"))
    assert actions[5] == MakeImage(4096, "ext3", Location("host01", "/var/lib/one/12/images/disk.2"))
    assert actions[6] == Context(
        "/var/lib/one/12/context.sh",
        ("/srv/ctx/init.sh", "http://x.example/k.pub"),
        Location("host01", "/var/lib/one/12/images/disk.5"),
    )
    assert actions[7].files == ()
    assert actions[8] == Move(
        Location("host01", "/var/lib/one/12/images/disk.3"), Location("head", "/var/lib/one/12/disk.3")
    )
    assert actions[9] == Delete(Location("host01", "/var/lib/one/12/images"))
    assert [line.number for line in script.lines] == list(range(2, 12))
    with pytest.raises(AttributeError):
        actions[0].size_mb = 3  # records are immutable


def test_canonical_form_is_byte_for_byte() -> None:
    text = (GOLDEN / "all_actions.script").read_text()
    canonical = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    assert load_script(GOLDEN / "all_actions.script").format() == canonical


def test_noncanonical_input_formats_canonically() -> None:
    script = parse_script("  clone\thead:/a   host01:/b/disk.0  10 \n\n# note\nmkswap 5 h:/s\n")
    assert script.format() == "CLONE head:/a host01:/b/disk.0 10\nMKSWAP 5 h:/s\n"


def test_host_path_splits_at_the_first_colon() -> None:
    action = parse_script("DELETE h1:/srv/a:b\n").actions[0]
    assert action.dest == Location("h1", "/srv/a:b")


def test_every_bad_line_is_reported_and_nothing_parsed() -> None:
    with pytest.raises(ScriptError) as info:
        parse_script((GOLDEN / "bad.script").read_text(), "bad.script")
    assert str(info.value) + "\n" == (GOLDEN / "bad.expected").read_text()
    assert len(info.value.problems) == 12


def test_shell_metacharacters_are_carried_verbatim() -> None:
    line = "CLONE head:/img/a;rm$(x)&`y`|z'q\" h:/v/1/images/disk.0"
    assert format_action(parse_script(line).actions[0]) == line


def test_an_unquoted_path_holding_white_space_is_refused_with_the_way_to_write_it() -> None:
    with pytest.raises(ScriptError, match=r'got 3 arguments \(a path holding white space.*double quotes, "h:/a b"'):
        parse_script("DELETE h:/a b c\n", "s")


def test_an_argument_in_double_quotes_carries_white_space_and_quotes() -> None:
    """A home such as "/home/ann/my cluster": its VM directory's paths are written in quotes, and read back whole."""
    text = 'CLONE "fe:/home/ann/my cluster/images/a.img" "h:/v/my \\"x\\" \\\\1/images/disk.0" 4\nMV h:/a\\b h:/c\n'
    script = parse_script(text)
    clone, move = script.actions
    assert clone.source == Location("fe", "/home/ann/my cluster/images/a.img") and clone.size_mb == 4
    assert clone.dest == Location("h", '/v/my "x" \\1/images/disk.0')
    assert move.source == Location("h", "/a\\b")  # outside quotes a backslash is itself, as in OpenNebula
    assert script.format() == text and parse_script(script.format()) == script


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('DELETE "h:/a b', "unclosed quote in 'DELETE \"h:/a b'"),
        ('DELETE "h:/a b"c', "text right after a closing quote"),
        ('DELETE "h:/a\x1bb"', "control character"),
    ],
)
def test_a_badly_quoted_argument_is_refused(line: str, message: str) -> None:
    with pytest.raises(ScriptError, match=re.escape(message)):
        parse_script(line + "\n", "s")


def test_control_characters_are_refused() -> None:
    with pytest.raises(ScriptError, match="control character"):
        parse_script("DELETE h:/a\x01b\n")


locations = st.builds(
    Location,
    st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?", fullmatch=True),
    # A path starting with // would read back as a URL (host://path): the planner never writes one.
    # White space, quotes and backslashes too: a line quotes what needs it and reads it back whole.
    st.from_regex(r"/([A-Za-z0-9._:;$&|'\"()\\ -][A-Za-z0-9._/:;$&|'\"()\\ -]{0,20})?", fullmatch=True),
)
sizes = st.integers(1, 10**7)
actions = st.one_of(
    st.builds(Clone, locations, locations, st.none() | sizes),
    st.builds(Link, st.builds(Url, st.sampled_from(["http://h/a", "https://h:8443/b?c=d", "file:///x"])), locations),
    st.builds(MakeSwap, sizes, locations),
    st.builds(MakeImage, sizes, st.sampled_from(["ext4", "xfs", "vfat"]), locations),
    st.builds(Move, locations, locations),
    st.builds(Delete, locations),
)


@given(st.lists(actions, max_size=8))
def test_property_format_then_parse_gives_the_same_actions(acts) -> None:
    text = "".join(format_action(a) + "\n" for a in acts)
    assert parse_script(text).actions == acts


@given(st.text(max_size=300))
def test_property_parser_raises_only_its_own_error(text: str) -> None:
    try:
        parse_script(text, "fuzz")
    except ScriptError as exc:
        assert all(p.file == "fuzz" and p.line for p in exc.problems)


@pytest.mark.parametrize("size", ["²", "٢٤", "１２"])
def test_sizes_are_ascii_digits_only(size: str) -> None:
    # '²'.isdigit() is true and int('²') raises; int('٢٤') is 24: neither is a size anyone wrote.
    with pytest.raises(ScriptError, match=f"bad size '{size}'"):
        parse_script(f"MKSWAP {size} h:/x\n")
