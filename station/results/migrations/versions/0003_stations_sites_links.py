"""Schema version 3: stations, sites and instruments tables; artefact kind and die; the link from
a measurement to its artefact; 64-bit measurement ids on PostgreSQL.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sites",
        sa.Column(
            "station_id", sa.String(64), sa.ForeignKey("stations.station_id"), primary_key=True
        ),
        sa.Column("site", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "instruments",
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
    op.execute(
        sa.text(
            "INSERT INTO stations (station_id, first_run_at) "
            "SELECT station_id, MIN(started_at) FROM runs GROUP BY station_id"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO sites (station_id, site, first_run_at) "
            "SELECT station_id, site, MIN(started_at) FROM runs GROUP BY station_id, site"
        )
    )
    _backfill_instruments()

    op.add_column("artefacts", sa.Column("kind", sa.String(32)))
    op.add_column("artefacts", sa.Column("die_x", sa.Integer))
    op.add_column("artefacts", sa.Column("die_y", sa.Integer))
    _backfill_artefact_kinds()
    if op.get_bind().dialect.name == "sqlite":
        # SQLite takes REFERENCES in ADD COLUMN (Alembic would ask for a table copy instead)
        op.execute(
            sa.text(
                "ALTER TABLE measurements ADD COLUMN artefact_id INTEGER REFERENCES artefacts (id)"
            )
        )
    else:
        op.add_column("measurements", sa.Column("artefact_id", sa.Integer))
        op.create_foreign_key(
            "measurements_artefact_id_fkey", "measurements", "artefacts", ["artefact_id"], ["id"]
        )
        op.alter_column("measurements", "id", type_=sa.BigInteger, existing_nullable=False)
        op.execute(sa.text("ALTER SEQUENCE IF EXISTS measurements_id_seq AS bigint"))
    op.execute(sa.text("UPDATE schema_info SET version = 3"))


def _backfill_instruments() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT i.manufacturer, i.model, i.serial_number, i.firmware, i.calibration_due, "
            "r.station_id, i.role, r.run_id, r.started_at FROM run_instruments i "
            "JOIN runs r ON r.run_id = i.run_id ORDER BY r.started_at"
        )
    ).all()
    latest = {(row[0], row[1], row[2]): row for row in rows}  # the last run wins
    if latest:
        bind.execute(
            sa.text(
                "INSERT INTO instruments (manufacturer, model, serial_number, firmware, "
                "calibration_due, station_id, role, last_run_id, last_seen_at) VALUES "
                "(:m, :mo, :s, :f, :c, :st, :ro, :ru, :at)"
            ),
            [
                dict(zip(("m", "mo", "s", "f", "c", "st", "ro", "ru", "at"), row, strict=True))
                for row in latest.values()
            ],
        )


def _backfill_artefact_kinds() -> None:
    bind = op.get_bind()
    for artefact_id, text in bind.execute(sa.text("SELECT id, metadata_json FROM artefacts")):
        kind = json.loads(text).get("kind")
        if kind:
            bind.execute(
                sa.text("UPDATE artefacts SET kind = :kind WHERE id = :id"),
                {"kind": str(kind)[:32], "id": artefact_id},
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.drop_constraint("measurements_artefact_id_fkey", "measurements", type_="foreignkey")
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("artefact_id")
    with op.batch_alter_table("artefacts") as batch:
        for column in ("die_y", "die_x", "kind"):
            batch.drop_column(column)
    for table in ("instruments", "sites", "stations"):
        op.drop_table(table)
    op.execute(sa.text("UPDATE schema_info SET version = 2"))
