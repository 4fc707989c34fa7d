"""`station results export`: CSV, JSON, Parquet partitioned by product and date, STDF; filters;
bad input is one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from station.cli import main
from station.results import ResultsStore
from tests.results.helpers import module_run, wafer_run
from tests.results.stdf_reader import read_records


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps an error line at the terminal's width


def _export(store: ResultsStore, fmt: str, out: Path, *filters: str) -> int:
    return main(
        ["results", "export", "--db", store.url, "--format", fmt, "--out", str(out), *filters]
    )


def test_csv_and_json_hold_the_tidy_rows_of_the_selected_runs(
    store: ResultsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wafer = wafer_run(store, tmp_path, radius=1, lot_id="LOT3", wafer_id="W03")
    module_run(store, tmp_path, lot_id="LOT4")
    store.flush()
    assert _export(store, "csv", tmp_path / "w.csv", "--lot", "LOT3") == 0
    assert "csv: 1 runs, 20 results" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "w.csv")
    assert set(frame["run_id"]) == {wafer.run_id} and len(frame) == 20
    assert frame["started_at"].iloc[0].endswith("Z")
    tidy = store.measurements(lot_id="LOT3")
    assert frame["value"].tolist() == pytest.approx(tidy["value"].tolist(), nan_ok=True)

    assert _export(store, "json", tmp_path / "m.json", "--product", "MOD-T") == 0
    document = json.loads((tmp_path / "m.json").read_text())
    (run,) = document["runs"]
    assert run["product"] == "MOD-T" and run["complete"] is True
    assert [m["measurement"] for m in run["measurements"]][:3] == ["part_number", "tdecq", "tdecq"]
    assert (
        run["measurements"][0]["text_value"] == "PN-1" and run["measurements"][0]["value"] is None
    )


def test_parquet_is_partitioned_by_product_and_date(store: ResultsStore, tmp_path: Path) -> None:
    wafer_run(store, tmp_path, radius=1)
    module_run(store, tmp_path)
    store.flush()
    out = tmp_path / "lake"
    assert _export(store, "parquet", out) == 0
    day = store.runs()["started_at"].iloc[0].strftime("%Y-%m-%d")
    assert sorted(p.name for p in out.iterdir()) == ["product=MOD-T", "product=PIC-A1"]
    assert [p.name for p in (out / "product=PIC-A1").iterdir()] == [f"date={day}"]
    table = pq.read_table(out).to_pandas()
    assert len(table) == len(store.measurements())
    assert set(table["product"].astype(str)) == {"MOD-T", "PIC-A1"}
    assert _export(store, "parquet", out) == 0  # re-export replaces the day, no duplicates
    assert len(pq.read_table(out)) == len(store.measurements())


def test_stdf_export_from_the_command_line(store: ResultsStore, tmp_path: Path) -> None:
    result = wafer_run(store, tmp_path, radius=1, wafer_id="W09")
    store.flush()
    assert (
        _export(store, "stdf", tmp_path / "w.stdf", "--wafer", "W09", "--run", result.run_id) == 0
    )
    kinds = [kind for kind, _ in read_records(tmp_path / "w.stdf")]
    assert kinds.count("PRR") == 5 and kinds[-1] == "MRR"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "stdf", "--out", "{tmp}/x.stdf"], "holds one product"),
        (["--format", "csv", "--out", "{tmp}/x.csv", "--lot", "NOPE"], "no run matches"),
        (["--format", "csv", "--out", "{tmp}/x.csv", "--since", "someday"], "not a date"),
        (["--format", "csv", "--out", "{tmp}/missing/x.csv"], "does not exist"),
    ],
)
def test_bad_export_input_is_one_line_and_exit_2(
    store: ResultsStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    wafer_run(store, tmp_path, radius=1)
    module_run(store, tmp_path)
    store.flush()
    argv = ["results", "export", "--db", store.url, *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_missing_database_file_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.sqlite"
    assert main(["results", "runs", "--db", str(missing)]) == 2
    assert "no such results database" in capsys.readouterr().err and not missing.exists()
