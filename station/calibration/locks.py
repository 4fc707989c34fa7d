"""Station locks and engineering overrides, recorded in the results store: a golden-unit run
outside its limits locks the station and every later run is refused until an engineer unlocks it
(recorded); a characterisation run on unapproved limits records its override with the run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from station.errors import StationError
from station.events import RunStarted
from station.limits import LimitsFile
from station.results.schema import limits_overrides, station_locks
from station.results.store import database_url


class StationLocked(StationError):
    """The station is locked by a golden-unit check until an engineer unlocks it."""


@dataclass(frozen=True)
class Lock:
    id: int
    station_id: str
    site: int
    reason: str
    run_id: str
    locked_at: dt.datetime


def read_only(target: str | Path) -> sa.Engine | None:
    """An engine on the results database at `target` for reading station records, or None when
    it cannot hold any: a SQLite file that is not there (and looking must not create it)."""
    url = database_url(target)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as err:
        raise StationError(f"{url}: cannot open the results database: {err}") from err


def lock_station(engine: sa.Engine, station_id: str, site: int, reason: str, run_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            station_locks.insert().values(
                station_id=station_id,
                site=site,
                reason=reason,
                run_id=run_id,
                locked_at=dt.datetime.now(dt.UTC),
            )
        )


def active_locks(engine: sa.Engine, station_id: str) -> list[Lock]:
    """The station's locks no engineer has lifted, oldest first."""
    query = (
        sa.select(
            station_locks.c.id,
            station_locks.c.station_id,
            station_locks.c.site,
            station_locks.c.reason,
            station_locks.c.run_id,
            station_locks.c.locked_at,
        )
        .where(station_locks.c.station_id == station_id, station_locks.c.unlocked_at.is_(None))
        .order_by(station_locks.c.id)
    )
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(station_locks.name):
            return []  # a database older than the table has no locks
        return [Lock(*row[:5], _utc(row[5])) for row in conn.execute(query)]


def _utc(when: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back naive: they were written in UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def check_unlocked(target: str | Path, station_id: str) -> None:
    """Refuse (StationLocked, one line) when the station has an active lock in `target`."""
    engine = read_only(target)
    if engine is None:
        return
    try:
        locks = active_locks(engine, station_id)
    except sa.exc.SQLAlchemyError as err:
        raise StationError(f"{engine.url}: cannot read station locks: {err}") from err
    finally:
        engine.dispose()
    if locks:
        lock = locks[-1]
        raise StationLocked(
            f"station {station_id} is locked since {lock.locked_at:%Y-%m-%d %H:%M} UTC: "
            f"{lock.reason} (golden run {lock.run_id}); an engineer must run "
            "`station unlock --by <name> --reason <text>`"
        )


def unlock_station(engine: sa.Engine, station_id: str, by: str, reason: str) -> list[Lock]:
    """Lift every active lock of the station, recording who and why; returns them."""
    if not by.strip() or not reason.strip():
        raise StationError("unlocking needs the engineer's name and a reason")
    locks = active_locks(engine, station_id)
    if locks:
        with engine.begin() as conn:
            conn.execute(
                station_locks.update()
                .where(station_locks.c.id.in_([lock.id for lock in locks]))
                .values(
                    unlocked_at=dt.datetime.now(dt.UTC),
                    unlocked_by=by.strip(),
                    unlock_reason=reason.strip(),
                )
            )
    return locks


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
