"""Results store: SQLAlchemy Core schema on SQLite (default, WAL) or PostgreSQL, chosen by URL,
written as the run's events arrive and read back as tidy pandas DataFrames.
"""

from __future__ import annotations

import hashlib
import io
import json
import operator
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
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
    ns_to_datetime,
)

SCHEMA_VERSION = 2
DEFAULT_DB = "station-results.sqlite"

metadata = sa.MetaData()

schema_info = sa.Table(
    "schema_info",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("sequence", sa.String(64), nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("dut_serial", sa.String(64), nullable=False, index=True),
    sa.Column("site", sa.Integer, nullable=False),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("software_version", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("limits_path", sa.Text, nullable=False),
    sa.Column("limits_sha256", sa.String(64), nullable=False),
    sa.Column("calibration_override", sa.Text),
    sa.Column("lot_id", sa.String(64), index=True),
    sa.Column("wafer_id", sa.String(64), index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(16)),
    sa.Column("error", sa.Text),
    sa.Column("complete", sa.Boolean, nullable=False, default=False),
)

run_instruments = sa.Table(
    "run_instruments",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("role", sa.String(64), primary_key=True),
    sa.Column("driver", sa.String(128), nullable=False),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("manufacturer", sa.String(128), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("serial_number", sa.String(64), nullable=False),
    sa.Column("firmware", sa.String(64), nullable=False),
    sa.Column("calibration_due", sa.Date),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("step_index", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("started_at_ns", sa.BigInteger, nullable=False),
    sa.Column("ended_at_ns", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
)

run_limits = sa.Table(
    "run_limits",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("low_limit", sa.Float),
    sa.Column("high_limit", sa.Float),
    sa.Column("expected", sa.Text),
    sa.Column("per_lane", sa.Boolean, nullable=False),
    sa.Column("marginal_band", sa.Float),
    sa.Column("spec", sa.Text, nullable=False),
)

# One narrow row per measurement; its unit and limits are in run_limits (one row per name and
# run), which keeps the per-measurement write cheap. Queries join them back into tidy rows.
measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("lane", sa.Integer),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("text_value", sa.Text),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("marginal", sa.Boolean, nullable=False),
    sa.Column("raw_value", sa.Float),
    sa.Column("correction_db", sa.Float),
    sa.Column("die_x", sa.Integer),
    sa.Column("die_y", sa.Integer),
    sa.Column("recorded_at_ns", sa.BigInteger, nullable=False),
)

attributes = sa.Table(
    "attributes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
)

artefacts = sa.Table(
    "artefacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("lane", sa.Integer),
    sa.Column("format", sa.String(16), nullable=False),  # "npz": numpy savez_compressed
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("recorded_at_ns", sa.BigInteger, nullable=False),
)

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
    "recorded_at_ns",
)
_TEXT_COLUMNS = tuple("text_value" if c == "value" else c for c in _NUMERIC_COLUMNS)
# Rows are built from the events in C (attrgetter), in the writer thread, not per event in Python.
_measurement_row = operator.attrgetter(
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
    "at_ns",
)


def database_url(target: str | Path | None) -> str:
    """A SQLAlchemy URL from a file path, a `sqlite:///` URL or a server URL."""
    text = str(target) if target is not None else DEFAULT_DB
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each commit point under WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


WriteJob = Callable[[sa.Connection], None]


class StoreError(StationError, RuntimeError):
    """The results database could not be written."""


class ResultsStore:
    """Opens (and creates) the database; persists a run's events; answers queries as DataFrames.

    As a subscriber it persists as the run goes: each step's row, measurements, attributes and
    artefacts are handed to a writer thread when the step ends and committed together, in order.
    When steps end faster than the database commits, consecutive steps share one commit (group
    commit); on a real bench, where a step takes milliseconds, every step gets its own. `flush()`
    waits until everything handed over is committed; `close()` flushes first.
    """

    def __init__(self, target: str | Path | None = None) -> None:
        self.url = database_url(target)
        self.engine: Engine = sa.create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                version = conn.execute(sa.select(schema_info.c.version)).scalar()
                if version is None:
                    conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
        except sa.exc.SQLAlchemyError as err:
            raise StoreError(f"{self.url}: cannot open the results database: {err}") from err
        if version is not None and version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.url}: schema version {version}, this software writes {SCHEMA_VERSION}"
            )
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        values = ", ".join([marker] * len(_NUMERIC_COLUMNS))
        self._insert_numeric = (
            f"INSERT INTO measurements ({', '.join(_NUMERIC_COLUMNS)}) VALUES ({values})"
        )
        self._insert_text = (
            f"INSERT INTO measurements ({', '.join(_TEXT_COLUMNS)}) VALUES ({values})"
        )
        self._insert_step = (
            "INSERT INTO steps (run_id, step_index, name, started_at_ns, ended_at_ns, outcome, "
            f"error) VALUES ({', '.join([marker] * 7)})"
        )
        self._pending: dict[str, list[MeasurementRecorded]] = {}
        self._pending_attributes: dict[str, list[dict[str, Any]]] = {}
        self._pending_artefacts: dict[str, list[dict[str, Any]]] = {}
        self._step_started: dict[tuple[str, int], int] = {}
        self._handlers = {
            MeasurementRecorded: self._on_measurement,
            AttributeRecorded: self._on_attribute,
            ArtefactRecorded: self._on_artefact,
            PromptRequested: self._on_prompt,
            PromptAnswered: self._on_prompt_answer,
            SafeStateApplied: self._on_safe_state,
            StepStarted: self._on_step_started,
            StepEnded: self._on_step_ended,
            RunStarted: self._start_run,
            RunEnded: self._on_run_ended,
        }
        self._jobs: queue.SimpleQueue[WriteJob | threading.Event | None] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self.commits = 0
        self._writer: threading.Thread | None = None

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

    def _on_prompt(self, event: PromptRequested) -> None:
        self._attribute(event.run_id, event.step, f"prompt_{event.prompt_id}", event.message)

    def _on_prompt_answer(self, event: PromptAnswered) -> None:
        answer = event.answer if event.answer is not None else "<no answer>"
        self._attribute(event.run_id, event.step, f"prompt_{event.prompt_id}_answer", answer)

    def _on_safe_state(self, event: SafeStateApplied) -> None:
        errors = "; errors: " + "; ".join(event.errors) if event.errors else ""
        self._attribute(event.run_id, "teardown", "safe_state", ", ".join(event.roles) + errors)

    def _on_artefact(self, event: ArtefactRecorded) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **event.arrays)
        data = buffer.getvalue()
        self._pending_artefacts.setdefault(event.run_id, []).append(
            {
                "run_id": event.run_id,
                "step": event.step,
                "name": event.name,
                "lane": event.lane,
                "format": "npz",
                "sha256": hashlib.sha256(data).hexdigest(),
                "data": data,
                "metadata_json": json.dumps(event.metadata, sort_keys=True),
                "recorded_at_ns": event.at_ns,
            }
        )

    def _on_step_started(self, event: StepStarted) -> None:
        self._step_started[(event.run_id, event.index)] = event.at_ns

    def _take(self, run_id: str) -> WriteJob:
        """A job writing everything recorded for `run_id` since the last one."""
        recorded = self._pending.pop(run_id, None)
        attrs = self._pending_attributes.pop(run_id, None)
        blobs = self._pending_artefacts.pop(run_id, None)
        insert_numeric, insert_text = self._insert_numeric, self._insert_text

        def write(conn: sa.Connection) -> None:
            if recorded:
                text = [m for m in recorded if isinstance(m.value, str)]
                numeric = (
                    map(_measurement_row, recorded)
                    if not text
                    else map(
                        _measurement_row, (m for m in recorded if not isinstance(m.value, str))
                    )
                )
                cursor = conn.connection.cursor()  # straight to the driver: no per-row overhead
                try:
                    cursor.executemany(insert_numeric, numeric)
                    if text:
                        cursor.executemany(insert_text, map(_measurement_row, text))
                finally:
                    cursor.close()
            if attrs:
                conn.execute(attributes.insert(), attrs)
            if blobs:
                conn.execute(artefacts.insert(), blobs)

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
            "started_at": ns_to_datetime(event.at_ns),
            "complete": False,
        }
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

        def write(conn: sa.Connection) -> None:
            conn.execute(runs.insert().values(**run_row))
            if instrument_rows:
                conn.execute(run_instruments.insert(), instrument_rows)
            if limit_rows:
                conn.execute(run_limits.insert(), limit_rows)

        self._submit(write)

    # --- reading ---------------------------------------------------------------------------------
    def runs(self, **filters: Any) -> pd.DataFrame:
        self.flush()  # the store's own queries see everything handed to it
        query = sa.select(runs).order_by(runs.c.started_at)
        for key, value in filters.items():
            query = query.where(runs.c[key] == value)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def measurements(self, **filters: Any) -> pd.DataFrame:
        """Tidy long format: one row per measurement, with its run's identity."""
        self.flush()  # the store's own queries see everything handed to it
        m, r, lim = measurements, runs, run_limits
        query = (
            sa.select(
                r.c.run_id,
                r.c.station_id,
                r.c.dut_serial,
                r.c.product,
                r.c.site,
                m.c.step,
                m.c.name.label("measurement"),
                m.c.lane,
                m.c.attempt,
                m.c.value,
                m.c.text_value,
                lim.c.unit,
                lim.c.low_limit,
                lim.c.high_limit,
                lim.c.expected,
                m.c.outcome,
                m.c.marginal,
                m.c.raw_value,
                m.c.correction_db,
                r.c.lot_id,
                r.c.wafer_id,
                m.c.die_x,
                m.c.die_y,
                m.c.recorded_at_ns,
                r.c.started_at,
            )
            .join(r, r.c.run_id == m.c.run_id)
            .outerjoin(lim, (lim.c.run_id == m.c.run_id) & (lim.c.name == m.c.name))
            .order_by(m.c.id)
        )
        for key, value in filters.items():
            column = r.c[key] if key in r.c else m.c["name" if key == "measurement" else key]
            query = query.where(column == value)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame.insert(
            len(frame.columns) - 1,
            "recorded_at",
            pd.to_datetime(frame.pop("recorded_at_ns"), unit="ns", utc=True),
        )
        return frame

    def artefact(
        self, run_id: str, name: str, lane: int | None = None, step: str | None = None
    ) -> dict[str, np.ndarray]:
        """The arrays of one artefact, checked against the hash stored with them."""
        self.flush()  # the store's own queries see everything handed to it
        a = artefacts
        query = sa.select(a.c.data, a.c.sha256).where(a.c.run_id == run_id, a.c.name == name)
        query = query.where(a.c.lane.is_(None) if lane is None else a.c.lane == lane)
        if step is not None:
            query = query.where(a.c.step == step)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(a.c.id.desc())).first()
        if row is None:
            raise KeyError(f"no artefact {name!r} (lane {lane}) in run {run_id}")
        if hashlib.sha256(row.data).hexdigest() != row.sha256:
            raise ValueError(f"artefact {name!r} of run {run_id} does not match its sha256")
        with np.load(io.BytesIO(row.data), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}

    def steps(self, run_id: str) -> pd.DataFrame:
        self.flush()  # the store's own queries see everything handed to it
        query = sa.select(steps).where(steps.c.run_id == run_id).order_by(steps.c.step_index)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame.pop(f"{column}_ns"), unit="ns", utc=True)
        return frame

    def instruments(self, run_id: str) -> pd.DataFrame:
        self.flush()  # the store's own queries see everything handed to it
        query = sa.select(run_instruments).where(run_instruments.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def attributes(self, run_id: str) -> pd.DataFrame:
        self.flush()  # the store's own queries see everything handed to it
        query = sa.select(attributes).where(attributes.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)
