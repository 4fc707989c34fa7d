"""Schema version 4: the units table (completed wafer dies and lasers of a run, with their bins),
which a resumed run reads to skip what is done.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "units",
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
    op.execute(sa.text("UPDATE schema_info SET version = 4"))


def downgrade() -> None:
    op.drop_table("units")
    op.execute(sa.text("UPDATE schema_info SET version = 3"))
