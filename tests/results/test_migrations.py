"""Schema versions: a database made by an older version is upgraded in place by the Alembic
migrations (data kept, schema equal to a fresh one); a newer one is refused in one line."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from station.results import StoreError, open_store
from station.results.migrate import alembic_config, script_head
from station.results.schema import HEAD_REVISION, SCHEMA_VERSION, metadata
from tests.results.legacy_schema import create_legacy


def _differences(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def _full_url(url: str) -> str:
    return url if "://" in url else f"sqlite:///{url}"


def test_head_revision_is_the_newest_migration() -> None:
    assert script_head() == HEAD_REVISION


def test_a_fresh_store_matches_the_schema_and_the_migration_chain(store_url: str) -> None:
    with open_store(store_url) as store:
        assert store.schema_action == "created"
    assert _differences(_full_url(store_url)) == []
    with open_store(store_url) as store:
        assert store.schema_action == "current"


def test_the_migrations_from_nothing_build_the_same_schema(store_url: str) -> None:
    engine = sa.create_engine(_full_url(store_url))
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
    engine.dispose()
    assert _differences(_full_url(store_url)) == []


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_is_upgraded_in_place(store_url: str, version: int) -> None:
    run_id = create_legacy(_full_url(store_url), version)
    with open_store(store_url) as store:
        assert store.schema_action == f"upgraded from 000{version}"
        runs = store.runs()
        assert runs["run_id"].tolist() == [run_id] and bool(runs.loc[0, "complete"])
        frame = store.measurements(run_id=run_id)
        assert frame["value"].tolist() == [3.25]
        assert frame["die_x"].tolist() == ([3] if version == 2 else [pd.NA])
        assert store.stations()["station_id"].tolist() == ["st-old"]  # backfilled from runs
        assert store.sites()[["station_id", "site"]].values.tolist() == [["st-old", 1]]
        assert store.instruments()["serial_number"].tolist() == ["MY1"]
        assert store.artefacts(run_id)["kind"].tolist() == ["spectrum"]
        with store.engine.connect() as conn:
            version_now = conn.execute(sa.text("SELECT version FROM schema_info")).scalar()
            assert version_now == SCHEMA_VERSION
    assert _differences(_full_url(store_url)) == []
    with open_store(store_url) as store:
        assert store.schema_action == "current"


def test_a_newer_database_is_refused_in_one_line(store_url: str) -> None:
    with open_store(store_url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0042'"))
    with pytest.raises(StoreError) as refused:
        open_store(store_url)
    message = str(refused.value)
    assert "newer than this software" in message and "\n" not in message


def test_a_newer_pre_alembic_database_is_refused(store_url: str) -> None:
    create_legacy(_full_url(store_url), 2)
    engine = sa.create_engine(_full_url(store_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_info SET version = :v"), {"v": SCHEMA_VERSION + 5})
    engine.dispose()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 5} is newer"):
        open_store(store_url)
