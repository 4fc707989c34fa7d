"""`station run` and the path calibration: path-cal publishes records; a production run through
a path without a calibration in force (none, expired, jumper swapped) is refused in one line
before anything is opened or written; characterisation goes ahead with the override recorded."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from station.calibration.paths import load_path_calibrations
from station.cli import main
from station.config import load_station_config
from station.results.store import ResultsStore, database_url

PLUGGABLE = ["run", "pluggable", "--product", "800G-DR8", "--serial", "SIM0001", "--sim"]


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the error line is long; rich wraps at the width


def _refused(code: int, capsys: pytest.CaptureFixture[str], reason: str) -> None:
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(reason, lines[0]), lines[0]
    assert lines[0].endswith("; run path-cal (production needs calibrated paths)")


def test_path_cal_publishes_every_site_s_records_with_their_run(path_calibrated_db: Path) -> None:
    records = load_path_calibrations(database_url(path_calibrated_db), "sim-module-bench-1")
    assert {r.site for r in records} == {1, 2, 3}
    assert len(records) == 3 * (3 * 8 + 9 + 1)  # + the meter's wavelength correction
    with ResultsStore(path_calibrated_db) as store:
        runs = store.runs()
    assert set(runs["sequence"]) == {"path-cal"} and set(runs["outcome"]) == {"PASS"}
    assert {r.run_id for r in records} == set(runs["run_id"])
    assert {r.reference_instruments.split(";")[0] for r in records} == {
        f"fixture=REF-LB8-000{n}" for n in (1, 2, 3)
    }


def test_no_calibration_refuses_production_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "results.sqlite"
    _refused(
        main([*PLUGGABLE, "--db", str(db)]),
        capsys,
        # 16 TX lanes, 8 RX lanes and the attenuator's linearity
        r"^error: sim-module-bench.toml: path tx_to_power_meter lane 1: not calibrated \(and 24 ",
    )
    assert not db.exists()


def test_a_swapped_jumper_refuses_production_in_one_line(
    tmp_path: Path, calibrated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = load_station_config(bench="module").path.read_text(encoding="utf-8")
    config = tmp_path / "station.toml"
    config.write_text(shipped.replace("MPO8-RX-0418", "MPO8-RX-0999"), encoding="utf-8")
    _refused(
        main([*PLUGGABLE, "--station", str(config), "--db", str(calibrated_db)]),
        capsys,
        r"station.toml: path ref_tx_to_module_rx lane 1: jumper rx_breakout is MPO8-RX-0999, "
        r"calibrated with MPO8-RX-0418 \(and 7 more\)",
    )
    with ResultsStore(calibrated_db) as store:
        assert store.runs().empty  # nothing run, nothing written


def test_expired_refuses_production_and_characterisation_proceeds_with_the_override(
    tmp_path: Path, calibrated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(calibrated_db) as conn:
        conn.execute("UPDATE path_calibrations SET expires_at = '2026-01-01 00:00:00.000000'")
    _refused(
        main([*PLUGGABLE, "--db", str(calibrated_db)]),
        capsys,
        # 16 TX lanes, 8 RX lanes and the attenuator's linearity, all expired
        r"path tx_to_power_meter lane 1: calibration \d+ expired 2026-01-01 00:00 UTC \(and 24",
    )

    characterise = [*PLUGGABLE, "--mode", "characterisation", "--time-factor", "0.005"]
    override = ["--calibration-override", "ENG-42 jumper study"]
    code = main([*characterise, *override, "--db", str(calibrated_db)])
    assert code in (0, 1), capsys.readouterr()
    with ResultsStore(calibrated_db) as store:
        run = store.runs().iloc[0]
        power = store.measurements(run_id=run["run_id"], measurement="tx_average_power")
    assert re.match(
        r"ENG-42 jumper study \[path calibration overridden: path tx_to_power_meter lane 1: "
        r"calibration \d+ expired 2026-01-01 00:00 UTC \(and 24 more\)\]$",
        run["calibration_override"],
    )
    assert len(power) == 8 and power["raw_value"].lt(power["value"]).all()
    with sqlite3.connect(calibrated_db) as conn:  # each names the (expired) record it used
        named = pd.read_sql(
            "SELECT m.lane, m.correction_db, c.loss_db, c.path FROM measurements m "
            "JOIN path_calibrations c ON c.id = m.calibration_id WHERE m.name = 'tx_average_power'",
            conn,
        )
    assert sorted(named["lane"]) == list(range(1, 9))
    assert (named["path"] == "tx_to_power_meter").all()
    assert (named["correction_db"] - named["loss_db"]).abs().max() < 1e-9
