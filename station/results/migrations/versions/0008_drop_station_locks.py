"""Schema version 8: the station_locks table goes. A station's production lock lives in the
hash-chained audit log (station.security.lock), the one place every admission check reads and
only an authenticated engineer clears; a second lock table could disagree with it.

A lock still open in the table cannot be carried over (the migration does not know where the
station's audit log is): the upgrade refuses, in one line, until an engineer has cleared it with
the previous software, so that no station silently loses its lock.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from station.results.migrate import SchemaRefused

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table("station_locks"):
        open_locks = bind.execute(
            sa.text(
                "SELECT station_id, reason FROM station_locks WHERE unlocked_at IS NULL ORDER BY id"
            )
        ).all()
        if open_locks:
            station_id, reason = open_locks[0]
            raise SchemaRefused(
                f"station_locks: station {station_id} is still locked ({reason}); an engineer "
                "unlocks it with the previous software (`station unlock`) before the upgrade"
            )
        op.drop_index("ix_station_locks_station_id", "station_locks")
        op.drop_table("station_locks")
    op.execute(sa.text("UPDATE schema_info SET version = 8"))


def downgrade() -> None:
    op.create_table(
        "station_locks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("site", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unlocked_at", sa.DateTime(timezone=True)),
        sa.Column("unlocked_by", sa.String(64)),
        sa.Column("unlock_reason", sa.Text),
    )
    op.create_index("ix_station_locks_station_id", "station_locks", ["station_id"])
    op.execute(sa.text("UPDATE schema_info SET version = 7"))
