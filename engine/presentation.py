"""How the CLI and the console say things: one wording for states and outcomes, one convention for sizes."""

from __future__ import annotations

from typing import Any


def state_label(vm: Any) -> str:
    """A VM's state as both front ends show it: `prolog (interrupted)` when the process running it died."""
    return f"{vm.state.value} (interrupted)" if vm.interrupted else vm.state.value


def host_test_summary(report: Any) -> str:
    """A host test's outcome in a few words (the full report goes to the log)."""
    if not report.ok:
        return f"failed: {report.error}"
    parts = ["ok"]
    if report.free_bytes is not None:
        parts.append(f"{report.free_bytes / 1e9:.1f} GB free")
    if report.round_trip_ms is not None:
        parts.append(f"{report.round_trip_ms:.1f} ms")
    return ", ".join(parts)
