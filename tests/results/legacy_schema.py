"""The schema as the software before Alembic created it (verbatim from schema version 2, commit
8c3d34b; version 1 lacked the lot, wafer and die columns), to test upgrades in place."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

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


V1_ONLY_LACKS = {"runs": ("lot_id", "wafer_id"), "measurements": ("die_x", "die_y")}


def create_legacy(url: str, version: int) -> str:
    """A database as schema `version` (1 or 2) made it, holding one wafer run; its run id."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        if version == 1:
            for table, columns in V1_ONLY_LACKS.items():
                for column in columns:
                    conn.execute(sa.text(f"DROP INDEX IF EXISTS ix_{table}_{column}"))
                    conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    legacy = sa.MetaData()
    legacy.reflect(engine)
    started = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    run = {
        "run_id": "legacy01",
        "sequence": "pic",
        "product": "PIC-A1",
        "dut_serial": "W01",
        "site": 1,
        "station_id": "st-old",
        "operator": "op",
        "software_version": "0.0.9",
        "mode": "production",
        "limits_path": "PIC-A1.toml",
        "limits_sha256": "a" * 64,
        "started_at": started,
        "ended_at": started,
        "outcome": "PASS",
        "complete": True,
    }
    measurement = {
        "run_id": "legacy01",
        "step": "probe",
        "name": "coupler_il",
        "lane": None,
        "attempt": 1,
        "value": 3.25,
        "outcome": "PASS",
        "marginal": False,
        "recorded_at_ns": 1,
    }
    if version >= 2:
        run |= {"lot_id": "LOT0", "wafer_id": "W01"}
        measurement |= {"die_x": 3, "die_y": -1}
    with engine.begin() as conn:
        legacy.create_all(conn)
        conn.execute(legacy.tables["schema_info"].insert().values(version=version))
        conn.execute(legacy.tables["runs"].insert().values(**run))
        conn.execute(legacy.tables["measurements"].insert().values(**measurement))
        conn.execute(
            legacy.tables["run_instruments"]
            .insert()
            .values(
                run_id="legacy01",
                role="power_meter",
                driver="d",
                resource="r",
                manufacturer="Keysight",
                model="N7744C",
                serial_number="MY1",
                firmware="1",
                calibration_due=dt.date(2027, 1, 1),
            )
        )
        conn.execute(
            legacy.tables["artefacts"]
            .insert()
            .values(
                run_id="legacy01",
                step="probe",
                name="spectrum",
                format="npz",
                sha256="0" * 64,
                data=b"",
                metadata_json='{"kind": "spectrum"}',
                recorded_at_ns=1,
            )
        )
    engine.dispose()
    return "legacy01"
