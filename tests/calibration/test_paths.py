"""Path calibration records and the checks before a run: which paths a sequence uses, the record
in force, and each reason it may not be used (none, expired, swapped jumper, worn jumper)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from station.bench import check_path_calibration, resolve_run_paths
from station.calibration.paths import (
    ATTENUATOR_PATH,
    AttenuatorCurve,
    PathCalibration,
    PathCalibrationInvalid,
    load_path_calibrations,
    write_path_calibrations,
)
from station.calibration.resolve import paths_used
from station.config import PathLossDb, load_station_config
from station.errors import InputError
from station.results.store import ResultsStore
from tests.calibration.helpers import station_config

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
TX_ROLES = ("module_host", "optical_switch", "power_meter", "sampling_scope", "osa")
RX_ROLES = ("module_host", "bert", "attenuator", "rx_switch")


def _record(path: str, index: int, **changes: object) -> PathCalibration:
    jumper = "MPO8-RX-0418" if path == "ref_tx_to_module_rx" else "MPO8-TX-0417"
    record = PathCalibration(
        station_id="sim-module-bench-1",
        site=1,
        path=path,
        path_index=index,
        wavelength_nm=1311.0,
        attenuation_db=None,
        loss_db=7.0 + 0.1 * index,
        uncertainty_db=0.03,
        measured_at=NOW - dt.timedelta(days=1),
        expires_at=NOW + dt.timedelta(days=6),
        method="test",
        reference_instruments="fixture=REF-LB8-0001",
        jumper_serial=jumper,
        run_id="r1",
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def _all_tx(**changes: object) -> list[PathCalibration]:
    return [
        _record(path, index, **changes)
        for path in ("tx_to_power_meter", "tx_to_scope")
        for index in range(8)
    ]


def _stored(tmp_path: Path, records: list[PathCalibration]) -> tuple[str, list[PathCalibration]]:
    store = ResultsStore(tmp_path / "results.sqlite")
    with store.engine.begin() as conn:
        stored = write_path_calibrations(conn, records)
    store.close()
    return store.url, stored


def test_a_sequence_uses_the_jumpered_paths_whose_instruments_it_uses() -> None:
    config = load_station_config(bench="module")
    assert paths_used(config, TX_ROLES) == ["tx_to_power_meter", "tx_to_scope"]
    assert paths_used(config, RX_ROLES) == ["ref_tx_to_module_rx"]
    assert paths_used(config, ("module_host",)) == []  # CMIS only: no optical path
    assert paths_used(config, ("osa", "optical_switch")) == []  # tx_to_osa corrects nothing


def test_records_round_trip_through_the_store_and_the_newest_is_in_force(tmp_path: Path) -> None:
    old = _all_tx(measured_at=NOW - dt.timedelta(days=3), loss_db=9.0)
    url, stored = _stored(tmp_path, [*old, *_all_tx()])
    assert [r.id for r in stored] == list(range(1, 33))
    records = load_path_calibrations(url, "sim-module-bench-1")
    assert len(records) == 32 and records[0].measured_at.tzinfo is not None
    assert load_path_calibrations(url, "another-station") == []
    config, override = check_path_calibration(
        load_station_config(bench="module"),
        "pluggable",
        TX_ROLES,
        records,
        1311.0,
        NOW,
        "production",
        None,
    )
    assert override is None
    loss = config.for_site(1).path_loss_db("tx_to_scope", 3)
    assert isinstance(loss, PathLossDb) and loss == pytest.approx(7.3)
    assert loss.calibration_id == 16 + 8 + 4  # the newer of the two records of lane 4
    # a path the run does not use keeps its configured value, and names no record
    assert not isinstance(config.for_site(1).path_loss_db("tx_to_osa", 0), PathLossDb)


def test_reading_records_creates_no_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.sqlite'}"
    assert load_path_calibrations(url, "sim-module-bench-1") == []
    assert not (tmp_path / "none.sqlite").exists()


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([], "path tx_to_power_meter lane 1: not calibrated (and 15 more)"),
        (
            _all_tx(expires_at=NOW - dt.timedelta(hours=1)),
            "path tx_to_power_meter lane 1: calibration 1 expired 2026-11-28 11:00 UTC",
        ),
        (
            _all_tx(jumper_serial="MPO8-TX-0001"),
            "lane 1: jumper tx_breakout is MPO8-TX-0417, calibrated with MPO8-TX-0001",
        ),
        (
            _all_tx(wavelength_nm=1550.0),  # another band's calibration says nothing about this
            "path tx_to_power_meter lane 1: not calibrated",
        ),
    ],
)
def test_production_refuses_in_one_line_naming_the_path_and_why(
    tmp_path: Path, records: list[PathCalibration], reason: str
) -> None:
    url = _stored(tmp_path, records)[0] if records else f"sqlite:///{tmp_path}/x"
    config = load_station_config(bench="module")
    with pytest.raises(PathCalibrationInvalid) as refused:
        resolve_run_paths(config, "pluggable", TX_ROLES, 1311.0, url, "production", None, NOW)
    message = str(refused.value)
    assert reason in message and "\n" not in message
    assert message.startswith("sim-module-bench.toml: ")
    assert message.endswith("; run path-cal (production needs calibrated paths)")
    # production refuses even with an override; characterisation needs one
    with pytest.raises(PathCalibrationInvalid):
        resolve_run_paths(config, "pluggable", TX_ROLES, 1311.0, url, "production", "why", NOW)
    with pytest.raises(PathCalibrationInvalid, match="--calibration-override"):
        resolve_run_paths(config, "pluggable", TX_ROLES, 1311.0, url, "characterisation", None, NOW)
    _, override = resolve_run_paths(
        config, "pluggable", TX_ROLES, 1311.0, url, "characterisation", "eng study", NOW
    )
    assert override is not None and override.startswith("eng study [path calibration overridden")
    assert reason.split(" (and")[0] in override


def test_a_worn_jumper_blocks_its_paths_until_replaced(tmp_path: Path) -> None:
    config = load_station_config(bench="module")
    jumper = config.jumpers["rx_breakout"]
    jumper = dataclasses.replace(jumper, mating_count=jumper.mating_limit + 1)
    worn = dataclasses.replace(config, jumpers={**config.jumpers, "rx_breakout": jumper})
    records = [_record("ref_tx_to_module_rx", index) for index in range(8)] + _linearity()
    fine, _ = check_path_calibration(
        config, "pluggable", RX_ROLES, _with_ids(records), 1311.0, NOW, "production", None
    )
    assert fine.calibrations[1][("ref_tx_to_module_rx", 7)] == pytest.approx(7.7)
    worn_line = r"ref_tx_to_module_rx: jumper rx_breakout \(MPO8-RX-0418\) mated 1001 times, "
    with pytest.raises(PathCalibrationInvalid, match=worn_line + "limit 1000: replace it"):
        check_path_calibration(
            worn, "pluggable", RX_ROLES, _with_ids(records), 1311.0, NOW, "production", None
        )
    # TX-only runs do not go through that jumper
    check_path_calibration(
        worn, "pluggable", TX_ROLES, _with_ids(_all_tx()), 1311.0, NOW, "production", None
    )


def test_path_cal_itself_needs_no_calibration_but_its_config_table(tmp_path: Path) -> None:
    config = load_station_config(bench="module")
    view, override = resolve_run_paths(
        config, "path-cal", TX_ROLES + RX_ROLES, 1311.0, "sqlite:///x", "production", None, NOW
    )
    assert view is config and override is None
    bare = dataclasses.replace(config, path_cal=None)
    with pytest.raises(InputError, match="path_cal"):
        resolve_run_paths(bare, "path-cal", (), 1311.0, "sqlite:///x", "production", None, NOW)


def _linearity(**changes: object) -> list[PathCalibration]:
    """Attenuator linearity records at 0, 10, 20, 30 and 40 dB: 0.1 dB high at 10 dB."""
    errors = {0.0: 0.0, 10.0: 0.1, 20.0: 0.0, 30.0: -0.1, 40.0: 0.0}
    return [
        _record(ATTENUATOR_PATH, 0, attenuation_db=setting, loss_db=setting + error, **changes)
        for setting, error in errors.items()
    ]


def test_rx_runs_need_the_attenuators_linearity_and_use_it_between_settings() -> None:
    rx = _with_ids([_record("ref_tx_to_module_rx", index) for index in range(8)])
    config = load_station_config(bench="module")
    with pytest.raises(PathCalibrationInvalid, match="path attenuator: linearity not calibrated;"):
        check_path_calibration(config, "pluggable", RX_ROLES, rx, 1311.0, NOW, "production", None)
    linearity = _with_ids(_linearity())
    records = rx + [dataclasses.replace(r, id=100 + i) for i, r in enumerate(linearity)]
    view, _ = check_path_calibration(
        config, "pluggable", RX_ROLES, records, 1311.0, NOW, "production", None
    )
    curve = AttenuatorCurve.of(view.for_site(1))
    assert curve.calibrated and curve.calibration_ids == (100, 101, 102, 103, 104)
    assert curve.actual_db(10.0) == pytest.approx(10.1)
    assert curve.actual_db(5.0) == pytest.approx(5.05)  # halfway: half the error
    assert curve.actual_db(25.0) == pytest.approx(24.95)
    assert curve.actual_db(55.0) == pytest.approx(55.0)  # beyond 40 dB: the last error
    assert curve.actual_db(curve.setting_for(12.34)) == pytest.approx(12.34, abs=1e-9)
    # an uncalibrated station takes the setting as the attenuation
    assert not AttenuatorCurve.of(config).calibrated
    assert AttenuatorCurve.of(config).actual_db(7.5) == 7.5
    # TX-only runs do not use the attenuator; an expired linearity blocks RX runs
    check_path_calibration(
        config, "pluggable", TX_ROLES, _with_ids(_all_tx()), 1311.0, NOW, "production", None
    )
    old = _linearity(expires_at=NOW - dt.timedelta(hours=2))
    expired = rx + [dataclasses.replace(r, id=200 + i) for i, r in enumerate(old)]
    with pytest.raises(PathCalibrationInvalid, match=r"linearity calibration \d+ expired"):
        check_path_calibration(
            config, "pluggable", RX_ROLES, expired, 1311.0, NOW, "production", None
        )


def _with_ids(records: list[PathCalibration]) -> list[PathCalibration]:
    return [dataclasses.replace(r, id=i) for i, r in enumerate(records, start=1)]


# --- the station config's jumpers -----------------------------------------------------------------
def test_jumpers_and_path_cal_settings_load_and_a_site_may_have_its_own(tmp_path: Path) -> None:
    config = station_config(tmp_path, "st-9", tx_jumper="MPO8-TX-0999")
    assert config.jumper_of("tx_to_scope") == config.jumpers["tx_breakout"]
    assert config.jumpers["tx_breakout"].serial == "MPO8-TX-0999"
    assert config.jumper_of("tx_to_osa") is None
    assert config.path_cal is not None and config.path_cal.tap_channel == 2
    assert config.paths["tx_to_power_meter"].bootstrap
    text = config.path.read_text(encoding="utf-8") + (
        '\n[sites.2.jumpers.tx_breakout]\nserial = "MPO8-TX-2222"\nmating_count = 0\n'
        'mating_limit = 500\npaths = ["tx_to_power_meter", "tx_to_scope"]\n'
    )
    config.path.write_text(text, encoding="utf-8")
    two = load_station_config(config.path)
    assert two.for_site(2).jumpers["tx_breakout"].serial == "MPO8-TX-2222"
    assert two.for_site(1).jumpers["tx_breakout"].serial == "MPO8-TX-0999"
    assert two.for_site(2).jumpers["rx_breakout"].serial == "MPO8-RX-0418"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('mating_count = 212', 'mating_count = -1', "jumpers.tx_breakout.mating_count = -1"),
        ('mating_limit = 1000\npaths = ["tx_', 'mating_limit = 0\npaths = ["tx_',
         "jumpers.tx_breakout.mating_limit = 0"),
        ('paths = ["ref_tx_to_module_rx"]', 'paths = ["ref_tx_to_module"]',
         "jumpers.rx_breakout.paths = 'ref_tx_to_module': no such path"),
        ("validity_days = 7", "validity_days = 0", "path_cal.validity_days = 0"),
        ("tap_channel = 2", "tap_channel = 9", "path_cal.tap_channel = 9"),
        ("bootstrap = true\nroles = [\"attenuator\"", "bootstrap = 1\nroles = [\"attenuator\"",
         "paths.ref_tx_to_module_rx.bootstrap = 1"),
    ],
)  # fmt: skip
def test_a_bad_jumper_or_path_cal_value_is_one_line_naming_the_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    config = load_station_config(bench="module")
    text = config.path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / "station.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(InputError) as bad:
        load_station_config(path)
    assert f"{path}: {field}" in str(bad.value) and "\n" not in str(bad.value)
