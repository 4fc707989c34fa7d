"""The production lock of a station, kept in the audit log itself: a station is locked when its
last lock or unlock entry is a lock. SPC rule violations on golden-unit results and a golden-unit
run outside its limits lock it; an engineer unlocks it with a reason. Both are audit entries, so
the log alone tells the story (and every admission check reads the same log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from station.analysis.spc import RULE_TEXT, ImrLimits, western_electric
from station.errors import InputError, StationError
from station.results.store import ResultsStore
from station.security.audit import AuditLog
from station.security.users import SYSTEM_ROLE, User, require


class StationLocked(StationError, PermissionError):
    """Production is locked on this station until an engineer unlocks it."""


@dataclass(frozen=True)
class LockState:
    locked: bool
    seq: int | None  # the audit entry that set this state
    reason: str | None


def subject(station_id: str) -> str:
    return f"station:{station_id}"


def lock_state(log: AuditLog, station_id: str) -> LockState:
    if not log.path.exists():
        return LockState(False, None, None)
    last = None
    for entry in log.entries():
        if entry["subject"] == subject(station_id) and entry["action"] in ("lock", "unlock"):
            last = entry
    if last is None:
        return LockState(False, None, None)
    return LockState(last["action"] == "lock", last["seq"], last["details"].get("reason"))


def require_unlocked(log: AuditLog, station_id: str) -> None:
    """Refuse production on a locked station."""
    state = lock_state(log, station_id)
    if state.locked:
        raise StationLocked(
            f"station {station_id} is locked (audit entry {state.seq}: {state.reason});"
            " an engineer must unlock it (`station audit unlock`)"
        )


def lock(
    log: AuditLog, station_id: str, reason: str, *, actor: str, role: str, **details: Any
) -> dict[str, Any]:
    return log.append(
        actor=actor,
        role=role,
        action="lock",
        subject=subject(station_id),
        details={"reason": reason, **details},
    )


def unlock(log: AuditLog, station_id: str, user: User, reason: str) -> dict[str, Any]:
    """An engineer lifts the lock, saying why (the cause found and fixed)."""
    require(user, "unlock")
    if not reason.strip():
        raise InputError("--reason", "reason", reason, "an unlock needs a reason")
    state = lock_state(log, station_id)
    if not state.locked:
        raise StationError(f"station {station_id} is not locked")
    return log.append(
        actor=user.login,
        role=user.role,
        action="unlock",
        subject=subject(station_id),
        details={"reason": reason, "lock_seq": state.seq},
    )


def spc_check(
    log: AuditLog,
    station_id: str,
    parameter: str,
    values: np.ndarray,
    limits: ImrLimits,
    run_ids: list[str] | None = None,
) -> dict[str, Any] | None:
    """Judge the newest point of `parameter`'s series (oldest first) against `limits`; a rule it
    violates locks the station. Returns the lock entry, or None when the point is in control
    or the station is already locked."""
    values = np.asarray(values, dtype=float)
    found = western_electric(values, limits)
    rules = found.at(values.size - 1)
    if not rules or lock_state(log, station_id).locked:
        return None
    text = "; ".join(RULE_TEXT[r] for r in rules)
    return lock(
        log,
        station_id,
        f"SPC {parameter}: {text}",
        actor="spc",
        role=SYSTEM_ROLE,
        parameter=parameter,
        rules=list(rules),
        value=float(values[-1]),
        point=int(values.size - 1),
        run_id=run_ids[-1] if run_ids else None,
        center=limits.center,
        sigma=limits.sigma,
    )


def golden_series(
    store: ResultsStore,
    station_id: str,
    measurement: str,
    *,
    lane: int | None = None,
    sequence: str = "golden",
) -> tuple[np.ndarray, list[str]]:
    """(values, run ids) of `measurement` in the station's golden-unit runs, oldest first; the
    last attempt of each run counts. A per-lane measurement needs its `lane`."""
    filters: dict[str, object] = {
        "station_id": station_id,
        "sequence": sequence,
        "measurement": measurement,
    }
    if lane is not None:
        filters["lane"] = lane
    rows = store.measurements(**filters)
    if rows.empty:
        return np.empty(0), []
    last = rows.sort_values(["started_at", "attempt"], kind="stable").drop_duplicates(
        "run_id", keep="last"
    )
    return last["value"].to_numpy(dtype=float), last["run_id"].tolist()
