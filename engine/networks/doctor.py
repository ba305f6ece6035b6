"""Checks the lease database against the rules, and repairs it only when asked.

Findings, per lease document:
- `record`: the document does not describe the address it is stored under (repair: remove it);
- `outside`: the address is outside its network's range, or is its gateway (repair: remove the lease);
- `mac`: the MAC does not follow the rule (prefix + IPv4, or the FIXED listing) (repair: set the right MAC);
- `orphan`: owned by a VM that no longer exists (repair: release it);
- `duplicate`: the same IP or MAC leased twice on one bridge (repair: keep the oldest, remove the others).
And per lease file, `damaged`: a journal line or the snapshot did not load, so leases may be lost and the network
takes no new ones (repair: keep what loaded, the damaged files copied aside as `<file>.damaged-<time>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.networks.addresses import AddressError, parse_ipv4
from engine.networks.lease_book import META, LeaseBook


@dataclass(frozen=True)
class Finding:
    kind: str
    network: str
    ip: str
    message: str
    fixed: bool

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "network": self.network, "ip": self.ip, "message": self.message, "fixed": self.fixed}


def examine(books: Sequence[LeaseBook], vm_ids: set[int], fix: bool = False) -> list[Finding]:
    """Every finding over the networks of `books`; with `fix`, each one repaired as it is found."""
    findings: list[Finding] = []
    kept: list[tuple[LeaseBook, int, dict[str, Any]]] = []
    for book in books:
        with book.file.read():
            damage = list(book.file.damage)
        if damage:
            copies = book.file.set_aside_damage() if fix else []
            aside = f"; the damaged files are kept as {', '.join(map(str, copies))}" if copies else ""
            findings.extend(Finding("damaged", book.network.name, "", f"{d}{aside}", fix) for d in damage)
        with book.file.read() as data:
            stored = [(name, key, doc) for name, table in data.items() if name != META for key, doc in table.items()]
        for shard, key, doc in stored:
            finding = _check(book, shard, key, doc, vm_ids)
            if finding is None:
                kept.append((book, int(key), doc))
                continue
            kind, message, repaired = finding
            if fix:
                book.rewrite(int(key), repaired)
                if repaired is not None:
                    kept.append((book, int(key), repaired))
            elif kind == "mac":
                kept.append((book, int(key), doc))
            findings.append(Finding(kind, book.network.name, doc.get("ip") or key, message, fix))
    findings.extend(_duplicates(kept, fix))
    return findings


def _check(
    book: LeaseBook, shard: str, key: str, doc: Any, vm_ids: set[int]
) -> tuple[str, str, dict[str, Any] | None] | None:
    """(kind, message, the repaired document or None to remove) for the first rule the document breaks."""
    network = book.network
    try:
        number = int(key)
        ip_ok = isinstance(doc, dict) and parse_ipv4(doc.get("ip", "")) == number and book.shard(number) == shard
    except (ValueError, AddressError):
        ip_ok = False
    if not ip_ok or not {"mac", "vm", "state", "note"} <= doc.keys():
        return "record", f"document {shard}/{key} does not describe the address it is stored under", None
    if number == network.gateway:
        return "outside", f"{doc['ip']} is the gateway of {network.name!r}, which is never leased", None
    if not network.contains(number):
        return "outside", f"{doc['ip']} is outside the range of {network.name!r} ({network.range_text})", None
    if doc["vm"] is not None and doc["vm"] not in vm_ids:
        return "orphan", f"{doc['ip']} is leased to VM {doc['vm']}, which no longer exists", None
    expected = network.mac_for(number)
    if doc["mac"] != expected:
        return "mac", f"{doc['ip']} has MAC {doc['mac']}, the rule gives {expected}", {**doc, "mac": expected}
    return None


def _duplicates(kept: list[tuple[LeaseBook, int, dict[str, Any]]], fix: bool) -> list[Finding]:
    findings = []
    kept.sort(key=lambda item: (item[2].get("created", 0), item[1]))  # the oldest lease keeps the address
    seen: dict[tuple[str, str, Any], str] = {}
    for book, number, doc in kept:
        bridge = book.network.bridge
        clash = next(
            (seen[k] for k in ((bridge, "ip", doc["ip"]), (bridge, "mac", doc["mac"])) if k in seen),
            None,
        )
        if clash is None:
            seen[(bridge, "ip", doc["ip"])] = seen[(bridge, "mac", doc["mac"])] = book.network.name
            continue
        if fix:
            book.rewrite(number, None)
        findings.append(
            Finding(
                "duplicate",
                book.network.name,
                doc["ip"],
                f"{doc['ip']} ({doc['mac']}) is also leased in {clash!r} on bridge {bridge}",
                fix,
            )
        )
    return findings
