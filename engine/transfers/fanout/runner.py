"""Running a fan-out: one image from the head into many hosts' caches, through chains of hosts.

    result = fan_out(home, "/images/u.img", "cksum:123", targets, bus=bus)   # FanoutResult, one HostResult each

In rounds. Each round plans the chains (plan.py) for the hosts left; then for every host at once, none waiting for
another: the head's master to it opens (head_links.py) with one session that makes its run directory, opens its
link to the next host (the agent forwarded: agent.py) and looks at what it holds (hop.py's LINK and LOOK). A host
that has the image is done, one that holds part of it resumes there, one its neighbour cannot reach starts a chain
fed by the head (the plan says so): the plan is made again and only the links then missing are opened. Then every
host's stage starts at once and the head streams each pipeline, paced to its BWLIMIT; each host checks its copy
against the image's checksum and publishes it. The head checksums what it streams too: a source that changed
under the stream fails the run. Hosts left without the image are asked how much they hold: those that answer are
re-fed from the head in the next round, each resuming where its copy stopped (a host dropped out of a chain costs
the hosts after it only the wait); one that does not answer has dropped out and fails, alone. At most ROUNDS rounds.

Progress is reported as an image script's (engine.transfers.progress), a line per host: the CLI's bars and JSON
lines and the console's Transfers screen show a fan-out as one run with a row per host.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import Cancelled, OperationError
from engine.events import EventBus
from engine.home import Home
from engine.language.numbers import whole_number
from engine.presentation import duration_text
from engine.transfers.cache.layout import BadSidecar, Sidecar, cache_dir, entry_key
from engine.transfers.checksums import Checksum, new_checksum
from engine.transfers.fanout import ACTION
from engine.transfers.fanout.agent import agent
from engine.transfers.fanout.head_links import HeadLinks, Reply
from engine.transfers.fanout.hop import Next, link_argv, look_argv, stage_argv, unblock_argv, unlink_argv
from engine.transfers.fanout.plan import CHAIN_HOSTS, FED_BY_HEAD, FanoutPlan, Limits, Pipeline, plan_fanout
from engine.transfers.fanout.rates import load_rates, record_rates
from engine.transfers.hosts import Host
from engine.transfers.known_hosts import KnownHosts
from engine.transfers.openssh import default_keys
from engine.transfers.pipes import enlarge_pipe, write_all
from engine.transfers.progress import (
    ActionFinished,
    ActionLog,
    ActionProgress,
    ActionStarted,
    RunOutcome,
    ScriptFinished,
    ScriptProgress,
    ScriptStarted,
)
from engine.transfers.ssh import SshTarget, quote_argv, ssh_target
from engine.transfers.streams import CHUNK

ROUNDS = 3
PACED_PIECE = 64 << 10  # a limited stream is written in small pieces, so its rate is even
READY_WAIT = 60.0  # seconds the head waits for a chain's stages to be ready before it streams anyway
PACED_BURST = 0.1  # seconds of its limit a held-up stream may send at once


@dataclass(frozen=True)
class Target:
    """A host to receive the image into its cache (`directory`: engine.transfers.cache.layout.cache_dir's)."""

    host: Host
    directory: str

    @classmethod
    def of(cls, host: Host) -> Target:
        return cls(host, cache_dir(host))


@dataclass(frozen=True)
class HostResult:
    name: str
    outcome: RunOutcome
    size: int = 0
    checksum: str | None = None
    error: str | None = None
    present: bool = False  # it had the image already: nothing was sent
    fed_by: str = ""  # the head or the host before it in its chain
    resumed_from: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class FanoutResult:
    run: str
    plan: FanoutPlan  # the first round's
    hosts: dict[str, HostResult]
    seconds: float
    rounds: int
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.outcome is RunOutcome.DONE for r in self.hosts.values())

    @property
    def estimate(self) -> float | None:
        return self.plan.estimate()


@dataclass
class _Host:
    line: int
    target: Target
    ssh: SshTarget
    started: float = field(default_factory=time.monotonic)
    result: HostResult | None = None
    offset: int = 0
    error: str | None = None


class FanOut:
    """One fan-out run (fan_out is its front door)."""

    def __init__(
        self,
        home: Home,
        source: str,
        checksum: str,
        targets: Sequence[Target],
        bus: EventBus | None = None,
        cancel: threading.Event | None = None,
        limits: Limits | None = None,
        present: Sequence[str] = (),
        run_id: str | None = None,
        chain_hosts: int | None = None,
        head_chains: int | None = None,
        source_name: str | None = None,
    ) -> None:
        self.home = home
        self.source = source
        self.source_name = source_name or source
        self.checksum = checksum
        self.key = entry_key(checksum)
        self.algorithm, _, self.want = checksum.partition(":")
        self.bus = bus or EventBus()
        self.cancel = cancel or threading.Event()
        self.limits = limits or Limits()
        self.run = run_id or f"fanout-{uuid.uuid4().hex[:12]}"
        self.chain_hosts = chain_hosts
        self.head_chains = head_chains
        self.hosts = {t.host.name: _Host(i + 1, t, ssh_target(t.host)) for i, t in enumerate(targets)}
        self.present = set(present)
        self.size = os.stat(source).st_size
        self.sidecar = Sidecar.new(checksum, self.size, self.source_name).to_json()
        self.notes: list[str] = []
        self._links: dict[tuple[str, str], str] = {}  # (host, next host): its master's control socket
        self._run_dirs: dict[str, str] = {}  # host: the run directory LINK made there (its FIFO, its masters)
        self._lock = threading.Lock()
        self._source_changed = False
        self.setup: float | None = None  # seconds before the first round's bytes flowed
        self._streaming: float | None = None  # seconds the first round's slowest pipeline streamed
        self._streamed = False  # a host that has the image before anything was sent had it already

    # -- reporting ------------------------------------------------------------------------------------------

    def _publish(self, event: Any) -> None:
        self.bus.publish(event)

    def _log(self, message: str, line: int = 0, error: bool = False) -> None:
        self._publish(ActionLog(self.run, None, line, message, error))
        with self._lock:
            self.notes.append(message)

    def _finish(self, name: str, result: HostResult) -> None:
        host = self.hosts[name]
        with self._lock:
            if host.result is not None:
                return
            host.result = result
            finished = sum(h.result is not None for h in self.hosts.values())
        detail = "already there" if result.present else f"fed by {result.fed_by}" if result.fed_by else ""
        if result.resumed_from:
            detail += f", resumed at byte {result.resumed_from}"
        self._publish(
            ActionFinished(
                self.run,
                None,
                host.line,
                ACTION,
                result.outcome,
                result.size,
                time.monotonic() - host.started,
                result.checksum,
                result.error,
                detail,
            )
        )
        self._publish(ScriptProgress(self.run, None, finished, len(self.hosts), host.line))

    def _progress(self, name: str, done: int) -> None:
        host = self.hosts.get(name)
        if host is None or host.result is not None:
            return
        moved = done - host.offset
        seconds = time.monotonic() - host.started
        rate = moved / seconds if seconds > 0 else 0.0
        eta = (self.size - done) / rate if rate > 0 else None
        self._publish(ActionProgress(self.run, None, host.line, ACTION, done, self.size, rate, eta))

    # -- the run --------------------------------------------------------------------------------------------

    def run_all(self) -> FanoutResult:
        started = time.monotonic()
        self._publish(ScriptStarted(self.run, None, f"fan-out of {self.source}", len(self.hosts)))
        for name, host in self.hosts.items():
            text = f"{ACTION} {self.source_name} {name}:{host.target.directory}/{self.key}"
            self._publish(ActionStarted(self.run, None, host.line, ACTION, text, name, host.target.host.driver))
        first_plan: FanoutPlan | None = None
        rounds = 0
        outcome, error = RunOutcome.DONE, None
        identities = sorted({i for h in self.hosts.values() for i in h.ssh.identity_files} or set(default_keys()))
        try:
            with agent(identities) as socket:
                links = HeadLinks(socket)
                try:
                    while rounds < ROUNDS and self._pending():
                        rounds += 1
                        plan = self._round(links, rounds)
                        first_plan = first_plan or plan
                finally:
                    self._unlink(links)
                    links.close()
        except Cancelled:
            outcome, error = RunOutcome.CANCELLED, "cancelled"
        except OperationError as exc:
            outcome, error = RunOutcome.FAILED, str(exc)
        for name in self._pending():
            why = error or self.hosts[name].error or f"not complete after {rounds} rounds"
            self._finish(name, HostResult(name, outcome if error else RunOutcome.FAILED, error=why))
        results = {name: host.result for name, host in self.hosts.items() if host.result is not None}
        failed = [name for name, r in results.items() if r.outcome is not RunOutcome.DONE]
        if outcome is RunOutcome.DONE and failed:
            outcome, error = RunOutcome.FAILED, f"{len(failed)} of {len(results)} hosts failed: {', '.join(failed)}"
        seconds = time.monotonic() - started
        if rounds == 1 and self._streaming is not None and outcome is RunOutcome.DONE:
            # What the next estimate adds to the streaming: connections, stages starting, checks, the end.
            record_rates(self.home, {}, None, seconds - self._streaming)
        plan = first_plan or plan_fanout(self.source, self.size, [], present=sorted(self.present))
        estimate = plan.estimate()
        if rounds:
            compared = f", estimated {duration_text(estimate)}" if estimate is not None else ", no estimate"
            self._log(f"fan-out to {len(results)} hosts took {duration_text(seconds)}{compared}")
        self._publish(ScriptFinished(self.run, None, outcome, None, error, seconds))
        return FanoutResult(self.run, plan, results, seconds, rounds, tuple(self.notes))

    def _pending(self) -> list[str]:
        return [name for name, host in self.hosts.items() if host.result is None]

    def _round(self, links: HeadLinks, number: int) -> FanoutPlan:
        setup_started = time.monotonic()
        measured = load_rates(self.home)
        unreachable: dict[str, str] = {}
        breaks: list[str] = []
        notes: list[str] = []
        looked = set(self._pending()) if number > 1 else set()  # the last round looked at them as it ended
        while True:
            # Planned as if every host needed all of it; what the hosts say (they have it, part of it, the next
            # host is out of their reach) re-plans, and only the links then missing are opened.
            plan = plan_fanout(
                self.source,
                self.size,
                self._pending(),
                offsets={n: self.hosts[n].offset for n in self._pending()},
                limits=self.limits,
                measured=measured,
                chain_hosts=self.chain_hosts or CHAIN_HOSTS,
                head_chains=self.head_chains,
                breaks=breaks,
                unreachable=unreachable,
                notes=notes,
            )
            if not self._prepare(links, plan, looked, unreachable, breaks, notes):
                break
        plan = replace(plan, present=tuple(sorted(self.present)), setup=measured.setup)
        for line in plan.text():
            self._log(f"round {number}: {line}" if number > 1 else line)
        self.setup = time.monotonic() - setup_started
        self.cancel_check()
        with ThreadPoolExecutor(max_workers=max(1, len(plan.pipelines))) as pool:
            rates = list(pool.map(lambda p: self._stream(links, p), plan.pipelines))
        if self._source_changed:
            raise OperationError(f"{self.source} changed while it was sent: no host took it")
        self._record(plan, rates)
        if number == 1:
            slowest = [(self.size - p.offset) / r for p, r in zip(plan.pipelines, rates, strict=True) if r]
            self._streaming = max(slowest, default=None)
        self._look(links, self._pending())  # what the hosts left without the image hold now
        return plan

    def cancel_check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def _prepare(
        self,
        links: HeadLinks,
        plan: FanoutPlan,
        looked: set[str],
        unreachable: dict[str, str],
        breaks: list[str],
        notes: list[str],
    ) -> bool:
        """For every host of the plan at once, no host waiting for another: open the head's master to it, then in
        one session open its link to the next host and look at what it holds. Whether anything found changes the
        plan (a host unreachable, one that has the image or part of it, a neighbour that cannot reach the next)."""
        following = {a: b for p in plan.pipelines for a, b in itertools.pairwise(p.hosts)}
        jobs = [
            name
            for name in plan.hosts
            if not links.connected(name)
            or name not in looked
            or name not in self._run_dirs
            or (name in following and (name, following[name]) not in self._links)
        ]
        changed = threading.Event()

        def prepare(name: str) -> None:
            host = self.hosts[name]
            after = following.get(name)
            linking = after is not None and (name, after) not in self._links
            known = self._known_line(after) if linking and after is not None else ""
            if linking and not known:
                note = f"{after} cannot be reached from {name}: the head knows no key of it to give; fed from the head"
                self._break(after, note, breaks, notes)  # type: ignore[arg-type]
                changed.set()
            nxt = self.hosts[after] if known and after is not None else None
            control = f"c{nxt.line}" if nxt else ""
            argv = link_argv(
                host.target.directory,
                self.key,
                self._run_dirs.get(name),
                known,
                nxt.ssh.hostname if nxt else "",
                nxt.ssh.port if nxt else 22,
                nxt.ssh.user if nxt else "",
                control,
            )
            if links.connected(name):
                reply = links.run(host.target.host, argv, agent=nxt is not None, timeout=60)
            else:  # the head's master to it opens with this first session
                reply = links.open(host.target.host, argv, agent=nxt is not None, timeout=60)
                if not links.connected(name):
                    unreachable[name] = reply.err
                    self._finish(
                        name, HostResult(name, RunOutcome.FAILED, error=f"not reachable from the head: {reply.err}")
                    )
                    changed.set()
                    return
            lines = reply.out.split("\n")
            if lines and lines[0].startswith("dir "):
                with self._lock:
                    self._run_dirs[name] = lines.pop(0)[4:]
            if nxt is not None and after is not None:
                status = lines.pop(0) if lines and lines[0].split(" ", 1)[0] in ("linked", "unlinked") else ""
                if status == "linked" and name in self._run_dirs:
                    with self._lock:
                        self._links[(name, after)] = f"{self._run_dirs[name]}/{control}"
                elif reply.status != 255:
                    said = status[len("unlinked ") :].strip() or reply.err.strip() or f"status {reply.status}"
                    note = f"{after} cannot be reached from {name} ({said}); fed from the head"
                    self._break(after, note, breaks, notes)
                    changed.set()
            looked.add(name)
            if self._take_look(name, reply, lines):
                changed.set()

        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            list(pool.map(prepare, jobs))
        return changed.is_set()

    def _break(self, name: str, note: str, breaks: list[str], notes: list[str]) -> None:
        with self._lock:
            breaks.append(name)
            notes.append(note)
        self._log(note, self.hosts[name].line)

    def _look(self, links: HeadLinks, names: Sequence[str]) -> None:
        """Ask each host again what it holds (after a round, for those left without the image)."""

        def look(name: str) -> None:
            host = self.hosts[name]
            reply = links.run(host.target.host, look_argv(host.target.directory, self.key), timeout=30)
            self._take_look(name, reply, reply.out.split("\n"))

        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(look, names))

    def _take_look(self, name: str, reply: Reply, lines: list[str]) -> bool:
        """What LOOK said of a host: it has the image (done), part of it (resume there), or nothing; a host that
        cannot answer has dropped out. Whether that changes the plan."""
        host = self.hosts[name]
        words = lines[0].split() if lines else []
        if reply.status != 0 or not words:
            said = reply.err.strip().splitlines()
            self._finish(
                name, HostResult(name, RunOutcome.FAILED, error=f"dropped out: {said[-1] if said else reply.status}")
            )
            return True
        if words[0] == "have":
            try:
                trusted = Sidecar.from_json("\n".join(lines[1:]), self.key).size == self.size == whole_number(words[1])
                problem = "" if trusted else "its size is not the image's"
            except (BadSidecar, IndexError, ValueError) as exc:
                problem = str(exc)
            if problem:  # damage is reported, never written over
                why = f"its cache holds a damaged entry {self.key} ({problem}): 'headnode cache evict' it"
                self._finish(name, HostResult(name, RunOutcome.FAILED, error=why))
                return True
            if not self._streamed:
                self.present.add(name)
            self._finish(
                name, HostResult(name, RunOutcome.DONE, self.size, self.checksum, present=name in self.present)
            )
            return True
        offset = (whole_number(words[1]) if words[0] == "partial" and len(words) > 1 else None) or 0
        offset = offset if offset < self.size else 0
        changed = offset != host.offset
        host.offset = offset
        return changed

    def _known_line(self, name: str) -> str:
        """The known_hosts lines by which the host before `name` in a chain checks its key: the keys the head
        trusts for it, under the name the neighbour connects to."""
        ssh = self.hosts[name].ssh
        keys = KnownHosts.load(ssh.known_hosts).trusted(ssh.key_name)
        return "\n".join(f"{ssh.key_name} {key.get_name()} {key.get_base64()}" for key in keys)

    def _stream(self, links: HeadLinks, pipeline: Pipeline) -> float | None:
        """Start every host's stage of one pipeline at once, then send the image into the first; the rate it ran
        at (bytes per second), None if nothing was sent."""
        names = pipeline.hosts
        fed_by = {name: (names[i - 1] if i else FED_BY_HEAD) for i, name in enumerate(names)}
        stages: list[tuple[str, subprocess.Popen]] = []
        for i, name in enumerate(names):
            host = self.hosts[name]
            after = names[i + 1] if i + 1 < len(names) else None
            forward = None
            if after is not None:
                nxt = self.hosts[after].ssh
                control = self._links.get((name, after), "-")
                forward = Next(control, nxt.hostname, nxt.port, nxt.user, self._run_dirs.get(after, "-"))
            argv = stage_argv(
                name,
                host.target.directory,
                self.checksum,
                self.key,
                self.size,
                pipeline.offset,
                self.sidecar,
                self._run_dirs[name],
                i > 0,
                forward,
            )
            host.offset = pipeline.offset
            host.started = time.monotonic()
            stages.append(
                (name, links.start(host.target.host, quote_argv(argv), stdin=subprocess.PIPE if i == 0 else None))
            )
        self._streamed = True
        ready = {name: threading.Event() for name in names}
        watchers = [
            threading.Thread(target=self._watch, args=(links, name, process, fed_by, pipeline, ready), daemon=True)
            for name, process in stages
        ]
        for watcher in watchers:
            watcher.start()
        first = stages[0][1]
        sent, seconds = 0, 0.0
        try:
            # Bytes sent before the stages read would wait in buffers, then reach the hosts above the limit; an
            # unlimited stream gains by filling them while the stages start.
            deadline = time.monotonic() + READY_WAIT
            for event in ready.values() if pipeline.limit else ():
                event.wait(max(0.0, deadline - time.monotonic()))
            sent, seconds = self._send(first, pipeline)
        finally:
            with contextlib.suppress(OSError):
                first.stdin.close()  # type: ignore[union-attr]
            if self.cancel.is_set():
                for _, process in stages:
                    process.kill()
            for watcher in watchers:
                watcher.join()
        return sent / seconds if sent and seconds > 0 else None

    def _watch(
        self,
        links: HeadLinks,
        name: str,
        process: subprocess.Popen,
        fed_by: dict[str, str],
        pipeline: Pipeline,
        ready: dict[str, threading.Event],
    ) -> None:
        """Read one stage's reports until it ends. A stage that ended without forwarding leaves the next host's
        stage waiting on its FIFO: it gets an end of file, and ends with a partial copy (resumed next round)."""
        said: list[str] = []
        forwarded = threading.Event()
        errors = threading.Thread(target=lambda: said.extend(_lines(process.stderr)), daemon=True)
        errors.start()
        for raw in process.stdout:  # type: ignore[union-attr]
            words = raw.decode(errors="replace").split()
            if words == ["ready", name]:
                ready[name].set()
            self._report(words, fed_by, pipeline.offset, forwarded)
        ready[name].set()  # it ended: nothing to wait for
        process.wait()
        errors.join()
        if process.returncode == 0:  # the stage ended its links and removed its run directory
            with self._lock:
                self._run_dirs.pop(name, None)
                for pair in [pair for pair in self._links if pair[0] == name]:
                    del self._links[pair]
        host = self.hosts[name]
        own = [line for line in said if line.startswith(f"{name}: ")]  # what its stage said of itself
        if host.result is None and (own or said):
            host.error = (own or said)[-1]
        if host.result is None and own and process.returncode == 4:
            self._finish(name, HostResult(name, RunOutcome.FAILED, error=own[-1]))
        after = [n for n, f in fed_by.items() if f == name]
        if after and not forwarded.is_set() and after[0] in self._run_dirs:
            nxt = self.hosts[after[0]]
            links.run(nxt.target.host, unblock_argv(self._run_dirs[after[0]]), timeout=30)

    def _send(self, process: subprocess.Popen, pipeline: Pipeline) -> tuple[int, float]:
        """Write the image from the pipeline's offset into the chain's first session, paced to its limit; the
        head checksums a whole stream and compares it with the image's checksum. Bytes sent and the seconds."""
        stdin = process.stdin.fileno()  # type: ignore[union-attr]
        enlarge_pipe(stdin, CHUNK)
        checksum: Checksum | None = new_checksum(self.algorithm) if pipeline.offset == 0 else None
        piece = PACED_PIECE if pipeline.limit else CHUNK
        sent = 0
        started = time.monotonic()
        try:
            with open(self.source, "rb") as source:
                source.seek(pipeline.offset)
                while data := source.read(piece):
                    self.cancel_check()
                    if checksum is not None:
                        checksum.update(data)
                    if pipeline.limit:
                        late = time.monotonic() - (started + sent / pipeline.limit)
                        if late < 0:
                            time.sleep(-late)
                        elif late > PACED_BURST:  # a stream held up never makes up for it above its limit
                            started += late - PACED_BURST
                    try:
                        write_all(stdin, data)
                    except BrokenPipeError:
                        return sent, time.monotonic() - started  # the first host dropped out: the next round
                    sent += len(data)
            if checksum is not None and sent == self.size - pipeline.offset:
                if checksum.value() != self.checksum:
                    self._source_changed = True
                checksum = None
            return sent, time.monotonic() - started
        finally:
            if checksum is not None:
                checksum.close()

    def _report(self, words: list[str], fed_by: dict[str, str], offset: int, forwarded: threading.Event) -> None:
        """One line a stage reported (engine.transfers.fanout.hop)."""
        if len(words) < 2 or words[1] not in fed_by:
            return
        name = words[1]
        size = whole_number(words[2]) if len(words) > 2 else None
        if len(words) == 3 and words[0] == "progress" and size is not None:
            self._progress(name, size)
        elif len(words) == 4 and words[0] == "stored" and words[3] == self.want and size is not None:
            result = HostResult(name, RunOutcome.DONE, size, self.checksum, fed_by=fed_by[name], resumed_from=offset)
            self._finish(name, result)
        elif len(words) == 2 and words[0] == "refused":
            host = self.hosts[name]
            self._finish(name, HostResult(name, RunOutcome.FAILED, error=host.error or f"{name}: it refused to write"))
        elif len(words) == 2 and words[0] == "busy":
            self._log(f"{name}: another transfer is writing its entry {self.key}", self.hosts[name].line)
        elif len(words) == 3 and words[0] == "forward":
            forwarded.set()
            if words[2] != "0":
                after = [n for n, f in fed_by.items() if f == name]
                self._log(
                    f"{name} could not pass the image on to {after[0] if after else 'the next host'} "
                    f"(ssh exited with status {words[2]})",
                    self.hosts[name].line,
                    error=True,
                )

    def _record(self, plan: FanoutPlan, rates: Sequence[float | None]) -> None:
        """Keep the rates of the pipelines no BWLIMIT held back, for the next estimate."""
        measured: dict[str, float] = {}
        free = [(p, r) for p, r in zip(plan.pipelines, rates, strict=True) if p.limit is None and r]
        for pipeline, rate in free:
            if all(self.hosts[n].result is not None and not self.hosts[n].result.error for n in pipeline.hosts):  # type: ignore[union-attr]
                measured.update({name: rate for name in pipeline.hosts})
        head = sum(r for _, r in free) if len(free) == len(plan.pipelines) and free else None
        if measured or head:
            record_rates(self.home, measured, head, None)

    def _unlink(self, links: HeadLinks) -> None:
        """End every link the hosts opened, and remove their run directories."""
        jobs = [(name, d) for name, d in self._run_dirs.items() if links.connected(name)]

        def unlink(job: tuple[str, str]) -> None:
            links.run(self.hosts[job[0]].target.host, unlink_argv(job[1]), timeout=30)

        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            list(pool.map(unlink, jobs))


def _lines(stream: Any) -> list[str]:
    """The lines of a process's pipe, as they come (a generator would hold the pipe open in a finished thread)."""
    return [raw.decode(errors="replace").rstrip("\n") for raw in stream]


def fan_out(home: Home, source: str, checksum: str, targets: Sequence[Target], **options: Any) -> FanoutResult:
    """Put the image `source` (this machine's file, of `checksum`, "ALGORITHM:VALUE") into every target; see
    FanOut for the options (bus, cancel, limits, present, run_id, chain_hosts, head_chains)."""
    return FanOut(home, source, checksum, targets, **options).run_all()
