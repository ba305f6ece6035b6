"""VMs: one lifecycle that ties leases and image scripts together (disks and addresses; no hypervisor is driven).

    pending --deploy--> prolog --> running --shutdown--> epilog --> done
    running --stop--> epilog --> stopped --resume HOST--> prolog --> running
    running --migrate HOST--> migrating --> running
    any failed prolog/epilog/migration --> failed  (recover --retry | --delete)
    delete: any state but done --> (DELETE of its files) --> done

Creating a VM leases one address per NIC (all or none); its leases are freed only when it reaches done. Every
state change is written to the database before the action it starts, with the pid that runs it, so after a
crash `show` tells an interrupted operation from a running one, and `recover` can finish or undo it.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import HeadnodeError, InputError, OperationError, Problem
from engine.events import EventBus, Level, LogEvent
from engine.home import Home
from engine.language.script import Delete, Location, Move, Script, Url, join_path
from engine.language.template import Attribute, Template, Vector, format_template, load_template
from engine.networks.addresses import parse_ipv4
from engine.networks.exports import nic_host_name
from engine.networks.manager import Networks
from engine.store.atomic import write_atomically
from engine.transfers.cache.cached_clone import CachePlan
from engine.transfers.executor import Executor, ScriptResult, ScriptRun
from engine.transfers.hosts import Hosts
from engine.transfers.progress import RunOutcome
from engine.vms.context_vars import resolve_context, resolve_context_unleased
from engine.vms.planner import Operation, Placement, plan
from engine.vms.records import HistoryEntry, OperationRecord, Vm, VmChanged, VmRecords
from engine.vms.states import OperationOutcome, VmState
from engine.vms.vm_template import check_vm_template


@dataclass(frozen=True)
class Transition:
    """A VM operation: where it may start, the state while its script runs, and where success leads."""

    allowed: frozenset[VmState]
    busy: VmState
    success: VmState
    planned: Operation | None  # None for delete, whose script depends on where the images are (_delete_script)


TRANSITIONS: dict[str, Transition] = {
    "deploy": Transition(frozenset({VmState.PENDING}), VmState.PROLOG, VmState.RUNNING, Operation.PROLOG),
    "resume": Transition(frozenset({VmState.STOPPED}), VmState.PROLOG, VmState.RUNNING, Operation.RESUME),
    "stop": Transition(frozenset({VmState.RUNNING}), VmState.EPILOG, VmState.STOPPED, Operation.STOP),
    "migrate": Transition(frozenset({VmState.RUNNING}), VmState.MIGRATING, VmState.RUNNING, Operation.MIGRATE),
    "shutdown": Transition(frozenset({VmState.RUNNING}), VmState.EPILOG, VmState.DONE, Operation.EPILOG),
    "delete": Transition(frozenset(set(VmState) - {VmState.DONE}), VmState.EPILOG, VmState.DONE, None),
}


@dataclass(frozen=True)
class Preview:
    """What an operation would do: its script, and the bytes each line with a source moves, by line (None: not
    known before it runs, as an HTTP download's; 0 for a move that is a rename in place)."""

    vm_id: int
    op: str
    script: Script
    source_bytes: dict[int, int | None]
    cache: dict[int, CachePlan] = field(default_factory=dict)  # the CLONEs through a host's image cache, by line

    @property
    def link_bytes(self) -> int:
        """The bytes known to cross a link: a cache hit's none, a miss's its data, the rest what they move."""
        return sum(
            (self.cache[line].over_link or 0) if line in self.cache else (size or 0)
            for line, size in self.source_bytes.items()
        )

    @property
    def total_bytes(self) -> int:
        """The bytes known to move (see `unknown_lines` for the lines whose size is not known yet)."""
        return sum(size or 0 for size in self.source_bytes.values())

    @property
    def unknown_lines(self) -> list[int]:
        return [line for line, size in self.source_bytes.items() if size is None]


class Vms(VmRecords):
    """The VM pool of a home: create, operate, recover, delete (and read, as VmRecords)."""

    def __init__(
        self, home: Home, networks: Networks, hosts: Hosts, executor: Executor, bus: EventBus | None = None
    ) -> None:
        super().__init__(home)
        self.networks = networks
        self.hosts = hosts
        self.executor = executor
        self.bus = bus or EventBus()

    # -- create -------------------------------------------------------------------------------------------------

    def create(self, template_path: str | Path, owner: str | None = None) -> Vm:
        """Store a VM from a template file and lease one address per NIC (all or none)."""
        return self.create_from(load_template(template_path), owner)

    def create_from(self, template: Template, owner: str | None = None) -> Vm:
        """Every problem of the template is found before anything is kept; a VM id is used up only by a VM."""
        template = check_vm_template(template, self.home.images, self._nic_problems(template))
        vm_id = self._next_id()
        leased: list[Any] = []
        try:
            attributes = []
            nics = 0
            host = _host_base(template, vm_id)
            for attr in template.attributes:
                if attr.name == "NIC" and isinstance(attr.value, Vector) and attr.value.get("NETWORK"):
                    nic, lease = self._lease_nic(attr, nics, vm_id, template.source, nic_host_name(host, nics))
                    leased.append(lease)
                    attr = Attribute("NIC", nic, attr.line)
                nics += attr.name == "NIC"
                attributes.append(attr)
            stored = resolve_context(Template(attributes, template.source), vm_id)
            vm = Vm(
                id=vm_id,
                name=template.get("NAME") or f"vm-{vm_id}",
                owner=owner or _user(),
                state=VmState.PENDING,
                template=format_template(stored),
                created=time.time(),
            )
            self._save(vm)
        except BaseException:
            for lease in leased:
                self.networks.release(lease.network, lease.ip, force=True)
            self._give_back_id(vm_id)
            raise
        self._log(vm, f"created with {len(leased)} lease(s)")
        return vm

    def _nic_problems(self, template: Template) -> builtins.list[Problem]:
        """What stops a NIC from being leased, found without leasing: an unknown network, an IP it never holds."""
        problems = []
        for index, attr in enumerate(template.all("NIC")):
            nic = attr.value
            name = nic.get("NETWORK") if isinstance(nic, Vector) else None
            if not isinstance(nic, Vector) or not name:
                continue
            try:
                network = self.networks.get(name)
                ip = nic.get("IP")
                if ip is not None:
                    network.check_leasable(parse_ipv4(ip))
            except InputError as exc:
                problems += [Problem(f"NIC {index}: {p.message}", template.source, attr.line) for p in exc.problems]
        return problems

    def _lease_nic(self, attr: Attribute, index: int, vm_id: int, source: str, host: str | None) -> tuple[Vector, Any]:
        nic = attr.value
        assert isinstance(nic, Vector)
        name = nic.get("NETWORK") or ""
        try:
            network = self.networks.get(name)
            lease = self.networks.lease(name, vm=vm_id, ip=nic.get("IP"), host=host)
        except InputError as exc:
            raise InputError([Problem(f"NIC {index}: {p.message}", source, attr.line) for p in exc.problems]) from None
        except OperationError as exc:  # a full network, a taken address
            raise OperationError(str(Problem(f"NIC {index}: {exc}", source, attr.line))) from None
        ipv6 = {key: value for key, value in (("IP6_GLOBAL", lease.ip6_global), ("IP6_ULA", lease.ip6_ula)) if value}
        leased = nic.replace(
            NETWORK=name,
            IP=lease.ip,
            MAC=lease.mac,
            **ipv6,
            IP6_LINK=lease.ip6_link,
            BRIDGE=network.bridge,
            VNID=str(network.id),
        )
        return leased, lease

    def _next_id(self) -> int:
        with self.store.write() as db:
            counters = db.table("counters")
            doc = counters.get(doc_id=1)
            next_id = int(doc["next_vm"]) if doc else 0
            if doc:
                counters.update({"next_vm": next_id + 1}, doc_ids=[1])
            else:
                counters.insert({"next_vm": 1})
        return next_id

    def _give_back_id(self, vm_id: int) -> None:
        """Return the id of a VM that was not created, unless a later one was taken meanwhile."""
        with self.store.write() as db:
            counters = db.table("counters")
            doc = counters.get(doc_id=1)
            if doc and int(doc["next_vm"]) == vm_id + 1:
                counters.update({"next_vm": vm_id}, doc_ids=[1])

    # -- operations ---------------------------------------------------------------------------------------------

    def deploy(self, vm_id: int, host: str) -> Vm:
        """Run the prolog on HOST: the VM's disks are placed there and it becomes running."""
        return self._operate(vm_id, "deploy", host)

    def resume(self, vm_id: int, host: str) -> Vm:
        return self._operate(vm_id, "resume", host)

    def stop(self, vm_id: int) -> Vm:
        return self._operate(vm_id, "stop")

    def migrate(self, vm_id: int, host: str) -> Vm:
        return self._operate(vm_id, "migrate", host)

    def shutdown(self, vm_id: int) -> Vm:
        """Run the epilog (SAVE=yes disks parked on the front end); the leases are freed once it succeeds."""
        return self._operate(vm_id, "shutdown")

    def delete(self, vm_id: int, force: bool = False) -> Vm:
        """Delete the VM's files wherever they are and free its leases; with force, finish even if that fails
        (or its host's record is gone). A VM that is done already is removed from the pool."""
        return self._operate(vm_id, "delete", force=force)

    def on_host(self, name: str) -> builtins.list[Vm]:
        """The VMs that are not done whose files are, or may partly be, on host `name`."""
        return [
            vm
            for vm in self.list()
            if vm.state is not VmState.DONE
            and (
                vm.host == name
                or (
                    vm.last_operation is not None
                    and vm.last_operation.host == name
                    and vm.last_operation.outcome is not OperationOutcome.SUCCESS
                )
            )
        ]

    def delete_host(self, name: str, force: bool = False) -> None:
        """Delete a host record; refused while VMs are on it, unless `force` (they keep its name, and only
        `vm delete --force` can end them)."""
        using = self.on_host(name)
        if using and not force:
            ids = ", ".join(str(vm.id) for vm in using)
            raise InputError(Problem(f"host {name!r} has VMs on it ({ids}): move or delete them first, or use --force"))
        self.hosts.delete(name)

    def operate(
        self,
        vm_id: int,
        op: str,
        host: str | None = None,
        *,
        force: bool = False,
        on_run: Callable[[ScriptRun], None] | None = None,
    ) -> Vm:
        """Run operation `op` (a key of TRANSITIONS) as its own method does; `on_run(run)` is called once its
        image script was accepted and started (the service answers its client then, not at the end)."""
        if op not in TRANSITIONS:
            raise InputError(Problem(f"unknown VM operation {op!r}"))
        return self._operate(vm_id, op, host, force=force, on_run=on_run)

    def recover(
        self,
        vm_id: int,
        retry: bool = False,
        delete: bool = False,
        on_run: Callable[[ScriptRun], None] | None = None,
    ) -> Vm:
        """Act on a failed or interrupted VM: retry its last operation from the failed line, or delete it."""
        if retry == delete:
            raise InputError(Problem("recover needs exactly one of --retry or --delete"))
        vm = self.get(vm_id)
        last = vm.last_operation
        if not (vm.state is VmState.FAILED or vm.interrupted) or last is None:
            raise InputError(Problem(f"VM {vm_id} is {vm.state.value}: only a failed or interrupted VM is recovered"))
        if delete:
            return self._operate(vm_id, "delete", recovering=True, on_run=on_run)
        # A failed script goes on from its failed line; an interrupted one from its first unfinished line,
        # which the executor's journal knows.
        return self._operate(vm_id, last.op, last.host, recovering=True, from_line=last.failed_line, on_run=on_run)

    def _operate(
        self,
        vm_id: int,
        op: str,
        host: str | None = None,
        force: bool = False,
        recovering: bool = False,
        from_line: int | None = None,
        on_run: Callable[[ScriptRun], None] | None = None,
    ) -> Vm:
        transition = TRANSITIONS[op]
        with self.store.write() as db:  # check and claim the VM in one transaction: two admins cannot both act
            doc = db.table("vms").get(doc_id=vm_id)
            if doc is None:
                raise InputError(Problem(f"no VM {vm_id}"))
            vm = Vm.from_doc(dict(doc))
            if op == "delete" and not recovering and vm.state is VmState.DONE:
                db.table("vms").remove(doc_ids=[vm_id])  # a done VM's record goes (they piled up)
                self._log(vm, "removed")
                return vm
            self._check_allowed(vm, op, transition, recovering)
            origin = vm.previous_state if recovering and vm.previous_state else vm.state
            if recovering and op != "delete":
                host = host or vm.host
            target = self._target_host(vm, op, host)
            script, context = self._script(vm, op, target, force)
            if from_line:
                script = Script(tuple(line for line in script.lines if line.number >= from_line), script.source)
            if context is not None:
                write_atomically(*context)  # the CONTEXT line reads it: it must exist before the script is checked
            problems = self.executor.validate(script)
            if problems:
                raise InputError(
                    [replace(p, file=None, message=f"{script.source}, line {p.line}: {p.message}") for p in problems]
                )
            record = OperationRecord(op, target or "", tuple(script.format().splitlines()), time.time(), os.getpid())
            claimed = replace(
                vm,
                state=transition.busy,
                previous_state=origin,
                host=target if op in ("deploy", "resume") else vm.host,  # where files may land from now on
                operations=(*vm.operations, record),
            )
            if script.lines or context:
                db.table("vms").update(self._doc(claimed), doc_ids=[vm_id])
        self._publish(claimed)
        self._log(claimed, f"{op} started" + (f" on {target}" if target else ""))
        resume = recovering and from_line is None and op != "delete"
        try:
            outcome = self._run(claimed, script, resume, on_run) if script.lines else None
        except (HeadnodeError, OSError) as exc:  # recorded as the operation's failure: the VM is never left busy
            outcome = ScriptResult("", vm_id, RunOutcome.FAILED, None, str(exc))
        return self._finish(claimed, op, transition, target, outcome, force)

    def preview(self, vm_id: int, op: str, host: str | None = None) -> Preview:
        """A dry run of `op`: the image script it would run now and the bytes each copy would move. Nothing is
        written or claimed; the same checks as the operation refuse what it would refuse."""
        vm = self.get(vm_id)
        self._check_allowed(vm, op, TRANSITIONS[op], recovering=False)
        script, _ = self._script(vm, op, self._target_host(vm, op, host))
        sizes: dict[int, int | None] = {}
        for line in script.lines:
            source = getattr(line.action, "source", None)
            if isinstance(source, Url):
                # A download's size is known once it starts; a file:// source is a file of the front end.
                local = source.scheme == "file" and os.path.isfile(source.url.removeprefix("file://"))
                sizes[line.number] = os.path.getsize(source.url.removeprefix("file://")) if local else None
            elif isinstance(source, Location):
                try:
                    sizes[line.number] = self._moved_bytes(line.action, source)
                except (HeadnodeError, OSError):
                    sizes[line.number] = None  # unreachable now: the run itself will say why
        cache: dict[int, CachePlan] = {}
        for line in script.lines:
            try:
                planned = self.executor.transfers.cache_plan(line.action)
            except (HeadnodeError, OSError):
                planned = None  # the host's cache cannot be read now: the run itself will say why
            if planned is not None:
                cache[line.number] = planned
        return Preview(vm_id, op, script, sizes, cache)

    def _moved_bytes(self, action: Any, source: Location) -> int:
        """What a line with a source moves: the file, or every file of a directory (a stop's MV of the VM's
        directory); nothing for a move within one place, which is a rename."""
        endpoints = self.executor.transfers
        origin = endpoints.endpoint(source.host)
        if isinstance(action, Move):
            dest = endpoints.endpoint(action.dest.host)
            if (origin.local and dest.local) or source.host == action.dest.host:
                return 0
        kind, size = origin.kind(source.path)
        if kind == "d":
            return sum(entry.size for entry in origin.tree(source.path) if entry.kind == "f")
        return size

    def _check_allowed(self, vm: Vm, op: str, transition: Transition, recovering: bool) -> None:
        last = vm.last_operation
        if last is not None and last.outcome is OperationOutcome.RUNNING and not vm.interrupted:
            raise OperationError(f"VM {vm.id} is busy: {last.op} is running in process {last.pid}")
        if recovering or op == "delete":
            if vm.state is VmState.DONE:
                raise InputError(Problem(f"VM {vm.id} is done"))
            return
        if vm.interrupted:
            raise InputError(Problem(f"VM {vm.id}'s {last.op if last else ''} was interrupted: use vm recover"))
        if vm.state not in transition.allowed:
            allowed = ", ".join(sorted(s.value for s in transition.allowed))
            raise InputError(Problem(f"VM {vm.id} is {vm.state.value}: {op} needs a VM that is {allowed}"))

    def _target_host(self, vm: Vm, op: str, host: str | None) -> str | None:
        if op in ("deploy", "resume", "migrate"):
            if not host:
                raise InputError(Problem(f"{op} needs a host"))
            self.hosts.get(host)  # an unknown host is refused before anything changes
            if op == "migrate" and host == vm.host:
                raise InputError(Problem(f"VM {vm.id} is already on {host}"))
            return host
        return vm.host

    def _placement(self, host: str, previous: str | None = None) -> Placement:
        record = self.hosts.get(host)
        return Placement(
            frontend=self.home.config.frontend_name,
            frontend_dir=str(self.home.vms),
            host=host,
            host_dir=record.vm_dir,
            previous_host=previous,
            previous_host_dir=self.hosts.get(previous).vm_dir if previous else None,
        )

    def _script(self, vm: Vm, op: str, host: str | None, force: bool = False) -> tuple[Script, tuple[str, str] | None]:
        """The script of an operation, named for it (`deploy script`), and the context.sh to write first (path,
        text), if any."""
        script, context = self._planned(vm, op, host, force)
        return Script(script.lines, f"{op} script"), context

    def _planned(self, vm: Vm, op: str, host: str | None, force: bool) -> tuple[Script, tuple[str, str] | None]:
        template = vm.parsed_template()
        if op == "delete":
            return self._delete_script(vm, force), None
        if op == "migrate":
            assert host and vm.host
            return plan(template, vm.id, self._placement(host, vm.host), Operation.MIGRATE).script, None
        assert host
        operation = TRANSITIONS[op].planned
        assert operation is not None
        planned = plan(template, vm.id, self._placement(host), operation)
        context = (planned.context_path, planned.context_sh) if planned.context_path and planned.context_sh else None
        return planned.script, context

    def _delete_script(self, vm: Vm, force: bool) -> Script:
        """Remove the VM's images wherever they may be: parked on the front end, on its host, and where an
        unfinished stop or migration was taking them. A host whose record is gone is skipped with `force`."""
        parked = Location(self.home.config.frontend_name, join_path(str(self.home.vms), str(vm.id), "images"))
        if vm.state in (VmState.PENDING, VmState.DONE):
            return Script.of([])
        if vm.state is VmState.STOPPED:
            return Script.of([Delete(parked)])
        hosts = [vm.host] if vm.host else []
        last = vm.last_operation
        if (
            last is not None
            and last.outcome is not OperationOutcome.SUCCESS
            and last.op == "migrate"
            and last.host not in (None, "", vm.host)
        ):
            hosts.append(last.host)
        actions: list[Delete] = []
        for host in hosts:
            if self.hosts.find(host) is not None:
                actions.append(Delete(self._placement(host).images(vm.id)))
            elif force:
                self._log(vm, f"host {host} no longer exists: its files there, if any, are left", Level.WARNING)
            else:
                raise InputError(
                    Problem(
                        f"VM {vm.id}'s host {host!r} no longer exists: 'vm delete --force' ends "
                        "the VM and leaves its files there"
                    )
                )
        if last is not None and last.outcome is not OperationOutcome.SUCCESS and last.op == "stop":
            actions.append(Delete(parked))
        return Script.of(actions)

    def _run(self, vm: Vm, script: Script, resume: bool, on_run: Callable[[ScriptRun], None] | None) -> ScriptResult:
        try:
            run = self.executor.submit(script, vm_id=vm.id, resume=resume)
        except InputError:
            if not resume:
                raise
            run = self.executor.submit(script, vm_id=vm.id)  # nothing journaled to resume: run it whole
        if on_run is not None:
            on_run(run)
        result = run.wait()
        assert result is not None
        return result

    def _finish(
        self, vm: Vm, op: str, transition: Transition, host: str | None, outcome: ScriptResult | None, force: bool
    ) -> Vm:
        ok = outcome is None or outcome.ok
        now = time.time()
        last = vm.last_operation
        assert last is not None
        record = replace(
            last,
            ended=now,
            outcome=OperationOutcome.SUCCESS if ok else OperationOutcome.FAILURE,
            failed_line=None if outcome is None or ok else outcome.failed_line,
            error=None if outcome is None or ok else outcome.error,
        )
        history = list(vm.history)
        placed = op in ("deploy", "resume", "migrate")
        opened = bool(history) and history[-1].ended is None
        if placed and host and not (opened and history[-1].host == host):
            # The images now live on (or, after a failure, partly on) `host`; an attempt that failed there and
            # was retried keeps its one entry.
            if opened and (ok or op != "migrate"):
                history[-1] = replace(history[-1], ended=now)
            if ok or op != "migrate":
                history.append(HistoryEntry(host, self.hosts.get(host).vm_dir, now))
        elif ok and not placed and opened:
            history[-1] = replace(history[-1], ended=now)  # stopped, shut down or deleted: off its host
        if ok:
            state = transition.success
            new_host = host if placed else None
        else:
            state = VmState.DONE if (op == "delete" and force) else VmState.FAILED
            new_host = vm.host
        if state is VmState.DONE:
            self.networks.release_vm(vm.id)
        done = replace(
            vm,
            state=state,
            host=new_host if state is not VmState.DONE else None,
            history=tuple(history),
            operations=(*vm.operations[:-1], record),
        )
        self._save(done)
        self._publish(done)
        if ok:
            self._log(done, f"{op} succeeded: {state.value}")
        else:
            self._log(done, f"{op} failed at line {record.failed_line}: {record.error}", Level.ERROR)
            if state is not VmState.DONE:
                raise OperationError(f"VM {vm.id}: {op} failed at line {record.failed_line}: {record.error}")
        return done

    # -- persistence and reporting ------------------------------------------------------------------------------

    def _doc(self, vm: Vm) -> dict[str, Any]:
        doc = asdict(vm)
        doc["state"] = vm.state.value
        doc["previous_state"] = vm.previous_state.value if vm.previous_state else None
        return doc

    def _save(self, vm: Vm) -> None:
        from tinydb.table import Document

        with self.store.write() as db:
            db.table("vms").upsert(Document(self._doc(vm), doc_id=vm.id))

    def _publish(self, vm: Vm) -> None:
        self.bus.publish(VmChanged(vm.id, vm.state))

    def _log(self, vm: Vm, message: str, level: Level = Level.INFO) -> None:
        self.bus.publish(LogEvent(f"VM {vm.id} ({vm.name}): {message}", level, "vm"))


def _host_base(template: Template, vm_id: int) -> str | None:
    """The name a VM's NICs are served under: its CONTEXT HOSTNAME (unless that waits for a lease's value), else
    its NAME."""
    resolved, _ = resolve_context_unleased(template, vm_id)
    for attr in resolved.all("CONTEXT"):
        hostname = attr.value.get("HOSTNAME") if isinstance(attr.value, Vector) else None
        if hostname and "$" not in hostname:
            return hostname
    return template.get("NAME")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
