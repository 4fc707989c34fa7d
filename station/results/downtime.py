"""Station downtime with reasons: when a station (or one of its sites) could not test, and why,
from a small fixed vocabulary, so that units per hour can be read against the time available.

A downtime is open from `downtime_start` until `downtime_end`. Starting one that is already
open (same station, site and reason) returns the open one: a watchdog may report a condition
every time it sees it. Rows live in the results database (table `downtime`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from station.errors import StationError
from station.results.schema import downtime

#: reason code -> what it covers
REASONS: dict[str, str] = {
    "locked": "the station is locked (golden-unit check out of limits, SPC rule) until unlocked",
    "mes_down": "the MES cannot be reached or refuses check-ins: no new unit may start",
    "db_down": "the results database cannot be written: nothing may be tested",
    "instrument_fault": "an instrument failed, is being restarted or is away for repair",
    "calibration": "path calibration, golden-unit check or instrument calibration under way",
    "no_material": "no units to test (the station is starved)",
    "maintenance": "planned work: cleaning, jumper replacement, software or fixture changes",
}


class DowntimeError(StationError, ValueError):
    """A downtime record that cannot be written as asked."""


@dataclass(frozen=True)
class Downtime:
    id: int
    station_id: str
    site: int | None  # None: the whole station
    reason: str
    detail: str
    started_at: dt.datetime
    ended_at: dt.datetime | None  # None: still down
    recorded_by: str


def _now(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    if at.tzinfo is None:
        raise DowntimeError(f"downtime time {at.isoformat()}: give a time zone (UTC)")
    return at.astimezone(dt.UTC)


def _check_reason(reason: str) -> None:
    if reason not in REASONS:
        raise DowntimeError(f"downtime reason {reason!r} is not one of {', '.join(REASONS)}")


def _open(station_id: str, site: int | None, reason: str | None) -> list[sa.ColumnElement[bool]]:
    conditions = [downtime.c.station_id == station_id, downtime.c.ended_at.is_(None)]
    if site is not None:
        conditions.append(downtime.c.site == site)
    if reason is not None:
        conditions.append(downtime.c.reason == reason)
    return conditions


def downtime_start(
    engine: sa.Engine,
    station_id: str,
    reason: str,
    detail: str,
    recorded_by: str,
    *,
    site: int | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Record that `station_id` (or its `site`) is down for `reason` from `at` (now); returns
    the downtime's id, that of the open one when the same downtime is open already."""
    _check_reason(reason)
    if not station_id.strip():
        raise DowntimeError("downtime station_id '': name the station")
    if not recorded_by.strip():
        raise DowntimeError("downtime recorded_by '': name who or what records it")
    started = _now(at)
    with engine.begin() as conn:
        same = [*_open(station_id, None, reason), downtime.c.site.is_not_distinct_from(site)]
        found = conn.execute(sa.select(downtime.c.id).where(*same)).scalar()
        if found is not None:
            return int(found)
        row = {
            "station_id": station_id,
            "site": site,
            "reason": reason,
            "detail": detail,
            "started_at": started,
            "recorded_by": recorded_by,
        }
        inserted = conn.execute(downtime.insert().values(**row).returning(downtime.c.id))
        return int(inserted.scalar_one())


def downtime_end(
    engine: sa.Engine,
    station_id: str,
    *,
    site: int | None = None,
    reason: str | None = None,
    at: dt.datetime | None = None,
) -> list[int]:
    """End the open downtimes of `station_id` at `at` (now): all of them, or those of `site`
    and/or `reason`. Returns the ids ended (none when nothing was open)."""
    if reason is not None:
        _check_reason(reason)
    ended = _now(at)
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(downtime.c.id, downtime.c.started_at).where(*_open(station_id, site, reason))
        ).all()
        for row in rows:
            started = pd.Timestamp(row.started_at)
            started = started.tz_localize("UTC") if started.tzinfo is None else started
            if started > ended:
                raise DowntimeError(
                    f"downtime {row.id} of {station_id}: end {ended.isoformat()} is before its "
                    f"start {started.isoformat()}"
                )
        ids = [int(row.id) for row in rows]
        if ids:
            conn.execute(downtime.update().where(downtime.c.id.in_(ids)).values(ended_at=ended))
    return ids


DOWNTIME_COLUMNS = (
    "id",
    "station_id",
    "site",
    "reason",
    "detail",
    "started_at",
    "ended_at",
    "recorded_by",
)


def downtime_frame(conn: sa.Connection, station_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Downtimes (of `station_ids`, or of every station), oldest first; UTC times, `site` and
    `ended_at` empty where the whole station is down or the downtime is still open."""
    query = sa.select(*(downtime.c[c] for c in DOWNTIME_COLUMNS))
    if station_ids is not None:
        query = query.where(downtime.c.station_id.in_(list(station_ids)))
    result = conn.execute(query.order_by(downtime.c.started_at, downtime.c.id))
    frame = pd.DataFrame.from_records(result.fetchall(), columns=list(DOWNTIME_COLUMNS))
    for column in ("started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["site"] = frame["site"].astype("Int64")
    return frame


def overlap_s(starts_s: np.ndarray, ends_s: np.ndarray, window: tuple[float, float]) -> float:
    """Seconds of `window` (start, end; epoch seconds) covered by any of the intervals
    [starts_s[i], ends_s[i]] (epoch seconds, shape (n,); NaN end: still open): overlapping
    downtimes (a lock during an MES outage) count once."""
    low, high = window
    if len(starts_s) == 0 or high <= low:
        return 0.0
    ends = np.where(np.isnan(ends_s), high, ends_s)
    starts = np.clip(starts_s, low, high)
    ends = np.clip(ends, low, high)
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    # a new stretch starts where an interval begins after everything before it has ended
    reach = np.concatenate(([low], ends[:-1]))
    covered = np.clip(ends - np.maximum(starts, reach), 0.0, None)
    return float(covered.sum())
