"""Variables in CONTEXT values, resolved from the VM's template once its NICs are leased.

    HOSTNAME = "$NAME"                       a single-valued template attribute
    IP       = "$NIC[IP]"                    a key of the first NIC (or of any vector attribute)
    IP_PRIV  = "$NIC[IP, NETWORK=\"private\"]" a key of the first NIC whose NETWORK is "private"
    IP6      = "$NIC[IP6_GLOBAL]"            a leased NIC's IPv6 addresses: IP6_GLOBAL, IP6_ULA (networks with
                                             GLOBAL_PREFIX / ULA_PREFIX) and IP6_LINK (every leased NIC)
    ID       = "$VMID"                       the VM's id

A `$` that does not start a variable stays as written. An unknown variable is an error naming the CONTEXT key.
Before a VM's NICs are leased (`vm create` checks the template first; `plan` leases nothing), a key of a NIC that
names a NETWORK but lacks that key is one the lease will add: `unleased=True` keeps such a variable as written and
lists it.
"""

from __future__ import annotations

import re

from engine.errors import InputError, Problem
from engine.language.template import Template, Vector

_VARIABLE = re.compile(
    r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\[\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r'(?:,\s*(?P<ckey>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"?(?P<cvalue>[^"\]]*?)"?\s*)?\])?'
)


def resolve_context(template: Template, vm_id: int) -> Template:
    """The template with its CONTEXT values' variables replaced; other attributes unchanged."""
    return resolve_context_unleased(template, vm_id, unleased=False)[0]


def resolve_context_unleased(template: Template, vm_id: int, unleased: bool = True) -> tuple[Template, list[str]]:
    """resolve_context before the NICs are leased: the template, and the variables kept for the leases to fill."""
    problems: list[Problem] = []
    kept: list[str] = []
    attributes = []
    for attr in template.attributes:
        if attr.name == "CONTEXT" and isinstance(attr.value, Vector):
            items = []
            for key, value in attr.value.items:
                try:
                    items.append((key, _substitute(value, template, vm_id, kept if unleased else None)))
                except LookupError as exc:
                    problems.append(Problem(f"CONTEXT {key}: {exc.args[0]}", template.source, attr.line or None))
            attr = type(attr)(attr.name, Vector(tuple(items)), attr.line)
        attributes.append(attr)
    if problems:
        raise InputError(problems)
    return Template(attributes, template.source), kept


def _substitute(value: str, template: Template, vm_id: int, kept: list[str] | None) -> str:
    return _VARIABLE.sub(lambda match: _lookup(match, template, vm_id, kept), value)


def _lookup(match: re.Match[str], template: Template, vm_id: int, kept: list[str] | None) -> str:
    name, key = match["name"].upper(), match["key"]
    if key is None:
        if name == "VMID":
            return str(vm_id)
        found = template.get(name)
        if found is None:
            raise LookupError(f"${match['name']} is not a single-valued attribute of the template")
        return found
    vectors = template.vectors(name)
    if match["ckey"]:
        vectors = [v for v in vectors if v.get(match["ckey"]) == match["cvalue"]]
    for vector in vectors:
        found = vector.get(key)
        if found is not None:
            return found
    if kept is not None and name == "NIC" and any(v.get("NETWORK") for v in vectors):
        kept.append(match.group(0))
        return match.group(0)
    hint = ""
    if name == "NIC" and key.upper() in ("IP6_GLOBAL", "IP6_ULA"):
        hint = f" (only a NIC of a network with {key.upper()[4:]}_PREFIX has one)"
    raise LookupError(f"{match.group(0)} matches no {name} that has {key.upper()}{hint}")
