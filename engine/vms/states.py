"""A VM's states and how its operations end (engine.vms.lifecycle drives them); a module of its own so the CLI's
parser can name them without loading the lifecycle."""

from __future__ import annotations

from enum import StrEnum


class VmState(StrEnum):
    PENDING = "pending"
    PROLOG = "prolog"
    RUNNING = "running"
    EPILOG = "epilog"
    STOPPED = "stopped"
    MIGRATING = "migrating"
    FAILED = "failed"
    DONE = "done"


class OperationOutcome(StrEnum):
    """How a VM operation ended, or that it is still running (its value is what the database stores)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
