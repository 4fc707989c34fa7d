"""Results store: SQLAlchemy Core schema on SQLite (default, WAL) or PostgreSQL, chosen by URL,
written as the run's events arrive and read back as tidy pandas DataFrames.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from station.errors import StationError
from station.events import (
    ArtefactRecorded,
    AttributeRecorded,
    Event,
    MeasurementRecorded,
    PromptAnswered,
    PromptRequested,
    RunEnded,
    RunStarted,
    SafeStateApplied,
    StepEnded,
    StepStarted,
    UnitCompleted,
    ns_to_datetime,
)
from station.results import artefacts as artefact_codec
from station.results import queries
from station.results.migrate import SchemaRefused, prepare
from station.results.rows import (
    INSTRUMENT_KEY,
    JSON_INSERT,
    insert_measurements,
    last_measurement_id,
    run_start_rows,
    write_artefacts,
)
from station.results.schema import (
    SCHEMA_VERSION,
    artefacts,
    attributes,
    genealogy,
    instruments,
    run_instruments,
    run_limits,
    runs,
    sites,
    stations,
    steps,
    units,
)

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "ResultsStore", "StoreError", "database_url"]

DEFAULT_DB = "station-results.sqlite"
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's commit

#: An operator prompt is load time (the test-time split's `load_s`) when its message asks for the
#: unit or its connectors to be handled: loaded, inserted, seated, plugged, mated or cleaned.
LOAD_PROMPT = re.compile(r"\b(load|insert|seat|plug|mat(e|ing)|clean)", re.IGNORECASE)
#: the attribute the engine records when an attempt of a step errored and the step is retried
_RETRIED_ATTEMPT = re.compile(r"attempt_\d+_error")


def database_url(target: str | Path | None) -> str:
    """A SQLAlchemy URL from a file path, a `sqlite:///` URL or a server URL."""
    text = str(target) if target is not None else DEFAULT_DB
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


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


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Every SQLite connection of a results database, the store's and the line database's:
    write-ahead log, foreign keys enforced."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each commit point under WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


WriteJob = Callable[[sa.Connection], None]


class StoreError(StationError, RuntimeError):
    """The results database could not be opened, written or queried as asked."""


class ResultsStore:
    """Opens (and creates or upgrades) the database; persists a run's events; answers queries.

    As a subscriber it persists as the run goes: each step's row, measurements, attributes and
    artefacts are handed to a writer thread when the step ends and committed together, in order.
    When steps end faster than the database commits, consecutive steps share one commit (group
    commit); on a real bench, where a step takes milliseconds, every step gets its own. `flush()`
    waits until everything handed over is committed; `close()` flushes first. A run whose
    process dies keeps every committed step and stays `complete = False`.
    """

    def __init__(self, target: str | Path | None = None) -> None:
        self.url = database_url(target)
        try:
            sqlite_file = self.url.startswith("sqlite")
            self.engine: Engine = sa.create_engine(
                self.url,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite_file else {},
            )
        except (sa.exc.ArgumentError, ImportError) as err:
            raise StoreError(f"{self.url}: cannot open the results database: {err}") from err
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        try:
            self.schema_action = prepare(self.engine)
        except SchemaRefused as err:
            self.engine.dispose()
            raise StoreError(f"{self.url}: {err}") from None
        except sa.exc.SQLAlchemyError as err:
            self.engine.dispose()
            reason = str(err).splitlines()[0]
            raise StoreError(f"{self.url}: cannot open the results database: {reason}") from err
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._marker = marker
        self._insert_step = (
            "INSERT INTO steps (run_id, step_index, name, started_at_ns, ended_at_ns, outcome, "
            f"error, waited_s, retry_s, load_prompt_s) VALUES ({', '.join([marker] * 10)})"
        )
        self._upsert: Callable[[sa.Table], Any] = sqlite.insert
        if self.engine.dialect.name == "postgresql":  # imported only then: it costs 0.1 s
            from sqlalchemy.dialects import postgresql

            self._upsert = postgresql.insert
        self._pending: dict[str, list[MeasurementRecorded]] = {}
        # SQLite unpacks a large batch from one JSON array (PostgreSQL: row by row, batched)
        self._json_batches = self.engine.dialect.name == "sqlite" and JSON_INSERT
        self._pending_attributes: dict[str, list[dict[str, Any]]] = {}
        self._pending_artefacts: dict[str, list[dict[str, Any]]] = {}
        self._step_started: dict[tuple[str, int], int] = {}
        self._open_prompts: dict[tuple[str, str], int] = {}  # (run, prompt id) -> asked at (ns)
        self._load_prompt_ns: dict[str, int] = {}  # run -> load prompt time of its step so far
        self._handlers = {
            MeasurementRecorded: self._on_measurement,
            AttributeRecorded: self._on_attribute,
            ArtefactRecorded: self._on_artefact,
            PromptRequested: self._on_prompt,
            PromptAnswered: self._on_prompt_answer,
            SafeStateApplied: self._on_safe_state,
            StepStarted: self._on_step_started,
            StepEnded: self._on_step_ended,
            UnitCompleted: self._on_unit_completed,
            RunStarted: self._start_run,
            RunEnded: self._on_run_ended,
        }
        self._jobs: queue.SimpleQueue[WriteJob | threading.Event | None] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self.commits = 0
        self._writer: threading.Thread | None = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the writer thread ------------------------------------------------------------------------
    def _submit(self, job: WriteJob) -> None:
        if self._failure is not None:
            raise StoreError(f"{self.url}: writing results failed: {self._failure}") from (
                self._failure
            )
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, daemon=True, name="results-writer"
            )
            self._writer.start()
        self._jobs.put(job)

    def _write_loop(self) -> None:
        conn = self.engine.connect()
        try:
            stopping = False
            while not stopping:
                batch = [self._jobs.get()]
                while True:  # take everything already waiting: one commit for all of it
                    try:
                        batch.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                jobs = [
                    job for job in batch if callable(job) and not isinstance(job, threading.Event)
                ]
                if jobs and self._failure is None:
                    try:
                        with conn.begin():
                            for job in jobs:
                                job(conn)
                        self.commits += 1
                    except Exception as err:  # kept, and raised to the run by flush/close
                        self._failure = err
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
                    elif item is None:
                        stopping = True
        finally:
            conn.close()

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until everything handed to the writer is committed; raise if writing failed."""
        if self._writer is not None:
            done = threading.Event()
            self._jobs.put(done)
            if not done.wait(timeout_s):
                raise StoreError(f"{self.url}: results not committed within {timeout_s:g} s")
        if self._failure is not None:
            raise StoreError(f"{self.url}: writing results failed: {self._failure}") from (
                self._failure
            )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._jobs.put(None)
                self._writer.join(10)
                self._writer = None
            self.engine.dispose()

    # --- writing: a subscriber of the event stream ---------------------------------------------
    def __call__(self, event: Event) -> None:
        if type(event) is MeasurementRecorded:  # the one event per measured value: no dispatch
            pending = self._pending.get(event.run_id)
            if pending is None:
                pending = self._pending[event.run_id] = []
            pending.append(event)
            return
        self._handlers[type(event)](event)  # type: ignore[operator]

    def _on_measurement(self, m: MeasurementRecorded) -> None:
        pending = self._pending.get(m.run_id)
        if pending is None:
            pending = self._pending[m.run_id] = []
        pending.append(m)

    def _attribute(self, run_id: str, step: str, name: str, value: str) -> None:
        self._pending_attributes.setdefault(run_id, []).append(
            {"run_id": run_id, "step": step, "name": name, "value": value}
        )

    def _on_attribute(self, event: AttributeRecorded) -> None:
        self._attribute(event.run_id, event.step, event.name, event.value)
        if event.name.startswith("attempt_") and _RETRIED_ATTEMPT.fullmatch(event.name):
            # the prompts of the attempt that errored count in the step's retry_s
            self._load_prompt_ns.pop(event.run_id, None)

    def _on_prompt(self, event: PromptRequested) -> None:
        self._attribute(event.run_id, event.step, f"prompt_{event.prompt_id}", event.message)
        if LOAD_PROMPT.search(event.message):
            self._open_prompts[(event.run_id, event.prompt_id)] = event.at_ns

    def _on_prompt_answer(self, event: PromptAnswered) -> None:
        answer = event.answer if event.answer is not None else "<no answer>"
        self._attribute(event.run_id, event.step, f"prompt_{event.prompt_id}_answer", answer)
        asked = self._open_prompts.pop((event.run_id, event.prompt_id), None)
        if asked is not None:
            spent = self._load_prompt_ns.get(event.run_id, 0) + event.at_ns - asked
            self._load_prompt_ns[event.run_id] = spent

    def _on_safe_state(self, event: SafeStateApplied) -> None:
        errors = "; errors: " + "; ".join(event.errors) if event.errors else ""
        self._attribute(event.run_id, "teardown", "safe_state", ", ".join(event.roles) + errors)

    def _on_artefact(self, event: ArtefactRecorded) -> None:
        encoded = artefact_codec.encode(event.arrays)
        self._pending_artefacts.setdefault(event.run_id, []).append(
            {
                "run_id": event.run_id,
                "step": event.step,
                "name": event.name,
                "lane": event.lane,
                "format": artefact_codec.FORMAT_NPZ,
                "sha256": encoded.sha256,
                "data": encoded.data,
                "recorded_at_ns": event.at_ns,
                **artefact_codec.row_fields(event.metadata),
                "links": artefact_codec.linked_names(event.metadata),
            }
        )

    def _on_step_started(self, event: StepStarted) -> None:
        self._step_started[(event.run_id, event.index)] = event.at_ns
        self._load_prompt_ns.pop(event.run_id, None)

    def _take(self, run_id: str) -> WriteJob:
        """A job writing everything recorded for `run_id` since the last one."""
        recorded = self._pending.pop(run_id, None)
        attrs = self._pending_attributes.pop(run_id, None)
        blobs = self._pending_artefacts.pop(run_id, None)
        marker = self._marker
        json_batches = self._json_batches

        def write(conn: sa.Connection) -> None:
            first_id = last_measurement_id(conn) if blobs and recorded else None
            if recorded:
                insert_measurements(conn, recorded, marker, json_batches)
            if attrs:
                conn.execute(attributes.insert(), attrs)
            if blobs:
                write_artefacts(conn, blobs, first_id)

        return write

    def _on_step_ended(self, event: StepEnded) -> None:
        started = self._step_started.pop((event.run_id, event.index), event.at_ns)
        row = (
            event.run_id,
            event.index,
            event.step,
            started,
            event.at_ns,
            event.outcome.value,
            event.error,
            event.waited_s,
            event.retry_s,
            self._load_prompt_ns.pop(event.run_id, 0) / 1e9,
        )
        recorded = self._take(event.run_id)
        insert_step = self._insert_step

        def write(conn: sa.Connection) -> None:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(insert_step, row)
            finally:
                cursor.close()
            recorded(conn)

        self._submit(write)

    def _on_run_ended(self, event: RunEnded) -> None:
        self._load_prompt_ns.pop(event.run_id, None)
        for key in [k for k in self._open_prompts if k[0] == event.run_id]:  # aborted mid-prompt
            del self._open_prompts[key]
        recorded = self._take(event.run_id)
        values = {
            "ended_at": ns_to_datetime(event.at_ns),
            "outcome": event.outcome.value,
            "error": event.error,
            "complete": True,
        }

        def write(conn: sa.Connection) -> None:
            recorded(conn)
            conn.execute(runs.update().where(runs.c.run_id == event.run_id).values(**values))

        self._submit(write)

    def _start_run(self, event: RunStarted) -> None:
        if event.resumed:
            self._resume_run(event)
            return
        rows = run_start_rows(event, upsert_of=self._upsert)
        upsert = self._upsert

        def write(conn: sa.Connection) -> None:
            conn.execute(upsert(stations).values(**rows.station_key).on_conflict_do_nothing())
            conn.execute(
                upsert(sites).values(**rows.station_key, site=event.site).on_conflict_do_nothing()
            )
            conn.execute(runs.insert().values(**rows.run))
            if rows.instruments:
                conn.execute(run_instruments.insert(), rows.instruments)
            for row in rows.registry:
                statement = upsert(instruments).values(**row)
                newer = {k: statement.excluded[k] for k in row if k not in INSTRUMENT_KEY}
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=list(INSTRUMENT_KEY),
                        set_=newer,
                        where=instruments.c.last_seen_at <= statement.excluded.last_seen_at,
                    )
                )
            if rows.limits:
                conn.execute(run_limits.insert(), rows.limits)
            if rows.parts:
                conn.execute(genealogy.insert(), rows.parts)
            for statement in rows.matings:
                conn.execute(statement)

        self._submit(write)

    # --- units and resumed runs (wafer dies, lasers) ----------------------------------------------
    def _on_unit_completed(self, event: UnitCompleted) -> None:
        """A unit commits with everything recorded since the previous one, as a step end does."""
        recorded = self._take(event.run_id)
        row = {
            "run_id": event.run_id,
            "unit": event.unit,
            "step": event.step,
            "outcome": event.outcome.value,
            "die_x": event.die_x,
            "die_y": event.die_y,
            "hard_bin": event.hard_bin,
            "soft_bin": event.soft_bin,
            "bin_name": event.bin_name,
            "completed_at_ns": event.at_ns,
        }

        def write(conn: sa.Connection) -> None:
            recorded(conn)
            conn.execute(units.insert().values(**row))

        self._submit(write)

    def _resume_run(self, event: RunStarted) -> None:
        """The run exists (its process died): open it again. Its steps run again, so their rows
        are replaced as they end; its completed units and their results stay."""
        resumed_at = ns_to_datetime(event.at_ns)

        def write(conn: sa.Connection) -> None:
            reopened = conn.execute(
                runs.update()
                .where(runs.c.run_id == event.run_id)
                .values(complete=False, ended_at=None, outcome=None, error=None)
            )
            if reopened.rowcount != 1:
                raise StoreError(f"cannot resume run {event.run_id}: it is not in {self.url}")
            conn.execute(steps.delete().where(steps.c.run_id == event.run_id))
            conn.execute(
                attributes.insert().values(
                    run_id=event.run_id, step="run", name="resumed_at",
                    value=resumed_at.isoformat(),
                )
            )  # fmt: skip

        self._submit(write)

    def units(self, run_id: str) -> pd.DataFrame:
        """The completed units of a run in completion order: unit, step, outcome, die_x,
        die_y, hard_bin, soft_bin, bin_name, completed_at."""
        return self._read(_units_frame, run_id)

    def completed_units(self, run_id: str) -> frozenset[str]:
        """What a resumed run skips (`RunEngine.run(..., completed_units=...)`)."""
        return frozenset(self.units(run_id)["unit"])

    # --- reading ---------------------------------------------------------------------------------
    def _read(self, query: Callable[..., pd.DataFrame], *args: Any, **kwargs: Any) -> pd.DataFrame:
        self.flush()  # the store's own queries see everything handed to it
        try:
            with self.engine.connect() as conn:
                return query(conn, *args, **kwargs)
        except queries.FilterError as err:
            raise StoreError(f"{self.url}: {err}") from None

    def runs(self, **filters: Any) -> pd.DataFrame:
        """One row per run, oldest first. Filters: see `queries.RUN_FILTERS` (lists mean any of;
        `since`/`until` bound started_at)."""
        return self._read(queries.runs_frame, filters)

    def measurements(self, **filters: Any) -> pd.DataFrame:
        """Tidy long format: one row per measurement, with its run's identity and limits.
        Filters: the run filters and measurement, step, lane, outcome (of the measurement)."""
        return self._read(queries.measurements_frame, filters)

    def pivot(self, **filters: Any) -> pd.DataFrame:
        """Wide per-DUT table: one row per run (per die on wafers), a column per measurement
        and lane (``name[lane]``), holding the value of the last attempt."""
        return queries.pivot(self.measurements(**filters))

    def artefacts(self, run_id: str) -> pd.DataFrame:
        """The artefacts of a run (without their bytes): id, step, name, lane, kind, die, sha256,
        metadata (a dict)."""
        return self._read(queries.artefacts_frame, run_id)

    def artefact(
        self,
        run_id: str | None = None,
        name: str | None = None,
        lane: int | None = None,
        step: str | None = None,
        *,
        artefact_id: int | None = None,
    ) -> dict[str, np.ndarray]:
        """The arrays of one artefact, by run, name and lane (the last recorded wins) or by id,
        checked against the hash stored with them."""
        self.flush()
        a = artefacts
        query = sa.select(a.c.data, a.c.sha256, a.c.name, a.c.run_id)
        if artefact_id is not None:
            query = query.where(a.c.id == artefact_id)
        else:
            query = query.where(a.c.run_id == run_id, a.c.name == name)
            query = query.where(a.c.lane.is_(None) if lane is None else a.c.lane == lane)
            if step is not None:
                query = query.where(a.c.step == step)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(a.c.id.desc())).first()
        if row is None:
            which = f"id {artefact_id}" if artefact_id is not None else f"{name!r} (lane {lane})"
            raise KeyError(f"no artefact {which} in run {run_id}")
        return artefact_codec.decode(
            row.data, row.sha256, f"artefact {row.name!r} of run {row.run_id}"
        )

    def steps(self, run_id: str) -> pd.DataFrame:
        return self._read(queries.steps_frame, run_id)

    def instruments(self, run_id: str | None = None) -> pd.DataFrame:
        """What a run used (role, driver, resource, identity, calibration due); without a run,
        the station's instrument registry (each instrument as last seen)."""
        return self._read(queries.instruments_frame, run_id)

    def attributes(self, run_id: str) -> pd.DataFrame:
        return self._read(queries.attributes_frame, run_id)

    def stations(self) -> pd.DataFrame:
        return self._read(queries.table_frame, stations)

    def unit_parts(self, serial: str) -> pd.DataFrame:
        """The unit's genealogy: the parts it is built from (`queries.unit_parts`)."""
        return self._read(queries.unit_parts, serial)

    def units_built_from(self, part_id: str) -> pd.DataFrame:
        """The units built from a part (`queries.units_built_from`)."""
        return self._read(queries.units_built_from, part_id)

    def test_time_split(self, **filters: Any) -> pd.DataFrame:
        """Load, waiting, step and retry seconds per finished run (`queries.test_time_split`)."""
        return self._read(queries.test_time_split, filters)

    def uph(self, by: tuple[str, ...] = ("station_id",), **filters: Any) -> pd.DataFrame:
        """Units per hour, downtime and availability per group (`queries.uph`)."""
        return self._read(queries.uph, filters, by)

    def jumper_matings(self, station_id: str) -> pd.DataFrame:
        """The mating counters of a station's jumpers (`queries.jumper_matings_frame`)."""
        return self._read(queries.jumper_matings_frame, station_id)

    def sites(self) -> pd.DataFrame:
        return self._read(queries.table_frame, sites)


def _units_frame(conn: sa.Connection, run_id: str) -> pd.DataFrame:
    query = sa.select(units).where(units.c.run_id == run_id).order_by(units.c.completed_at_ns)
    frame = pd.DataFrame(conn.execute(query).all(), columns=list(units.c.keys()))
    for column in ("die_x", "die_y", "hard_bin", "soft_bin"):
        frame[column] = frame[column].astype("Int64")
    frame["completed_at"] = pd.to_datetime(frame.pop("completed_at_ns"), unit="ns", utc=True)
    return frame.drop(columns="run_id")
