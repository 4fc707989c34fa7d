"""Exports of selected results: CSV and JSON files, a Parquet dataset partitioned by product and
date, and STDF V4 (station.results.stdf) for wafer and laser data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from station.results.stdf import write_stdf
from station.results.store import ResultsStore

FORMATS = ("csv", "parquet", "json", "stdf")


class NothingToExport(LookupError):
    """No run matches the filters."""


@dataclass(frozen=True)
class ExportSummary:
    format: str
    path: Path
    runs: int
    rows: int  # measurements written (STDF: parametric results)


def export(store: ResultsStore, fmt: str, out: Path, **filters: Any) -> ExportSummary:
    """Write the runs matching `filters` (the store's run filters) and their measurements."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    runs = store.runs(**filters)
    if runs.empty:
        raise NothingToExport("no run matches the filters")
    tidy = store.measurements(**filters)
    tidy = tidy[tidy["run_id"].isin(runs["run_id"])]  # runs that started between the two reads
    if fmt == "stdf":
        summary = write_stdf(out, runs, tidy)
        return ExportSummary(fmt, out, len(runs), summary.results)
    if fmt == "csv":
        tidy.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    elif fmt == "json":
        _write_json(out, runs, tidy)
    else:
        _write_parquet(out, tidy)
    return ExportSummary(fmt, out, len(runs), len(tidy))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: ISO 8601 UTC times, null for missing values."""
    return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="us"))


def _write_json(out: Path, runs: pd.DataFrame, tidy: pd.DataFrame) -> None:
    """{"runs": [run fields ..., "measurements": [...]]}: one document, runs nested."""
    per_run = {
        run_id: _records(rows.drop(columns=["run_id"]))
        for run_id, rows in tidy.groupby("run_id", sort=False)
    }
    documents = [{**run, "measurements": per_run.get(run["run_id"], [])} for run in _records(runs)]
    with out.open("w", encoding="utf-8") as stream:
        json.dump({"runs": documents}, stream, indent=1)


def _write_parquet(out: Path, tidy: pd.DataFrame) -> None:
    """A Hive-partitioned dataset under `out`: product=<p>/date=<YYYY-MM-DD>/*.parquet.

    Re-exporting a product and day replaces that partition (delete_matching), so a nightly
    export can be re-run; other partitions are kept.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = tidy.assign(date=tidy["started_at"].dt.strftime("%Y-%m-%d"))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_to_dataset(
        table,
        root_path=str(out),
        partition_cols=["product", "date"],
        existing_data_behavior="delete_matching",
    )
