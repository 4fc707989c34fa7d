"""Golden-unit offsets of a station: a golden run within its limits becomes a new offsets version
(per station, site, measurement and lane) that later runs on the station apply; a golden run
outside its limits locks the station instead, in the audit log (station.security.lock), where
every admission check looks and only an engineer unlocks it.

A golden limits file names, in `[offsets]`, which of its figures correct which product
measurement (`station_tx_power_offset = "tx_average_power"`). A figure is the station's reading of
the golden unit minus the unit's reference value, so later runs record `value - offset`; the
engine applies it like a path loss (`StationConfig.with_offsets`, `StepContext.measure`).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from station.errors import StationError
from station.events import MeasurementRecorded, RunEnded, RunStarted
from station.limits import LimitsFile
from station.outcome import Outcome
from station.results.schema import station_offsets
from station.results.store import read_only
from station.security.audit import DEFAULT_AUDIT, AuditLog
from station.security.files import beside_database
from station.security.lock import lock
from station.security.users import SYSTEM_ROLE

#: site -> (measurement, lane) -> offset (dB), as `StationConfig.with_offsets` takes them
SiteOffsets = dict[int, dict[tuple[str, int | None], float]]
GOLDEN_ACTOR = "golden"  # the audit actor of a lock a golden-unit check sets
GOLDEN_SEQUENCE = "golden"  # sequences/golden.py: the golden-unit check


def load_offsets(target: str | Path, station_id: str) -> SiteOffsets:
    """The newest offsets version of every site of `station_id` (none where no golden run has
    passed, or the database does not exist yet)."""
    engine = read_only(target)
    if engine is None:
        return {}
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(station_offsets.name):
                return {}
            newest = (
                sa.select(station_offsets.c.site, sa.func.max(station_offsets.c.version).label("v"))
                .where(station_offsets.c.station_id == station_id)
                .group_by(station_offsets.c.site)
                .subquery()
            )
            rows = conn.execute(
                sa.select(
                    station_offsets.c.site,
                    station_offsets.c.measurement,
                    station_offsets.c.lane,
                    station_offsets.c.offset_db,
                )
                .join(
                    newest,
                    (station_offsets.c.site == newest.c.site)
                    & (station_offsets.c.version == newest.c.v),
                )
                .where(station_offsets.c.station_id == station_id)
            ).all()
    except sa.exc.SQLAlchemyError as err:
        raise StationError(f"{engine.url}: cannot read station offsets: {err}") from err
    finally:
        engine.dispose()
    offsets: SiteOffsets = {}
    for site, measurement, lane, offset_db in rows:
        offsets.setdefault(site, {})[(measurement, lane)] = offset_db
    return offsets


def offsets_history(engine: sa.Engine, station_id: str) -> pd.DataFrame:
    """Every offsets version of the station, one row per site, version, measurement and lane."""
    query = (
        sa.select(station_offsets)
        .where(station_offsets.c.station_id == station_id)
        .order_by(
            station_offsets.c.site,
            station_offsets.c.version,
            station_offsets.c.measurement,
            station_offsets.c.lane,
        )
    )
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all())


@dataclass
class _GoldenRun:
    started: RunStarted
    figures: list[MeasurementRecorded] = field(default_factory=list)


class GoldenOffsetsWriter:
    """Subscriber: turns the golden runs on the bus into offsets versions in the results
    database at `engine` (the store's), per the `[offsets]` table of `limits`, or into station
    locks in the audit `log` (default: the log beside that database).

    PASS: a new version of the site's offsets (every figure of the table). FAIL with a figure
    outside its limits: the station is locked. Anything else (ERROR, ABORTED, a FAIL of the
    unit's identity or power-up) changes neither: the station could not check itself.
    """

    def __init__(self, engine: sa.Engine, limits: LimitsFile, log: AuditLog | None = None) -> None:
        if not limits.offsets:
            raise StationError(f"{limits.path.name} has no [offsets] table: not a golden file")
        self.engine = engine
        self.limits = limits
        self.log = log or _log_beside(engine)
        self.versions: list[tuple[str, int, int]] = []  # (station, site, version) written
        self.locked: list[tuple[str, int, str]] = []  # (station, site, reason)
        self.failure: str | None = None
        self._runs: dict[str, _GoldenRun] = {}
        self._lock = threading.Lock()  # sites' runs end on their own threads

    def __call__(self, event: object) -> None:
        if isinstance(event, MeasurementRecorded):
            run = self._runs.get(event.run_id)
            if run is not None and event.name in self.limits.offsets:
                run.figures.append(event)
        elif isinstance(event, RunStarted):
            self._runs[event.run_id] = _GoldenRun(event)
        elif isinstance(event, RunEnded):
            run = self._runs.pop(event.run_id, None)
            if run is not None:
                try:
                    with self._lock:
                        self._conclude(run, event.outcome)
                except (sa.exc.SQLAlchemyError, OSError, StationError) as err:
                    self.failure = f"run {event.run_id}: {str(err).splitlines()[0]}"

    def _conclude(self, run: _GoldenRun, outcome: Outcome) -> None:
        started = run.started
        out = [m for m in run.figures if m.outcome == Outcome.FAIL]
        if outcome == Outcome.FAIL and out:
            self._lock_station(started, out)
            return
        if outcome != Outcome.PASS or not run.figures:
            return
        latest: dict[tuple[str, int | None], MeasurementRecorded] = {}
        for m in run.figures:  # a retried step's last attempt stands
            latest[(m.name, m.lane)] = m
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            version = 1 + int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(station_offsets.c.version), 0)).where(
                        station_offsets.c.station_id == started.station_id,
                        station_offsets.c.site == started.site,
                    )
                ).scalar_one()
            )
            conn.execute(
                station_offsets.insert(),
                [
                    {
                        "station_id": started.station_id,
                        "site": started.site,
                        "version": version,
                        "measurement": self.limits.offsets[m.name],
                        "lane": m.lane,
                        "offset_db": float(m.value),  # type: ignore[arg-type]
                        "source": m.name,
                        "golden_run_id": started.run_id,
                        "golden_serial": started.dut_serial,
                        "created_at": now,
                    }
                    for m in latest.values()
                ],
            )
        self.versions.append((started.station_id, started.site, version))

    def _lock_station(self, started: RunStarted, out: list[MeasurementRecorded]) -> None:
        """Lock the station in the audit log, naming the run and every figure out of bounds."""
        worst = max(out, key=lambda m: abs(float(m.value)))  # type: ignore[arg-type]
        reason = (
            f"golden unit {started.dut_serial}: {len(out)} station figure(s) outside their "
            f"limits, worst {worst.name} lane {worst.lane} = {float(worst.value):+.3f} dB"  # type: ignore[arg-type]
        )
        lock(
            self.log,
            started.station_id,
            reason,
            actor=GOLDEN_ACTOR,
            role=SYSTEM_ROLE,
            run_id=started.run_id,
            site=started.site,
            golden_serial=started.dut_serial,
            limits_sha256=self.limits.sha256,
            out_of_bounds=[_bounds(self.limits, m) for m in out],
        )
        self.locked.append((started.station_id, started.site, reason))


def _bounds(limits: LimitsFile, m: MeasurementRecorded) -> dict[str, object]:
    limit = limits.limits[m.name]
    return {
        "measurement": m.name,
        "lane": m.lane,
        "value": float(m.value),  # type: ignore[arg-type]
        "low": limit.low,
        "high": limit.high,
    }


def _log_beside(engine: sa.Engine) -> AuditLog:
    """The audit log beside the database `engine` is on (see station.security.files)."""
    return AuditLog(
        beside_database(engine.url.render_as_string(hide_password=False)) / DEFAULT_AUDIT
    )

