"""The engine of one home, assembled: what the CLI's vm commands and the console drive.

engine = Engine(home)          # creates the embedded default on a fresh home
engine.vms.create("data/templates/ttylinux.tmpl")
engine.bus.subscribe(print)    # every event: transfers, VMs, log lines
engine.close()
"""

from __future__ import annotations

from engine.defaults import ensure_embedded_default
from engine.events import EventBus
from engine.home import Home
from engine.networks.manager import Networks
from engine.transfers.executor import Executor
from engine.transfers.hosts import Hosts
from engine.vms.lifecycle import Vms


class Engine:
    def __init__(self, home: Home, bus: EventBus | None = None, defer_sample_image: bool = False) -> None:
        """`defer_sample_image`: a fresh home's sample image is left owed (engine.defaults.ensure_sample_image)."""
        self.home = home.ensure()
        self.bus = bus or EventBus()
        self.hosts = Hosts(self.home)
        self.networks = Networks(self.home, events=self.bus)
        self.executor = Executor(self.home, self.bus)
        self.vms = Vms(self.home, self.networks, self.hosts, self.executor, self.bus)
        ensure_embedded_default(self.home, self.hosts, self.networks, image=not defer_sample_image)

    def close(self) -> None:
        self.executor.close()
        self.networks.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
