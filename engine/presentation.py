"""How the CLI and the console say things: one wording for states and outcomes, one convention for sizes (binary
units: B, KiB, MiB, GiB, TiB), rates, durations and times. Both front ends format through these functions only."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.transfers.cache.cached_clone import CachePlan
    from engine.transfers.cache.inventory import CacheReport
    from engine.transfers.host_check import HostReport
    from engine.vms.lifecycle import Preview
    from engine.vms.records import OperationRecord, Vm

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _unit(n: float) -> tuple[int, str]:
    """The binary unit `n` bytes are shown in (under 1024 of it, to 0.1) and its size in bytes."""
    divisor = 1
    for unit in UNITS[:-1]:
        if abs(n) / divisor < 1023.95:
            return divisor, unit
        divisor *= 1024
    return divisor, UNITS[-1]


def _in(n: float, divisor: int, unit: str) -> str:
    return f"{n / divisor:.0f}" if unit == "B" else f"{n / divisor:.1f}"


def size_text(n: float | None) -> str:
    """A size in bytes: `512 B`, `16.0 MiB`, `1.5 GiB`; `?` when it is not known."""
    if n is None:
        return "?"
    divisor, unit = _unit(n)
    return f"{_in(n, divisor, unit)} {unit}"


def progress_text(done: int, total: int | None) -> str:
    """Bytes done of a total, both in the larger's unit: `12.3/100.0 MiB`; `1.5/? MiB` while the total is unknown."""
    divisor, unit = _unit(max(done, total or 0))
    of = "?" if total is None else _in(total, divisor, unit)
    return f"{_in(done, divisor, unit)}/{of} {unit}"


def rate_text(bytes_per_second: float) -> str:
    """A transfer rate: `12.3 MiB/s`."""
    return f"{size_text(bytes_per_second)}/s"


def duration_text(seconds: float, whole: bool = False) -> str:
    """A duration: `0.42 s` (or `5 s` when `whole`, for estimates), `1m05s`, `2h03m`."""
    if seconds < (59.5 if whole else 59.995):
        return f"{seconds:.0f} s" if whole else f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def eta_text(eta: float | None) -> str:
    """Time left, in whole seconds (a guess shows no false precision); empty when not known."""
    return "" if eta is None else duration_text(max(eta, 0.0), whole=True)


def cache_summary(report: CacheReport) -> str:
    """One host's cache in a line: `host01: 3 entries, 1.2 GiB of 25.0 GiB (25% of free space), 40.1 GiB free
    (/srv/vms/.headnode-cache)`; or why it could not be read."""
    listing = report.listing
    off = "" if report.caches else " (not used: the host's driver or budget turns it off)"
    if listing is None:
        return f"{report.host}: cannot read its cache: {report.error}"
    count = len(listing.entries)
    return (
        f"{report.host}: {count} {'entry' if count == 1 else 'entries'}, {size_text(listing.usage)} of "
        f"{size_text(listing.budget)} ({report.budget_rule}), {size_text(listing.free)} free ({listing.directory})"
        + (f", {len(listing.untrusted)} untrusted file(s)" if listing.untrusted else "")
        + off
    )


def age_text(at: float | None, now: float | None = None) -> str:
    """How long ago a moment was, in its largest whole unit: `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`."""
    if not at:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - at))
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds // length} {unit} ago"
    return f"{seconds} s ago"


def time_text(at: float | None) -> str:
    """A moment, in local time: `2026-12-01 21:58:15`; `-` for none."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def clock_text(at: float) -> str:
    """The time of day of a moment today, for a running log: `21:58:15`."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def state_label(vm: Vm) -> str:
    """A VM's state as both front ends show it: `prolog (interrupted)` when the process running it died."""
    return f"{vm.state.value} (interrupted)" if vm.interrupted else vm.state.value


def operation_text(op: OperationRecord) -> str:
    """One line of a VM's operation history: when, what, where, and how it ended."""
    where = f" on {op.host}" if op.host else ""
    failure = f" at line {op.failed_line}: {op.error}" if op.failed else ""
    return f"{time_text(op.started)} {op.op}{where}: {op.outcome}{failure}"


def host_test_lines(report: HostReport) -> list[str]:
    """A host test's full report, a line per finding (the error is reported by the caller)."""
    if not report.reached and report.ok:  # the dummy driver
        return [f"host {report.host}: driver {report.driver}, which only logs what it would do: nothing to reach"]
    out = [f"host {report.host}: driver {report.driver}, reached {report.reached}"]
    if report.round_trip_ms is not None:
        out.append(f"round trip: {report.round_trip_ms:.1f} ms")
    if report.free_bytes is not None:
        out.append(f"free space in the VM directory: {size_text(report.free_bytes)}")
    if report.error:
        return out
    out.append(f"VM directory writable: {'yes' if report.writable else 'no'}")
    return out


def host_test_summary(report: HostReport) -> str:
    """A host test's outcome in a few words (the full report goes to the log)."""
    if not report.ok:
        return f"failed: {report.error}"
    parts = ["ok"]
    if report.free_bytes is not None:
        parts.append(f"{size_text(report.free_bytes)} free")
    if report.round_trip_ms is not None:
        parts.append(f"{report.round_trip_ms:.1f} ms")
    return ", ".join(parts)


def outcome_text(outcome: str, error: str | None) -> str:
    """What to say after an outcome: `: ERROR`, or nothing when the error only repeats it (`cancelled`)."""
    return f": {error}" if error and error != outcome else ""


def preview_lines(preview: Preview) -> list[str]:
    """Every line of the planned script, with what each copy or move moves (and, through a host's image cache,
    whether it is a hit), then the total (which says which lines it leaves out: a download's size is known only
    once it starts) and what crosses the links. The console's confirmations and `vm OP --dry-run` print these."""
    from engine.language.script import Url

    def size(line: Any) -> str:
        moved = preview.source_bytes[line.number]
        if moved is None:
            return "size unknown until it starts" if isinstance(line.action.source, Url) else "size unknown"
        return "renamed in place, nothing copied" if moved == 0 and line.action.name == "MV" else size_text(moved)

    lines = []
    for line in preview.script.lines:
        text = f"{line.number:>2}  {line.action.name} {' '.join(line.action.arguments())}"
        if line.number in preview.source_bytes:
            planned = preview.cache.get(line.number)
            text += f"    ({size(line)}{'; ' + cache_plan_text(planned) if planned else ''})"
        lines.append(text)
    if not lines:
        lines.append("(no image script: nothing to copy or remove)")
    unknown = preview.unknown_lines
    total = f"Bytes to move: {size_text(preview.total_bytes)}"
    if unknown:
        which = ", ".join(str(n) for n in unknown)
        total = (
            f"{total}, and line {which} of unknown size"
            if preview.total_bytes
            else f"Bytes to move: unknown (line {which}: size unknown until it runs)"
        )
    lines.append(total)
    if preview.cache:
        lines.append(f"Bytes over the links: {size_text(preview.link_bytes)} (image caches counted)")
    return lines


def cache_plan_text(plan: CachePlan) -> str:
    """What a CLONE would do through a host's cache: `cache hit on host01: nothing crosses the link`."""
    if plan.hit:
        return f"cache hit on {plan.host}: nothing crosses the link"
    over = "size unknown until it starts" if plan.over_link is None else f"{size_text(plan.over_link)} over the link"
    if plan.bypass:
        return f"larger than {plan.host}'s cache budget: not cached, {over}"
    if plan.hit is None:
        return f"cache on {plan.host}: a hit or not once the deploy takes its checksum; a miss sends {over}"
    return f"cache miss on {plan.host}: {over}, then kept in its cache"
