"""Schema version 2: lot and wafer on the run, die x/y on every measurement.

Plain ADD COLUMNs: cheap on a large SQLite file (no table is copied).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("lot_id", sa.String(64)))
    op.add_column("runs", sa.Column("wafer_id", sa.String(64)))
    op.create_index("ix_runs_lot_id", "runs", ["lot_id"])
    op.create_index("ix_runs_wafer_id", "runs", ["wafer_id"])
    op.add_column("measurements", sa.Column("die_x", sa.Integer))
    op.add_column("measurements", sa.Column("die_y", sa.Integer))
    op.execute(sa.text("UPDATE schema_info SET version = 2"))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("die_y")
        batch.drop_column("die_x")
    op.drop_index("ix_runs_wafer_id", "runs")
    op.drop_index("ix_runs_lot_id", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("wafer_id")
        batch.drop_column("lot_id")
    op.execute(sa.text("UPDATE schema_info SET version = 1"))
