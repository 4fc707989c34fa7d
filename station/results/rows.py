"""Rows of the results store: the INSERT statements and rows `ResultsStore` makes of the
engine's events, from a step's batch of measurements to the rows a new run starts with.

Measurements are the bulk of a run, so they skip SQLAlchemy's per-row work and go straight
through the DB-API driver: one `executemany` per batch, binding only the optional columns some
row fills. On SQLite (3.38 and later, for `->>`) a large batch in which few columns vary from row
to row (a sweep: one name, lane and outcome; many values and timestamps) goes in as one JSON
array that SQLite unpacks itself, with the shared columns bound once, so Python binds nothing
per row (the costs are at JSON_MAX_VARYING). A small batch, one in which many columns vary, or
one holding a value JSON cannot carry (NaN) goes row by row; on PostgreSQL every batch does.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple

import sqlalchemy as sa

from station.events import MeasurementRecorded, RunStarted, ns_to_datetime
from station.outcome import Outcome
from station.results.schema import artefacts, jumper_matings, measurements

__all__ = [
    "INSTRUMENT_KEY",
    "JSON_BATCH_MIN",
    "JSON_INSERT",
    "JSON_MAX_VARYING",
    "RunStartRows",
    "insert_measurements",
    "json_batch",
    "last_measurement_id",
    "run_start_rows",
    "write_artefacts",
]


_NUMERIC_COLUMNS = (
    "run_id",
    "step",
    "name",
    "lane",
    "attempt",
    "value",
    "outcome",
    "marginal",
    "raw_value",
    "correction_db",
    "die_x",
    "die_y",
    "calibration_id",
    "recorded_at_ns",
)
#: columns most measurements leave NULL: a batch binds them only when some row has a value
_OPTIONAL_COLUMNS = ("lane", "raw_value", "correction_db", "die_x", "die_y", "calibration_id")
_OPTIONAL_GETTERS = {column: operator.attrgetter(column) for column in _OPTIONAL_COLUMNS}


def _field(column: str) -> str:
    """The event field a column comes from: named alike, except the timestamp."""
    return "at_ns" if column == "recorded_at_ns" else column


@functools.cache
def _measurement_insert(
    marker: str, present: tuple[str, ...]
) -> tuple[str, str, Callable[[MeasurementRecorded], tuple[Any, ...]]]:
    """(numeric INSERT, text INSERT, row getter) for a batch whose optional columns `present`
    hold a value somewhere. Rows are built from the events in C (attrgetter), in the writer
    thread, not per event in Python."""
    columns = [c for c in _NUMERIC_COLUMNS if c not in _OPTIONAL_COLUMNS or c in present]
    values = ", ".join([marker] * len(columns))
    text_columns = ["text_value" if c == "value" else c for c in columns]
    return (
        f"INSERT INTO measurements ({', '.join(columns)}) VALUES ({values})",
        f"INSERT INTO measurements ({', '.join(text_columns)}) VALUES ({values})",
        operator.attrgetter(*(_field(c) for c in columns)),
    )


#: columns that are often the same in every row of a step's batch: bound once when they are
_SHARED_CANDIDATES = ("name", "lane", "outcome", "marginal", "attempt", "step", "run_id")
_SHARED_GETTERS = {column: operator.attrgetter(_field(column)) for column in _SHARED_CANDIDATES}
#: below this many rows a batch goes row by row: a JSON statement saves nothing on a few rows
JSON_BATCH_MIN = 64
#: SQLite unpacks a JSON field in ~0.3 us against ~1.9 us to bind a whole 8-column row, so the
#: JSON array pays only while few columns vary from row to row (benchmarks/store_bench.py)
JSON_MAX_VARYING = 3
JSON_INSERT = sqlite3.sqlite_version_info >= (3, 38)  # the ->> operator


@functools.cache
def _measurement_insert_json(
    shared: tuple[str, ...], varying: tuple[str, ...]
) -> tuple[str, Callable[[MeasurementRecorded], tuple[Any, ...]]]:
    """(INSERT, row getter) for a batch sent as one JSON array of its `varying` columns, with
    the `shared` columns bound once as parameters. SQLite unpacks the array itself, so the rows
    cost no per-row binding in Python; the statement text depends only on the column names."""
    unpack = [f"j.value->>{i}" for i in range(len(varying))]
    return (
        f"INSERT INTO measurements ({', '.join(shared + varying)}) "
        f"SELECT {', '.join(['?'] * len(shared) + unpack)} FROM json_each(?) j",
        operator.attrgetter(*(_field(c) for c in varying)),
    )


def json_batch(
    recorded: list[MeasurementRecorded], present: tuple[str, ...]
) -> tuple[str, tuple[Any, ...]] | None:
    """(statement, parameters) inserting the numeric rows `recorded` as one JSON array, or None
    when row-by-row binding is cheaper (many columns vary) or a value cannot travel as JSON
    (NaN, infinity, a type JSON does not know)."""
    columns = [c for c in _NUMERIC_COLUMNS if c not in _OPTIONAL_COLUMNS or c in present]
    varying = [c for c in columns if c not in _SHARED_GETTERS]  # value, timestamp, ...
    shared, shared_values = [], []
    first = recorded[0]
    for column, getter in _SHARED_GETTERS.items():  # the likeliest to vary first
        if column not in columns:
            continue
        if len(varying) > JSON_MAX_VARYING:
            return None
        if len(set(map(getter, recorded))) == 1:  # one pass in C
            value = getter(first)
            shared.append(column)
            shared_values.append(value.value if isinstance(value, Outcome) else value)
        else:
            varying.append(column)
    if len(varying) > JSON_MAX_VARYING:
        return None
    statement, row = _measurement_insert_json(tuple(shared), tuple(varying))
    try:
        payload = json.dumps(list(map(row, recorded)), allow_nan=False)
    except (ValueError, TypeError):
        return None
    return statement, (*shared_values, payload)


def _present_columns(recorded: list[MeasurementRecorded]) -> tuple[str, ...]:
    """The optional columns some event of the batch fills (each a pass in C, ~30 ns a row,
    against ~100 ns a row for binding a NULL)."""
    nones = itertools.repeat(None)
    return tuple(
        column
        for column, getter in _OPTIONAL_GETTERS.items()
        if any(map(operator.is_not, map(getter, recorded), nones))
    )


# Python's sqlite3 binds only exact int, float, str and bytes without a look-up; anything else
# (None, bool, the Outcome enum) goes through its adapter protocol, whose misses cost an
# AttributeError each: 2.4 us of a 5.4 us measurement row. Registered adapters are found first,
# and these three bind exactly what the fallback would have bound (NULL, 0/1, the text value).
sqlite3.register_adapter(type(None), lambda _value: None)
sqlite3.register_adapter(bool, int)
sqlite3.register_adapter(Outcome, str)


def insert_measurements(
    conn: sa.Connection, recorded: list[MeasurementRecorded], marker: str, json_batches: bool
) -> None:
    """Insert the rows straight through the driver (no per-row SQLAlchemy work): numeric values
    into `value`, text values into `text_value`; a large numeric batch as one JSON statement
    where `json_batches`."""
    present = _present_columns(recorded)
    insert_numeric, insert_text, row = _measurement_insert(marker, present)
    text = [m for m in recorded if isinstance(m.value, str)]
    numeric = recorded if not text else [m for m in recorded if not isinstance(m.value, str)]
    batch = None
    if json_batches and len(numeric) >= JSON_BATCH_MIN:
        batch = json_batch(numeric, present)
    cursor = conn.connection.cursor()
    try:
        if batch is not None:
            cursor.execute(*batch)
        elif numeric:
            cursor.executemany(insert_numeric, map(row, numeric))  # type: ignore[arg-type]
        if text:
            cursor.executemany(insert_text, map(row, text))  # type: ignore[arg-type]
    finally:
        cursor.close()


def last_measurement_id(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(measurements.c.id))).scalar() or 0)


def write_artefacts(conn: sa.Connection, blobs: list[dict[str, Any]], first_id: int | None) -> None:
    """Insert the artefacts; link each to the measurements of its step (lane, die, names) that
    this job wrote: one UPDATE per artefact over the new id range, nothing per measurement."""
    m = measurements
    for blob in blobs:
        row = {k: v for k, v in blob.items() if k != "links"}
        insert = artefacts.insert().values(**row).returning(artefacts.c.id)
        artefact_id = conn.execute(insert).scalar_one()
        if first_id is None:
            continue
        link = (
            sa.update(m)
            .where(m.c.id > first_id, m.c.run_id == blob["run_id"], m.c.step == blob["step"])
            .where(m.c.lane.is_not_distinct_from(blob["lane"]))
            .values(artefact_id=artefact_id)
        )
        if blob["links"]:
            link = link.where(m.c.name.in_(blob["links"]))
        if blob["die_x"] is not None and blob["die_y"] is not None:
            link = link.where(m.c.die_x == blob["die_x"], m.c.die_y == blob["die_y"])
        conn.execute(link)


#: the natural key of the station's instrument registry
INSTRUMENT_KEY = ("manufacturer", "model", "serial_number")


class RunStartRows(NamedTuple):
    """What a new run writes when it starts, built from its `RunStarted` event."""

    run: dict[str, Any]  #: the `runs` row, complete = False until the run ends
    station_key: dict[str, Any]  #: the `stations` row, and the key of the `sites` row
    instruments: list[dict[str, Any]]  #: `run_instruments`: what this run used, by role
    registry: list[dict[str, Any]]  #: `instruments` upserts, sorted by INSTRUMENT_KEY
    limits: list[dict[str, Any]]  #: `run_limits`
    parts: list[dict[str, Any]]  #: `genealogy`: the parts the unit is built from
    matings: list[Any]  #: `jumper_matings` upserts, sorted by jumper serial


def run_start_rows(event: RunStarted, upsert_of: Callable[[sa.Table], Any]) -> RunStartRows:
    """The rows of a new run; `upsert_of` is the dialect's `insert` (SQLite or PostgreSQL)."""
    started_at = ns_to_datetime(event.at_ns)
    run_row = {
        "run_id": event.run_id,
        "sequence": event.sequence,
        "product": event.product,
        "dut_serial": event.dut_serial,
        "site": event.site,
        "station_id": event.station_id,
        "operator": event.operator,
        "software_version": event.software_version,
        "mode": event.mode,
        "limits_path": event.limits_path,
        "limits_sha256": event.limits_sha256,
        "calibration_override": event.calibration_override,
        "lot_id": event.lot_id,
        "wafer_id": event.wafer_id,
        "work_order": event.work_order,
        "route_operation": event.route_operation,
        "started_at": started_at,
        "complete": False,
    }
    parts = [
        {"serial": event.dut_serial, "part_role": role, "part_id": part,
         "run_id": event.run_id, "recorded_at": started_at}
        for role, part in event.genealogy
    ]  # fmt: skip
    matings = _mating_upserts(upsert_of=upsert_of, event=event, at=started_at)
    instrument_rows = [
        {
            "run_id": event.run_id,
            "role": i.role,
            "driver": i.driver,
            "resource": i.resource,
            "manufacturer": i.manufacturer,
            "model": i.model,
            "serial_number": i.serial_number,
            "firmware": i.firmware,
            "calibration_due": i.calibration_due,
        }
        for i in event.instruments
    ]
    limit_rows = [
        {
            "run_id": event.run_id,
            "name": lim.name,
            "unit": lim.unit,
            "low_limit": lim.low,
            "high_limit": lim.high,
            "expected": lim.expected,
            "per_lane": lim.per_lane,
            "marginal_band": lim.marginal,
            "spec": lim.spec,
        }
        for lim in event.limits
    ]
    station_key = {"station_id": event.station_id, "first_run_at": started_at}
    registry = sorted(  # one order in every process: concurrent upserts cannot deadlock
        {
            (r["manufacturer"], r["model"], r["serial_number"]): {
                **{k: r[k] for k in ("manufacturer", "model", "serial_number", "firmware")},
                "calibration_due": r["calibration_due"],
                "station_id": event.station_id,
                "role": r["role"],
                "last_run_id": event.run_id,
                "last_seen_at": started_at,
            }
            for r in instrument_rows
        }.items()
    )
    return RunStartRows(
        run=run_row,
        station_key=station_key,
        instruments=instrument_rows,
        registry=[row for _key, row in registry],
        limits=limit_rows,
        parts=parts,
        matings=matings,
    )


def _mating_upserts(upsert_of: Callable[[sa.Table], Any], event: RunStarted, at: Any) -> list[Any]:
    """One mating of each of the run's DUT-side jumpers: a serial seen for the first time
    starts from its configured count, so a swapped jumper starts its own. Sorted by serial:
    concurrent sites' upserts take their row locks in one order and cannot deadlock."""
    statements = []
    for jumper in sorted(event.jumpers, key=lambda j: j.serial):
        statement = upsert_of(jumper_matings).values(
            station_id=event.station_id,
            jumper_serial=jumper.serial,
            site=event.site,
            matings=jumper.mating_count + 1,
            first_seen_at=at,
            last_run_id=event.run_id,
            updated_at=at,
        )
        statements.append(
            statement.on_conflict_do_update(
                index_elements=["station_id", "jumper_serial"],
                set_={
                    "matings": jumper_matings.c.matings + 1,
                    "site": statement.excluded.site,
                    "last_run_id": statement.excluded.last_run_id,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
    return statements
