"""Schema version 1: runs, instruments per run, steps, run limits, narrow measurements, artefacts.

The base revision: what the first store created (before lot, wafer and die columns).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("schema_info", sa.Column("version", sa.Integer, nullable=False))
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("sequence", sa.String(64), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("dut_serial", sa.String(64), nullable=False),
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
        sa.Column("complete", sa.Boolean, nullable=False),
    )
    op.create_index("ix_runs_dut_serial", "runs", ["dut_serial"])
    op.create_table(
        "run_instruments",
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
    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("step_index", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("started_at_ns", sa.BigInteger, nullable=False),
        sa.Column("ended_at_ns", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "run_limits",
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
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False),
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
        sa.Column("recorded_at_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_measurements_run_id", "measurements", ["run_id"])
    op.create_table(
        "attributes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_attributes_run_id", "attributes", ["run_id"])
    op.create_table(
        "artefacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("lane", sa.Integer),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False),
        sa.Column("recorded_at_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_artefacts_run_id", "artefacts", ["run_id"])
    op.execute(sa.text("INSERT INTO schema_info (version) VALUES (1)"))


def downgrade() -> None:
    for table in (
        "artefacts",
        "attributes",
        "measurements",
        "run_limits",
        "steps",
        "run_instruments",
        "runs",
        "schema_info",
    ):
        op.drop_table(table)
