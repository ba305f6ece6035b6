"""Variables in CONTEXT values."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.language.template import parse_template
from engine.vms.context_vars import resolve_context

TEMPLATE = """\
NAME = web
NIC = [ NETWORK = public, IP = 130.10.0.4, MAC = 02:00:82:0a:00:04 ]
NIC = [ NETWORK = "private lan", IP = 10.0.0.7, MAC = 02:00:0a:00:00:07 ]
CONTEXT = [
  HOSTNAME = "$NAME-$VMID",
  IP = "$NIC[IP]",
  IP_PRIVATE = "$NIC[IP, NETWORK=\\"private lan\\"]",
  MAC_PRIVATE = "$NIC[ MAC , NETWORK = \\"private lan\\" ]",
  PRICE = "costs $5 and $ more" ]
"""


def test_variables_resolve_from_the_template_and_its_nics() -> None:
    context = resolve_context(parse_template(TEMPLATE), 42).vectors("CONTEXT")[0]
    assert context.as_dict() == {
        "HOSTNAME": "web-42",
        "IP": "130.10.0.4",
        "IP_PRIVATE": "10.0.0.7",
        "MAC_PRIVATE": "02:00:0a:00:00:07",
        "PRICE": "costs $5 and $ more",
    }


def test_other_attributes_are_untouched() -> None:
    t = parse_template(TEMPLATE)
    resolved = resolve_context(t, 1)
    assert resolved.all("NIC") == t.all("NIC")
    assert resolved.get("NAME") == "web"


def test_unknown_variables_are_errors_naming_the_key() -> None:
    t = parse_template('NAME = a\nCONTEXT = [ A = "$NOPE", B = "$NIC[IP]" ]\n', "vm.tmpl")
    with pytest.raises(InputError) as info:
        resolve_context(t, 1)
    assert [str(p) for p in info.value.problems] == [
        "vm.tmpl:2: CONTEXT A: $NOPE is not a single-valued attribute of the template",
        "vm.tmpl:2: CONTEXT B: $NIC[IP] matches no NIC that has IP",
    ]
