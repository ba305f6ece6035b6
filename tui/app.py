"""The Textual application: screens as modes (keys 1-6), the engine's events bridged in, the home watched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal

from engine.core import Engine
from engine.defaults import ensure_sample_image
from engine.errors import HeadnodeError, InputError
from engine.events import EventBus, Level, LogEvent
from engine.home import Home
from engine.service.audit import AuditEntry
from engine.service.changes import Changes, client_name
from engine.service.runs import TransferBoard, script_title
from engine.vms.records import VmChanged
from screens.dashboard import DashboardScreen
from screens.hosts import HostsScreen
from screens.images import ImagesScreen
from screens.log import LogScreen
from screens.networks import LeasesScreen, NetworksScreen
from screens.transfers import TransfersScreen
from screens.vms import VmsScreen
from tui.bridge import EventBridge
from tui.collector import keep_collections_short, restore_collections
from tui.commands import HeadnodeCommands
from tui.engine_client import ServiceEngine, ServiceSnapshot
from tui.messages import EngineEvent
from tui.screen import HeadnodeScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import FormScreen, PickScreen
from tui.widgets.help import HelpScreen
from tui.widgets.nav import SCREENS

if TYPE_CHECKING:
    from engine.transfers.actions import Transfers

T = TypeVar("T")
LOG_KEPT = 5000  # engine log lines the console keeps in memory
SETTLE_COLLECTOR_SECONDS = 2.0  # after start-up: see tui/collector.py


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """What an engine call gave: `ok` and its value, or not ok (the error is already reported)."""

    ok: bool
    value: T | None = None


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return "; ".join(str(problem) for problem in exc.problems)
    if isinstance(exc, HeadnodeError):
        return str(exc)
    return f"internal error: {exc!r}"


ENGINE_NICE = 19


def lower_thread_priority() -> None:
    """Run this thread, and the threads it starts (Linux threads inherit it: the executor's script and hashing
    threads), at a lower CPU priority than the UI, so 20 copies saturating both cores leave keys answered."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENGINE_NICE)


class HeadnodeApp(App[int]):
    TITLE = "headnode"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {HeadnodeCommands}
    MODES: ClassVar[dict[str, Any]] = {
        "dashboard": DashboardScreen,
        "vms": VmsScreen,
        "transfers": TransfersScreen,
        "networks": NetworksScreen,
        "hosts": HostsScreen,
        "images": ImagesScreen,
        "log": LogScreen,
    }
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),  # named on the nav bar
        Binding("question_mark", "help", "Keys", show=False),  # the screens show it first in their footers
        *(
            Binding(str(number), f"switch_mode('{mode}')", title, show=False)
            for number, (mode, title) in enumerate(SCREENS, 1)
        ),
    ]
    HOME_POLL_SECONDS = 1.0  # a second headnode's changes show within 2 s
    SHOWN_HOME: str | None = None  # shown in place of the home's path (snapshots look alike wherever the home is)

    def __init__(
        self, home: Home, read_only: bool = False, service: bool = False, defer_sample_image: bool = False
    ) -> None:
        """The console of `home`. With `service` (as `headnode` opens it) its work runs in the home's service,
        started if none runs, and goes on after the console quits; without, in this process (the pilot tests of
        the screens, and the benchmark's baseline). `defer_sample_image`: a fresh home's sample image is made
        after the first paint, not before it."""
        super().__init__()
        self.home = home
        self.read_only = read_only
        self.bus = EventBus()
        self.transfers = TransferBoard()
        self.in_process = not service
        # A fresh home gets the embedded default either way: host local, network default, the sample image.
        self.engine: Engine | ServiceEngine = (
            ServiceEngine(home, self.bus, self.transfers)
            if service
            else Engine(home, self.bus, defer_sample_image=defer_sample_image)
        )
        self.networks = self.engine.networks
        self.hosts = self.engine.hosts
        self.vms = self.engine.vms
        self.changes = Changes(home, client_name("console"))  # every change this console makes, audited
        self.executor = self.engine.executor
        self.log_events: deque[LogEvent] = deque(maxlen=LOG_KEPT)
        self.host_reports: dict[str, Any] = {}  # host name -> its last test this session (HostReport or a word)
        self.engine_signal: Signal[Any] = Signal(self, "engine")
        self._bridge = EventBridge(self.bus, self)
        # Engine calls that wait (a VM operation waits for its script) get their own threads: asyncio's default
        # pool has only cpu+4 and would queue the 7th deploy behind the others.
        self._generations: dict[str, int] = {}  # per run_engine group: the newest call's number
        self._calls = ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="console-call", initializer=lower_thread_priority
        )
        self._home_identity: tuple[Any, ...] | None = None
        self._watch_error = ""

    def shown(self, text: str) -> str:
        """Text for the screen: the home's path as SHOWN_HOME says, when set."""
        return text.replace(str(self.home.root), self.SHOWN_HOME) if self.SHOWN_HOME else text

    # Lifecycle.

    def on_mount(self) -> None:
        self._bridge.start()
        if isinstance(self.engine, ServiceEngine):
            self.engine.start()
        self.switch_mode("dashboard")
        self._poll_home()
        self.set_interval(self.HOME_POLL_SECONDS, self._poll_home)
        self.run_engine("make the sample image", ensure_sample_image, self.home)  # owed by a fresh home
        # Once the dashboard has loaded and painted (the collection takes a moment), not on the way to it.
        self.set_timer(SETTLE_COLLECTOR_SECONDS, self._settle_collector)

    _collector_thresholds: tuple[int, int, int] | None = None
    screens_mounted = 0  # the console's screens mounted so far (tui/screen.py)

    def _settle_collector(self) -> None:
        self._collector_thresholds = keep_collections_short()

    def on_unmount(self) -> None:
        self._bridge.stop()
        if self.in_process:
            for run in self.executor.active():  # ctrl+q confirmed, or the terminal went away
                run.cancel()
        self.engine.close()  # the service's runs go on
        if self._collector_thresholds is not None:
            restore_collections(self._collector_thresholds)
        self._calls.shutdown(wait=True)
        if "image_caches" in self.__dict__:
            self.image_caches.pool.close()

    def warm_images(self, source: str, hosts: list[str]) -> str:
        """Put an image into hosts' caches: in the service, as one of its runs (the Transfers screen shows it),
        or here for a console without one; what to tell the admin."""
        if isinstance(self.engine, ServiceEngine):
            run = self.engine.client.call("warm", source=source, hosts=hosts)["run"]
            return f"warming in the service (run {run}); the Transfers screen shows it"
        from engine.language.script import source_argument
        from engine.transfers.cache.warm import warm
        from engine.transfers.job import Job
        from engine.transfers.log import TransferLog

        parsed = source_argument(source, self.home.config.frontend_name)
        log = TransferLog(self.home, None)
        outcomes = warm(self.engine.executor.transfers, parsed, hosts, lambda host: Job(log=log.write))
        return "; ".join(f"{o.host}: {o.state.value}" for o in outcomes)

    @cached_property
    def image_caches(self) -> Transfers:
        """The Images screen's hand on the hosts' caches (listing, warm, evict, pin), with its own SSH connections:
        host-side locks make its work safe beside the service's."""
        from engine.transfers.actions import Transfers
        from engine.transfers.ssh import SshPool

        return Transfers(self.home, SshPool())

    async def action_quit(self) -> None:
        """Quit. Runs in the service go on in the background (or are cancelled first, if asked); runs in this
        process are cancelled, after saying so (their VMs can be recovered)."""
        running = self.executor.active()
        if not running:
            self.exit(0)
            return
        if not self.in_process:
            go_on, cancel = "Quit: they go on in the background", "Cancel them, then quit"

            def chosen(choice: str | None) -> None:
                if choice == cancel:
                    for run in running:
                        self.attempt(f"cancel run {run.id}", run.cancel)
                if choice is not None:
                    self.exit(0)

            title = f"{len(running)} image script(s) are running in the service (headnode transfers shows them)"
            self.push_screen(PickScreen(title, [go_on, cancel]), chosen)
            return
        details = [
            f"{len(running)} image script(s) are running:",
            *(f"  {script_title(run.source, run.vm)}" for run in running),
            "Quitting cancels them: each stops at its next check and its VM is left failed,",
            "to finish later with `headnode vm recover ID --retry` (or R on the VMs screen).",
        ]

        def answer(yes: bool | None) -> None:
            if yes:
                for run in running:
                    run.cancel()
                self.exit(0)

        self.push_screen(ConfirmScreen("Quit and cancel running transfers?", details, "Quit"), answer)

    # Navigation.

    def action_cycle_screen(self, step: int) -> None:
        modes = [mode for mode, _ in SCREENS]
        current = self.current_mode if self.current_mode in modes else modes[0]
        self.switch_mode(modes[(modes.index(current) + step) % len(modes)])

    def action_help(self) -> None:
        screen = self.screen
        title = getattr(screen, "TITLE", "") or type(screen).__name__
        locked = []
        if self.read_only and isinstance(screen, HeadnodeScreen):
            locked = [b for b in self.described_bindings(type(screen)) if b.action in screen.CHANGING]
        self.push_screen(HelpScreen(screen, title, locked))

    # The command palette's view of every screen's actions.

    @staticmethod
    def described_bindings(screen_type: type[Screen[Any]]) -> Iterator[Binding]:
        """The screen's own bindings that do something worth naming (not navigation)."""
        for binding in screen_type.BINDINGS:
            if isinstance(binding, Binding) and binding.action not in {"filter", "back"} and binding.description:
                yield binding

    def screen_actions(self) -> Iterator[tuple[str, str, Binding]]:
        for mode, title in SCREENS:
            for binding in self.described_bindings(self.MODES[mode]):
                yield mode, title, binding

    async def run_screen_action(self, mode: str | None, action: str) -> None:
        """Run a screen's action from the palette: on that screen (shown first), or on the current one."""
        if mode is not None:
            await self.switch_mode(mode)
        screen = self.screen
        if isinstance(screen, HeadnodeScreen) and self.read_only and action in screen.CHANGING:
            self.refuse_read_only(action.replace("_", " "))
            return
        await self.run_action(action, screen)

    async def run_leases_action(self, network: str, action: str) -> None:
        """Run an action of a network's leases screen from the palette: that screen is opened first (on the
        Networks screen), and the action runs once its leases are loaded."""
        await self.switch_mode("networks")
        if self.read_only and action in LeasesScreen.CHANGING:
            self.refuse_read_only(action)
            return
        screen = self.screen
        if isinstance(screen, LeasesScreen) and screen.network == network:
            await self.run_action(action, screen)
        else:
            await self.push_screen(LeasesScreen(network, first_action=action))

    def refuse_read_only(self, what: str) -> None:
        self.notify(f"{what}: not allowed, the console is read-only (--read-only)", severity="warning")

    # Engine calls: errors become a notification and a Log entry, never a traceback or a dead screen.

    def attempt(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Attempt[T]:
        """Call `fn` now, on this thread: for the console's own steps (redraws, the callbacks of engine calls).
        The engine itself is called through run_engine, never on the UI thread: its database lock can be held
        for a while by another process or by transfers writing their journal."""
        try:
            return Attempt(True, fn(*args, **kwargs))
        except Exception as exc:
            self.report_failure(what, exc)
            return Attempt(False)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Await an engine call on the console's call threads (the UI thread never waits on the engine)."""
        return await asyncio.get_running_loop().run_in_executor(self._calls, partial(fn, *args, **kwargs))

    def run_engine(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        then: Callable[[T], object] | None = None,
        otherwise: Callable[[], object] | None = None,
        refused: Callable[[Exception], object] | None = None,
        group: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Call the engine on a worker thread (for slow calls: SSH, scripts, big tables); `then(result)` or, after
        a reported failure, `otherwise()` runs on the UI thread; given `refused`, a failure goes to it instead of
        being reported. A call in a `group` supersedes the group's previous call still waiting (its `then` never
        runs)."""

        # Superseding is by generation, not by cancelling the worker: the engine call runs on in its thread
        # anyway, and a cancelled worker makes anyone waiting on the app's workers fail with WorkerCancelled.
        generation = 0
        if group is not None:
            generation = self._generations[group] = self._generations.get(group, 0) + 1

        def current() -> bool:
            return group is None or self._generations[group] == generation

        async def call() -> None:
            try:
                result = await self.call(fn, *args, **kwargs)
            except Exception as exc:
                if not current():
                    return
                if refused is not None:
                    refused(exc)
                    return
                self.report_failure(what, exc)
                if otherwise is not None:
                    otherwise()
                return
            if then is not None and current():
                self.attempt(what, then, result)

        # Textual's WorkType union infers Never for an async function returning None
        self.run_worker(call, group=group or "engine", exit_on_error=False, description=what)  # type: ignore[arg-type]

    def run_form(
        self,
        form: FormScreen,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        then: Callable[[T], object] | None = None,
        **kwargs: Any,
    ) -> None:
        """A form's engine call, on a worker thread: once it succeeds the form closes and `then(result)` runs;
        bad input leaves the form open with every problem beside its field (and a warning in the Log), and any
        other failure is reported as usual and shown in the form too."""

        def saved(result: T) -> None:
            form.close()
            if then is not None:
                then(result)

        def failed(exc: Exception) -> None:
            if isinstance(exc, InputError):
                self.bus.publish(LogEvent(f"{what}: {describe_error(exc)}", Level.WARNING, "console"))
                form.refuse([str(problem) for problem in exc.problems])
            else:
                self.report_failure(what, exc)
                form.refuse([describe_error(exc)])

        self.run_engine(what, fn, *args, then=saved, refused=failed, **kwargs)

    def report_failure(self, what: str, exc: BaseException) -> None:
        if not isinstance(exc, HeadnodeError):
            self._save_crash(traceback.format_exc())
        self.bus.publish(LogEvent(f"{what}: {describe_error(exc)}", Level.ERROR, "console"))

    def _save_crash(self, text: str) -> None:
        try:
            with (self.home.logs / "crash.log").open("a", encoding="utf-8") as log:
                log.write(text)
        except OSError:
            pass

    # Engine events arrive here on the UI thread.

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, ServiceSnapshot):  # (re)connected: what the service knows so far
            self.transfers.load(event.runs)
            known = set(self.log_events)
            self.log_events.extend(entry for entry in map(self._as_log, event.log) if entry not in known)
            self._reload_screen()
            return
        if isinstance(event, AuditEntry):
            event = self._as_log(event)
        if isinstance(event, LogEvent):
            self.log_events.append(event)
            if event.level is Level.ERROR:
                self.notify(event.message, severity="error", markup=False)
        elif self.transfers.apply(event):
            return  # the Transfers screen and the Dashboard redraw from the board on their own timers
        elif isinstance(event, VmChanged):
            self._reload_screen()  # a VM this process operates changed state: show it now, not at the next poll
        self.engine_signal.publish(event)

    @staticmethod
    def _as_log(event: Any) -> LogEvent:
        """The service's audit entries show in the Log beside its log lines."""
        if isinstance(event, AuditEntry):
            return LogEvent(event.text(), Level.INFO, "audit", event.at)
        return event

    # Another headnode (console or CLI) on the same home: a cheap stat of the home's top-level files.

    def _stat_home(self) -> tuple[Any, ...]:
        """Changes whenever any process changes the home's records: the database's and lease files' identities."""
        try:
            stat = os.stat(self.home.db_path)
            database = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            database = None
        return (database, self.networks.stamp())

    def _poll_home(self) -> None:
        # On a worker thread: the database's lock can be held for a while by transfers writing their journal.
        # A check still running is left to finish (not cancelled by an exclusive group): cancelled workers made
        # anyone waiting on the app's workers fail with WorkerCancelled.
        if any(w.group == "watch" and not w.is_finished for w in self.workers):
            return
        self.run_worker(self._check_home, group="watch", exit_on_error=False)  # type: ignore[arg-type]  # as above

    async def _check_home(self) -> None:
        try:
            identity = await asyncio.get_running_loop().run_in_executor(self._calls, self._stat_home)
        except Exception as exc:  # reported once, not every second
            if describe_error(exc) != self._watch_error:
                self._watch_error = describe_error(exc)
                self.report_failure("watch the home", exc)
            return
        self._watch_error = ""
        if identity != self._home_identity:
            self._home_identity = identity
            self._reload_screen()

    def home_changed(self) -> None:
        """This console changed the home: the screen on view re-reads the engine now, not at the next poll."""
        self._reload_screen()

    def _reload_screen(self) -> None:
        screen = self.screen
        if isinstance(screen, HeadnodeScreen) and screen.ready:
            screen.refresh_view()
