"""Opening a results database: create it at the current schema, or upgrade an older one in place
with the Alembic migrations, under a lock so that many processes can open one store at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from station.results.schema import (
    HEAD_REVISION,
    REVISION_OF_VERSION,
    SCHEMA_VERSION,
    metadata,
    schema_info,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_SCHEMA_LOCK = 7_311_004_713  # any constant: the advisory lock every store opener takes


class SchemaRefused(Exception):
    """The database is not one this software can use (newer, or not a results database)."""


def alembic_config(connection: sa.Connection | None = None) -> Any:
    """An Alembic Config for the migrations folder; `connection` is the one to migrate.

    New revision (developers): alembic.command.revision(alembic_config(), "message"), then edit
    the file it writes under migrations/versions, station/results/schema.py and HEAD_REVISION.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def script_head() -> str:
    """The newest revision in migrations/versions."""
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


def _current(conn: sa.Connection) -> tuple[str | None, int | None]:
    """(alembic revision, schema_info version) of the database; None where absent."""
    names = set(sa.inspect(conn).get_table_names())
    revision = version = None
    if "alembic_version" in names:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    if "schema_info" in names:
        version = conn.execute(sa.select(schema_info.c.version)).scalar()
    return revision, version


def _lock(conn: sa.Connection) -> None:
    """Take the schema lock for the rest of the transaction."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, waiting out other writers
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))


def prepare(engine: sa.Engine) -> str:
    """Bring the database to the current schema; returns what was done: "current", "created" or
    "upgraded from <revision>". Raises SchemaRefused for a database this software cannot use."""
    with engine.connect() as conn:
        revision, version = _current(conn)
        conn.rollback()
        if revision == HEAD_REVISION:
            return "current"  # the common case: no lock, no Alembic import
        _lock(conn)
        revision, version = _current(conn)  # again, under the lock: another process may have won
        done = "current"
        if revision is None and version is None:
            metadata.create_all(conn)
            conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            _stamp(conn, HEAD_REVISION)
            done = "created"
        elif revision != HEAD_REVISION:
            if revision is None:  # made before Alembic: schema_info says which version
                if version is not None and version > SCHEMA_VERSION:
                    raise SchemaRefused(_newer(f"schema version {version}"))
                revision = REVISION_OF_VERSION.get(version or 0)
                if revision is None:
                    raise SchemaRefused(f"schema version {version} is not one this software knows")
                _stamp(conn, revision)
            _upgrade(conn, revision)
            done = f"upgraded from {revision}"
        conn.commit()
        return done


def _newer(what: str) -> str:
    return (
        f"{what} is newer than this software's (schema version {SCHEMA_VERSION}, revision "
        f"{HEAD_REVISION}): update the station software to open it"
    )


def _stamp(conn: sa.Connection, revision: str) -> None:
    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS alembic_version "
            "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
        )
    )
    conn.execute(sa.text("DELETE FROM alembic_version"))
    conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": revision})


def _upgrade(conn: sa.Connection, revision: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(conn)
    try:
        ScriptDirectory.from_config(config).get_revision(revision)
    except Exception as err:  # alembic.util.CommandError and friends: an unknown revision
        raise SchemaRefused(_newer(f"schema revision {revision}")) from err
    command.upgrade(config, "head")
