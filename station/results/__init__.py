"""Results: the store (SQLite by default, PostgreSQL for a line), queries as pandas DataFrames,
exports (CSV, Parquet, JSON, STDF V4) and HTML reports.

`open_store(url)` opens a database by path or URL (creating it, or upgrading an older one in
place); the store is also the event-stream subscriber that persists runs as they go.
"""

from __future__ import annotations

from pathlib import Path

from station.results.store import DEFAULT_DB, ResultsStore, StoreError, database_url

__all__ = ["DEFAULT_DB", "ResultsStore", "StoreError", "database_url", "open_store"]


def open_store(url: str | Path | None = None) -> ResultsStore:
    """Open the results database at `url` (a file path, `sqlite:///...` or
    `postgresql+psycopg://...`); without one, the default SQLite file in the current folder."""
    return ResultsStore(url)
