"""Read queries of the results store, each returning a pandas DataFrame that looks the same on
SQLite and PostgreSQL (UTC timestamps, nullable integer lanes and dies, real booleans).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from station.results.downtime import downtime_frame, overlap_s
from station.results.schema import (
    artefacts,
    attributes,
    genealogy,
    instruments,
    jumper_matings,
    measurements,
    run_instruments,
    run_limits,
    runs,
    steps,
)

#: runs() columns, the ones the issue names first
RUN_COLUMNS = (
    "run_id",
    "sequence",
    "product",
    "dut_serial",
    "site",
    "station_id",
    "outcome",
    "started_at",
    "ended_at",
    "complete",
    "lot_id",
    "wafer_id",
    "operator",
    "mode",
    "software_version",
    "limits_path",
    "limits_sha256",
    "calibration_override",
    "error",
    "work_order",
    "route_operation",
)
#: run columns repeated on every tidy measurement row
_RUN_IDENTITY = (
    "run_id",
    "station_id",
    "dut_serial",
    "product",
    "site",
    "lot_id",
    "wafer_id",
    "started_at",
)
MEASUREMENT_COLUMNS = (
    "run_id",
    "station_id",
    "dut_serial",
    "product",
    "site",
    "step",
    "measurement",
    "lane",
    "attempt",
    "value",
    "text_value",
    "unit",
    "low_limit",
    "high_limit",
    "expected",
    "outcome",
    "marginal",
    "raw_value",
    "correction_db",
    "lot_id",
    "wafer_id",
    "die_x",
    "die_y",
    "artefact_id",
    "recorded_at",
    "started_at",
)
_ALIASES = {
    "lot": "lot_id",
    "wafer": "wafer_id",
    "run": "run_id",
    "serial": "dut_serial",
    "station": "station_id",
    "operation": "route_operation",
}
_RUN_EQUALITY = (
    "run_id",
    "sequence",
    "product",
    "dut_serial",
    "site",
    "station_id",
    "lot_id",
    "wafer_id",
    "operator",
    "mode",
    "complete",
    "work_order",
    "route_operation",
)
RUN_FILTERS = (*_RUN_EQUALITY, "run_outcome", "since", "until")
MEASUREMENT_FILTERS = ("measurement", "step", "lane", "outcome")
_INTEGERS = ("site", "lane", "attempt", "die_x", "die_y", "artefact_id")


class FilterError(ValueError):
    """A query filter that names no column or has a value that cannot be used."""


def _match(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    if value is None:
        return column.is_(None)
    if isinstance(value, list | tuple | set | frozenset):
        return column.in_(list(value))
    return column == value


def _bound(key: str, value: Any, *, end: bool, sqlite: bool) -> tuple[dt.datetime, bool]:
    """(UTC datetime, inclusive) of a since/until bound; a bare date covers the whole day."""
    whole_day = (isinstance(value, dt.date) and not isinstance(value, dt.datetime)) or (
        isinstance(value, str) and len(value.strip()) == 10
    )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise FilterError(f"filter {key} = {value!r}: not a date or time ({err})") from None
    if stamp is pd.NaT:
        raise FilterError(f"filter {key} = {value!r}: not a date or time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    inclusive = True
    if end and whole_day:
        stamp, inclusive = stamp + pd.Timedelta(days=1), False
    bound = stamp.to_pydatetime()
    return (bound.replace(tzinfo=None) if sqlite else bound), inclusive  # SQLite keeps UTC text


def _run_conditions(
    filters: dict[str, Any], sqlite: bool, *, measurement_level: bool
) -> tuple[list[sa.ColumnElement[bool]], list[sa.ColumnElement[bool]]]:
    """(conditions on runs, conditions on measurements) of the filters."""
    on_runs: list[sa.ColumnElement[bool]] = []
    on_measurements: list[sa.ColumnElement[bool]] = []
    for raw_key, value in filters.items():
        key = _ALIASES.get(raw_key, raw_key)
        if key == "outcome" and not measurement_level:
            key = "run_outcome"
        if key in _RUN_EQUALITY:
            on_runs.append(_match(runs.c[key], value))
        elif key == "run_outcome":
            on_runs.append(_match(runs.c.outcome, value))
        elif key in ("since", "until"):
            bound, inclusive = _bound(key, value, end=key == "until", sqlite=sqlite)
            column = runs.c.started_at
            if key == "since":
                on_runs.append(column >= bound)
            else:
                on_runs.append(column <= bound if inclusive else column < bound)
        elif measurement_level and key in MEASUREMENT_FILTERS:
            column = measurements.c["name" if key == "measurement" else key]
            on_measurements.append(_match(column, value))
        else:
            known = RUN_FILTERS + (MEASUREMENT_FILTERS if measurement_level else ("outcome",))
            raise FilterError(f"unknown filter {raw_key!r}; filters: {', '.join(known)}")
    return on_runs, on_measurements


def _frame(conn: sa.Connection, query: sa.Select[Any], columns: Iterable[str]) -> pd.DataFrame:
    result = conn.execute(query)
    return pd.DataFrame.from_records(result.fetchall(), columns=list(columns))


def _utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _integers(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _INTEGERS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def _is_sqlite(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite"


def runs_frame(conn: sa.Connection, filters: dict[str, Any]) -> pd.DataFrame:
    on_runs, _ = _run_conditions(filters, _is_sqlite(conn), measurement_level=False)
    query = (
        sa.select(*(runs.c[c] for c in RUN_COLUMNS))
        .where(*on_runs)
        .order_by(runs.c.started_at, runs.c.run_id)
    )
    frame = _utc(_frame(conn, query, RUN_COLUMNS), "started_at", "ended_at")
    frame["complete"] = frame["complete"].astype(bool)
    return _integers(frame)


# measurement columns as fetched, and how each becomes a typed column without per-row Python
_FETCHED = {
    "step": "str",
    "measurement": "str",
    "lane": "Int64",
    "attempt": "Int64",
    "value": "float",
    "text_value": "str",
    "outcome": "outcome",
    "marginal": "bool",
    "raw_value": "float",
    "correction_db": "float",
    "die_x": "Int64",
    "die_y": "Int64",
    "artefact_id": "Int64",
    "recorded_at_ns": "int64",
}


_OUTCOMES = ("PASS", "FAIL", "ERROR", "ABORTED")
# the outcome comes back as its index in _OUTCOMES: small integers instead of a string per row
_OUTCOME_CODE = sa.case(
    *((measurements.c.outcome == text, code) for code, text in enumerate(_OUTCOMES)), else_=-1
)


def _column(values: tuple[Any, ...], kind: str) -> Any:
    if kind == "float":
        return np.array(values, dtype=float)  # None -> NaN
    if kind == "outcome":
        codes = np.array(values, dtype=np.int64)
        return pd.array(np.array(_OUTCOMES, dtype=object), dtype="str").take(codes, allow_fill=True)
    nulls = values.count(None)
    if kind == "Int64":
        if nulls == len(values):
            return pd.array(np.full(len(values), np.nan), dtype="Int64")
        ints = np.array(values, dtype=np.int64 if not nulls else float)  # None -> NaN -> <NA>
        return pd.array(ints, dtype="Int64")
    if kind == "str":
        return pd.array(
            values if nulls < len(values) else np.full(len(values), np.nan), dtype="str"
        )
    return np.array(values, dtype=kind)


def _fetch_columns(
    conn: sa.Connection, query: sa.Select[Any], kinds: dict[str, str]
) -> dict[str, Any]:
    """Typed columns of a large result straight from the driver's tuples (SQLAlchemy's per-row
    processing and pandas' per-cell inference cost more than the database here)."""
    result = conn.execute(query)
    collecting = gc.isenabled()
    gc.disable()  # tens of thousands of fresh tuples would set off collections that find nothing
    try:
        rows = result.cursor.fetchall() if result.cursor is not None else []
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(kinds)
        del rows
    finally:
        result.close()
        if collecting:
            gc.enable()
    return {
        name: _column(values, kind)
        for (name, kind), values in zip(kinds.items(), columns, strict=True)
    }


def measurements_frame(conn: sa.Connection, filters: dict[str, Any]) -> pd.DataFrame:
    on_runs, on_measurements = _run_conditions(filters, _is_sqlite(conn), measurement_level=True)
    identity = sa.select(*(runs.c[c] for c in _RUN_IDENTITY)).where(*on_runs)
    run_frame = _integers(_utc(_frame(conn, identity, _RUN_IDENTITY), "started_at"))
    m = measurements
    selected = [
        m.c.step, m.c.name, m.c.lane, m.c.attempt, m.c.value, m.c.text_value, _OUTCOME_CODE,
        m.c.marginal, m.c.raw_value, m.c.correction_db, m.c.die_x, m.c.die_y, m.c.artefact_id,
        m.c.recorded_at_ns,
    ]  # fmt: skip
    kinds = dict(_FETCHED)
    one_run = len(run_frame) == 1
    if one_run:  # a wafer: the run's rows in index order, no run_id string per row
        query = sa.select(*selected).where(m.c.run_id == run_frame["run_id"].iloc[0])
    else:
        query = sa.select(m.c.run_id, *selected)
        kinds = {"run_id": "str", **kinds}
        if on_runs:
            query = query.where(m.c.run_id.in_(sa.select(runs.c.run_id).where(*on_runs)))
    data = _fetch_columns(conn, query.where(*on_measurements).order_by(m.c.id), kinds)
    if one_run:
        data["run_id"] = run_frame["run_id"].array.take(np.zeros(len(data["step"]), dtype=int))
    data["recorded_at"] = pd.to_datetime(data.pop("recorded_at_ns"), unit="ns", utc=True)
    # run identity and limits: small tables, joined here rather than row by row in SQL
    where = pd.Index(run_frame["run_id"]).get_indexer(data["run_id"])
    for column in _RUN_IDENTITY[1:]:
        data[column] = run_frame[column].array.take(where)
    limits = _limits_frame(conn, on_runs)
    keys = pd.MultiIndex.from_arrays([data["run_id"], data["measurement"]])
    at = pd.MultiIndex.from_frame(limits[["run_id", "name"]]).get_indexer(keys)
    for column in ("unit", "low_limit", "high_limit", "expected"):
        data[column] = pd.api.extensions.take(limits[column].array, at, allow_fill=True)
    return pd.DataFrame({column: data[column] for column in MEASUREMENT_COLUMNS})


def _limits_frame(conn: sa.Connection, on_runs: list[sa.ColumnElement[bool]]) -> pd.DataFrame:
    lim = run_limits
    columns = ("run_id", "name", "unit", "low_limit", "high_limit", "expected")
    query = sa.select(*(lim.c[c] for c in columns))
    if on_runs:
        query = query.where(lim.c.run_id.in_(sa.select(runs.c.run_id).where(*on_runs)))
    frame = _frame(conn, query, columns)
    for column in ("low_limit", "high_limit"):
        frame[column] = frame[column].astype(float)
    return frame


def pivot(tidy: pd.DataFrame) -> pd.DataFrame:
    """Wide per-DUT table of tidy rows: the last attempt of each (name, lane) per DUT."""
    wafer = tidy["die_x"].notna().any()
    keys = ["run_id", "wafer_id", "die_x", "die_y"] if wafer else ["run_id", "dut_serial"]
    rows = tidy[tidy["die_x"].notna()] if wafer else tidy
    lane = rows["lane"].astype(object)
    with_lane = rows["measurement"] + "[" + lane.astype(str) + "]"
    label = rows["measurement"].where(lane.isna(), with_lane)
    cell = rows["value"].astype(object).where(rows["text_value"].isna(), rows["text_value"])
    last = (
        rows[keys]
        .assign(column=label.to_numpy(), cell=cell.to_numpy(), attempt=rows["attempt"])
        .sort_values("attempt", kind="stable")
        .drop_duplicates([*keys, "column"], keep="last")
    )
    order = list(dict.fromkeys(label))  # columns in the order the sequence measured them
    wide = last.pivot(index=keys, columns="column", values="cell").reindex(columns=order)
    for column in wide.columns:  # numeric where every cell is a number
        converted = pd.to_numeric(wide[column], errors="coerce")
        if converted.notna().sum() == wide[column].notna().sum():
            wide[column] = converted
    wide.columns.name = None
    first_seen = rows[keys].drop_duplicates()
    return first_seen.merge(wide.reset_index(), on=keys, how="left").reset_index(drop=True)


def artefacts_frame(conn: sa.Connection, run_id: str) -> pd.DataFrame:
    a = artefacts
    columns = (
        "id",
        "run_id",
        "step",
        "name",
        "lane",
        "kind",
        "die_x",
        "die_y",
        "format",
        "sha256",
        "metadata_json",
        "recorded_at_ns",
    )
    query = sa.select(*(a.c[c] for c in columns)).where(a.c.run_id == run_id).order_by(a.c.id)
    frame = _frame(conn, query, columns)
    frame["metadata"] = [json.loads(text) for text in frame.pop("metadata_json")]
    frame["recorded_at"] = pd.to_datetime(frame.pop("recorded_at_ns"), unit="ns", utc=True)
    return _integers(frame)


def steps_frame(conn: sa.Connection, run_id: str) -> pd.DataFrame:
    query = sa.select(steps).where(steps.c.run_id == run_id).order_by(steps.c.step_index)
    frame = _frame(conn, query, steps.c.keys())
    for column in ("started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame.pop(f"{column}_ns"), unit="ns", utc=True)
    return frame


def instruments_frame(conn: sa.Connection, run_id: str | None) -> pd.DataFrame:
    if run_id is None:
        query = sa.select(instruments).order_by(*instruments.primary_key.columns)
        return _utc(_frame(conn, query, instruments.c.keys()), "last_seen_at")
    query = sa.select(run_instruments).where(run_instruments.c.run_id == run_id)
    return _frame(conn, query.order_by(run_instruments.c.role), run_instruments.c.keys())


def attributes_frame(conn: sa.Connection, run_id: str) -> pd.DataFrame:
    query = sa.select(attributes).where(attributes.c.run_id == run_id).order_by(attributes.c.id)
    return _frame(conn, query, attributes.c.keys())


def table_frame(conn: sa.Connection, table: sa.Table) -> pd.DataFrame:
    frame = _frame(conn, sa.select(table).order_by(*table.primary_key.columns), table.c.keys())
    return _integers(_utc(frame, *(c.name for c in table.c if isinstance(c.type, sa.DateTime))))


YIELD_COLUMNS = ("units", "runs", "first_pass_yield", "final_yield", "retest_rate")


def retest_yields(
    conn: sa.Connection,
    filters: dict[str, Any],
    by: tuple[str, ...] = ("lot_id", "station_id"),
) -> pd.DataFrame:
    """First-pass yield, final yield and retest rate of the finished runs per `by` group.

    Within a group, a unit's attempts are its runs in start order: first-pass yield is the share
    of units whose first attempt passed, final yield the share whose last attempt passed, and
    the retest rate the share of runs that were retests ((runs - units) / runs). Group by
    ("lot_id",) for a lot's yields over all its stations. Runs still in flight are left out.
    """
    unknown = [column for column in by if column not in RUN_COLUMNS]
    if unknown:
        raise FilterError(f"cannot group by {unknown[0]!r}; columns: {', '.join(RUN_COLUMNS)}")
    frame = runs_frame(conn, filters)
    frame = frame[frame["outcome"].notna()].sort_values(["started_at", "run_id"], kind="stable")
    keys = [*by, "dut_serial"]
    attempts = frame.groupby(keys, dropna=False, sort=False)["outcome"]
    per_unit = attempts.agg(["first", "last", "size"])
    passed = per_unit.assign(
        first_pass=per_unit["first"].eq("PASS"), final_pass=per_unit["last"].eq("PASS")
    )
    grouped = passed.groupby(list(by), dropna=False, sort=True)
    table = pd.DataFrame(
        {
            "units": grouped.size(),
            "runs": grouped["size"].sum(),
            "first_pass_yield": grouped["first_pass"].mean(),
            "final_yield": grouped["final_pass"].mean(),
        }
    )
    table["retest_rate"] = (table["runs"] - table["units"]) / table["runs"]
    return table.reset_index()[[*by, *YIELD_COLUMNS]]


# --- the traveller's genealogy --------------------------------------------------------------------
GENEALOGY_COLUMNS = ("serial", "part_role", "part_id", "run_id", "recorded_at", "current")


def _genealogy(conn: sa.Connection, condition: sa.ColumnElement[bool]) -> pd.DataFrame:
    """Genealogy rows matching `condition`, one per (serial, role, part) as last recorded;
    `current`: the newest part of its role on its unit (a reworked unit keeps the old rows)."""
    g = genealogy
    query = sa.select(*(g.c[c] for c in GENEALOGY_COLUMNS[:-1])).where(condition)
    frame = _utc(_frame(conn, query, GENEALOGY_COLUMNS[:-1]), "recorded_at")
    frame = frame.sort_values(["recorded_at", "run_id"], kind="stable")
    frame = frame.drop_duplicates(["serial", "part_role", "part_id"], keep="last")
    newest = frame.drop_duplicates(["serial", "part_role"], keep="last").index
    frame["current"] = frame.index.isin(newest)
    return frame.sort_values(["serial", "part_role", "recorded_at"]).reset_index(drop=True)


def unit_parts(conn: sa.Connection, serial: str) -> pd.DataFrame:
    """The parts unit `serial` is built from, as its travellers named them."""
    return _genealogy(conn, genealogy.c.serial == serial)


def units_built_from(conn: sa.Connection, part_id: str) -> pd.DataFrame:
    """The units built from part `part_id` (a laser, a die): the genealogy read backwards."""
    return _genealogy(conn, genealogy.c.part_id == part_id)


# --- DUT-side jumper matings ----------------------------------------------------------------------
def jumper_matings_frame(conn: sa.Connection, station_id: str) -> pd.DataFrame:
    """The mating counters of a station's jumpers, one row per serial it has seen."""
    j = jumper_matings
    query = sa.select(j).where(j.c.station_id == station_id).order_by(j.c.site, j.c.jumper_serial)
    return _utc(_frame(conn, query, j.c.keys()), "first_seen_at", "updated_at")


# --- test time and utilisation --------------------------------------------------------------------
TIME_SPLIT_COLUMNS = (
    "run_id",
    "station_id",
    "site",
    "dut_serial",
    "lot_id",
    "load_s",
    "wait_s",
    "steps_s",
    "retry_s",
    "total_s",
)


def _epoch_s(stamps: pd.Series) -> np.ndarray:
    """UTC timestamps as seconds since the epoch (float; NaT -> NaN)."""
    ns = stamps.dt.as_unit("ns")
    seconds = ns.fillna(pd.Timestamp(0, tz="UTC")).astype("int64").to_numpy() / 1e9
    return np.where(ns.isna().to_numpy(), np.nan, seconds)


def _finished_runs(conn: sa.Connection, filters: dict[str, Any]) -> pd.DataFrame:
    frame = runs_frame(conn, filters)
    return frame[frame["ended_at"].notna()].reset_index(drop=True)


def _step_times(conn: sa.Connection, filters: dict[str, Any]) -> pd.DataFrame:
    """Per run: the first step's start (ns) and the summed waiting, retry and load prompt
    seconds of its steps (NULL on steps recorded before schema version 7: none measured)."""
    on_runs, _ = _run_conditions(filters, _is_sqlite(conn), measurement_level=False)
    s = steps
    columns = ("run_id", "first_step_ns", "wait_s", "retry_s", "load_prompt_s")
    query = sa.select(
        s.c.run_id,
        sa.func.min(s.c.started_at_ns),
        sa.func.sum(sa.func.coalesce(s.c.waited_s, 0.0)),
        sa.func.sum(sa.func.coalesce(s.c.retry_s, 0.0)),
        sa.func.sum(sa.func.coalesce(s.c.load_prompt_s, 0.0)),
    ).group_by(s.c.run_id)
    if on_runs:
        query = query.where(s.c.run_id.in_(sa.select(runs.c.run_id).where(*on_runs)))
    frame = _frame(conn, query, columns)
    return frame.astype({c: float for c in columns[1:]})


def test_time_split(conn: sa.Connection, filters: dict[str, Any]) -> pd.DataFrame:
    """Where each finished run's time went, in seconds; the four parts add up to `total_s`
    (run start to run end):

    - load_s: run start to its first step's start, plus the operator prompts inside steps
      that load, insert, seat, plug, mate or clean the unit (`station.results.store.
      LOAD_PROMPT`), except prompts of attempts that were retried. Handling before the run
      starts (unloading the last unit, scanning, opening instruments) is not in any run: it
      shows in `uph` as the time between runs;
    - wait_s: steps waiting for the engine to hand over instruments shared with other sites;
    - retry_s: attempts of steps that errored and were retried (their waiting is in wait_s);
    - steps_s: the rest: the steps' own work, the engine between steps and the teardown
      (safe state) after the last one.

    A run with no step row is all load. Runs still in flight are left out. A run resumed
    after a crash counts from its first start, so the time it was down shows as load.
    """
    frame = _finished_runs(conn, filters)
    times = _step_times(conn, filters).set_index("run_id").reindex(frame["run_id"]).fillna(0.0)
    start_s = _epoch_s(frame["started_at"])
    end_s = _epoch_s(frame["ended_at"])
    stepped = times["first_step_ns"].to_numpy() > 0
    first_s = np.where(stepped, times["first_step_ns"].to_numpy() / 1e9, end_s)
    total_s = end_s - start_s
    wait_s = times["wait_s"].to_numpy()
    retry_s = times["retry_s"].to_numpy()
    load_s = np.clip(first_s - start_s, 0.0, None) + times["load_prompt_s"].to_numpy()
    split = frame[["run_id", "station_id", "site", "dut_serial", "lot_id"]].copy()
    split["load_s"] = load_s
    split["wait_s"] = wait_s
    split["steps_s"] = total_s - load_s - wait_s - retry_s
    split["retry_s"] = retry_s
    split["total_s"] = total_s
    return split[list(TIME_SPLIT_COLUMNS)]


UPH_COLUMNS = ("units", "runs", "hours", "uph", "downtime_s", "availability")


def uph(
    conn: sa.Connection, filters: dict[str, Any], by: tuple[str, ...] = ("station_id",)
) -> pd.DataFrame:
    """Units per hour of the finished runs per `by` group (("station_id",), ("lot_id",),
    ("station_id", "site"), ...).

    `hours` runs from the group's first run start to its last run end; `uph` is distinct units
    over those hours. `downtime_s` is the downtime (station.results.downtime) within that span:
    per (station, site) the group tested on, the union of the station's whole-station downtimes
    and that site's own, averaged over those (station, site) pairs, so that one site of two
    down for an hour counts half an hour. `availability` = 1 - downtime_s / span.
    """
    unknown = [column for column in by if column not in RUN_COLUMNS]
    if unknown:
        raise FilterError(f"cannot group by {unknown[0]!r}; columns: {', '.join(RUN_COLUMNS)}")
    frame = _finished_runs(conn, filters)
    frame["start_s"], frame["end_s"] = _epoch_s(frame["started_at"]), _epoch_s(frame["ended_at"])
    down = downtime_frame(conn, frame["station_id"].unique().tolist())
    down["start_s"] = _epoch_s(down["started_at"])
    down["end_s"] = _epoch_s(down["ended_at"])  # NaN: still open
    rows = []
    for key, group in frame.groupby(list(by), dropna=False, sort=True):
        window = (float(group["start_s"].min()), float(group["end_s"].max()))
        span_s = window[1] - window[0]
        pairs = group[["station_id", "site"]].drop_duplicates().itertuples(index=False)
        downtime_s = float(np.mean([_pair_downtime(down, pair, window) for pair in pairs]))
        units = group["dut_serial"].nunique()
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "units": units,
                "runs": len(group),
                "hours": span_s / 3600.0,
                "uph": units / (span_s / 3600.0) if span_s > 0 else np.nan,
                "downtime_s": downtime_s,
                "availability": 1.0 - downtime_s / span_s if span_s > 0 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=[*by, *UPH_COLUMNS])


def _pair_downtime(down: pd.DataFrame, pair: Any, window: tuple[float, float]) -> float:
    """Downtime seconds of one (station, site) within `window`."""
    site = down["site"]
    mine = (down["station_id"] == pair.station_id) & (site.isna() | (site == pair.site))
    chosen = mine.to_numpy(dtype=bool, na_value=False)
    return overlap_s(down["start_s"].to_numpy()[chosen], down["end_s"].to_numpy()[chosen], window)
