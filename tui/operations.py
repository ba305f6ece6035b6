"""Engine operations that more than one screen starts: testing hosts (with the offer to record an unknown key) and
recovering a VM. They run on the app's worker path and report through notifications and the Log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.events import Level, LogEvent
from engine.presentation import host_test_lines, host_test_summary
from tui.widgets.confirm import ConfirmScreen


def tested_text(tested: Any | None) -> str:
    """A host test's outcome in a few words (the full report goes to the Log)."""
    if tested is None:
        return ""
    if isinstance(tested, str):
        return tested
    return host_test_summary(tested)


def test_hosts(app: Any, names: list[str], then: Callable[[], object], accept_new_key: bool = False) -> None:
    """Test each host as `headnode host test` does, on worker threads; the reports land in app.host_reports and
    in the Log, and `then()` runs after each. A host whose key is not known yet is offered for acceptance (as
    `host test --accept-new-key`), with its fingerprint, unless the console is read-only."""
    from engine.transfers.host_check import check_host

    for name in names:
        app.host_reports[name] = "testing…"

        def done(report: Any, name: str = name) -> None:
            app.host_reports[name] = report
            app.bus.publish(
                LogEvent("; ".join(host_test_lines(report)), Level.INFO if report.ok else Level.ERROR, "host")
            )
            if report.ok:
                app.notify(f"host {name}: {tested_text(report)}")
            elif report.key_unknown and not app.read_only:
                offer_key(app, name, report.error, then)
            then()

        def failed(name: str = name) -> None:
            app.host_reports[name] = "failed (see Log)"
            then()

        def test(name: str = name) -> Any:
            return check_host(app.home, app.hosts.resolve(name), accept_new_key=accept_new_key)

        app.run_engine(f"test host {name}", test, then=done, otherwise=failed)


def offer_key(app: Any, name: str, error: str, then: Callable[[], object]) -> None:
    """Ask whether to record an unknown host key; yes tests the host again, accepting it."""

    def answer(yes: bool | None) -> None:
        if yes:
            test_hosts(app, [name], then, accept_new_key=True)

    app.push_screen(
        ConfirmScreen(
            f"Accept the key of host {name}?",
            [error, "Accept it only if that fingerprint is the host's (ask its console or its admin)."],
            "Accept key",
        ),
        answer,
    )


def recover_vm(app: Any, vm_id: int, retry: bool) -> None:
    """`vm recover ID --retry|--delete` on a worker thread; the VM shows busy at once."""
    app.run_engine(
        f"recover VM {vm_id}",
        app.vms.recover,
        vm_id,
        retry=retry,
        delete=not retry,
        then=lambda vm: app.notify(f"VM {vm.id} recovered: {vm.state.value}"),
        otherwise=app.home_changed,
    )
    app.home_changed()
