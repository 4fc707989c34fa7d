"""The measurement system's admission, shared by `station run`, `station grr` and the shift: a
worn jumper and an uncalibrated path refuse every run (characterisation only under a recorded
calibration override), a lock refuses production of units and lets the remedy and the
investigation go ahead."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from station.admission import admit_measurement_system, lock_applies
from station.calibration.paths import PathCalibrationInvalid
from station.calibration.resolve import JumperWorn
from station.config import StationConfig, load_station_config
from station.limits import limits_path, load_limits
from station.security.audit import AuditLog
from station.security.lock import StationLocked, lock
from station.sequence import Sequence, load_sequence

STATION_ID = "sim-module-bench-1"


@pytest.fixture
def config() -> StationConfig:
    return load_station_config(bench="module")


@pytest.fixture
def locked(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    lock(log, STATION_ID, "SPC rule 1 on golden TX power", actor="spc", role="system")
    return log


def _admit(
    config: StationConfig,
    sequence: Sequence,
    mode: str,
    db: Path,
    log: AuditLog,
    override: str | None = None,
) -> tuple[StationConfig, str | None]:
    wavelength_nm = load_limits(limits_path("800G-DR8")).product.wavelength_nm
    return admit_measurement_system(
        config, sequence, wavelength_nm, mode, db=str(db), log=log, calibration_override=override
    )


def test_a_lock_refuses_production_of_units_only() -> None:
    assert lock_applies("pluggable", "production")
    assert not lock_applies("pluggable", "characterisation")  # the engineer investigates
    assert not lock_applies("path-cal", "production")  # the remedy
    assert not lock_applies("golden", "production")  # and its verification


def test_on_a_locked_station_production_is_refused_and_the_remedy_goes_ahead(
    config: StationConfig, calibrated_db: Path, locked: AuditLog
) -> None:
    pluggable = load_sequence("pluggable")
    with pytest.raises(StationLocked, match=r"is locked \(audit entry 1: SPC rule 1"):
        _admit(config, pluggable, "production", calibrated_db, locked)
    admitted, override = _admit(
        config, load_sequence("golden"), "production", calibrated_db, locked
    )
    assert override is None
    # the calibrated losses are in force, from the store's records
    assert admitted.calibrations and not config.calibrations
    admitted, _ = _admit(config, pluggable, "characterisation", calibrated_db, locked)
    assert admitted.calibrations


def test_paths_and_jumpers_are_checked_before_the_lock(
    config: StationConfig, tmp_path: Path, calibrated_db: Path, locked: AuditLog
) -> None:
    pluggable = load_sequence("pluggable")
    empty = tmp_path / "empty.sqlite"
    with pytest.raises(PathCalibrationInvalid, match="tx_to_power_meter"):
        _admit(config, pluggable, "production", empty, locked)
    # characterisation without the calibrations: only under an override, which comes back
    _, override = _admit(config, pluggable, "characterisation", empty, locked, "bring-up")
    assert override is not None and override.startswith("bring-up [path calibration overridden")
    assert not empty.exists()  # looking created nothing
    tx = config.jumpers["tx_breakout"]
    worn = dataclasses.replace(
        config,
        jumpers={**config.jumpers, "tx_breakout": dataclasses.replace(tx, mating_count=1000)},
    )
    with pytest.raises(JumperWorn, match=r"jumper tx_breakout serial MPO8-TX-0417 has 1000"):
        _admit(worn, load_sequence("path-cal"), "production", calibrated_db, locked)
