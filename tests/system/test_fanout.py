"""Fan-out to real hosts: each a network namespace with its own sshd on one bridge (tests/system/netns.py), the
image passed from host to host by the hosts' own ssh and tee. Every test is bounded in time and tears its lab down."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.events import EventBus
from engine.home import Home
from engine.service.runs import RunStatus, TransferBoard
from engine.transfers.cache.layout import Sidecar, entry_key
from engine.transfers.checksums import ChecksumProcess
from engine.transfers.fanout.plan import Limits
from engine.transfers.fanout.runner import FanoutResult, Target, fan_out
from engine.transfers.hosts import Hosts
from engine.transfers.progress import ActionFinished, ActionProgress, ActionStarted, RunOutcome
from screens.transfers import action_row, run_row
from tests.conftest import HEADNODE, ROOT
from tests.system.netns import Lab
from tests.system.sshd import SshHost, keygen

pytestmark = pytest.mark.system
MiB = 1 << 20


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cksum(path: Path) -> str:
    checksum = ChecksumProcess("cksum")
    checksum.update(path.read_bytes())
    return checksum.value()


@pytest.fixture
def fanout_lab(tmp_path, monkeypatch):
    """Make a lab: `hosts` sshd hosts (links capped at `mbit`, None: not capped), a home knowing them, an image of
    `size` random bytes; yields a dict. No agent of the admin's: the run starts its own."""
    labs = contextlib.ExitStack()
    made: list[Lab] = []

    def make(hosts: int, mbit: float | None, size: int) -> dict:
        user = tmp_path / "user"
        (user / ".ssh").mkdir(parents=True, mode=0o700)
        key = user / ".ssh/id_ed25519"
        keygen(key)
        lab = labs.enter_context(Lab(tmp_path, hosts, mbit, key.with_suffix(".pub")))
        made.append(lab)
        (user / ".ssh/known_hosts").write_text("".join(h.host_key_line + "\n" for h in lab.members))
        monkeypatch.setenv("HOME", str(user))
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        home = Home(tmp_path / "home").ensure()
        for member in lab.members:
            Hosts(home).create(member.record())
        image = tmp_path / "image.img"
        with open(image, "wb") as out:
            for _ in range(size // MiB):
                out.write(os.urandom(MiB))
        return {"home": home, "lab": lab, "image": image, "checksum": cksum(image)}

    yield make
    labs.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(f"hn{lab.tag}" in listed for lab in made)


def targets(world: dict) -> list[Target]:
    return [Target.of(Hosts(world["home"]).get(m.name)) for m in world["lab"].members]


def entry(world: dict, member: SshHost) -> Path:
    return member.vm_dir / ".headnode-cache" / entry_key(world["checksum"])


def bounded(seconds: float, world: dict, cancel: threading.Event | None = None, **options) -> FanoutResult:
    """fan_out in a thread, cancelled and failed if it takes longer than `seconds`."""
    cancel = cancel or threading.Event()
    found: list = []
    worker = threading.Thread(
        target=lambda: found.append(
            fan_out(
                world["home"],
                str(world["image"]),
                world["checksum"],
                targets(world),
                cancel=cancel,
                source_name=f"head:{world['image']}",
                **options,
            )
        ),
        daemon=True,
    )
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        cancel.set()
        worker.join(30)
        pytest.fail(f"the fan-out took longer than {seconds} s")
    return found[0]


def masters_left(lab: Lab) -> list[str]:
    """ssh ControlMasters a fan-out left to this lab's hosts."""
    found = subprocess.run(["pgrep", "-af", "ControlPersist"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if f"{lab.subnet}." in line]


def kill_host(lab: Lab, index: int) -> None:
    """The host dies: every process in its namespace (its sshd, its sessions, its hop and links) is killed."""
    pids = subprocess.run(["ip", "netns", "pids", lab.namespaces[index + 1]], capture_output=True, text=True).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def test_warm_to_eight_hosts_gives_each_an_identical_verified_copy(fanout_lab):
    world = fanout_lab(8, 200, 16 * MiB)
    bus = EventBus()
    finished: list[ActionFinished] = []
    bus.subscribe(lambda e: finished.append(e) if isinstance(e, ActionFinished) else None)
    board = TransferBoard()  # what the service and the console's Transfers screen keep
    bus.subscribe(board.apply)
    result = bounded(120, world, bus=bus)
    assert result.ok, result.hosts
    source = sha(world["image"])
    for member in world["lab"].members:
        stored = entry(world, member)
        assert sha(stored) == source
        sidecar = Sidecar.from_json(stored.with_name(stored.name + ".json").read_text(), stored.name)
        assert (sidecar.size, sidecar.checksum, sidecar.source) == (
            16 * MiB,
            world["checksum"],
            f"head:{world['image']}",
        )
        assert sorted(os.listdir(stored.parent)) == [f".{stored.name}.lock", stored.name, f"{stored.name}.json"]
    assert sorted(e.line for e in finished) == list(range(1, 9))
    assert all(e.checksum == world["checksum"] and e.outcome is RunOutcome.DONE for e in finished)
    assert [len(p.hosts) for p in result.plan.pipelines] == [8]  # one chain: the head sent it once
    assert [r.fed_by for r in result.hosts.values()] == ["head"] + [m.name for m in world["lab"].members[:-1]]
    assert masters_left(world["lab"]) == []
    run = board.runs[result.run]  # one run, a row per host
    assert (run.state, run.lines_total, run.bytes_done) == (RunStatus.DONE, 8, 8 * 16 * MiB)
    assert run_row(run)[0] == "fan-out 8/8"
    assert [action_row(a)[0] for a in run.actions.values()] == [f" {i + 1} WARM node0{i}" for i in range(8)]

    again = bounded(60, world)
    assert again.ok and all(r.present for r in again.hosts.values())
    assert again.plan.pipelines == ()


def test_a_host_killed_mid_chain_does_not_fail_the_others(fanout_lab):
    """node02 dies while 48 MiB flow at 100 Mbit/s (about 4 s): it alone fails; the hosts after it are re-fed
    from the head, each resuming where its copy stopped, and their copies verify."""
    world = fanout_lab(8, 100, 48 * MiB)
    bus = EventBus()
    killed = threading.Event()

    def watch(event) -> None:
        if isinstance(event, ActionProgress) and event.line == 3 and event.bytes_done > 8 * MiB and not killed.is_set():
            killed.set()
            kill_host(world["lab"], 2)

    bus.subscribe(watch)
    result = bounded(180, world, bus=bus)
    assert killed.is_set()
    hosts = result.hosts
    assert hosts["node02"].outcome is RunOutcome.FAILED and "dropped out" in (hosts["node02"].error or "")
    source = sha(world["image"])
    for member in world["lab"].members:
        if member.name != "node02":
            assert hosts[member.name].outcome is RunOutcome.DONE, hosts[member.name]
            assert sha(entry(world, member)) == source
    assert hosts["node03"].fed_by == "head"
    assert all(hosts[f"node0{i}"].resumed_from > 0 for i in range(3, 8))  # resumed, not sent again from byte 0
    assert hosts["node00"].resumed_from == hosts["node01"].resumed_from == 0
    assert result.rounds == 2


def test_a_host_its_neighbour_cannot_reach_is_fed_by_the_head(fanout_lab):
    """node03's sshd refuses logins from node02: the links are opened before any byte flows, so the plan
    starts a chain at node03 fed by the head, and says so."""
    world = fanout_lab(5, None, 8 * MiB)
    lab = world["lab"]
    refusing, neighbour = lab.members[3], lab.members[2]
    with open(refusing.dir / "sshd_config", "a") as config:
        config.write(f"DenyUsers *@{neighbour.address}\n")
    refusing.process.send_signal(signal.SIGHUP)  # sshd re-executes itself with the new configuration
    time.sleep(1)
    result = bounded(120, world)
    assert result.ok, ({n: r.error for n, r in result.hosts.items() if r.error}, result.notes)
    assert result.hosts["node03"].fed_by == "head"
    assert result.hosts["node04"].fed_by == "node03"
    assert [p.hosts for p in result.plan.pipelines] == [("node00", "node01", "node02"), ("node03", "node04")]
    assert any("node03 cannot be reached from node02" in note and "fed from the head" in note for note in result.notes)
    source = sha(world["image"])
    assert all(sha(entry(world, m)) == source for m in lab.members)


def test_bandwidth_limits_hold_within_ten_percent(fanout_lab):
    """A head limit of 6 MiB/s shared by two chains (3 MiB/s each) and a host limit of 2 MiB/s on node03, which
    holds its whole chain to it: each host stores at its chain's limit, within 10%, measured here by the size of
    each host's part over time (the hosts' files are this machine's) between a fifth and four fifths of it."""
    world = fanout_lab(4, None, 16 * MiB)
    limits = Limits(head=6 * MiB, hosts={"node03": 2 * MiB})
    parts = {m.name: entry(world, m).with_name(f".{entry(world, m).name}.part") for m in world["lab"].members}
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in parts}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            for name, part in parts.items():
                with contextlib.suppress(FileNotFoundError):
                    samples[name].append((time.monotonic(), part.stat().st_size))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = bounded(120, world, limits=limits, head_chains=2, chain_hosts=2)
    finally:
        done.set()
        sampler.join()
    assert result.ok, result.hosts
    assert [p.hosts for p in result.plan.pipelines] == [("node00", "node01"), ("node02", "node03")]
    assert [p.limit for p in result.plan.pipelines] == [3 * MiB, 2 * MiB]
    for name, limit in (("node00", 3 * MiB), ("node01", 3 * MiB), ("node02", 2 * MiB), ("node03", 2 * MiB)):
        middle = [(t, n) for t, n in samples[name] if 16 * MiB // 5 <= n <= 16 * MiB * 4 // 5]
        (t0, b0), (t1, b1) = middle[0], middle[-1]
        rate = (b1 - b0) / (t1 - t0)
        assert abs(rate - limit) / limit < 0.10, (name, rate / MiB)


def test_cache_warm_to_several_hosts_goes_through_chains_and_a_clone_then_hits(fanout_lab, tmp_path):
    """`headnode cache warm IMAGE HOST...` to 4 ssh hosts: the dry run plans one chain and writes nothing; the
    service runs the warm (`headnode transfers` shows it as one run with a line per host) and --json prints its
    events as JSON lines and the outcome last; then a CLONE of the image to each host is a cache hit that sends
    nothing over the link."""
    from engine.language.script import parse_script
    from engine.transfers.executor import Executor

    world = fanout_lab(4, None, 8 * MiB)
    home, lab = world["home"], world["lab"]
    names = [m.name for m in lab.members]
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}

    def headnode(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HEADNODE, *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)

    planned = headnode("cache", "warm", str(world["image"]), *names, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "chain 1: node00 -> node01 -> node02 -> node03 fed by the head" in planned.stdout
    assert "no estimate" in planned.stdout
    assert not any((m.vm_dir / ".headnode-cache").exists() for m in lab.members)  # a dry run writes nothing

    warmed = headnode("cache", "warm", str(world["image"]), *names, "--json")
    assert warmed.returncode == 0, warmed.stderr
    *events, outcome = [json.loads(line) for line in warmed.stdout.splitlines()]
    assert [o["state"] for o in outcome] == ["fetched"] * 4
    finished = [e for e in events if e["event"] == "action_finished"]
    assert sorted(e["line"] for e in finished) == [1, 2, 3, 4]
    assert {e["detail"] for e in finished} >= {"fed by head", "fed by node00"}

    runs = json.loads(headnode("transfers", "--json").stdout)  # the service ran it: one run, a line per host
    fanned = [r for r in runs if r["run"] == events[0]["run"]]
    assert [(line["action"], line["host"], line["state"]) for line in fanned[0]["lines"]] == [
        ("WARM", name, "done") for name in names
    ]

    again = json.loads(headnode("cache", "warm", str(world["image"]), *names, "--dry-run", "--json").stdout)
    assert again["fanout"]["present"] == names and again["fanout"]["chains"] == []

    bus = EventBus()
    details: list[str] = []
    bus.subscribe(lambda e: details.append(e.detail) if isinstance(e, ActionFinished) else None)
    executor = Executor(home, bus)
    try:
        fe = home.config.frontend_name
        for member in lab.members:
            line = f"CLONE {fe}:{world['image']} {member.name}:{member.vm_dir}/1/images/disk.0\n"
            assert executor.submit(parse_script(line, "test")).wait().ok
    finally:
        executor.close()
    assert len(details) == 4 and all("cache hit" in d and "0 B over the link" in d for d in details), details
    assert all(sha(m.vm_dir / "1/images/disk.0") == sha(world["image"]) for m in lab.members)


def head_sent(lab: Lab) -> int:
    """Bytes the head has sent into the lab (its veth's counter)."""
    return int(Path(f"/sys/class/net/hn{lab.tag}h/statistics/tx_bytes").read_text())


def clone_to_each_together(home: Home, bus: EventBus, world: dict) -> None:
    """Submit together to one executor a script per lab host, VM n's a CLONE of the image to the nth host; each
    must succeed within 120 s."""
    from engine.language.script import parse_script
    from engine.transfers.executor import Executor

    fe = home.config.frontend_name
    executor = Executor(home, bus)
    runs = []
    try:
        with executor.together():
            runs = [
                executor.submit(parse_script(f"CLONE {fe}:{world['image']} {m.name}:{m.vm_dir}/{vm}/disk.0\n", "t"), vm)
                for vm, m in enumerate(world["lab"].members, 1)
            ]
        results = [run.wait(120) for run in runs]
    finally:
        for run in runs:
            run.cancel()
        executor.close()
    assert all(r is not None and r.ok for r in results), results


def test_clones_of_one_image_that_four_scripts_run_at_once_are_gathered_into_one_fan_out(fanout_lab):
    """Four scripts submitted together to one executor, each a CLONE of one front-end image to another host: the
    head sends the image about once (its veth's counter, not four times), a fan-out serves every CLONE (their logs
    say so, with the hosts) and each VM's file is a verified copy; the Transfers screen's board shows the fan-out
    as a run with a row per host."""

    size = 16 * MiB
    world = fanout_lab(4, None, size)
    home, lab = world["home"], world["lab"]
    bus = EventBus()
    board = TransferBoard()
    bus.subscribe(board.apply)
    finished: list[ActionFinished] = []
    bus.subscribe(lambda e: finished.append(e) if isinstance(e, ActionFinished) and e.vm else None)
    before = head_sent(lab)
    clone_to_each_together(home, bus, world)
    sent = head_sent(lab) - before
    assert sent < 1.6 * size, f"the head sent {sent / MiB:.1f} MiB for four CLONEs of a {size / MiB:.0f} MiB image"
    for vm, member in enumerate(lab.members, 1):
        assert sha(member.vm_dir / f"{vm}/disk.0") == sha(world["image"])
        log = (home.logs / f"vm-{vm}.log").read_text()
        [served] = [
            line for line in log.splitlines() if "served by the fan-out gather-" in line and "done:" not in line
        ]
        assert all(m.name in served for m in lab.members), served
        assert "cache hit" in log and "fetching it from the head" not in log
    assert len(finished) == 4 and all(e.checksum == world["checksum"] for e in finished)
    [fanned] = [run for name, run in board.runs.items() if name.startswith("gather-")]
    assert (fanned.state, fanned.lines_total) == (RunStatus.DONE, 4)


def test_a_gathered_clone_cancelled_leaves_alone_and_a_late_one_fetches_on_its_own(fanout_lab):
    """Three scripts together, links capped so the fan-out takes a while: the first is cancelled once the fan-out
    has started and ends at once, cancelled; the other two are still served by the fan-out. A fourth CLONE that
    comes once the gathering has started fetches from the head on its own."""
    from engine.language.script import parse_script
    from engine.transfers.executor import Executor

    size = 8 * MiB
    world = fanout_lab(4, 100, size)
    home, lab = world["home"], world["lab"]
    bus = EventBus()
    fe = home.config.frontend_name

    def script(vm: int) -> str:
        member = lab.members[vm - 1]
        return f"CLONE {fe}:{world['image']} {member.name}:{member.vm_dir}/{vm}/disk.0\n"

    fanned = threading.Event()
    bus.subscribe(lambda e: fanned.set() if isinstance(e, ActionStarted) and e.run.startswith("gather-") else None)
    executor = Executor(home, bus)
    runs = []
    try:
        with executor.together():
            runs = [executor.submit(parse_script(script(vm), "t"), vm) for vm in (1, 2, 3)]
        assert fanned.wait(60), "no fan-out started"
        runs[0].cancel()
        cancelled = runs[0].wait(10)
        late = executor.submit(parse_script(script(4), "t"), 4)
        results = [run.wait(120) for run in runs[1:]] + [late.wait(120)]
    finally:
        for run in runs:
            run.cancel()
        executor.close()
    assert cancelled is not None and cancelled.outcome is RunOutcome.CANCELLED, cancelled
    assert all(r is not None and r.ok for r in results), results
    for vm in (2, 3, 4):
        assert sha(lab.members[vm - 1].vm_dir / f"{vm}/disk.0") == sha(world["image"])
    logs = {vm: (home.logs / f"vm-{vm}.log").read_text() for vm in (2, 3, 4)}
    assert all("served by the fan-out gather-" in logs[vm] and "cache hit" in logs[vm] for vm in (2, 3)), logs
    assert "gathering" not in logs[4] and "served by" not in logs[4] and "cache miss" in logs[4], logs[4]


def test_clones_whose_fan_out_failed_fetch_from_the_head_and_their_logs_say_so(fanout_lab):
    """A fan-out that cannot run (here a BWLIMIT that is no rate) fails the gathering, not the deploys: each CLONE
    gathered fetches the image from the head itself, and its log says why."""

    world = fanout_lab(3, None, 4 * MiB)
    lab = world["lab"]
    config = world["home"].config_path
    config.write_text(config.read_text().replace('BWLIMIT = ""', "BWLIMIT = fast", 1))
    home = Home(world["home"].root)
    clone_to_each_together(home, EventBus(), world)
    for vm, member in enumerate(lab.members, 1):
        assert sha(member.vm_dir / f"{vm}/disk.0") == sha(world["image"])
        log = (home.logs / f"vm-{vm}.log").read_text()
        [failed] = [line for line in log.splitlines() if "the fan-out gather-" in line]
        assert f"did not fill {member.name}'s cache" in failed and "BWLIMIT 'fast' is not a rate" in failed, failed
        assert "from the head instead" in failed and "served by" not in log and "cache miss" in log


def test_vm_deploy_of_four_vms_at_once_sends_their_image_through_the_head_about_once(fanout_lab, tmp_path):
    """`headnode vm deploy 0 node00 1 node01 2 node02 3 node03`: the service starts the four deploys together, their
    CLONEs of one image gather into one fan-out (each VM's log says so), the head sends it about once, and each VM
    runs with a verified copy."""
    size = 16 * MiB
    world = fanout_lab(4, None, size)
    home, lab = world["home"], world["lab"]
    template = tmp_path / "vm.tmpl"
    template.write_text(f'NAME = gathered\nDISK = [ SOURCE = "{world["image"]}", TARGET = hda ]\n')
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}

    def headnode(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HEADNODE, *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)

    ids = [headnode("vm", "create", str(template)).stdout.strip() for _ in lab.members]
    before = head_sent(lab)
    deployed = headnode("vm", "deploy", *(x for vm, m in zip(ids, lab.members, strict=True) for x in (vm, m.name)))
    assert deployed.returncode == 0, deployed.stderr
    sent = head_sent(lab) - before
    assert sent < 1.6 * size, f"the head sent {sent / MiB:.1f} MiB for four deploys of a {size / MiB:.0f} MiB image"
    assert sorted(line for line in deployed.stdout.splitlines() if line.startswith("VM ")) == [
        f"VM {vm}: running on {m.name}" for vm, m in zip(ids, lab.members, strict=True)
    ]
    for vm, member in zip(ids, lab.members, strict=True):
        assert sha(member.vm_dir / f"{vm}/images/disk.0") == sha(world["image"])
        assert "served by the fan-out gather-" in headnode("vm", "log", vm).stdout
