"""Schema version 5: the path_calibrations table (measured optical path losses of a station, one
row per measurement) and the link from a corrected measurement to the calibration it used.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "path_calibrations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("site", sa.Integer, nullable=False),
        sa.Column("path", sa.String(64), nullable=False),
        sa.Column("path_index", sa.Integer, nullable=False),
        sa.Column("wavelength_nm", sa.Float, nullable=False),
        sa.Column("attenuation_db", sa.Float),
        sa.Column("loss_db", sa.Float, nullable=False),
        sa.Column("uncertainty_db", sa.Float, nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("reference_instruments", sa.Text, nullable=False),
        sa.Column("jumper_serial", sa.String(64)),
        sa.Column("run_id", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_path_calibrations_station_path", "path_calibrations", ["station_id", "site", "path"]
    )
    op.add_column("measurements", sa.Column("calibration_id", sa.Integer))
    op.execute(sa.text("UPDATE schema_info SET version = 5"))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("calibration_id")
    op.drop_index("ix_path_calibrations_station_path", "path_calibrations")
    op.drop_table("path_calibrations")
    op.execute(sa.text("UPDATE schema_info SET version = 4"))
