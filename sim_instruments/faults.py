"""Faults a simulated instrument can be told to commit, the way real instruments fail.

A fault is armed for the next matching command (or every one) and disarms itself once used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Fault:
    """One armed fault.

    kind: "delay" (answer late by `seconds`), "no_reply" (swallow the reply), "garble" (corrupt
    the reply), "error" (queue SCPI error `code` instead of acting), "disconnect" (drop the
    connection), "reset" (power-cycle: settings back to the *RST state, error queue emptied, every
    open connection dropped, and no answers for `seconds` of wall time while it boots; SCPI socket
    servers only).
    match: only commands whose header contains this text (case-insensitive); empty matches all.
    count: how many commands it applies to; 0 means every one until cleared.
    """

    kind: str
    seconds: float = 0.0
    code: int = -300
    message: str = "Device-specific error"
    match: str = ""
    count: int = 1


KINDS = frozenset({"delay", "no_reply", "garble", "error", "disconnect", "reset"})


class FaultPlan:
    """Thread-safe list of armed faults for one instrument."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def arm(self, fault: Fault) -> None:
        if fault.kind not in KINDS:
            raise ValueError(f"fault kind {fault.kind!r} is not one of {sorted(KINDS)}")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, command: str) -> Fault | None:
        """The fault that applies to `command`, consuming one use of it."""
        header = command.upper()
        with self._lock:
            for fault in self._faults:
                if fault.match.upper() in header:
                    if fault.count == 1:
                        self._faults.remove(fault)
                    elif fault.count > 1:
                        fault.count -= 1
                    return fault
        return None
