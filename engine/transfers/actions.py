"""Running one image-script action through its host's driver: checks first, then the built-in or the program.

The driver that runs an action is the one of the host it acts on: the destination's host, or for an action whose
destination is the front end (an epilog or stop MV) the source's host. Each host's own driver says how its paths
are reached: `shared` (and the front end) as this machine's files, `ssh` over SSH, `dummy` not at all.

Safety: every path an action writes or removes (a destination, an MV source, a DELETE path) must lie strictly
inside its host's VM directory after `..` is resolved. A file is made under a temporary name beside its destination
(`.NAME.part`) and renamed into place only when complete and verified, so a failed or cancelled action leaves
nothing at the destination.

A CLONE (or an LN across machines) from the front end or an HTTP source to a host whose driver caches goes through
the host's image cache (engine.transfers.cache): a hit is copied on the host, a miss fetched into the cache once.

MV follows `scp -r` where that keeps OpenNebula's stop/resume round trip whole: a file moved onto an existing
directory goes inside it; a directory keeps its name, so it lands at DST when DST ends in that name and inside DST
(created when missing) otherwise. Thus stop `MV host:D/7/images fe:F/7` makes `F/7/images` and resume `MV
fe:F/7/images host:D/7/images` puts it back. A destination directory that already holds files is never replaced.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import ConnectionLost, GaveUp, HeadnodeError, InputError, OperationError
from engine.home import Home
from engine.language.script import Action, Clone, Context, Delete, Link, Location, MakeImage, MakeSwap, Move, Url
from engine.presentation import size_text
from engine.transfers.cache.cached_clone import CachePlan, CacheSource, CacheUse, Fetched, clone_through_cache
from engine.transfers.cache.eviction import budget_rule, evict_to_budget
from engine.transfers.cache.host_cache import HostCache
from engine.transfers.cache.layout import Validators, cache_dir, entry_key
from engine.transfers.cache.memo import ChecksumMemo
from engine.transfers.copier import Copied, LocalExtents, copy_extents, copy_stream, kernel_copy, local_extents
from engine.transfers.drivers import Driver, load_driver, run_program
from engine.transfers.endpoints import (
    Accelerator,
    Endpoint,
    ExtentReader,
    LocalEndpoint,
    RemoteEndpoint,
    confined,
)
from engine.transfers.extents import data_bytes
from engine.transfers.hosts import Host, Hosts, inside_vm_dir
from engine.transfers.job import Job
from engine.transfers.ssh import SshPool
from engine.transfers.zero_runs import StreamExtents

if TYPE_CHECKING:
    from engine.transfers.fanout.gathering import Gatherer

MIB = 1 << 20
# Overwrite without asking, and quietly: mkfs's own flags differ by file system.
MKFS_FLAGS = {
    "ext2": ["-F", "-q"],
    "ext3": ["-F", "-q"],
    "ext4": ["-F", "-q"],
    "xfs": ["-f", "-q"],
    "btrfs": ["-f", "-q"],
}


@dataclass(frozen=True)
class ActionResult:
    """What an action did: bytes written and the checksum of a copied file, when it copied one."""

    bytes: int = 0
    checksum: str | None = None
    detail: str = ""
    check_stored: bool = False  # a copy the destination still has to checksum before it is renamed into place
    sent: int | None = None  # bytes that crossed a link, when a cache told (a hit sends none)
    placed: bool = False  # renamed into place already (a copy out of a host's cache places its own file)
    cache: CacheUse | None = None  # how the host's image cache served it, when it did


def copied_result(copied: Copied, detail: str = "") -> ActionResult:
    note = f", resumed at byte {copied.resumed_from}" if copied.resumed_from else ""
    if copied.data_sent is not None:
        note += f", sent {size_text(copied.data_sent)} of {size_text(copied.size)} (holes skipped)"
    return ActionResult(copied.size, copied.checksum, detail or f"{copied.method}{note}", copied.check_stored)


def part_name(path: str) -> str:
    """The temporary name a file is made under, beside its destination."""
    head, tail = posixpath.split(path)
    return posixpath.join(head, f".{tail}.part")


def written_paths(action: Action) -> list[Location]:
    """Every location the action creates, replaces or removes."""
    if isinstance(action, Move):
        return [action.source, action.dest]
    return [action.dest]


def action_host(action: Action, frontend: str) -> str:
    """The host whose driver runs the action."""
    if isinstance(action, Move) and action.dest.host == frontend:
        return action.source.host
    if isinstance(action, Clone | Link) and action.dest.host == frontend and isinstance(action.source, Location):
        return action.source.host
    return action.dest.host


class Transfers:
    """Checks and runs actions for one home; shares an SSH pool between all of them."""

    def __init__(self, home: Home, pool: SshPool, accelerator: Accelerator | None = None) -> None:
        self.home = home
        self.hosts = Hosts(home)
        self.pool = pool
        self.accelerator = accelerator
        self._drivers: dict[str, Driver] = {}
        self._drivers_lock = threading.Lock()
        self.memo = ChecksumMemo(home)
        # The executor's coordinator of concurrent CLONEs of one image (engine.transfers.fanout.gathering); None
        # outside an executor: each CLONE fetches on its own.
        self.gathering: Gatherer | None = None

    def driver(self, host: Host) -> Driver:
        with self._drivers_lock:
            if host.driver not in self._drivers:
                self._drivers[host.driver] = load_driver(self.home, host.driver)
            return self._drivers[host.driver]

    def target(self, action: Action) -> Host:
        return self.hosts.resolve(action_host(action, self.hosts.frontend_name))

    def check(self, action: Action, earlier: Sequence[Location] = ()) -> list[str]:
        """Everything that stops the action from running, as messages; empty when it can run. A source on this
        machine must exist unless it lies under a destination of an `earlier` line of the same script."""
        source = getattr(action, "source", None)
        names = [loc.host for loc in written_paths(action)]
        if isinstance(source, Location):
            names.append(source.host)
        problems: list[str] = []
        for name in dict.fromkeys(names):
            try:
                self.hosts.resolve(name)
            except InputError as exc:
                problems.extend(p.message for p in exc.problems)
        if problems:
            return problems
        for location in written_paths(action):
            host = self.hosts.resolve(location.host)
            if not inside_vm_dir(host, location.path):
                problems.append(f"{location} is outside the VM directory {host.vm_dir} of host {host.name}")
        try:
            driver = self.driver(self.target(action))
        except InputError as exc:
            return problems + [p.message for p in exc.problems]
        if not driver.handles(action.name):
            problems.append(f"driver {driver.name} ({driver.source}) has no {action.name}")
        if isinstance(action, Context) and driver.base != "dummy":
            for name in (action.context_file, *action.files):
                if name.startswith("/") and not os.path.exists(name):  # a directory is copied whole
                    problems.append(f"context file {name} does not exist on the front end")
        if isinstance(source, Location):
            local_source = self._base(self.hosts.resolve(source.host)) == "shared"
            made = any(_under(source, location) for location in earlier)
            if local_source and not made and driver.base != "dummy" and not os.path.lexists(source.path):
                problems.append(f"source {source} does not exist")
        return problems

    def _base(self, host: Host) -> str:
        """How a host's files are reached: "shared" (this machine's files), "ssh" or "dummy"."""
        return "shared" if host.local else self.driver(host).base

    def _made_size(self, action: Action) -> int:
        """The size of the file a site program made at the action's destination (0 when it made none or it
        cannot be read from here): the program reports no bytes of its own."""
        if isinstance(action, Delete):
            return 0
        try:
            kind, size = self.endpoint(action.dest.host).kind(action.dest.path)
        except (HeadnodeError, OSError):
            return 0
        return size if kind == "f" else 0

    def endpoint(self, name: str, log: Callable[[str], None] = lambda line: None) -> Endpoint:
        """The files of host `name`; `log` hears what a copy there should say (a compression it cannot use)."""
        return self._endpoint(self.hosts.resolve(name), log)

    def _endpoint(self, host: Host, log: Callable[[str], None] = lambda line: None) -> Endpoint:
        base = self._base(host)
        if base == "shared":
            return LocalEndpoint(host)
        if base == "ssh":
            compress = host.compress == "zstd" if host.compress else self.driver(host).compress
            return RemoteEndpoint(host, self.pool, self.accelerator, compress, log)
        raise OperationError(f"host {host.name} uses the dummy driver: it holds no files to read or write")

    def caches(self, host: Host) -> bool:
        """Whether the host keeps an image cache: its driver's CACHE, unless its budget is 0; never the front end."""
        return not host.local and host.cache_max_mb != 0 and self.driver(host).cache

    def host_cache(self, name: str) -> HostCache:
        """The image cache of host `name` (whether or not its driver uses one)."""
        host = self.hosts.resolve(name)
        return HostCache(self._endpoint(host), cache_dir(host))

    def cache_writer(self, cache: HostCache, log: Callable[[str], None] = lambda line: None) -> Endpoint:
        """An endpoint that writes into the cache's directory only (its scripts confine writes to it)."""
        return self._endpoint(dataclasses.replace(cache.host, vm_dir=cache.directory), log)

    def cached_clone(self, action: Action) -> HostCache | None:
        """The cache a CLONE goes through: the destination's, for a source on the front end or an HTTP one."""
        if not isinstance(action, Clone | Link):
            return None
        host = self.hosts.resolve(action.dest.host)
        if not self.caches(host):
            return None
        source = action.source
        if isinstance(source, Location) and self._base(self.hosts.resolve(source.host)) != "shared":
            return None  # host to host: the image is on a host already
        return HostCache(self._endpoint(host), cache_dir(host))

    def cache_source(self, source: Location | Url, algorithm: str) -> CacheSource:
        """What the cache knows of a source before fetching it: a front-end file's checksum (from the memo, else
        read once now), an HTTP source's when its server's validators are remembered."""
        if isinstance(source, Url) and source.scheme != "file":
            from engine.transfers.http_source import head_validators

            validators = head_validators(source.url)
            known = self.memo.url_checksum(source.url, validators, algorithm)
            return CacheSource(source.url, known, validators.content_length, validators)
        path = source.url.removeprefix("file://") if isinstance(source, Url) else source.path
        checksum, size = self.memo.file_checksum(path, algorithm)
        return CacheSource(str(source), checksum, size)

    def cache_plan(self, action: Action) -> CachePlan | None:
        """Whether a CLONE would be a cache hit, and what it would send across the link, found without changing
        anything (no checksum is taken, no lock held, no last use recorded); None when it would not go through a
        cache."""
        cache = self.cached_clone(action)
        if cache is None or not isinstance(action, Clone | Link):
            return None
        algorithm = self.driver(cache.host).checksum
        source = action.source
        if isinstance(source, Url) and source.scheme != "file":
            known = self.cache_source(source, algorithm)
            checksum, size = known.checksum, known.size
        else:
            path = source.url.removeprefix("file://") if isinstance(source, Url) else source.path
            checksum = self.memo.known_file_checksum(path, algorithm)
            size_, extents = local_extents(path)
            size = size_ if extents is None else data_bytes(extents)
        listing = cache.listing(budget_rule(self.home, cache.host))
        key = entry_key(checksum) if checksum else None
        if key is not None and any(entry.key == key for entry in listing.entries):
            return CachePlan(cache.host.name, key, True, 0)
        bypass = size is not None and size > listing.budget
        return CachePlan(cache.host.name, key, False if key else None, size, bypass)

    def evict(self, cache: HostCache, log: Callable[[str], None], spare: str | None = None) -> None:
        evict_to_budget(cache, budget_rule(self.home, cache.host), log, spare)

    def fill_cache(self, source: Location | Url, name: str, job: Job) -> ActionResult | None:
        """Put `source` into host `name`'s cache, fetching it only if it is not there (a warm); None when the host
        keeps no cache or the image is larger than its budget."""
        host = self.hosts.resolve(name)
        if not self.caches(host):
            return None
        return _Builtin(self, job, False, self.driver(host)).through_cache(source, self.host_cache(name), None)

    def run(self, action: Action, job: Job, vm_id: int | None, resume_partial: bool = False) -> ActionResult:
        problems = self.check(action)
        if problems:
            raise OperationError("; ".join(problems))
        driver = self.driver(self.target(action))
        program = driver.program(action.name)
        if program is not None:
            env = {"HEADNODE_HOME": str(self.home.root), "HEADNODE_VM_ID": "" if vm_id is None else str(vm_id)}
            run_program(program, action.arguments(), job, env)
            return ActionResult(self._made_size(action), detail=f"ran {os.path.basename(program)}")
        if driver.base == "dummy":
            job.log(f"dummy: would {action.name} {' '.join(action.arguments())}")
            return ActionResult(detail="dummy")
        attempt = 1
        while True:  # copies retry inside; this retries the rest (remote commands) when the connection drops
            try:
                return _Builtin(self, job, resume_partial, driver).run(action)
            except ConnectionLost as exc:
                if attempt >= job.retry.attempts:
                    raise GaveUp.after(exc, attempt) from None
                for location in written_paths(action):
                    self.pool.discard(self.hosts.resolve(location.host))
                job.wait_before_retry(attempt, str(exc))
                attempt += 1


class _Builtin:
    """The built-in actions, over endpoints."""

    def __init__(self, transfers: Transfers, job: Job, resume_partial: bool, driver: Driver) -> None:
        self.t = transfers
        self.job = job
        self.resume_partial = resume_partial
        self.checksum = driver.checksum
        self.verify_local = driver.verify_local

    def endpoint(self, name: str) -> Endpoint:
        return self.t.endpoint(name, self.job.log)

    def run(self, action: Action) -> ActionResult:
        handlers: dict[type, Callable[[Any], ActionResult]] = {
            Clone: self.clone,
            Link: self.link,
            MakeSwap: self.mkswap,
            MakeImage: self.mkimage,
            Context: self.context,
            Move: self.move,
            Delete: self.delete,
        }
        return handlers[type(action)](action)

    def _placed(
        self, dest: Endpoint, final: str, make: Callable[[str], ActionResult], streamed: bool = False
    ) -> ActionResult:
        """Make a file under its temporary name, then publish it (a copy checked where it lies) into place; remove
        the temporary on failure. A streamed copy to a host makes its own directory on the way."""
        tmp = part_name(final)
        if dest.local or not streamed:
            dest.makedirs(posixpath.dirname(final))
        try:
            outcome = make(tmp)
            if outcome.check_stored:
                stored = dest.publish(tmp, final, outcome.bytes, self.checksum, outcome.checksum)
                outcome = dataclasses.replace(outcome, checksum=stored, check_stored=False)
            elif not outcome.placed:
                dest.rename(tmp, final)
        except BaseException as exc:
            _discard(dest, tmp, self.job, dropped=isinstance(exc, ConnectionLost | GaveUp))
            raise
        return outcome

    def _copy_file(self, source: Endpoint, path: str, dest: Endpoint, tmp: str, progress) -> Copied:
        """Copy one file; a source written meanwhile fails the copy (grown on a shared file system, the kernel's
        copy stopped at the old size and reported done; overwritten in place, the checksum matched neither)."""
        before = source.identity(path)
        changed = OperationError(f"{path} changed while it was copied: copy it again once nothing writes it")
        try:
            copied = self._copy_bytes(source, path, dest, tmp, progress)
        except OperationError:
            # A checksum or size mismatch is what a changing source looks like from inside the copy: name the cause
            # (unless the source cannot be asked any more, as after a connection that gave up).
            try:
                moved = source.identity(path) != before
            except HeadnodeError:
                moved = False
            if moved:
                raise changed from None
            raise
        if source.identity(path) != before:
            raise changed
        return copied

    def _copy_bytes(self, source: Endpoint, path: str, dest: Endpoint, tmp: str, progress) -> Copied:
        if isinstance(dest, LocalEndpoint) and source.local:
            algorithm = self.checksum if self.verify_local else None
            try:
                return kernel_copy(self.job, path, dest.create(tmp), progress, algorithm)
            except OSError as exc:  # the kernel's copy names no file (ENOSPC printed 'No space left on device: ')
                raise OperationError(f"cannot copy {path} to {tmp}: {exc.strerror}") from None
        copied = self._copy_extents(source, path, dest, tmp, progress)
        if copied is not None:
            return copied
        return copy_stream(
            self.job,
            lambda offset: source.open_reader(path, offset, self.checksum),
            dest,
            tmp,
            progress,
            self.checksum,
            lambda: source.checksum(path, self.checksum),
            source.reset,
            self.resume_partial,
        )

    def _copy_extents(self, source: Endpoint, path: str, dest: Endpoint, tmp: str, progress) -> Copied | None:
        """A sparse file's data only, where both ends can (None: stream every byte)."""
        if source.local:
            size, extents = local_extents(path)
            if extents is None:
                self.job.log(f"{path}: its file system cannot tell holes from data (no SEEK_DATA): sending every byte")
                return None
            if data_bytes(extents) == size:
                return None

            def open_source(offset: int) -> LocalExtents | ExtentReader | StreamExtents | None:
                return LocalExtents(path, size, extents, offset)

        else:

            def open_source(offset: int) -> LocalExtents | ExtentReader | StreamExtents | None:
                return source.open_extent_reader(path, offset, self.checksum)

        return copy_extents(
            self.job,
            open_source,
            dest,
            tmp,
            progress,
            self.checksum,
            lambda: source.checksum(path, self.checksum),
            source.reset,
            self.resume_partial,
        )

    def _fetch(self, url: str, dest: Endpoint, tmp: str, progress, seen: list[Validators] | None = None) -> Copied:
        """An HTTP body, its zero runs left as holes (engine.transfers.zero_runs); a body of unknown length is
        streamed as it comes. `seen` gets the validators of the first response the copy read."""
        from engine.transfers.http_source import HttpReader

        def opened(offset: int) -> HttpReader:
            reader = HttpReader(url, offset)
            if seen is not None and not seen:
                seen.append(reader.validators)
            return reader

        def open_source(offset: int) -> StreamExtents | None:
            reader = opened(offset)
            if reader.total is None:
                reader.close()
                return None
            return StreamExtents(reader)

        copied = copy_extents(
            self.job, open_source, dest, tmp, progress, self.checksum, None, resume_partial=self.resume_partial
        )
        if copied is not None:
            return copied
        return copy_stream(
            self.job, opened, dest, tmp, progress, self.checksum, None, resume_partial=self.resume_partial
        )

    def _copy_source(
        self, source: Location | Url, dest: Endpoint, tmp: str, seen: list[Validators] | None = None
    ) -> Copied:
        progress = self.job.progress
        if isinstance(source, Url) and source.scheme != "file":
            return self._fetch(source.url, dest, tmp, progress, seen)
        if isinstance(source, Url):
            frontend = self.endpoint(self.t.hosts.frontend_name)
            return self._copy_file(frontend, source.url.removeprefix("file://"), dest, tmp, progress)
        return self._copy_file(self.endpoint(source.host), source.path, dest, tmp, progress)

    def clone(self, action: Clone | Link) -> ActionResult:
        dest = self.endpoint(action.dest.host)
        cache = self.t.cached_clone(action)

        def make(tmp: str) -> ActionResult:
            done = self.through_cache(action.source, cache, tmp, action.dest.path) if cache is not None else None
            return done or copied_result(self._copy_source(action.source, dest, tmp))

        return self._placed(dest, action.dest.path, make, streamed=True)

    def through_cache(
        self, source: Location | Url, cache: HostCache, tmp: str | None, final: str | None = None
    ) -> ActionResult | None:
        """A CLONE through the host's cache into `tmp`, renamed to `final` (engine.transfers.cache.cached_clone),
        or with no `tmp` only into the cache (a warm); None: not cached (larger than the budget). A CLONE asks the
        executor's gathering first: when a fan-out filled the cache for it, it goes on as a hit."""
        gathering = self.t.gathering
        served = gathering.serve(source, cache.host.name, self.job) if gathering and tmp is not None else None
        writer = self.t.cache_writer(cache, self.job.log)

        def fetch(part: str) -> Fetched:
            seen: list[Validators] = []
            copied = self._copy_source(source, writer, part, seen)
            # This machine's kernel copy checksums the data extents it copied (no logical value of a sparse file),
            # a reflink nothing: the cache's key is the file's own checksum, so the copy is read for it here.
            checksum = writer.checksum(part, self.checksum) if writer.local else copied.checksum
            if checksum is None:
                raise OperationError(f"no {self.checksum} checksum of {source} came with its copy")
            sent = copied.size if copied.data_sent is None else copied.data_sent
            validators = seen[0] if seen else None
            if isinstance(source, Url) and validators is not None:
                self.t.memo.remember_url(source.url, validators, checksum)
            return Fetched(copied.size, checksum, sent, copied_result(copied).detail, validators)

        rule = budget_rule(self.t.home, cache.host)
        done = clone_through_cache(
            cache,
            lambda: self.t.cache_source(source, self.checksum),
            tmp,
            fetch,
            self.job,
            lambda usage: rule(usage.free, usage.used),
            lambda key: self.t.evict(cache, self.job.log, key),
            final,
        )
        if done is None:
            return None
        placed = tmp is not None and final is not None
        detail, sent = done.detail, done.sent
        if served is not None and served.ok and done.use in (CacheUse.HIT, CacheUse.WAITED):
            # The bytes came with the fan-out (from the head or a neighbour), the copy out was on the host.
            detail = (
                f"{served.detail}; cache {done.use.value}: {entry_key(done.checksum)} copied from {cache.directory}"
            )
            sent = served.outcome.sent
        return ActionResult(done.size, done.checksum, detail, sent=sent, cache=done.use, placed=placed)

    def link(self, action: Link) -> ActionResult:
        dest = self.endpoint(action.dest.host)
        source = action.source
        if isinstance(source, Location) and dest.local and self.endpoint(source.host).local:

            def make(tmp: str) -> ActionResult:
                dest.remove(tmp)  # a stale temporary from an earlier attempt
                dest.symlink(source.path, tmp)
                return ActionResult(detail=f"symbolic link to {source.path}")

            return self._placed(dest, action.dest.path, make)
        self.job.log("LN: the destination shares no file system with the source; copying")
        return self.clone(action)

    def _formatted(self, dest_location: Location, size_mb: int, command: list[str]) -> ActionResult:
        dest = self.endpoint(dest_location.host)

        def make(tmp: str) -> ActionResult:
            dest.sparse_file(tmp, size_mb * MIB)
            self.job.progress(0, None)
            dest.run([*command, tmp], self.job.cancelled, lambda line: self.job.log(f"{command[0]}: {line}"))
            self.job.progress(size_mb * MIB, size_mb * MIB)
            return ActionResult(size_mb * MIB, detail=" ".join(command))

        return self._placed(dest, dest_location.path, make)

    def mkswap(self, action: MakeSwap) -> ActionResult:
        return self._formatted(action.dest, action.size_mb, ["mkswap"])

    def mkimage(self, action: MakeImage) -> ActionResult:
        return self._formatted(
            action.dest, action.size_mb, ["mkfs", "-t", action.fstype, *MKFS_FLAGS.get(action.fstype, [])]
        )

    def context(self, action: Context) -> ActionResult:
        from engine.transfers.context_iso import build_context_iso

        dest = self.endpoint(action.dest.host)
        frontend = self.endpoint(self.t.hosts.frontend_name)

        def fetch(url: str, path: str) -> None:
            # Into the ISO builder's own scratch directory, the only place it may write.
            scratch = LocalEndpoint(Host("scratch", "shared", os.path.dirname(path), local=True))
            self._placed(scratch, path, lambda tmp: copied_result(self._fetch(url, scratch, tmp, lambda d, t: None)))

        def make(tmp: str) -> ActionResult:
            files = [action.context_file, *action.files]
            if isinstance(dest, LocalEndpoint):
                with dest.create(tmp) as out:
                    build_context_iso(files, out, fetch)
                    size = os.fstat(out.fileno()).st_size
                self.job.progress(size, size)
                return ActionResult(size, detail="ISO built in place")
            with tempfile.TemporaryDirectory(prefix="headnode-iso-", dir=self.t.home.cache) as scratch:
                iso = os.path.join(scratch, "context.iso")
                with open(iso, "xb") as out:
                    build_context_iso(files, out, fetch)
                copied = self._copy_file(frontend, iso, dest, tmp, self.job.progress)
                return copied_result(copied, "ISO built on the front end, copied")

        return self._placed(dest, action.dest.path, make, streamed=True)

    def delete(self, action: Delete) -> ActionResult:
        self.endpoint(action.dest.host).remove(action.dest.path)
        return ActionResult(detail="removed")

    def move(self, action: Move) -> ActionResult:
        source = self.endpoint(action.source.host)
        dest = self.endpoint(action.dest.host)
        kind, _ = source.kind(action.source.path)
        if kind is None:
            raise OperationError(f"MV: {action.source} does not exist")
        if kind == "l" and not (source.local and dest.local):
            target = source.readlink(action.source.path)
            raise OperationError(f"MV: {action.source} is a symbolic link (to {target}); links stay on their machine")
        name = posixpath.basename(action.source.path.rstrip("/"))
        final = action.dest.path
        if (kind == "d" and posixpath.basename(final.rstrip("/")) != name) or (
            kind != "d" and dest.kind(final)[0] == "d"
        ):
            final = posixpath.join(final, name)
        same_place = (source.local and dest.local) or action.source.host == action.dest.host
        if same_place and posixpath.normpath(final) == posixpath.normpath(action.source.path):
            # A host whose VM directory is the front end's (the embedded `local` host): stop and resume move
            # the images onto themselves, which OpenNebula's nfs driver also took as a no-op.
            return ActionResult(detail="already in place")
        existing, _ = dest.kind(final)
        if existing == "d" and dest.tree(final):
            raise OperationError(f"MV: {action.dest.host}:{final} is a directory that already holds files")
        if kind == "d" and existing == "f":
            raise OperationError(f"MV: {action.dest.host}:{final} is a file; will not put a directory there")
        if existing == "d":
            dest.remove(final)
        dest.makedirs(posixpath.dirname(final))
        if same_place:
            try:
                if isinstance(source, LocalEndpoint) and isinstance(dest, LocalEndpoint):
                    os.replace(confined(source.host, action.source.path), confined(dest.host, final))
                else:
                    source.rename(action.source.path, final)
                return ActionResult(detail=f"renamed to {final}")
            except OSError:  # another file system on this machine: copy, then remove
                pass
        if kind == "d":
            outcome = self._placed_tree(source, action.source.path, dest, final)
        elif kind == "l" and dest.local and source.local:
            outcome = self._placed(dest, final, lambda tmp: _relink(source, action.source.path, dest, tmp))
        else:
            outcome = self._placed(
                dest, final, lambda tmp: self._copy_outcome(source, action.source.path, dest, tmp), True
            )
        source.remove(action.source.path)
        return outcome

    def _copy_outcome(self, source: Endpoint, path: str, dest: Endpoint, tmp: str) -> ActionResult:
        return copied_result(self._copy_file(source, path, dest, tmp, self.job.progress))

    def _placed_tree(self, source: Endpoint, root: str, dest: Endpoint, final: str) -> ActionResult:
        """Copy a directory tree under a temporary name, each file verified, then rename it into place."""
        entries = source.tree(root)
        links = {e.path: source.readlink(posixpath.join(root, e.path)) for e in entries if e.kind == "l"}
        if not (source.local and dest.local):
            _portable_links(links, root)
        total = sum(e.size for e in entries if e.kind == "f")
        tmp = part_name(final)
        dest.remove(tmp)
        dest.makedirs(tmp)
        done = 0
        try:
            for entry in entries:
                target = posixpath.join(tmp, entry.path)
                if entry.kind == "d":
                    dest.makedirs(target)
                elif entry.kind == "l":
                    dest.symlink(links[entry.path], target)
                else:
                    base = done
                    copied = self._copy_file(
                        source,
                        posixpath.join(root, entry.path),
                        dest,
                        part_name(target),
                        lambda d, t, b=base: self.job.progress(b + d, total),
                    )
                    if copied.check_stored:
                        dest.publish(part_name(target), target, copied.size, self.checksum, copied.checksum)
                    else:
                        dest.rename(part_name(target), target)
                    done += entry.size
            dest.rename(tmp, final)
        except BaseException as exc:
            _discard(dest, tmp, self.job, dropped=isinstance(exc, ConnectionLost | GaveUp))
            raise
        self.job.progress(total, total)
        return ActionResult(total, detail=f"copied {len(entries)} entries")


def _under(location: Location, root: Location) -> bool:
    path, top = posixpath.normpath(location.path), posixpath.normpath(root.path)
    return location.host == root.host and (path == top or path.startswith(top.rstrip("/") + "/"))


def _portable_links(links: dict[str, str], root: str) -> None:
    """Refuse a tree moving to another machine whose links lead outside it: the link would name another file
    there (on the front end, a `.part` link planted on a host once led a copy onto the front end's files)."""
    for path, target in links.items():
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise OperationError(
                f"MV: {posixpath.join(root, path)} is a symbolic link to {target}, outside the directory being "
                "moved; only links within it move between machines"
            )


def _relink(source: Endpoint, path: str, dest: Endpoint, tmp: str) -> ActionResult:
    dest.symlink(source.readlink(path), tmp)
    return ActionResult(detail="moved a symbolic link")


def _discard(dest: Endpoint, tmp: str, job: Job, dropped: bool) -> None:
    """Remove a temporary file or tree after a failure. After a dropped connection the pooled one may be dead
    without knowing it yet (a request on it waits out its timeout: a 160 MiB `.part` stayed on a host once in 9
    runs), so the removal goes over a fresh connection of its own, as it does when the pooled one fails it (the
    pool is left alone: other transfers may be using it). A `.part` never shadows a destination, so a removal
    that fails is not the line's error, but the log says which file stays."""
    try:
        try:
            (dest.remove_afresh if dropped else dest.remove)(tmp)
        except ConnectionLost:
            if dropped:
                raise
            dest.remove_afresh(tmp)
    except Exception as exc:  # the connection, or the file system: said in the log either way
        job.log(f"could not remove the partial copy {dest.host.name}:{tmp} ({exc}): remove it by hand", True)
