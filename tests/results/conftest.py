"""Store fixtures: every store test runs on SQLite and, where STATION_TEST_POSTGRES_URL names a
server, on PostgreSQL, in a database made for this session and a schema made for each test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from station.results import ResultsStore

POSTGRES_ENV = "STATION_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true" and not os.environ.get(POSTGRES_ENV):
        raise pytest.UsageError(
            f"CI=true but {POSTGRES_ENV} is not set: the store tests must run on PostgreSQL in CI"
        )


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a database created for this test session on the server the variable names."""
    server = sa.make_url(os.environ[POSTGRES_ENV])
    name = f"station_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty results database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "results.sqlite")
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set (README: results on PostgreSQL)")
    database = request.getfixturevalue("postgres_database")
    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(database).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[ResultsStore]:
    opened = ResultsStore(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[ResultsStore]:
    """A SQLite store, for tests of what sits above the database (plots, HTML)."""
    opened = ResultsStore(tmp_path / "results.sqlite")
    try:
        yield opened
    finally:
        opened.close()
