"""Results store: SQLAlchemy Core schema on SQLite (default, WAL) or PostgreSQL, chosen by URL,
written as the run's events arrive and read back as tidy pandas DataFrames.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from station.events import (
    AttributeRecorded,
    Event,
    MeasurementRecorded,
    RunEnded,
    RunStarted,
    StepEnded,
    StepStarted,
)

SCHEMA_VERSION = 1
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
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
)

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
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("low_limit", sa.Float),
    sa.Column("high_limit", sa.Float),
    sa.Column("expected", sa.Text),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("marginal", sa.Boolean, nullable=False),
    sa.Column("raw_value", sa.Float),
    sa.Column("correction_db", sa.Float),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

attributes = sa.Table(
    "attributes",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("step", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
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


class ResultsStore:
    """Opens (and creates) the database; persists events; answers queries as DataFrames."""

    def __init__(self, target: str | Path | None = None) -> None:
        self.url = database_url(target)
        self.engine: Engine = sa.create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            version = conn.execute(sa.select(schema_info.c.version)).scalar()
            if version is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            elif version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.url}: schema version {version}, this software writes {SCHEMA_VERSION}"
                )
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._pending_attributes: dict[str, list[dict[str, Any]]] = {}
        self._step_started: dict[tuple[str, int], dt.datetime] = {}

    def close(self) -> None:
        self.engine.dispose()

    # --- writing: a subscriber of the event stream ---------------------------------------------
    def __call__(self, event: Event) -> None:
        if isinstance(event, MeasurementRecorded):
            text = isinstance(event.value, str)
            self._pending.setdefault(event.run_id, []).append(
                {
                    "run_id": event.run_id,
                    "step": event.step,
                    "name": event.name,
                    "lane": event.lane,
                    "attempt": event.attempt,
                    "value": None if text else float(event.value),
                    "text_value": event.value if text else None,
                    "unit": event.unit,
                    "low_limit": event.low_limit,
                    "high_limit": event.high_limit,
                    "expected": event.expected,
                    "outcome": str(event.outcome),
                    "marginal": event.marginal,
                    "raw_value": event.raw_value,
                    "correction_db": event.correction_db,
                    "recorded_at": event.at,
                }
            )
        elif isinstance(event, AttributeRecorded):
            self._pending_attributes.setdefault(event.run_id, []).append(
                {
                    "run_id": event.run_id,
                    "step": event.step,
                    "name": event.name,
                    "value": event.value,
                }
            )
        elif isinstance(event, StepStarted):
            self._step_started[(event.run_id, event.index)] = event.at
        elif isinstance(event, StepEnded):
            started = self._step_started.pop((event.run_id, event.index), event.at)
            with self.engine.begin() as conn:  # the step and its measurements, in one commit
                conn.execute(
                    steps.insert().values(
                        run_id=event.run_id,
                        step_index=event.index,
                        name=event.step,
                        started_at=started,
                        ended_at=event.at,
                        outcome=str(event.outcome),
                        error=event.error,
                    )
                )
                self._flush(conn, event.run_id)
        elif isinstance(event, RunStarted):
            self._start_run(event)
        elif isinstance(event, RunEnded):
            with self.engine.begin() as conn:
                self._flush(conn, event.run_id)
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id == event.run_id)
                    .values(
                        ended_at=event.at,
                        outcome=str(event.outcome),
                        error=event.error,
                        complete=True,
                    )
                )

    def _flush(self, conn: sa.Connection, run_id: str) -> None:
        rows = self._pending.pop(run_id, None)
        if rows:
            conn.execute(measurements.insert(), rows)
        attrs = self._pending_attributes.pop(run_id, None)
        if attrs:
            conn.execute(attributes.insert(), attrs)

    def _start_run(self, event: RunStarted) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=event.run_id,
                    sequence=event.sequence,
                    product=event.product,
                    dut_serial=event.dut_serial,
                    site=event.site,
                    station_id=event.station_id,
                    operator=event.operator,
                    software_version=event.software_version,
                    mode=event.mode,
                    limits_path=event.limits_path,
                    limits_sha256=event.limits_sha256,
                    calibration_override=event.calibration_override,
                    started_at=event.started_at,
                    complete=False,
                )
            )
            if event.instruments:
                conn.execute(
                    run_instruments.insert(),
                    [
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
                    ],
                )

    # --- reading ---------------------------------------------------------------------------------
    def runs(self, **filters: Any) -> pd.DataFrame:
        query = sa.select(runs).order_by(runs.c.started_at)
        for key, value in filters.items():
            query = query.where(runs.c[key] == value)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def measurements(self, **filters: Any) -> pd.DataFrame:
        """Tidy long format: one row per measurement, with its run's identity."""
        m, r = measurements, runs
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
                m.c.unit,
                m.c.low_limit,
                m.c.high_limit,
                m.c.expected,
                m.c.outcome,
                m.c.marginal,
                m.c.raw_value,
                m.c.correction_db,
                r.c.started_at,
            )
            .join(r, r.c.run_id == m.c.run_id)
            .order_by(m.c.id)
        )
        for key, value in filters.items():
            column = r.c[key] if key in r.c else m.c["name" if key == "measurement" else key]
            query = query.where(column == value)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def steps(self, run_id: str) -> pd.DataFrame:
        query = sa.select(steps).where(steps.c.run_id == run_id).order_by(steps.c.step_index)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def instruments(self, run_id: str) -> pd.DataFrame:
        query = sa.select(run_instruments).where(run_instruments.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def attributes(self, run_id: str) -> pd.DataFrame:
        query = sa.select(attributes).where(attributes.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)
