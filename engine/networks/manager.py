"""Virtual networks and their leases: the API the CLI, the VM lifecycle and the console call.

    nets = Networks(home)
    nets.create_from_file("private.net")           # -> Network
    lease = nets.lease("Private LAN", vm=7)        # -> Lease(ip="10.0.0.1", mac="02:00:0a:00:00:01", ...)
    nets.release_vm(7)                             # at VM shutdown/delete

Network definitions live in the home's `Store` (table `networks`, small); each network's leases in its own
journaled TinyDB under `<home>/leases/<id>-<random>.*` (leasefile.py), so networks never share lease state and a lease
costs the same at 1 or 65,000 leases. Lock order, to never deadlock: a network's lease lock, then the Store.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinydb.table import Document

from engine.errors import InputError, OperationError, Problem
from engine.events import EventBus, Level, LogEvent
from engine.home import Home
from engine.language.template import Template, load_template
from engine.networks.definition import DhcpService, Network, conflicts, network_from_template
from engine.networks.dnsmasq import DhcpStatus, ServedFiles
from engine.networks.lease_book import META, Lease, LeaseBook, Usage
from engine.networks.lease_file import LeaseFile, Transaction
from engine.store.database import Store

if TYPE_CHECKING:
    from engine.networks.doctor import Finding

NETWORKS = "networks"
SEQUENCES = "sequences"


class NetworkChange(StrEnum):
    """What a change did to a network, as `NetworkChanged` reports it."""

    CREATED = "created"
    DELETED = "deleted"
    LEASED = "leased"  # held too
    RELEASED = "released"
    REPAIRED = "repaired"
    SERVED = "served"  # its DHCP setting changed (`vnet dhcp`)


@dataclass(frozen=True)
class NetworkChanged:
    """Published on `Networks.events` after a change made through this object (other processes: see `stamp()`)."""

    network: str
    change: NetworkChange
    ips: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)


class Networks:
    """Every virtual network of a home. Thread-safe; several processes may use the same home at once."""

    def __init__(self, home: Home, store: Store | None = None, events: EventBus | None = None) -> None:
        self.home = home
        self.events = events
        self.store = store or Store(home.db_path)
        self.lease_dir = home.root / "leases"
        sync = home.config.template.get("LEASE_SYNC") or "no"
        self.sync = sync.lower() in ("yes", "true", "1")
        self._books: dict[int, LeaseBook] = {}
        self._lock = threading.Lock()
        self._cache: dict[int, Network] = {}
        self._cache_identity: tuple[int, int, int] | None = None

    # -- networks ----------------------------------------------------------------------------------------------

    def create(self, template: Template) -> Network:
        """Check a network template against the rules and the other networks, then store it."""
        network = network_from_template(template, self.home.config.mac_prefix)
        with self.store.write() as db:
            existing = [Network.from_record(doc) for doc in db.table(NETWORKS).all()]
            problems = conflicts(network, existing, template)
            if problems:
                raise InputError(problems)
            sequences = db.table(SEQUENCES)
            counter = sequences.get(doc_id=1)
            last = max([doc["id"] for doc in db.table(NETWORKS).all()] + [counter["networks"] if counter else -1])
            key = f"{last + 1}-{uuid.uuid4().hex[:8]}"
            network = replace(network, id=last + 1, store_key=key)
            sequences.upsert(Document({"networks": last + 1}, doc_id=1))
            db.table(NETWORKS).insert(network.to_record())
        self._announce(network.name, NetworkChange.CREATED)
        return network

    def create_from_file(self, path: str | Path) -> Network:
        return self.create(load_template(path))

    def list(self) -> list[Network]:
        return list(self._networks().values())

    def get(self, name: str) -> Network:
        """The network called `name` (InputError if there is none)."""
        networks = self._networks()
        for network in networks.values():
            if network.name == name:
                return network
        known = ", ".join(repr(n.name) for n in networks.values()) or "none yet"
        raise InputError(Problem(f"no network named {name!r} (networks: {known})"))

    def delete(self, name: str, force: bool = False) -> Network:
        """Delete a network and its leases; refused while it has leases unless `force`."""
        network = self.get(name)
        book = self._book(network)
        with book.file.write(despite_damage=force):
            usage = book.usage_of(book.file.all())
            if usage.used + usage.held and not force:
                raise OperationError(
                    f"network {name!r} has {usage.used} leases in use and {usage.held} held: "
                    "release them first, or delete with --force"
                )
            with self.store.write() as db:
                db.table(NETWORKS).remove(lambda doc: doc["id"] == network.id)
            book.file.remove_files()
            self.served_files(network).forget()  # its dnsmasq's grants die with it (the service stops it)
        with self._lock:
            self._books.pop(network.id, None)
        book.file.close()
        self._announce(network.name, NetworkChange.DELETED)
        return network

    # -- leases ------------------------------------------------------------------------------------------------

    def lease(
        self, name: str, vm: int | None = None, ip: str | None = None, note: str = "", host: str | None = None
    ) -> Lease:
        """Lease `ip`, or the next free address, to `vm`; without a VM the address is held. `host`: the name the
        NIC is served under by DHCP and DNS (a VM's NAME or HOSTNAME, `-ethN` for its further NICs)."""
        lease = self._book(self.get(name)).lease(vm, ip, note, host)
        self._announce(name, NetworkChange.LEASED, [lease])
        return lease

    def lease_many(self, name: str, count: int, vm: int | None = None, note: str = "") -> builtins.list[Lease]:
        """Lease `count` addresses at once: all, or none and an OperationError."""
        leases = self._book(self.get(name)).lease_many(count, vm, None, note)
        self._announce(name, NetworkChange.LEASED, leases)
        return leases

    def hold(self, name: str, ip: str, note: str = "") -> Lease:
        lease = self._book(self.get(name)).hold(ip, note)
        self._announce(name, NetworkChange.LEASED, [lease])
        return lease

    def release(self, name: str, ip: str, force: bool = False) -> Lease:
        """Free an address; one a VM holds needs `force`."""
        lease = self._book(self.get(name)).release(ip, force)
        self._announce(name, NetworkChange.RELEASED, [lease])
        return lease

    def release_vm(self, vm: int) -> builtins.list[Lease]:
        """Free every lease of VM `vm`, in every network."""
        released = []
        for network in self.list():
            leases = self._book(network).release_vm(vm)
            self._announce(network.name, NetworkChange.RELEASED, leases)
            released.extend(leases)
        return released

    def leases(self, name: str | None = None) -> builtins.list[Lease]:
        """The leases of one network, or of all, by network then IP."""
        networks = [self.get(name)] if name is not None else self.list()
        return [lease for network in networks for lease in self._book(network).leases()]

    def usage(self, name: str) -> Usage:
        return self._book(self.get(name)).usage()

    def stamp(self) -> tuple[Any, ...]:
        """Changes when any process changes a network or a lease; a few `stat` calls, no lock, no load."""
        parts: list[Any] = [self._store_identity()]
        for network in self.list():
            parts.append((network.id, self._book(network).file.stamp()))
        return tuple(parts)

    # -- exports and checks ------------------------------------------------------------------------------------

    def export(self, fmt: str, name: str | None = None) -> str:
        """Leases of one network (or all) as dnsmasq `dhcp-host` lines, /etc/ethers, /etc/hosts or Kea JSON."""
        from engine.networks.exports import FORMATS, export_leases  # here: `vnet lease` need not load it

        if fmt not in FORMATS:
            raise InputError(Problem(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}"))
        return export_leases(self.leases(name), fmt)

    def doctor(self, fix: bool = False) -> builtins.list[Finding]:
        """Leases breaking a rule (wrong MAC, outside the range, VM gone, duplicate); repaired only with `fix`."""
        from engine.networks.doctor import examine  # here: `vnet lease` need not load it

        with self.store.read() as db:
            vm_ids: set[int] = {doc["id"] for doc in db.table("vms").all() if doc.get("id") is not None}
        findings = examine([self._book(n) for n in self.list()], vm_ids, fix)
        for name in sorted({f.network for f in findings if f.fixed}):
            self._announce(name, NetworkChange.REPAIRED)
        return findings

    def book(self, name: str) -> LeaseBook:
        """The lease manager of one network (leases.py), for callers that work on one network at length."""
        return self._book(self.get(name))

    def close(self) -> None:
        with self._lock:
            for book in self._books.values():
                book.file.close()
            self._books.clear()

    def _announce(self, network: str, change: NetworkChange, leases: builtins.list[Lease] | None = None) -> None:
        if self.events is not None and (leases is None or leases):
            self.events.publish(NetworkChanged(network, change, tuple(x.ip for x in leases or ())))

    def _book(self, network: Network) -> LeaseBook:
        with self._lock:
            book = self._books.get(network.id)
            if book is None:
                file = LeaseFile(self.lease_dir, network.store_key, sync=self.sync)
                served = self.served_files(network)

                def committed(book: LeaseBook, tx: Transaction) -> None:
                    served.committed(book, tx, META, lambda text: self._warn(network, text))

                book = self._books[network.id] = LeaseBook(
                    network, file, guard=lambda: self._require(network), committed=committed
                )
            return book

    def served_files(self, network: Network) -> ServedFiles:
        """Where the dnsmasq serving `network` runs from (engine.networks.dnsmasq)."""
        return ServedFiles(self.home, network.store_key)

    def dhcp_status(self, network: Network) -> DhcpStatus | None:
        """How `network`'s dnsmasq is (None: not served)."""
        if network.dhcp is None:
            return None
        return DhcpStatus.of(self.served_files(network), network.dhcp.interface, network.dhcp.dns)

    def set_dhcp(self, name: str, dhcp: DhcpService | None) -> Network:
        """Record how `name` is served (None: not); the engine service starts or stops its dnsmasq."""
        network = self.get(name)
        with self.store.write() as db:
            db.table(NETWORKS).update({"dhcp": dhcp.to_record() if dhcp else None}, lambda doc: doc["id"] == network.id)
        self._announce(network.name, NetworkChange.SERVED)
        return replace(network, dhcp=dhcp)

    def _warn(self, network: Network, text: str) -> None:
        """A lease stood but its dnsmasq was not told: said in its log (and to subscribers)."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} headnode (pid {os.getpid()}): {text}\n"
        with contextlib.suppress(OSError), open(self.served_files(network).log, "a") as log:
            log.write(line)
        if self.events is not None:
            self.events.publish(LogEvent(f"network {network.name!r}: {text}", Level.WARNING, "networks"))

    def _require(self, network: Network) -> None:
        """Inside a lease transaction: the network was not deleted meanwhile by another process."""
        if network.id not in self._networks():
            raise OperationError(f"network {network.name!r} was deleted")

    def _networks(self) -> dict[int, Network]:
        """The networks by id, re-read only when the database file changed (the Store replaces it on write)."""
        identity = self._store_identity()
        with self._lock:
            if identity is not None and identity == self._cache_identity:
                return self._cache
        with self.store.read() as db:
            identity = self._store_identity()  # as read, under the shared lock
            records = db.table(NETWORKS).all()
        networks = {n.id: n for n in sorted((Network.from_record(doc) for doc in records), key=lambda n: n.id)}
        with self._lock:
            self._cache, self._cache_identity = networks, identity
        return networks

    def _store_identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.store.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
