"""Golden-unit offsets and station locks: a passing golden run becomes a new offsets version that
later runs apply (value less offset, raw value and correction kept), in the results store; a
golden run outside its limits locks the station in the audit log until an engineer unlocks it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from station.calibration.offsets import GoldenOffsetsWriter, load_offsets, offsets_history
from station.config import PathLossDb
from station.engine import StepContext
from station.errors import StationError
from station.events import EventBus
from station.limits import LimitsFile, load_limits
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.security.audit import DEFAULT_AUDIT, AuditLog, verify_log
from station.security.lock import StationLocked, lock_state, require_unlocked, unlock
from station.security.overrides import LimitsOverrideRecorder, limits_override
from station.security.users import PermissionDenied, add_user
from station.sequence import Step, step
from tests.station.helpers import LIMITS, FakeSource, limits_file, make_engine, measure_power

# A golden file for the fake product T: `drift` is the station's reading of its golden unit minus
# the unit's reference, per lane, and corrects the product's `power`.
GOLDEN = (
    LIMITS.split("[limits.power]")[0]
    + """
[offsets]
drift = "power"

[limits.drift]
low = -0.25
high = 0.25
unit = "dB"
per_lane = true
"""
)


@pytest.fixture
def limits(tmp_path: Path) -> LimitsFile:
    return limits_file(tmp_path)


def golden_step(drifts: list[float]) -> Step:
    @step(roles=("source",), measures=("drift",))
    def golden_check(ctx: StepContext) -> None:
        for lane, value in enumerate(drifts, start=1):
            ctx.measure("drift", value, unit="dB", lane=lane)

    return golden_check


def golden_run(tmp_path: Path, store: ResultsStore, drifts: list[float]) -> GoldenOffsetsWriter:
    path = tmp_path / "golden.toml"
    path.write_text(GOLDEN)
    limits = load_limits(path)
    bus = EventBus()
    bus.subscribe(store)
    writer = GoldenOffsetsWriter(store.engine, limits)
    bus.subscribe(writer)
    engine = make_engine(limits, (golden_step(drifts),), FakeSource(), "characterisation", bus)
    engine.run("T1")
    store.flush()
    return writer


def test_a_passing_golden_run_is_a_new_offsets_version_and_the_next_run_applies_it(
    tmp_path: Path, limits: LimitsFile
) -> None:
    db = tmp_path / "results.sqlite"
    assert load_offsets(db, "st-1") == {}  # no database yet: none, and none created
    assert not db.exists()
    with ResultsStore(db) as store:
        first = golden_run(tmp_path, store, [0.10, -0.05])
        second = golden_run(tmp_path, store, [0.12, -0.20])
        history = offsets_history(store.engine, "st-1")
    assert first.versions == [("st-1", 1, 1)] and second.versions == [("st-1", 1, 2)]
    assert sorted(history["version"]) == [1, 1, 2, 2]  # versions are kept, not overwritten
    assert set(history["source"]) == {"drift"} and set(history["golden_serial"]) == {"T1"}
    offsets = load_offsets(db, "st-1")
    assert offsets == {1: {("power", 1): 0.12, ("power", 2): -0.20}}  # the newest version

    engine = make_engine(limits, (measure_power,), FakeSource())
    engine.station = engine.station.with_offsets(offsets)
    result = engine.run("T1")
    recorded = {m.lane: m for m in result.measurements}
    assert recorded[1].value == pytest.approx(0.5 - 0.12)
    assert (recorded[1].raw_value, recorded[1].correction_db) == (0.5, pytest.approx(-0.12))
    assert recorded[2].value == pytest.approx(0.7 + 0.20)
    assert result.outcome == Outcome.PASS


@step(roles=("source",), measures=("power",))
def corrected_power(ctx: StepContext) -> None:
    ctx.measure("power", 0.9, unit="mW", lane=2, raw_value=0.4, correction_db=PathLossDb(0.5, 17))


def test_an_offset_joins_a_path_loss_correction_and_keeps_its_calibration_record(
    limits: LimitsFile,
) -> None:
    engine = make_engine(limits, (corrected_power,), FakeSource())
    engine.station = engine.station.with_offsets({1: {("power", 2): 0.25}})
    (m,) = engine.run("T1").measurements
    assert (m.value, m.raw_value) == (pytest.approx(0.65), 0.4)
    assert m.correction_db == pytest.approx(0.25) and m.calibration_id == 17


def test_a_golden_run_outside_its_limits_locks_the_station_until_an_engineer_unlocks_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "results.sqlite"
    log = AuditLog(tmp_path / DEFAULT_AUDIT)  # where the writer finds it: beside the database
    with ResultsStore(db) as store:
        golden_run(tmp_path, store, [0.05, 0.05])
        writer = golden_run(tmp_path, store, [0.05, -0.40])
        assert writer.versions == [] and len(writer.locked) == 1
        assert "drift lane 2 = -0.400 dB" in writer.locked[0][2]
        run_id = store.runs()["run_id"].iloc[-1]
    (entry,) = log.entries()
    assert (entry["action"], entry["actor"], entry["role"]) == ("lock", "golden", "system")
    assert entry["subject"] == "station:st-1" and entry["details"]["run_id"] == run_id
    assert entry["details"]["out_of_bounds"] == [
        {"measurement": "drift", "lane": 2, "value": -0.40, "low": -0.25, "high": 0.25}
    ]
    with pytest.raises(StationLocked, match=r"station st-1 is locked .*drift lane 2.*unlock"):
        require_unlocked(log, "st-1")
    assert load_offsets(db, "st-1") == {1: {("power", 1): 0.05, ("power", 2): 0.05}}  # kept
    operator = add_user(tmp_path / "users.toml", "olga", "operator", "op-secret")
    engineer = add_user(tmp_path / "users.toml", "ada", "engineer", "eng-secret")
    with pytest.raises(PermissionDenied, match=r"olga \(operator\) may not unlock"):
        unlock(log, "st-1", operator, "cleaned the MPO jumper")
    with pytest.raises(StationError, match="an unlock needs a reason"):
        unlock(log, "st-1", engineer, " ")
    lifted = unlock(log, "st-1", engineer, "cleaned the MPO jumper")
    assert lifted["details"] == {"reason": "cleaned the MPO jumper", "lock_seq": entry["seq"]}
    require_unlocked(log, "st-1")  # runs may go again
    assert not lock_state(log, "st-1").locked and verify_log(log.path).count == 2


def test_a_golden_run_that_could_not_check_the_station_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    with ResultsStore(db) as store:
        writer = golden_run(tmp_path, store, [float("nan"), 0.0])  # ERROR: no figure
        assert (writer.versions, writer.locked) == ([], [])
    assert load_offsets(db, "st-1") == {}
    assert not (tmp_path / DEFAULT_AUDIT).exists()  # nothing to lock, no entry


def test_an_override_of_unapproved_limits_is_recorded_with_the_run(
    tmp_path: Path, limits: LimitsFile
) -> None:
    db = tmp_path / "results.sqlite"
    with ResultsStore(db) as store:
        bus = EventBus()
        bus.subscribe(store)
        bus.subscribe(LimitsOverrideRecorder(store.engine, limits, "ER study", "T.toml: draft"))
        result = make_engine(limits, (measure_power,), FakeSource(), bus=bus).run("T1")
        store.flush()
        record = limits_override(store.engine, result.run_id)
    assert record is not None
    assert (record["reason"], record["unapproved_reason"]) == ("ER study", "T.toml: draft")
    assert record["limits_sha256"] == limits.sha256


def test_golden_files_name_what_their_figures_correct(tmp_path: Path) -> None:
    path = tmp_path / "golden.toml"
    path.write_text(GOLDEN.replace('drift = "power"', 'nosuch = "power"'))
    with pytest.raises(StationError, match=r"offsets\.nosuch"):
        load_limits(path)
    path.write_text(GOLDEN.replace('[offsets]\ndrift = "power"\n', ""))
    with pytest.raises(StationError, match="no \\[offsets\\] table"):
        GoldenOffsetsWriter(None, load_limits(path))  # type: ignore[arg-type]
    assert dataclasses.is_dataclass(load_limits(path))
