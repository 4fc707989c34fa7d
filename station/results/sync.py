"""Delivery of a station's finished runs from its embedded store to the line database (a
database shared by the stations of a line), through the durable outbox.

A station keeps writing each run to its own store as it goes; when a run has ended, it queues an
outbox entry (kind "results", key `station/run_id`) that names the run. Delivering the entry
copies every row of the run (run, steps, limits, measurements, attributes, artefacts, units,
instruments, the path calibrations it made or used) into the line database in one transaction,
and skips a run the line database already holds: a redelivery after a crash between the insert
and the outbox's acknowledgement changes nothing. While the line database is unreachable (or held
by another session beyond `lock_timeout_s`) the entries wait in the outbox and drain in order.

An ended downtime goes the same way (kind "downtime", key `station/downtime/id`), so that the
line database can set every station's units per hour against the time it could test. It is
known there by station, site, reason and start: a redelivery changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from station.errors import StationError
from station.mes.outbox import Outbox, Sender
from station.results import schema as s
from station.results.migrate import SchemaRefused, prepare
from station.results.store import sqlite_pragmas

RESULTS = "results"  # outbox kind of finished runs bound for the line database
DOWNTIME = "downtime"  # outbox kind of ended downtimes bound for the line database
DEFAULT_LOCK_TIMEOUT_S = 2.0
#: rows keyed by the run and copied as they are (no identity column of their own)
_PLAIN = ("steps", "run_limits", "run_instruments", "units", "genealogy", "limits_overrides")


class LineDatabaseUnavailable(StationError, ConnectionError):
    """The line database could not be reached or stayed locked: deliver later."""


class SyncRejected(StationError, ValueError):
    """The run cannot be delivered as it is (not in the local store, or not finished)."""


def results_key(station_id: str, run_id: str) -> str:
    return f"{station_id}/{run_id}"


def queue_results(outbox: Outbox, station_id: str, run_id: str) -> bool:
    """Queue the finished run `run_id` for the line database (durable before this returns);
    True when it was not queued yet. The rows are read from the local store at delivery."""
    key = results_key(station_id, run_id)
    return outbox.put(RESULTS, key, {"station_id": station_id, "run_id": run_id})


@dataclass(frozen=True)
class Delivered:
    run_id: str
    inserted: bool  # False: the line database already held the run; nothing was written
    rows: int


class LineDatabase:
    """The line database, created or upgraded to the current schema when opened.

    SQLite waits `lock_timeout_s` for another session's lock, PostgreSQL as long for a row or
    table lock, before a delivery gives up (LineDatabaseUnavailable) and is retried later.
    """

    def __init__(self, url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.url = url
        self.lock_timeout_s = lock_timeout_s
        sqlite_file = url.startswith("sqlite")
        self.engine = sa.create_engine(
            url,
            connect_args={"timeout": lock_timeout_s} if sqlite_file else {"connect_timeout": 5},
        )
        if sqlite_file:
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        try:
            prepare(self.engine)
        except SchemaRefused as err:
            self.engine.dispose()
            raise StationError(f"line database {url}: {err}") from None
        except sa.exc.OperationalError as err:
            self.engine.dispose()
            raise LineDatabaseUnavailable(f"line database {url}: {_first_line(err)}") from err

    def __enter__(self) -> LineDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def run_ids(self) -> list[str]:
        """Run ids the line database holds (to reconcile with the stations' stores)."""
        with self.engine.connect() as conn:
            query = sa.select(s.runs.c.run_id).order_by(s.runs.c.run_id)
            return [row[0] for row in conn.execute(query)]


def results_sender(source: sa.Engine, target: LineDatabase) -> Sender:
    """The outbox sender that delivers a queued run from `source` (the station's store) to
    `target` (the line database)."""

    def send(payload: dict[str, Any]) -> Delivered:
        return deliver_run(source, target, str(payload["run_id"]))

    return send


def deliver_run(source: sa.Engine, target: LineDatabase, run_id: str) -> Delivered:
    """Copy run `run_id` and all of its rows into `target` in one transaction, unless it is
    there already. Raises LineDatabaseUnavailable (retry) or SyncRejected (never deliverable)."""
    rows = read_run(source, run_id)
    try:
        with target.engine.begin() as conn:
            _set_lock_timeout(conn, target.lock_timeout_s)
            if conn.execute(sa.select(s.runs.c.run_id).where(s.runs.c.run_id == run_id)).first():
                return Delivered(run_id, False, 0)
            count = _write_run(conn, rows)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
        raise LineDatabaseUnavailable(f"line database: {_first_line(err)}") from err
    return Delivered(run_id, True, count)


def queue_downtime(outbox: Outbox, station_id: str, downtime_id: int) -> bool:
    """Queue the ended downtime `downtime_id` of the station's store for the line database."""
    key = f"{station_id}/downtime/{downtime_id}"
    return outbox.put(DOWNTIME, key, {"station_id": station_id, "downtime_id": downtime_id})


def downtime_sender(source: sa.Engine, target: LineDatabase) -> Sender:
    """The outbox sender that delivers a queued downtime from `source` to `target`."""

    def send(payload: dict[str, Any]) -> bool:
        return deliver_downtime(source, target, int(payload["downtime_id"]))

    return send


def deliver_downtime(source: sa.Engine, target: LineDatabase, downtime_id: int) -> bool:
    """Copy the ended downtime `downtime_id` into `target` unless it is there already (same
    station, site, reason and start); True when it was inserted. Raises
    LineDatabaseUnavailable (retry) or SyncRejected (not in the store, or still open)."""
    d = s.downtime
    with source.connect() as conn:
        row = conn.execute(sa.select(d).where(d.c.id == downtime_id)).mappings().first()
    if row is None or row["ended_at"] is None:
        state = "not in the station's store" if row is None else "still open"
        raise SyncRejected(f"downtime {downtime_id}: {state}")
    try:
        with target.engine.begin() as conn:
            _set_lock_timeout(conn, target.lock_timeout_s)
            same = sa.select(d.c.started_at).where(
                (d.c.station_id == row["station_id"])
                & (d.c.reason == row["reason"])
                & (d.c.site.is_(None) if row["site"] is None else d.c.site == row["site"])
            )
            started = _utc_naive(row["started_at"])
            if any(_utc_naive(seen) == started for (seen,) in conn.execute(same)):
                return False
            conn.execute(d.insert(), [_columns(d, dict(row), drop_id=True)])
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
        raise LineDatabaseUnavailable(f"line database: {_first_line(err)}") from err
    return True


def _set_lock_timeout(conn: sa.Connection, timeout_s: float) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout_s * 1000)}")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not half-way through


def _first_line(err: BaseException) -> str:
    return str(getattr(err, "orig", None) or err).splitlines()[0]


# --- reading a run from the station's store -------------------------------------------------------
@dataclass
class RunRows:
    run: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]  # table name -> rows of the run
    artefacts: list[dict[str, Any]]
    measurements: list[dict[str, Any]]
    attributes: list[dict[str, Any]]
    #: path calibrations the run made, or whose losses corrected its measurements
    calibrations: list[dict[str, Any]]


def read_run(source: sa.Engine, run_id: str) -> RunRows:
    """Every row of run `run_id` in `source`, read in one transaction."""
    with source.connect() as conn:
        run = conn.execute(sa.select(s.runs).where(s.runs.c.run_id == run_id)).mappings().first()
        if run is None:
            raise SyncRejected(f"run {run_id} is not in the station's store")
        if run["ended_at"] is None:
            raise SyncRejected(f"run {run_id} has not ended: only finished runs are delivered")
        tables = {name: _of_run(conn, s.metadata.tables[name], run_id) for name in _PLAIN}
        measurements = _of_run(conn, s.measurements, run_id)
        used = {m["calibration_id"] for m in measurements if m["calibration_id"] is not None}
        table = s.path_calibrations
        calibrations = [
            dict(row)
            for row in conn.execute(
                sa.select(table)
                .where(sa.or_(table.c.run_id == run_id, table.c.id.in_(sorted(used))))
                .order_by(table.c.id)
            ).mappings()
        ]
        return RunRows(
            run=dict(run),
            tables=tables,
            artefacts=_of_run(conn, s.artefacts, run_id),
            measurements=measurements,
            attributes=_of_run(conn, s.attributes, run_id),
            calibrations=calibrations,
        )


def _of_run(conn: sa.Connection, table: sa.Table, run_id: str) -> list[dict[str, Any]]:
    query = sa.select(table).where(table.c.run_id == run_id)
    if "id" in table.c:
        query = query.order_by(table.c.id)
    return [dict(row) for row in conn.execute(query).mappings()]


# --- writing it to the line database --------------------------------------------------------------
def _write_run(conn: sa.Connection, rows: RunRows) -> int:
    run = rows.run
    _ensure_station(conn, run["station_id"], run["site"], run["started_at"])
    conn.execute(s.runs.insert(), [_columns(s.runs, run)])
    count = 1
    for name in _PLAIN:
        if rows.tables[name]:
            table = s.metadata.tables[name]
            conn.execute(table.insert(), [_columns(table, r) for r in rows.tables[name]])
            count += len(rows.tables[name])
    count += _upsert_instruments(conn, run, rows.tables["run_instruments"])
    calibration_ids = _calibrations(conn, rows.calibrations)
    artefact_ids = {a["id"]: _insert_returning_id(conn, s.artefacts, a) for a in rows.artefacts}
    measurements = [
        _columns(
            s.measurements,
            m,
            drop_id=True,
            artefact_id=artefact_ids.get(m["artefact_id"]),
            calibration_id=calibration_ids.get(m["calibration_id"]),
        )
        for m in rows.measurements
    ]
    if measurements:
        conn.execute(s.measurements.insert(), measurements)
    if rows.attributes:
        conn.execute(
            s.attributes.insert(),
            [_columns(s.attributes, a, drop_id=True) for a in rows.attributes],
        )
    return count + len(artefact_ids) + len(measurements) + len(rows.attributes)


def _columns(
    table: sa.Table, row: dict[str, Any], *, drop_id: bool = False, **replace: Any
) -> dict[str, Any]:
    """`row` restricted to `table`'s columns (without its identity `id` when `drop_id`)."""
    values = {k: v for k, v in row.items() if k in table.c and not (drop_id and k == "id")}
    return values | replace


def _insert_returning_id(conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> int:
    inserted = conn.execute(
        table.insert().returning(table.c.id), [_columns(table, row, drop_id=True)]
    )
    return int(inserted.scalar_one())


def _ensure_station(conn: sa.Connection, station_id: str, site: int, at: Any) -> None:
    known = sa.select(s.stations.c.station_id).where(s.stations.c.station_id == station_id)
    if conn.execute(known).first() is None:
        conn.execute(s.stations.insert().values(station_id=station_id, first_run_at=at))
    known_site = sa.select(s.sites.c.site).where(
        (s.sites.c.station_id == station_id) & (s.sites.c.site == site)
    )
    if conn.execute(known_site).first() is None:
        conn.execute(s.sites.insert().values(station_id=station_id, site=site, first_run_at=at))


def _upsert_instruments(
    conn: sa.Connection, run: dict[str, Any], used: Iterable[dict[str, Any]]
) -> int:
    """The line's instrument register: each identity once, with what the newest run saw."""
    table, count = s.instruments, 0
    for row in used:
        identity = (
            (table.c.manufacturer == row["manufacturer"])
            & (table.c.model == row["model"])
            & (table.c.serial_number == row["serial_number"])
        )
        seen = {
            "firmware": row["firmware"],
            "calibration_due": row["calibration_due"],
            "station_id": run["station_id"],
            "role": row["role"],
            "last_run_id": run["run_id"],
            "last_seen_at": run["started_at"],
        }
        known = conn.execute(sa.select(table.c.last_seen_at).where(identity)).first()
        if known is None:
            key = {k: row[k] for k in ("manufacturer", "model", "serial_number")}
            conn.execute(table.insert().values(**key, **seen))
        elif _utc_naive(known[0]) <= _utc_naive(run["started_at"]):
            conn.execute(table.update().where(identity).values(**seen))
        else:
            continue
        count += 1
    return count


def _utc_naive(value: Any) -> Any:
    """Datetimes of SQLite (naive UTC) and PostgreSQL (aware) made comparable."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _calibrations(conn: sa.Connection, calibrations: list[dict[str, Any]]) -> dict[int, int]:
    """Local path-calibration id -> its id in the line database, inserting those not there."""
    table, ids = s.path_calibrations, {}
    for row in calibrations:
        same = sa.and_(
            *(
                table.c[k] == row[k] if row[k] is not None else table.c[k].is_(None)
                for k in ("run_id", "station_id", "site", "path", "path_index")
            ),
            table.c.wavelength_nm == row["wavelength_nm"],
            table.c.attenuation_db.is_(None)
            if row["attenuation_db"] is None
            else table.c.attenuation_db == row["attenuation_db"],
        )
        found = conn.execute(sa.select(table.c.id).where(same)).first()
        ids[row["id"]] = found[0] if found else _insert_returning_id(conn, table, row)
    return ids
