"""Testing a host: can we connect, is its VM directory writable, how much space is free, how far away is it."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from engine.errors import HeadnodeError
from engine.home import Home
from engine.transfers.drivers import load_driver
from engine.transfers.endpoints import Endpoint, LocalEndpoint, RemoteEndpoint
from engine.transfers.hosts import Host
from engine.transfers.ssh import HostKeyError, SshPool, connect, ssh_target


@dataclass(frozen=True)
class HostReport:
    host: str
    driver: str
    reached: str  # "local file system", "ssh user@host:port", or "" for the dummy driver, which reaches nothing
    writable: bool = False
    free_bytes: int | None = None
    round_trip_ms: float | None = None
    error: str | None = None
    key_unknown: bool = False  # the host's key is not known yet: it may be accepted (host test --accept-new-key)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def check_host(home: Home, host: Host, accept_new_key: bool = False) -> HostReport:
    base = "shared" if host.local else load_driver(home, host.driver).base
    if base == "dummy":
        return HostReport(host.name, host.driver, "", writable=True)
    pool = SshPool()
    reached = "local file system"
    try:
        endpoint: Endpoint
        if base == "ssh":
            target = ssh_target(host)
            reached = f"ssh {target.user}@{target.key_name}"
            if accept_new_key:
                connect(target, accept_new_key=True).close()
            endpoint = RemoteEndpoint(host, pool)
        else:
            endpoint = LocalEndpoint(host)
        started = time.perf_counter()
        endpoint.kind("/")
        if base == "ssh":  # the second command measures the round trip on the open connection
            started = time.perf_counter()
            endpoint.kind("/")
        round_trip = (time.perf_counter() - started) * 1000
        probe = os.path.join(host.vm_dir, f".headnode-test-{os.getpid()}")
        endpoint.makedirs(host.vm_dir)
        endpoint.sparse_file(probe, 0)
        endpoint.remove(probe)
        free = endpoint.free_bytes(host.vm_dir)
        return HostReport(host.name, host.driver, reached, True, free, round_trip)
    except HostKeyError as exc:
        return HostReport(host.name, host.driver, reached, error=str(exc), key_unknown=exc.unknown)
    except (HeadnodeError, OSError) as exc:
        return HostReport(host.name, host.driver, reached, error=str(exc))
    finally:
        pool.close()
