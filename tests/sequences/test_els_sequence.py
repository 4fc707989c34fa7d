"""The els sequence in process on the simulated ELS bench: known-bad lasers fail on the right
measurement and get the right bin, results agree with the simulated truth, the controller's
current limit never exceeds the part's maximum, and every laser is off on every exit path.

Tolerances against the truth: threshold 10 % (the linear fit over 30-80 mA extrapolates below the
model's soft knee), slope 0.85-1.02 of the 25 degC truth (the junction warms a few K over the fit
window), power at 200 mA 0.15 dB (path calibration 0.03 dB, switch repeatability), wavelength
0.05 nm of the model at the junction temperature the current sets, SMSR 1.5 dB.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sequences.els import SEQUENCE
from sim_instruments.bench import SimBench
from sim_instruments.els import ElsFixture, make_els, operating_point
from sim_instruments.faults import Fault
from station.bench import open_bench
from station.config import StationConfig, load_station_config
from station.engine import RunEngine, RunResult
from station.events import EventBus, UnitCompleted
from station.limits import LimitsFile, limits_path, load_limits
from station.outcome import Outcome

TIME_FACTOR = 0.002
PRODUCT = "ELS8-DR"
TEC_HOLD_S = 0.05  # the controller driver's TEC hold time, in wall seconds (simulated: 25 s)


@dataclasses.dataclass
class ElsRun:
    result: RunResult
    units: list[UnitCompleted]
    max_drive_a: float  # the highest current the fixture was ever driven to

    def failed(self) -> set[tuple[str, int | None]]:
        return {(m.name, m.lane) for m in self.result.measurements if m.outcome != Outcome.PASS}

    def lane(self, lane: int) -> dict[str, float]:
        return {m.name: float(m.value) for m in self.result.measurements if m.lane == lane}


def run_els(
    sim: SimBench,
    serial: str,
    *,
    limits: LimitsFile | None = None,
    config: StationConfig | None = None,
    during: Callable[[RunEngine, ElsFixture], None] | None = None,
) -> ElsRun:
    """Insert `serial` and run els; `during(engine, fixture)` runs on a thread beside it."""
    sim.insert(serial, PRODUCT)
    fixture = sim.world.els
    assert fixture is not None
    drives: list[float] = []
    original_drive = fixture.drive

    def drive(current_a: float) -> None:
        drives.append(current_a)
        original_drive(current_a)

    fixture.drive = drive  # type: ignore[method-assign]
    config = config or load_station_config(None, "els")
    units: list[UnitCompleted] = []
    bus = EventBus()
    bus.subscribe(lambda e: units.append(e) if isinstance(e, UnitCompleted) else None)
    with open_bench(config, SEQUENCE.roles, sim.resources()) as opened:
        opened.instruments["laser_driver"].tec_hold_s = TEC_HOLD_S  # type: ignore[attr-defined]
        engine = RunEngine(
            sequence=SEQUENCE,
            limits=limits or load_limits(limits_path(PRODUCT)),
            station=config,
            instruments=opened.instruments,
            instrument_records=tuple(opened.records),
            bus=bus,
        )
        helper = None
        if during is not None:
            helper = threading.Thread(target=during, args=(engine, fixture), daemon=True)
            helper.start()
        result = engine.run(serial)
        if helper is not None:
            helper.join(10)
    return ElsRun(result, units, max(drives, default=0.0))


def _serial_with(condition: Callable[[object], int | None]) -> tuple[str, int]:
    """The first ELS8-DR part (and its 1-based laser) the condition picks."""
    for n in range(1, 400):
        part = make_els(f"ELS{n:04d}", PRODUCT)
        lane = condition(part)
        if lane is not None:
            return part.serial, lane
    raise AssertionError("no such part in the population")


def _only(part: object, lasers: list[int]) -> int | None:
    """The one laser of `lasers`, if the part has no other defect."""
    ls = part.lasers  # type: ignore[attr-defined]
    defects = {
        k
        for k, laser in enumerate(ls)
        if laser.weak or laser.kink_current_a is not None or laser.smsr_db < 35.0
    }
    return lasers[0] + 1 if len(lasers) == 1 and defects == set(lasers) else None


WEAK = _serial_with(lambda p: _only(p, [k for k, x in enumerate(p.lasers) if x.weak]))
KINKED = _serial_with(
    lambda p: _only(
        p,
        [
            k
            for k, x in enumerate(p.lasers)
            if x.kink_current_a is not None and 0.06 < x.kink_current_a < 0.23
        ],
    )
)
LOW_SMSR = _serial_with(lambda p: _only(p, [k for k, x in enumerate(p.lasers) if x.smsr_db < 33]))


@pytest.fixture
def sim() -> Iterator[SimBench]:
    with SimBench.build("els", time_factor=TIME_FACTOR) as bench:
        yield bench


def _assert_dark(sim: SimBench) -> None:
    fixture = sim.world.els
    assert fixture is not None and not fixture.output_on and fixture.current_a() == 0.0
    controller = sim.devices["laser_driver"].device  # type: ignore[union-attr]
    assert controller.setpoint_ma == 0.0


def test_a_weak_laser_fails_its_liv_alone_and_the_rest_read_their_truth(sim: SimBench) -> None:
    serial, weak_lane = WEAK
    run = run_els(sim, serial)
    assert run.result.outcome == Outcome.FAIL and run.result.error is None
    failed = run.failed()
    assert ("liv_slope_efficiency", weak_lane) in failed
    assert {lane for _, lane in failed} == {weak_lane}
    assert {name for name, _ in failed} <= {
        "liv_slope_efficiency", "power_at_operating", "liv_threshold_current"
    }  # fmt: skip
    bins = {u.unit: (u.hard_bin, u.soft_bin, u.bin_name) for u in run.units}
    assert bins[f"laser {weak_lane}"] == (2, 20, "LIV")
    assert all(b == (1, 1, "PASS") for unit, b in bins.items() if unit != f"laser {weak_lane}")
    assert list(bins) == [f"laser {k}" for k in range(1, 9)]
    _assert_dark(sim)
    # the current limit came from the part's rating and nothing ever drove above it
    limit = next(m.value for m in run.result.measurements if m.name == "drive_current_limit")
    rating = load_limits(limits_path(PRODUCT)).limits["drive_current_limit"].high
    assert rating is not None and limit <= rating and run.max_drive_a <= float(limit) + 1e-9
    world = sim.world
    part = world.els.part  # type: ignore[union-attr]
    plate_c = next(m.value for m in run.result.measurements if m.name == "tec_temperature")
    for lane in range(1, 9):
        laser, values = part.lasers[lane - 1], run.lane(lane)
        point = operating_point(laser, np.array([0.2]), float(plate_c))
        assert values["liv_threshold_current"] == pytest.approx(laser.threshold_a, rel=0.1)
        ratio = values["liv_slope_efficiency"] / laser.slope_w_per_a
        assert 0.85 < ratio < 1.02, (lane, ratio)
        truth_dbm = 10 * np.log10(point.power_w[0] / 1e-3)
        assert values["power_at_operating"] == pytest.approx(truth_dbm, abs=0.15)
        assert values["peak_wavelength"] == pytest.approx(point.wavelength_nm[0], abs=0.05)
        if laser.smsr_db <= 45.0:  # above, the side mode sinks towards the OSA's floor
            assert values["smsr"] == pytest.approx(point.smsr_db[0], abs=1.5)
        assert values["liv_kink_count"] == 0


@pytest.mark.parametrize(
    ("part", "measurement", "bin_name"),
    [(KINKED, "liv_kink_count", "KINK"), (LOW_SMSR, "smsr", "SPECTRUM")],
    ids=["kink", "low-smsr"],
)
def test_a_kinked_or_multimode_laser_fails_on_that_measurement(
    sim: SimBench, part: tuple[str, int], measurement: str, bin_name: str
) -> None:
    serial, lane = part
    run = run_els(sim, serial)
    assert run.result.outcome == Outcome.FAIL
    assert run.failed() == {(measurement, lane)}
    assert {u.unit: u.bin_name for u in run.units}[f"laser {lane}"] == bin_name
    _assert_dark(sim)


def _when_driven_above(current_a: float, act: Callable[[RunEngine, SimBench], None], sim: SimBench):
    def watch(engine: RunEngine, fixture: ElsFixture) -> None:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if fixture.output_on and fixture.current_a() > current_a:
                act(engine, sim)
                return
            time.sleep(0.001)

    return watch


def test_an_instrument_fault_mid_liv_ends_in_error_with_every_laser_off(sim: SimBench) -> None:
    config = load_station_config(None, "els")
    meter = dataclasses.replace(config.instruments["power_meter"], timeout_s=0.3)
    config = dataclasses.replace(config, instruments={**config.instruments, "power_meter": meter})

    def meter_goes_silent(engine: RunEngine, bench: SimBench) -> None:
        bench.arm_fault("power_meter", Fault("no_reply", match="READ", count=0))

    run = run_els(
        sim, WEAK[0], config=config, during=_when_driven_above(0.1, meter_goes_silent, sim)
    )
    assert run.result.outcome == Outcome.ERROR
    assert "InstrumentTimeout" in (run.result.error or "")
    assert not run.units  # no laser completed
    _assert_dark(sim)


def test_an_abort_mid_liv_ends_aborted_with_every_laser_off(sim: SimBench) -> None:
    run = run_els(sim, WEAK[0], during=_when_driven_above(0.15, lambda e, _: e.abort(), sim))
    assert run.result.outcome == Outcome.ABORTED
    _assert_dark(sim)


def test_the_current_limit_never_exceeds_the_parts_rating(sim: SimBench, tmp_path: Path) -> None:
    text = limits_path(PRODUCT).read_text()
    assert "[limits.drive_current_limit]\nhigh = 0.45" in text
    path = tmp_path / f"{PRODUCT}.toml"
    path.write_text(
        text.replace(
            "[limits.drive_current_limit]\nhigh = 0.45", "[limits.drive_current_limit]\nhigh = 0.2"
        )
    )
    run = run_els(sim, WEAK[0], limits=load_limits(path))
    assert run.result.outcome == Outcome.ERROR
    assert "below the LIV sweep's stop" in (run.result.error or "")
    assert run.max_drive_a == 0.0  # refused before any light
    controller = sim.devices["laser_driver"].device  # type: ignore[union-attr]
    assert controller.limit_ma <= 200.0
    _assert_dark(sim)
