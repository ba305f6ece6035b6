"""Events cross the service's socket as JSON and come back as the engine's own objects, enums included."""

from __future__ import annotations

import json

from engine.service.protocol import event_from_wire, event_to_wire
from engine.transfers.progress import ActionFinished, RunOutcome, ScriptFinished
from engine.vms.records import VmChanged
from engine.vms.states import VmState


def through_the_wire(event: object) -> object:
    wire = json.loads(json.dumps(event_to_wire(event)))
    return event_from_wire(wire)


def test_outcomes_and_states_come_back_as_enums() -> None:
    finished = through_the_wire(ScriptFinished("r1", 3, RunOutcome.CANCELLED, 2, "cancelled", 1.5, at=10.0))
    assert finished == ScriptFinished("r1", 3, RunOutcome.CANCELLED, 2, "cancelled", 1.5, at=10.0)
    assert finished.outcome is RunOutcome.CANCELLED
    line = through_the_wire(ActionFinished("r1", 3, 1, "CLONE", RunOutcome.DONE, 42, 0.5, at=10.0))
    assert line.outcome is RunOutcome.DONE
    assert through_the_wire(VmChanged(3, VmState.PROLOG, at=10.0)).state is VmState.PROLOG


def test_an_outcome_this_version_does_not_know_is_no_event() -> None:
    wire = {**event_to_wire(ScriptFinished("r1", 3, RunOutcome.DONE)), "outcome": "paused"}
    assert event_from_wire(wire) is None
