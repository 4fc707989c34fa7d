"""The store on SQLite and PostgreSQL: tidy measurements, runs, filters, the per-DUT pivot,
artefacts linked from their measurements, and the station, site and instrument registry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from station.results import ResultsStore, StoreError, open_store
from tests.results.helpers import (
    ERROR_DIE,
    FAILING_DIE,
    dies_of,
    eye_arrays,
    module_run,
    wafer_run,
    wafer_value,
)

ISSUE_MEASUREMENT_COLUMNS = [
    "run_id", "station_id", "dut_serial", "site", "step", "measurement", "lane", "value", "unit",
    "low_limit", "high_limit", "outcome", "started_at", "wafer_id", "die_x", "die_y",
]  # fmt: skip
ISSUE_RUN_COLUMNS = [
    "run_id", "sequence", "product", "dut_serial", "site", "station_id", "outcome", "started_at",
    "ended_at", "complete",
]  # fmt: skip


def test_a_wafer_run_reads_back_tidy_with_dies_limits_and_outcomes(
    store: ResultsStore, tmp_path: Path
) -> None:
    result = wafer_run(store, tmp_path, radius=2)
    frame = store.measurements(wafer_id="W01")
    assert set(ISSUE_MEASUREMENT_COLUMNS) <= set(frame.columns)
    assert len(frame) == len(dies_of(2)) * 4  # coupler, ring, responsivity on two lanes
    assert set(frame["run_id"]) == {result.run_id}
    first = frame.iloc[0]
    assert (first["die_x"], first["die_y"], first["measurement"]) == (0, 2, "coupler_il")
    assert (first["unit"], first["low_limit"], first["high_limit"]) == ("dB", 0.0, 5.0)
    assert first["value"] == wafer_value("coupler_il", None, 0, 2)
    assert str(frame["started_at"].dt.tz) == "UTC" and str(frame["recorded_at"].dt.tz) == "UTC"
    assert frame["lane"].dtype == "Int64" and frame["lane"].isna().sum() == len(dies_of(2)) * 2
    by_die = frame.set_index(["die_x", "die_y", "measurement"])["outcome"]
    assert by_die.loc[(*FAILING_DIE, "coupler_il")] == "FAIL"
    assert by_die.loc[(*ERROR_DIE, "ring_q")] == "ERROR"
    assert set(frame["lot_id"]) == {"LOT1"}


def test_runs_are_one_row_each_with_the_issue_columns_first(
    store: ResultsStore, tmp_path: Path
) -> None:
    wafer = wafer_run(store, tmp_path, radius=1)
    module = module_run(store, tmp_path, lot_id="LOT1")
    frame = store.runs()
    assert list(frame.columns[: len(ISSUE_RUN_COLUMNS)]) == ISSUE_RUN_COLUMNS
    assert frame["run_id"].tolist() == [wafer.run_id, module.run_id]  # oldest first
    assert frame["complete"].tolist() == [True, True]
    assert frame["outcome"].tolist() == ["FAIL", "PASS"]
    assert (frame["ended_at"] >= frame["started_at"]).all()


def test_filters_select_by_product_lot_wafer_run_and_date(
    store: ResultsStore, tmp_path: Path
) -> None:
    wafer = wafer_run(store, tmp_path, radius=1, lot_id="LOT7", wafer_id="W07")
    module = module_run(store, tmp_path, lot_id="LOT8")
    assert store.runs(product="MOD-T")["run_id"].tolist() == [module.run_id]
    assert store.runs(lot="LOT7")["run_id"].tolist() == [wafer.run_id]
    assert store.runs(wafer_id="W07")["run_id"].tolist() == [wafer.run_id]
    assert len(store.runs(run_id=[wafer.run_id, module.run_id])) == 2
    today = dt.datetime.now(dt.UTC).date()
    assert len(store.runs(since=today.isoformat(), until=today.isoformat())) == 2
    assert store.runs(until=(today - dt.timedelta(days=1)).isoformat()).empty
    assert store.runs(since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).empty
    fails = store.measurements(lot_id="LOT7", outcome="FAIL")
    assert fails["measurement"].tolist() == ["coupler_il"]
    assert store.measurements(product="MOD-T", measurement="tdecq", lane=2)["value"].tolist() == [
        pytest.approx(1.7)
    ]
    with pytest.raises(StoreError, match="unknown filter 'colour'"):
        store.runs(colour="red")
    with pytest.raises(StoreError, match="not a date"):
        store.runs(since="last tuesday")


def test_the_pivot_is_wide_per_dut_and_per_die(store: ResultsStore, tmp_path: Path) -> None:
    module = module_run(store, tmp_path, serial="M0042")
    wafer = wafer_run(store, tmp_path, radius=1)
    modules = store.pivot(run_id=module.run_id)
    assert modules.columns.tolist() == [
        "run_id", "dut_serial", "part_number", "tdecq[1]", "tdecq[2]",
        "rx_sensitivity_oma[1]", "rx_sensitivity_oma[2]",
    ]  # fmt: skip
    assert modules.loc[0, "dut_serial"] == "M0042" and modules.loc[0, "part_number"] == "PN-1"
    assert modules.loc[0, "tdecq[2]"] == pytest.approx(1.7)
    dies = store.pivot(run_id=wafer.run_id)
    assert len(dies) == len(dies_of(1))
    assert dies.columns[:4].tolist() == ["run_id", "wafer_id", "die_x", "die_y"]
    row = dies[(dies["die_x"] == 1) & (dies["die_y"] == 0)].iloc[0]
    assert row["responsivity[2]"] == wafer_value("responsivity", 2, 1, 0)


def test_artefacts_are_linked_from_their_measurements_and_read_back(
    store: ResultsStore, tmp_path: Path
) -> None:
    result = module_run(store, tmp_path)
    listed = store.artefacts(result.run_id)
    assert listed[["name", "lane", "kind"]].values.tolist() == [
        ["eye", 1, "eye"], ["eye", 2, "eye"], ["waterfall", 1, "waterfall"],
        ["waterfall", 2, "waterfall"],
    ]  # fmt: skip
    assert listed.loc[2, "metadata"]["ber_target"] == "2.4e-4"
    assert all(len(h) == 64 for h in listed["sha256"])
    frame = store.measurements(run_id=result.run_id).set_index(["measurement", "lane"])
    ids = listed.set_index(["name", "lane"])["id"]
    assert frame.loc[("tdecq", 2), "artefact_id"] == ids[("eye", 2)]
    assert frame.loc[("rx_sensitivity_oma", 1), "artefact_id"] == ids[("waterfall", 1)]
    assert pd.isna(frame["artefact_id"].iloc[0])  # part_number has none
    arrays = store.artefact(artefact_id=int(ids[("eye", 2)]))
    np.testing.assert_array_equal(arrays["density"], eye_arrays(2)["density"])
    same = store.artefact(result.run_id, "eye", lane=2)
    np.testing.assert_array_equal(same["levels"], arrays["levels"])
    with pytest.raises(KeyError):
        store.artefact(result.run_id, "eye", lane=7)


def test_a_tampered_artefact_is_refused(store: ResultsStore, tmp_path: Path) -> None:
    result = module_run(store, tmp_path)
    store.flush()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE artefacts SET sha256 = :h"), {"h": "0" * 64})
    with pytest.raises(ValueError, match="does not match its sha256"):
        store.artefact(result.run_id, "eye", lane=1)


def test_stations_sites_and_instruments_are_registered(store: ResultsStore, tmp_path: Path) -> None:
    module_run(store, tmp_path, station_id="st-A", site=1)
    module_run(store, tmp_path, station_id="st-A", site=2)
    module_run(store, tmp_path, station_id="st-B", site=1)
    assert store.stations()["station_id"].tolist() == ["st-A", "st-B"]
    assert store.sites()[["station_id", "site"]].values.tolist() == [
        ["st-A", 1], ["st-A", 2], ["st-B", 1],
    ]  # fmt: skip
    registry = store.instruments()
    assert len(registry) == 1  # one power meter, seen on three runs
    meter = registry.iloc[0]
    assert (meter["model"], meter["serial_number"], meter["station_id"]) == (
        "N7744C", "MY123", "st-B",
    )  # fmt: skip
    assert pd.Timestamp(meter["calibration_due"]).date() == dt.date(2027, 1, 31)
    run_id = store.runs()["run_id"].iloc[0]
    assert store.instruments(run_id)["role"].tolist() == ["power_meter"]


def test_open_store_takes_a_path_or_url(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    with open_store(path) as store:
        assert store.schema_action == "created"
    with open_store(f"sqlite:///{path}") as store:
        assert store.schema_action == "current" and store.runs().empty
    with pytest.raises(StoreError, match="cannot open"):
        open_store(tmp_path / "no-such-folder" / "r.sqlite")
