"""The lease manager of one network: who holds which IP-MAC pair, and which address is handed out next.

Only leased addresses have a document (as in OpenNebula): in the network's LeaseFile, table `a.b.c` (its /24)
holds document `int(ip)` = {"ip", "mac", "vm", "state", "note", "created", "updated"} and "host", the name a VM's
NIC is served under (absent for holds and bare leases); table `_meta` document 1 holds the next-fit cursor.
Every change is one journaled transaction, so a batch of N leases is all or none.

Policies:
- `next-fit` (default; OpenNebula's rotating cursor, persisted here): start after the address handed out last,
  so a just-released address is not handed out again at once. Lease .1 .2 .3, release .2: the next is .4.
- `first-free`: the lowest free address.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError, OperationError, Problem
from engine.networks.addresses import LINK_LOCAL_PREFIX, mac_to_ipv6, parse_ipv4
from engine.networks.definition import FIRST_FREE, Network
from engine.networks.lease_file import Damage, LeaseFile, Transaction

_new = object.__new__
USED = "used"
HOLD = "hold"
META = "_meta"
CURSOR_DOC = 1


@dataclass(frozen=True)
class Lease:
    network: str
    ip: str
    mac: str
    vm: int | None  # None when held
    state: str  # "used" (a VM has it) or "hold" (reserved, no VM)
    note: str
    created: float  # seconds since the epoch
    updated: float
    host: str | None = None  # the DHCP/DNS host name given to a VM's NIC (see host_name)
    of: Network | None = field(default=None, compare=False, repr=False)  # gives the IPv6 addresses

    # The IPv6 addresses (OpenNebula's IP6_GLOBAL, IP6_ULA, IP6_LINK) are worked out when asked for: a table of
    # 65,534 leases that shows none of them does not pay for them.
    @property
    def ip6_global(self) -> str | None:
        """The SLAAC address under the network's GLOBAL_PREFIX (None without one)."""
        return self.of.ipv6_address("GLOBAL", self.mac) if self.of is not None else None

    @property
    def ip6_ula(self) -> str | None:
        """The SLAAC address under the network's ULA_PREFIX (None without one)."""
        return self.of.ipv6_address("ULA", self.mac) if self.of is not None else None

    @property
    def ip6_link(self) -> str:
        """The link-local address (fe80::/64), which every NIC has."""
        link = self.of.ipv6_address("LINK", self.mac) if self.of is not None else None
        return link or mac_to_ipv6(self.mac, LINK_LOCAL_PREFIX)

    @property
    def host_name(self) -> str | None:
        """The name the lease is served under (DHCP and DNS): its NIC's, else `one-<vm>` (OpenNebula's VM host
        name); None for a held address."""
        if self.vm is None:
            return None
        return self.host or f"one-{self.vm}"

    def to_json(self) -> dict[str, Any]:
        """The CLI's lease shape."""
        keys = ("network", "ip", "mac", "ip6_global", "ip6_ula", "ip6_link", "vm", "state", "note")
        return {**{key: getattr(self, key) for key in keys}, "host": self.host_name}


@dataclass(frozen=True)
class Usage:
    size: int
    used: int
    held: int
    damage: tuple[Damage, ...] = ()  # what of the network's lease files did not load: the counts may be short

    @property
    def free(self) -> int:
        return max(self.size - self.used - self.held, 0)

    def warnings(self, network: str) -> list[str]:
        """What `vnet list`, `vnet show` and the console's Networks screen say of damaged lease files: each file
        and line, what was lost or kept, and what happens until it is repaired."""
        return [
            f"network {network}: {damage}; it takes no new leases until repaired "
            "(`headnode vnet doctor --fix` keeps what loaded and moves the damaged files aside)"
            for damage in self.damage
        ]


def check_vm_id(vm: int | None) -> None:
    if vm is not None and (isinstance(vm, bool) or not isinstance(vm, int) or vm < 0):
        raise InputError(Problem(f"a VM id is a number 0 or more, not {vm!r}"))


class LeaseBook:
    """Leases of one network. `guard` runs inside every write transaction (e.g. to see the network still exists),
    `committed` after each is journaled, before its lock is let go."""

    def __init__(
        self,
        network: Network,
        file: LeaseFile,
        guard: Callable[[], None] | None = None,
        committed: Callable[[LeaseBook, Transaction], None] | None = None,
    ) -> None:
        self.network = network
        self.file = file
        self.guard = guard
        self.committed = committed  # after each change is journaled, under its lock (a dnsmasq that serves it)
        self._shards: dict[int, str] = {}
        self._low = 0  # first-free: every pool index below this is taken (a hint, valid while no one else wrote)
        self._loads_seen = -1

    # -- reads -------------------------------------------------------------------------------------------------

    def leases(self) -> list[Lease]:
        """Every lease of the network, by IP."""
        with self.file.read() as data:
            return [self.lease_of(doc) for doc in self._docs(data)]

    def get(self, ip: str) -> Lease | None:
        number = parse_ipv4(ip)
        shard = self.shard(number)
        with self.file.read([shard]) as data:
            doc = data.get(shard, {}).get(str(number))
            return self.lease_of(doc) if doc else None

    def usage(self) -> Usage:
        with self.file.read() as data:
            return self.usage_of(data)

    def usage_of(self, data: dict[str, dict[str, dict[str, Any]]]) -> Usage:
        """Counts over `data` as read inside a transaction."""
        used = held = 0
        for doc in _unordered_docs(data):
            if doc["state"] == USED:
                used += 1
            else:
                held += 1
        return Usage(self.network.size, used, held, tuple(self.file.damage))

    # -- changes -----------------------------------------------------------------------------------------------

    def lease(self, vm: int | None = None, ip: str | None = None, note: str = "", host: str | None = None) -> Lease:
        """Lease `ip`, or the next free address by the network's policy, to `vm` (a hold when vm is None), served
        under the host name `host` (made unique in the network: `-<vm>` is added when another lease has it)."""
        return self.lease_many(1, vm, ip, note, host)[0]

    def lease_many(
        self, count: int, vm: int | None = None, ip: str | None = None, note: str = "", host: str | None = None
    ) -> list[Lease]:
        """Lease `count` addresses in one transaction: all of them, or none and an OperationError."""
        check_vm_id(vm)
        if host is not None and (count != 1 or vm is None):
            raise InputError(Problem("a host name is given to one lease of a VM"))
        if count < 1:
            raise InputError(Problem(f"the number of leases must be 1 or more, not {count}"))
        if ip is not None and count != 1:
            raise InputError(Problem("give either an IP or a count, not both"))
        if count > self.network.size:
            raise InputError(
                Problem(f"{count} leases asked: network {self.network.name!r} has {self.network.size} addresses")
            )
        wanted = parse_ipv4(ip) if ip is not None else None
        with _collector_paused(count > 1000), self._transaction() as tx:
            if wanted is not None:
                self.network.check_leasable(wanted)
                taken = tx.get(self.shard(wanted), wanted)
                if taken:
                    raise OperationError(f"{ip} in {self.network.name!r} is taken: {_owner(taken)}")
                picked = [wanted]
            else:
                picked = self._pick(tx, count)
            now = round(time.time(), 3)
            state = USED if vm is not None else HOLD
            docs = [self._doc(number, vm, state, note, now, now) for number in picked]
            if host is not None:
                # Two VMs may share a NAME; their NICs may not share a host name (DNS would answer with either).
                in_use = any(doc.get("host") == host for doc in _unordered_docs(self.file.all()))
                docs[0]["host"] = f"{host}-{vm}" if in_use else host
            by_block: dict[int, dict[int, dict[str, Any]]] = {}
            for number, doc in zip(picked, docs, strict=True):
                block = by_block.get(number >> 8)
                if block is None:
                    block = by_block[number >> 8] = {}
                block[number] = doc
            for block_number, block_docs in by_block.items():
                tx.insert_many(self.shard(block_number << 8), block_docs)
            if wanted is None and self.network.policy != FIRST_FREE:
                tx.put(META, CURSOR_DOC, {"cursor": self._index(picked[-1]) + 1})
            return [self.lease_of(doc) for doc in docs]

    def hold(self, ip: str, note: str = "") -> Lease:
        return self.lease(None, ip, note)

    def release(self, ip: str, force: bool = False) -> Lease:
        """Free `ip`; a VM's lease only with `force` (its VM would lose its address)."""
        number = parse_ipv4(ip)
        with self._transaction() as tx:
            shard = self.shard(number)
            doc = tx.get(shard, number)
            if doc is None:
                self.network.check_leasable(number)  # an address the network never holds is bad input (exit 2)
                raise OperationError(f"{ip} is not leased in {self.network.name!r}")
            if doc["vm"] is not None and not force:
                raise OperationError(f"{ip} in {self.network.name!r} is leased to VM {doc['vm']}: use --force")
            lease = self.lease_of(doc)
            tx.delete(shard, number)
            self._released(number)
            return lease

    def release_vm(self, vm: int) -> list[Lease]:
        """Free every lease `vm` holds in this network."""
        check_vm_id(vm)
        with self._transaction() as tx:
            mine = [doc for doc in _unordered_docs(self.file.all()) if doc["vm"] == vm]
            for doc in mine:
                number = parse_ipv4(doc["ip"])
                tx.delete(self.shard(number), number)
                self._released(number)
            return [self.lease_of(doc) for doc in mine]

    def rewrite(self, number: int, doc: dict[str, Any] | None) -> None:
        """Replace (or with None remove) the document of an address as it is; for repairs (doctor --fix)."""
        with self._transaction() as tx:
            shard = self.shard(number)
            if doc is None:
                if tx.get(shard, number) is not None:
                    tx.delete(shard, number)
            else:
                tx.put(shard, number, doc)

    # -- helpers -----------------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        committed = self.committed
        after = (lambda tx: committed(self, tx)) if committed is not None else None
        with self.file.write(committed=after) as tx:
            if self.guard is not None:
                self.guard()
            if self._loads_seen != self.file.loads:  # another process changed leases: the hint is stale
                self._low, self._loads_seen = 0, self.file.loads
            yield tx

    def _pick(self, tx: Transaction, count: int) -> list[int]:
        """`count` free addresses by the policy, or OperationError when there are not that many."""
        pool = self.network.pool
        size = len(pool)
        table = self.file.table
        if self.network.policy == FIRST_FREE:
            start = self._low
        else:
            cursor = tx.get(META, CURSOR_DOC)
            start = cursor["cursor"] % size if cursor and size else 0
        gateway = self.network.gateway
        picked: list[int] = []
        block, shard = -1, None
        for step in range(size):
            index = (start + step) % size
            number = pool[index]
            if number == gateway:
                continue
            if number >> 8 != block:  # one table per /24: looked up (and parsed) once per 256 addresses
                block, shard = number >> 8, table(self.shard(number))
            if shard is None or str(number) not in shard:
                picked.append(number)
                if len(picked) == count:
                    if self.network.policy == FIRST_FREE:
                        self._low = index + 1 if index >= start else 0
                    return picked
        if not picked:
            raise OperationError(f"network {self.network.name!r} is full: all {self.network.size} addresses are leased")
        raise OperationError(
            f"network {self.network.name!r} has only {len(picked)} free addresses, {count} asked: nothing leased"
        )

    def _released(self, number: int) -> None:
        if self.network.policy == FIRST_FREE and self.network.contains(number):
            self._low = min(self._low, self._index(number))

    def _index(self, number: int) -> int:
        pool = self.network.pool
        return number - self.network.first if isinstance(pool, range) else pool.index(number)

    def shard(self, number: int) -> str:
        block = number >> 8
        name = self._shards.get(block)
        if name is None:
            name = self._shards[block] = f"{block >> 16}.{block >> 8 & 255}.{block & 255}"
        return name

    def _docs(self, data: dict[str, dict[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        """Every lease document, by IP."""
        for name in sorted((n for n in data if n != META), key=lambda n: parse_ipv4(n + ".0")):
            table = data[name]
            for key in sorted(table, key=int):
                yield table[key]

    def _doc(self, number: int, vm: int | None, state: str, note: str, created: float, updated: float) -> dict:
        ip, mac = self.network.lease_texts(number)
        return {
            "ip": ip,
            "mac": mac,
            "vm": vm,
            "state": state,
            "note": note,
            "created": created,
            "updated": updated,
        }

    def lease_of(self, d: dict[str, Any]) -> Lease:
        """The Lease of a stored document."""
        # A frozen dataclass's __init__ sets each field through object.__setattr__, 5x the cost of filling the
        # instance's __dict__, which makes the same object; this runs once per lease loaded or made (65,534).
        lease = _new(Lease)
        fields = lease.__dict__
        fields["network"], fields["ip"], fields["mac"], fields["vm"] = self.network.name, d["ip"], d["mac"], d["vm"]
        fields["state"], fields["note"], fields["created"], fields["updated"] = (
            d["state"],
            d["note"],
            d["created"],
            d["updated"],
        )
        fields["host"] = d.get("host")
        fields["of"] = self.network
        return lease


@contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """A batch makes a document and a Lease per address, none in a reference cycle: the cyclic collector's
    passes over them, which find nothing, took a quarter of leasing a /16 at once."""
    paused = pause and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _unordered_docs(data: dict[str, dict[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Every lease document, in no particular order (no sorting: for scans)."""
    for name, table in data.items():
        if name != META:
            yield from table.values()


def _owner(doc: dict[str, Any]) -> str:
    if doc["vm"] is not None:
        return f"leased to VM {doc['vm']}"
    return "held" + (f" ({doc['note']})" if doc["note"] else "")
