"""The changes a client makes to the home's records itself (hosts, networks, leases, VMs created), each recorded in
the audit history as it is made. The CLI's commands and the console's screens both make them through here, so
`headnode log` and the Log screen show every one whichever client made it, with the same words; what runs in the
service (VM operations, runs, cancels) the service records.

    changes = Changes(home, client_name("cli"))
    lease = changes.lease(networks, "default", vm=7)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.home import Home
from engine.service.audit import AuditLog

if TYPE_CHECKING:
    from engine.networks.definition import Network
    from engine.networks.doctor import Finding
    from engine.networks.lease_book import Lease
    from engine.networks.manager import Networks
    from engine.transfers.actions import Transfers
    from engine.transfers.cache.inventory import EvictOutcome
    from engine.transfers.cache.layout import Entry
    from engine.transfers.hosts import Host, Hosts
    from engine.vms.lifecycle import Vms
    from engine.vms.records import Vm


def client_name(kind: str) -> str:
    """How the audit history names a client of this process: "cli 4242", "console 4243"."""
    return f"{kind} {os.getpid()}"


class Changes:
    def __init__(self, home: Home, client: str) -> None:
        self.audit = AuditLog(home)
        self.client = client

    def _record(self, action: str, target: str, detail: str = "") -> None:
        self.audit.record(action, target, self.client, detail)

    # Hosts

    def create_host(self, hosts: Hosts, fields: Mapping[str, str | None]) -> Host:
        host = hosts.create(hosts.parse(fields))
        self._record("host create", host.name, f"driver {host.driver}")
        return host

    def update_host(self, hosts: Hosts, name: str, fields: Mapping[str, str | None]) -> Host:
        host = hosts.update(name, hosts.parse(fields))
        self._record("host update", name, f"driver {host.driver}")
        return host

    def delete_host(self, vms: Vms, name: str, force: bool = False) -> None:
        vms.delete_host(name, force=force)
        self._record("host delete", name, "--force" if force else "")

    # Networks and their leases

    def create_network(self, networks: Networks, path: str | Path) -> Network:
        network = networks.create_from_file(path)
        self._record("network create", network.name, network.range_text)
        return network

    def delete_network(self, networks: Networks, name: str, force: bool = False) -> Network:
        network = networks.delete(name, force=force)
        self._record("network delete", network.name, "--force" if force else "")
        return network

    def lease(
        self, networks: Networks, name: str, vm: int | None = None, ip: str | None = None, note: str = ""
    ) -> Lease:
        lease = networks.lease(name, vm=vm, ip=ip, note=note)
        self._record("lease", f"{name} {lease.ip}", f"for VM {vm}" if vm is not None else "held")
        return lease

    def lease_many(
        self, networks: Networks, name: str, count: int, vm: int | None = None, note: str = ""
    ) -> list[Lease]:
        leases = networks.lease_many(name, count, vm=vm, note=note)
        owner = f" for VM {vm}" if vm is not None else " held"
        self._record("lease", name, f"{len(leases)} addresses{owner}")
        return leases

    def hold(self, networks: Networks, name: str, ip: str, note: str = "") -> Lease:
        lease = networks.hold(name, ip, note=note)
        self._record("hold", f"{name} {lease.ip}", note)
        return lease

    def release(self, networks: Networks, name: str, ip: str, force: bool = False) -> Lease:
        lease = networks.release(name, ip, force=force)
        self._record("release", f"{name} {lease.ip}", "--force" if force else "")
        return lease

    def repair(self, networks: Networks) -> Sequence[Finding]:
        """`vnet doctor --fix`: recorded when it fixed something."""
        findings = networks.doctor(fix=True)
        fixed = [f for f in findings if f.fixed]
        if fixed:
            names = sorted({f.network for f in fixed})
            self._record("network repair", " ".join(names), f"{len(fixed)} finding(s) fixed")
        return findings

    # VMs (their operations run in the service, which records them)

    def create_vm(self, vms: Vms, template: str | Path) -> Vm:
        vm = vms.create(template)
        self._record("vm create", f"VM {vm.id}", vm.name)
        return vm

    # Host image caches (engine.transfers.cache)

    def evict_cache(self, transfers: Transfers, host: str, what: str | None, dry_run: bool = False) -> EvictOutcome:
        from engine.transfers.cache.inventory import evict

        outcome = evict(transfers, host, what, dry_run)
        if outcome.evicted and not dry_run:
            self._record("cache evict", host, " ".join(e.key for e in outcome.evicted))
        return outcome

    def pin_cache(self, transfers: Transfers, host: str, what: str, pinned: bool) -> list[Entry]:
        from engine.transfers.cache.inventory import pin

        done = pin(transfers, host, what, pinned)
        self._record("cache pin" if pinned else "cache unpin", host, " ".join(e.key for e in done))
        return done
