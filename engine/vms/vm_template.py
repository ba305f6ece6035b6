"""A VM template read the one way `vm create` and `plan` both read it, with every problem found in one pass.

- It must be a VM's: a network template (BRIDGE, NETWORK_ADDRESS, ...) or one with no VM attribute is refused.
- A DISK SOURCE that is a bare file name is an image in the home's `images/`, which must exist.
- CONTEXT variables are resolved; those a NIC's lease will fill are kept for it (engine.vms.context_vars).
- The disks must plan (engine.vms.planner), and CONTEXT FILES must exist on the front end (files or directories).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.errors import InputError, Problem
from engine.language.template import Attribute, Template, Vector
from engine.vms.context_vars import resolve_context_unleased
from engine.vms.planner import check_template, context_files, is_url

# Attributes only a virtual network template has (OpenNebula's onevnet), and those that make a VM's.
NETWORK_ATTRIBUTES = ("BRIDGE", "NETWORK_ADDRESS", "NETWORK_SIZE", "LEASES", "IP_START", "IP_END")
VM_ATTRIBUTES = ("DISK", "NIC", "CONTEXT", "MEMORY", "CPU", "VCPU", "OS")


def check_vm_template(
    template: Template, images: Path, more: Sequence[Problem] = (), files_here: bool = True
) -> Template:
    """The template with its images resolved (its CONTEXT variables not yet: they wait for the leases), as
    `vm create` and `plan` read it. InputError lists every problem, with `more` found by the caller, by line;
    `files_here`: CONTEXT FILES must exist on this front end."""
    kind = _kind_problems(template)
    if kind:
        raise InputError(kind)  # a network's attributes would only add noise
    problems = list(more)
    template = _resolve_images(template, images, problems)
    try:
        resolved, _ = resolve_context_unleased(template, 0)
    except InputError as exc:
        problems.extend(exc.problems)
        resolved = template
    try:
        check_template(resolved)
    except InputError as exc:
        problems.extend(exc.problems)
    if files_here:
        problems.extend(_missing_files(resolved))
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.line or 0))
    return template


def _kind_problems(template: Template) -> list[Problem]:
    for attr in template.attributes:
        if attr.name in NETWORK_ATTRIBUTES:
            return [
                Problem(
                    f"{attr.name} belongs to a virtual network template, not a VM's: use 'headnode vnet create'",
                    template.source,
                    attr.line or None,
                )
            ]
    if not any(template.all(name) for name in VM_ATTRIBUTES):
        return [Problem(f"not a VM template: it has none of {', '.join(VM_ATTRIBUTES)}", template.source)]
    return []


def _resolve_images(template: Template, images: Path, problems: list[Problem]) -> Template:
    """A DISK SOURCE that is a bare name is an image in the home's images/ directory; it must exist."""
    attributes = []
    for attr in template.attributes:
        disk = attr.value if attr.name == "DISK" and isinstance(attr.value, Vector) else None
        source = disk.get("SOURCE") if disk is not None else None
        if disk is not None and source and "/" not in source and ":" not in source:
            path = images / source
            if not path.is_file():
                problems.append(Problem(f"DISK SOURCE {source!r}: no image {path}", template.source, attr.line))
            attr = Attribute(attr.name, disk.replace(SOURCE=str(path)), attr.line)
        attributes.append(attr)
    return Template(attributes, template.source)


def _missing_files(template: Template) -> list[Problem]:
    """CONTEXT FILES on the front end that are missing (a directory is copied whole, like tm_context.sh did)."""
    problems = []
    for attr, name in context_files(template):
        if name.startswith("/") and not is_url(name) and not os.path.exists(name):
            problems.append(
                Problem(f"CONTEXT FILES: {name} does not exist on the front end", template.source, attr.line)
            )
    return problems
