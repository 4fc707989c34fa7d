"""Schema version 7: the traveller as run columns (work order, route operation) and the unit's
genealogy as a table; the test-time split of a step (waiting for shared instruments, retried
attempts, load prompts); station downtime with reasons; DUT-side jumper mating counters.

The traveller used to be recorded as run attributes (step "traveller"); the upgrade copies those
into the new columns and the genealogy table, so old runs answer the new queries too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TRAVELLER_STEP = "traveller"


def upgrade() -> None:
    op.add_column("runs", sa.Column("work_order", sa.String(64)))
    op.add_column("runs", sa.Column("route_operation", sa.String(64)))
    op.create_index("ix_runs_work_order", "runs", ["work_order"])
    op.add_column("steps", sa.Column("waited_s", sa.Float))
    op.add_column("steps", sa.Column("retry_s", sa.Float))
    op.add_column("steps", sa.Column("load_prompt_s", sa.Float))
    op.create_table(
        "genealogy",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("part_role", sa.String(64), primary_key=True),
        sa.Column("part_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_genealogy_part_id", "genealogy", ["part_id"])
    op.create_table(
        "downtime",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("site", sa.Integer),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("recorded_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_downtime_station", "downtime", ["station_id", "started_at"])
    op.create_table(
        "jumper_matings",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("jumper_serial", sa.String(64), primary_key=True),
        sa.Column("site", sa.Integer, nullable=False),
        sa.Column("matings", sa.Integer, nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    _copy_traveller_attributes()
    op.execute(sa.text("UPDATE schema_info SET version = 7"))


def _copy_traveller_attributes() -> None:
    """Old runs' traveller attributes -> the run columns and the genealogy table."""
    for column in ("work_order", "route_operation"):
        op.execute(
            sa.text(
                f"UPDATE runs SET {column} = (SELECT MIN(a.value) FROM attributes a "
                "WHERE a.run_id = runs.run_id AND a.step = :step AND a.name = :name) "
                f"WHERE {column} IS NULL"
            ).bindparams(step=_TRAVELLER_STEP, name=column)
        )
    op.execute(
        sa.text(
            "INSERT INTO genealogy (serial, part_role, part_id, run_id, recorded_at) "
            "SELECT r.dut_serial, SUBSTR(a.name, 11), MIN(a.value), r.run_id, r.started_at "
            "FROM attributes a JOIN runs r ON r.run_id = a.run_id "
            "WHERE a.step = :step AND a.name LIKE 'genealogy.%' "
            "GROUP BY r.dut_serial, SUBSTR(a.name, 11), r.run_id, r.started_at"
        ).bindparams(step=_TRAVELLER_STEP)
    )


def downgrade() -> None:
    op.drop_table("jumper_matings")
    op.drop_index("ix_downtime_station", "downtime")
    op.drop_table("downtime")
    op.drop_index("ix_genealogy_part_id", "genealogy")
    op.drop_table("genealogy")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("load_prompt_s")
        batch.drop_column("retry_s")
        batch.drop_column("waited_s")
    op.drop_index("ix_runs_work_order", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("route_operation")
        batch.drop_column("work_order")
    op.execute(sa.text("UPDATE schema_info SET version = 6"))
