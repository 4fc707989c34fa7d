"""The results schema (SQLAlchemy Core), the same on SQLite and PostgreSQL, and its version.

A change here needs a migration in migrations/versions and a new HEAD_REVISION.
"""

from __future__ import annotations

import sqlalchemy as sa

#: Human-readable schema version, kept in `schema_info` so older software refuses a newer file.
SCHEMA_VERSION = 4
#: The Alembic revision that creates exactly these tables (tests check it is the script head).
HEAD_REVISION = "0004"
#: schema_info.version of databases made before Alembic -> the revision that describes them
REVISION_OF_VERSION = {1: "0001", 2: "0002", 3: "0003", 4: "0004"}

metadata = sa.MetaData()

schema_info = sa.Table(
    "schema_info",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.station_id"), primary_key=True),
    sa.Column("site", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
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

# The station's instruments by identity, with the calibration due date last seen on a run.
instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("manufacturer", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("serial_number", sa.String(64), primary_key=True),
    sa.Column("firmware", sa.String(64), nullable=False),
    sa.Column("calibration_due", sa.Date),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("last_run_id", sa.String(32), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
)

# What each run used: identity, resource and calibration as they were at the run.
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
# artefact_id is set after the insert, by one UPDATE per artefact, never per measurement.
measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid itself
        primary_key=True,
        autoincrement=True,
    ),
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
    sa.Column("artefact_id", sa.Integer, sa.ForeignKey("artefacts.id")),
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
    sa.Column("kind", sa.String(32)),  # metadata["kind"]: how a report plots it
    sa.Column("die_x", sa.Integer),  # wafer runs: metadata["die_x"], ["die_y"]
    sa.Column("die_y", sa.Integer),
)

# Completed units of a run (wafer dies, lasers), committed with the unit's measurements at its
# checkpoint: a resumed run skips them, and the primary key keeps any unit from being recorded
# twice. Wafer dies carry their die and the hard and soft bins of the product's bin table.
units = sa.Table(
    "units",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("unit", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("die_x", sa.Integer),
    sa.Column("die_y", sa.Integer),
    sa.Column("hard_bin", sa.Integer),
    sa.Column("soft_bin", sa.Integer),
    sa.Column("bin_name", sa.String(64)),
    sa.Column("completed_at_ns", sa.BigInteger, nullable=False),
)
