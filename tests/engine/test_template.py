"""The template language: syntax, round trips, and every error kind with its location."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InputError
from engine.language.template import (
    Attribute,
    Template,
    TemplateError,
    Vector,
    format_template,
    load_template,
    parse_template,
)

SAMPLE = """\
# a VM template
NAME   = "web server"    # names keep their case in values
cpu    = 1
Memory = 512
DISK = [ SOURCE = /srv/images/web.img,
         TARGET = "hda" ]
DISK = [TYPE=swap,SIZE=1024]
NIC  = [ NETWORK = "Private LAN" ]

CONTEXT = [ FILES = "/srv/ctx/init.sh /srv/ctx/id.pub", NOTE = "say \\"hi\\" \\\\o/" ]
"""


def test_parses_values_vectors_repeats_and_comments() -> None:
    t = parse_template(SAMPLE, "web.tmpl")
    assert [a.name for a in t] == ["NAME", "CPU", "MEMORY", "DISK", "DISK", "NIC", "CONTEXT"]
    assert t.get("name") == "web server"
    assert t.get("MEMORY") == "512"
    disks = t.vectors("disk")
    assert disks[0] == Vector((("SOURCE", "/srv/images/web.img"), ("TARGET", "hda")))
    assert disks[1].get("size") == "1024"
    assert t.vectors("NIC")[0].get("NETWORK") == "Private LAN"
    assert t.vectors("CONTEXT")[0].get("NOTE") == 'say "hi" \\o/'
    assert [a.line for a in t.all("DISK")] == [5, 7]


def test_round_trip_is_stable() -> None:
    t = parse_template(SAMPLE)
    text = format_template(t)
    assert parse_template(text) == t
    assert format_template(parse_template(text)) == text


def test_format_quotes_only_when_needed() -> None:
    t = Template([Attribute("A", "plain"), Attribute("B", "two words"), Attribute("C", ""), Attribute("D", "x=y")])
    assert t.format() == 'A = plain\nB = "two words"\nC = ""\nD = "x=y"\n'


def test_values_keep_case_and_names_do_not() -> None:
    t = parse_template("Bridge = VirBr0\n")
    assert t.all("bridge")[0].name == "BRIDGE"
    assert t.get("BRIDGE") == "VirBr0"


def test_empty_vector_and_trailing_comma() -> None:
    t = parse_template("A = [ ]\nB = [ X = 1, ]\n")
    assert t.vectors("A") == [Vector()]
    assert t.vectors("B")[0].as_dict() == {"X": "1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('NAME = "web\nCPU = 1\n', "web.tmpl:1:8: unterminated quoted value"),
        ("DISK = [ SOURCE = /a,\n  TARGET = hda\n", "web.tmpl:1:8: unterminated vector DISK: expected ']'"),
        ("CPU 1\n", "web.tmpl:1:5: missing '=' after CPU, found '1'"),
        ("CPU\n", "web.tmpl:1:4: missing '=' after CPU, found end of line"),
        (" = 1\n", "web.tmpl:1:2: empty attribute name before '='"),
        ("DISK = [ = 1 ]\n", "web.tmpl:1:10: empty DISK key name before '='"),
        ("DISK = [ A = [ B = 1 ] ]\n", "web.tmpl:1:14: nested vector: a vector value cannot hold another vector"),
        ("CPU = 1 2\n", "web.tmpl:1:9: stray characters after CPU's value: '2'"),
        ("DISK = [ A = 1 B = 2 ]\n", "web.tmpl:1:16: stray characters in vector DISK: expected ',' or ']', found 'B'"),
        ("CPU =\n", "web.tmpl:1:6: expected a value for CPU"),
        ("DISK = [ A = ]\n", "web.tmpl:1:14: expected a value for A"),
        ("DISK = [ A = 1, a = 2 ]\n", "web.tmpl:1:17: duplicate key A in vector DISK"),
        ("\n\n  4X = 1\n", "web.tmpl:3:3: expected attribute name, found '4'"),
    ],
)
def test_errors_name_file_line_column_and_what_was_expected(text: str, expected: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(text, "web.tmpl")
    assert str(info.value) == expected


def test_load_template_reports_missing_file(tmp_path) -> None:
    with pytest.raises(InputError) as info:
        load_template(tmp_path / "nope.tmpl")
    assert str(info.value) == f"{tmp_path / 'nope.tmpl'}: cannot read template: No such file or directory"


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)


@st.composite
def templates(draw) -> Template:
    attrs = []
    for name in draw(st.lists(names, max_size=6)):
        if draw(st.booleans()):
            keys = draw(st.lists(names.map(str.upper), unique=True, max_size=4))
            attrs.append(Attribute(name.upper(), Vector(tuple((k, draw(values)) for k in keys))))
        else:
            attrs.append(Attribute(name.upper(), draw(values)))
    return Template(attrs)


@given(templates())
def test_property_format_then_parse_gives_the_same_template(t: Template) -> None:
    assert parse_template(format_template(t)) == t


@given(st.text(max_size=200))
def test_property_parser_raises_only_its_own_error(text: str) -> None:
    try:
        parse_template(text, "fuzz.tmpl")
    except TemplateError as exc:
        assert str(exc).startswith("fuzz.tmpl:")


@given(st.text(alphabet='AB =[],"#\\\n x1', max_size=60))
def test_property_parser_on_grammar_characters(text: str) -> None:
    try:
        t = parse_template(text)
    except TemplateError:
        return
    assert parse_template(format_template(t)) == t


class _CountingText(str):
    """Template text that adds up how many characters `count` looks at (the scanner's line numbering)."""

    scanned = 0

    def count(self, sub, start=0, end=None):  # type: ignore[override]
        end = len(self) if end is None else end
        _CountingText.scanned += max(end - start, 0)
        return super().count(sub, start, end)


def test_line_numbers_cost_one_pass_over_the_text() -> None:
    # Numbering each attribute's line by counting from the start made 80,000 attributes take 25 s.
    text = _CountingText("".join(f"A{i} = {i}\n" for i in range(2000)))
    _CountingText.scanned = 0
    template = parse_template(text, "big.tmpl")
    assert template.attributes[-1].line == 2000
    assert _CountingText.scanned <= 2 * len(text)
    with pytest.raises(TemplateError, match=r"big\.tmpl:2001:4: missing '='"):
        parse_template(_CountingText(text + "BAD\n"), "big.tmpl")
