"""Engineering overrides of unapproved limits: a characterisation run on limits that are not
approved or not GR&R-released goes ahead only under an engineer's override, recorded in the audit
log once (station.security.changes.record_override) and with every run it covers in the results
store (table limits_overrides, keyed by the run).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from station.events import RunStarted
from station.limits import LimitsFile
from station.results.schema import limits_overrides
from station.security.audit import AuditLog
from station.security.changes import record_override
from station.security.users import User


def record_limits_override(
    log: AuditLog, user: User, limits: LimitsFile, reason: str, unapproved: str
) -> dict[str, Any]:
    """The audit entry of `user`'s override of unapproved `limits` (why they are unapproved)."""
    return record_override(
        log,
        user,
        f"limits:{limits.product.name}",
        reason.strip(),
        kind="limits",
        file=limits.path.name,
        sha256=limits.sha256,
        version=limits.version,
        unapproved=unapproved,
    )


class LimitsOverrideRecorder:
    """Subscriber: records, for every run that starts, that it used unapproved `limits` under
    the engineering override `reason` (table limits_overrides, keyed by the run)."""

    def __init__(self, engine: sa.Engine, limits: LimitsFile, reason: str, unapproved: str) -> None:
        self.engine = engine
        self.limits = limits
        self.reason = reason.strip()
        self.unapproved = unapproved

    def __call__(self, event: object) -> None:
        if isinstance(event, RunStarted) and not event.resumed:
            with self.engine.begin() as conn:
                conn.execute(
                    limits_overrides.insert().values(
                        run_id=event.run_id,
                        reason=self.reason,
                        operator=event.operator,
                        limits_path=str(self.limits.path),
                        limits_sha256=self.limits.sha256,
                        unapproved_reason=self.unapproved,
                        recorded_at=dt.datetime.now(dt.UTC),
                    )
                )


def limits_override(engine: sa.Engine, run_id: str) -> dict[str, object] | None:
    """The limits override recorded with run `run_id`, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(limits_overrides).where(limits_overrides.c.run_id == run_id)
        ).first()
    return None if row is None else dict(row._mapping)
