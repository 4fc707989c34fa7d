"""Schema version 6: limits overrides of characterisation runs, golden-unit station offsets
(versioned) and station locks, gauge R&R studies with their results and runs, and limits versions
released by a study.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "limits_overrides",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("limits_path", sa.Text, nullable=False),
        sa.Column("limits_sha256", sa.String(64), nullable=False),
        sa.Column("unapproved_reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "station_offsets",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("site", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("measurement", sa.String(64), primary_key=True),
        sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("offset_db", sa.Float, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),  # the golden figure it came from
        sa.Column("golden_run_id", sa.String(32), nullable=False),
        sa.Column("golden_serial", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "station_locks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False, index=True),
        sa.Column("site", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unlocked_at", sa.DateTime(timezone=True)),
        sa.Column("unlocked_by", sa.String(64)),
        sa.Column("unlock_reason", sa.Text),
    )
    op.create_table(
        "grr_studies",
        sa.Column("study_id", sa.String(32), primary_key=True),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("limits_version", sa.String(64), nullable=False),
        sa.Column("limits_sha256", sa.String(64), nullable=False),
        sa.Column("sequence", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("appraiser_kind", sa.String(32), nullable=False),  # "site" (simulated stations)
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("appraisers", sa.Integer, nullable=False),
        sa.Column("repeats", sa.Integer, nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released", sa.Boolean, nullable=False),
    )
    op.create_table(
        "grr_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.String(32), sa.ForeignKey("grr_studies.study_id"), nullable=False),
        sa.Column("measurement", sa.String(64), nullable=False),
        sa.Column("lane", sa.Integer),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("ev", sa.Float, nullable=False),
        sa.Column("av", sa.Float, nullable=False),
        sa.Column("interaction", sa.Float, nullable=False),
        sa.Column("grr", sa.Float, nullable=False),
        sa.Column("pv", sa.Float, nullable=False),
        sa.Column("tv", sa.Float, nullable=False),
        sa.Column("interaction_pooled", sa.Boolean, nullable=False),
        sa.Column("tolerance", sa.Float),
        sa.Column("pct_grr_tolerance", sa.Float),
        sa.Column("pct_grr_study", sa.Float),
        sa.Column("ndc", sa.Float),
        sa.Column("key", sa.Boolean, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
    )
    op.create_table(
        "grr_runs",
        sa.Column(
            "study_id", sa.String(32), sa.ForeignKey("grr_studies.study_id"), primary_key=True
        ),
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("appraiser", sa.Integer, nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False),
    )
    op.create_table(
        "limits_releases",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("limits_sha256", sa.String(64), primary_key=True),
        sa.Column("limits_version", sa.String(64), nullable=False),
        sa.Column("study_id", sa.String(32), sa.ForeignKey("grr_studies.study_id"), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(sa.text("UPDATE schema_info SET version = 6"))


def downgrade() -> None:
    op.drop_table("limits_releases")
    op.drop_table("grr_runs")
    op.drop_table("grr_results")
    op.drop_table("grr_studies")
    op.drop_table("station_locks")
    op.drop_table("station_offsets")
    op.drop_table("limits_overrides")
    op.execute(sa.text("UPDATE schema_info SET version = 5"))
