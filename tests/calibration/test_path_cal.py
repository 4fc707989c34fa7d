"""path-cal on the simulated module bench: the reference loopback fixture in the cage, every path
measured against the simulated world's truth, records published only by a passing run, and the
bench's jumpers (their own losses, slow drift, a swap) as the station sees them."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sim_instruments.__main__ import _control
from sim_instruments.bench import SimBench
from sim_instruments.keysight_n7744c import CorrectionTableError, SimN7744C
from sim_instruments.reference_fixture import CERTIFIED_LOOPBACK_DB, CERTIFIED_TAP_DB
from station.calibration.paths import ATTENUATOR_PATH, METER_WAVELENGTH_PATH
from station.config import StationConfig
from station.outcome import Outcome
from station.results.store import ResultsStore
from tests.calibration.helpers import (
    PATH_CAL,
    TIME_FACTOR,
    path_cal,
    records_of,
    run,
    station_config,
)

TRUTH_DB = 0.05  # path-cal against the world's true loss: fixture certificate and repeatability


@pytest.fixture
def sim() -> Iterator[SimBench]:
    with SimBench.build(time_factor=TIME_FACTOR) as bench:
        yield bench


@pytest.fixture
def config(tmp_path: Path) -> StationConfig:
    # its reference TX is certified; its monitor output is wired to power meter channel 3
    return station_config(tmp_path, "sim-module-bench-1", monitor=True)


def test_path_cal_measures_every_path_as_the_world_has_it_and_publishes_it(
    sim: SimBench, config: StationConfig, tmp_path: Path
) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    result = path_cal(sim, config, store)
    assert result.outcome == Outcome.PASS, result.error
    world = sim.world
    assert world.switch is not None and world.rx is not None
    records = {(r.path, r.path_index, r.attenuation_db): r for r in records_of(config, store)}
    # two TX paths and the RX path per lane; 9 settings; the meter's wavelength correction
    assert len(records) == 8 * 3 + 9 + 1
    # the meter's own wavelength-correction error at 1311 nm: its TX records take it out
    power_meter = sim.devices["power_meter"]
    assert isinstance(power_meter, SimN7744C)
    reads_high_db = power_meter.table_error.error_db(1311.0)
    correction = records[(METER_WAVELENGTH_PATH, 2, None)]
    assert correction.loss_db == pytest.approx(-reads_high_db, abs=2 * correction.uncertainty_db)
    for lane in range(8):
        through = world.tx_jumper_db(lane) + world.switch.port_loss_db[lane]
        meter = records[("tx_to_power_meter", lane, None)]
        assert meter.loss_db == pytest.approx(
            through + world.tx_splitter_loss_db["power_meter:1"] - reads_high_db, abs=TRUTH_DB
        )
        rx = records[("ref_tx_to_module_rx", lane, None)]
        assert rx.loss_db == pytest.approx(world.rx.fixed_loss_db(lane + 1), abs=TRUTH_DB)
        # the scope's record holds its path and its channel's power calibration factor
        scope = records[("tx_to_scope", lane, None)]
        gain_db = float(sim.devices["sampling_scope"].gain_error_db[0])  # type: ignore[union-attr]
        expected = through + world.tx_splitter_loss_db["scope:1"] - gain_db
        # the scope's average power is the noisiest of the three readings: its record says so
        assert scope.loss_db == pytest.approx(expected, abs=3 * scope.uncertainty_db)
        for record in (meter, rx, scope):
            assert 0.02 <= record.uncertainty_db < 0.08
            assert record.run_id == result.run_id and record.site == 1
            assert record.expires_at - record.measured_at == dt.timedelta(days=7)
        assert meter.jumper_serial == "MPO8-TX-0417" and rx.jumper_serial == "MPO8-RX-0418"
        assert "fixture=REF-LB8-0001" in meter.reference_instruments
        assert "power_meter=MY54330045" in meter.reference_instruments
    # the attenuator: what it really does against the setting, from 0 dB, told the reference
    # transmitter's certified wavelength (as the receiver tests tell it)
    attenuator, light_nm = world.rx.attenuator, world.rx.ref_tx.wavelength_nm
    for setting in range(0, 45, 5):
        record = records[(ATTENUATOR_PATH, 0, float(setting))]
        assert record.wavelength_nm == 1310.69
        truth = setting * (1.0 + attenuator.wdl_per_nm * (light_nm - 1310.69))
        truth += attenuator.linearity_db * np.sin(np.pi * setting / 20.0)
        assert record.loss_db == pytest.approx(truth, abs=0.02)
    store.close()


METER_ERROR_DB = 0.2  # a power meter whose wavelength correction reads 0.2 dB high in the O-band


@pytest.mark.parametrize("monitor", [True, False], ids=["monitor", "no-monitor"])
def test_the_meters_wavelength_correction_is_recorded_and_every_path_record_applies_it(
    sim: SimBench, tmp_path: Path, monitor: bool
) -> None:
    meter = sim.devices["power_meter"]
    assert isinstance(meter, SimN7744C)
    meter.table_error = CorrectionTableError(METER_ERROR_DB, 1e9, math.pi / 2)  # flat
    config = station_config(tmp_path, "sim-module-bench-1", monitor=monitor)
    store = ResultsStore(tmp_path / "results.sqlite")
    result = path_cal(sim, config, store)
    assert result.outcome == Outcome.PASS, result.error
    records = {(r.path, r.path_index): r for r in records_of(config, store)}
    # the correction a reading needs: minus the meter's error, once it has been measured
    applied = -METER_ERROR_DB if monitor else 0.0
    found = {m.name: m.value for m in result.measurements}
    if monitor:
        correction = records[(METER_WAVELENGTH_PATH, 2)]  # measured on channel 3
        assert correction.loss_db == pytest.approx(-METER_ERROR_DB, abs=0.03)
        assert found["power_meter_wavelength_correction"] == pytest.approx(
            correction.loss_db, abs=1e-5
        )
        assert correction.wavelength_nm == 1311.0 and 0.02 <= correction.uncertainty_db < 0.04
        assert "monitor output (9.6 dB) on power meter channel 3" in correction.method
    else:  # nothing to measure it against: said so, and nothing recorded
        assert not any(path == METER_WAVELENGTH_PATH for path, _ in records)
        assert "power_meter_wavelength_correction" not in found
    world = sim.world
    assert world.switch is not None and world.rx is not None
    for lane in range(8):
        meter_path = records[("tx_to_power_meter", lane)]
        through = world.tx_jumper_db(lane) + world.switch.port_loss_db[lane]
        splitter = world.tx_splitter_loss_db["power_meter:1"]
        # a reading on channel 1 plus the record is the power at the module's TX leg
        assert meter_path.loss_db == pytest.approx(through + splitter + applied, abs=TRUTH_DB)
        # the fixture's tap reads high by the error: the RX record is right only with it
        rx = records[("ref_tx_to_module_rx", lane)]
        truth = world.rx.fixed_loss_db(lane + 1)
        assert rx.loss_db == pytest.approx(truth - METER_ERROR_DB - applied, abs=TRUTH_DB)
        for record in (rx, meter_path):  # each says what it folded in
            said = re.search(r"wavelength correction ([-+.\d]+) dB applied", record.method)
            assert (said is not None) == monitor, record.method
            if said is not None:
                assert float(said[1]) == pytest.approx(-METER_ERROR_DB, abs=0.03)
    store.close()


def test_a_run_that_does_not_pass_publishes_nothing(
    sim: SimBench, config: StationConfig, tmp_path: Path
) -> None:
    """A dirty jumper: RX path loss far beyond its sanity range fails path-cal."""
    store = ResultsStore(tmp_path / "results.sqlite")
    sim.world.swap_jumper("tx_breakout", "MPO8-TX-0666", extra_loss_db=6.0)
    result = path_cal(sim, config, store)
    assert result.outcome == Outcome.FAIL
    failed = {(m.name, m.lane) for m in result.measurements if m.outcome == Outcome.FAIL}
    assert ("tx_to_power_meter_loss", 1) in failed
    assert records_of(config, store) == []
    store.close()


def test_without_the_fixture_the_tap_is_dark_and_path_cal_ends_in_error(
    sim: SimBench, config: StationConfig, tmp_path: Path
) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    sim.world.remove_dut()  # an empty cage: nothing taps the RX legs to the meter
    result = run(
        sim, config, PATH_CAL, "REF-LB8-0001", product="PATH-CAL-DR8", store=store, insert=False
    )
    assert result.outcome == Outcome.ERROR
    assert result.error is not None
    assert "the fixture's tap (power meter channel 2) sees no light" in result.error
    assert records_of(config, store) == []
    assert sim.world.rx is not None and not sim.world.rx.attenuator.shutter_open  # left dark
    store.close()


def test_the_fixture_taps_and_loops_back_what_arrives_at_its_rx_leg(sim: SimBench) -> None:
    world = sim.world
    assert world.rx is not None
    sim.insert("REF-LB8-0001", "PATH-CAL-DR8")
    assert world.module is None and world.fixture is not None
    rx = world.rx
    rx.attenuator.shutter_open = True
    rx.attenuator.set_attenuation(0.0, world.clock.now_s() - 10.0)
    rx.switch.routed, rx.switch.settled_at_s, rx.switch.route_error_db = 3, 0.0, 0.0
    arriving = rx.light_at_module_rx(3)[0].power_w
    tap = sum(e.power_w for e in world.light_at("power_meter:2"))
    assert 10 * np.log10(arriving / tap) == pytest.approx(CERTIFIED_TAP_DB, abs=0.05)
    at_tx_leg = world.fixture_tx_signal(2)
    assert at_tx_leg is not None
    assert 10 * np.log10(arriving / at_tx_leg.average_power_w) == pytest.approx(
        CERTIFIED_LOOPBACK_DB, abs=0.05
    )
    assert world.fixture_tx_signal(4) is None  # the RX switch lights one leg at a time
    sim.insert("SIM0001", "800G-DR8")
    assert world.fixture is None and world.light_at("power_meter:2") == ()


def test_a_jumper_swap_on_the_control_line_changes_its_legs_and_drift_is_slow(
    sim: SimBench,
) -> None:
    world = sim.world
    assert world.rx is not None
    before = [world.tx_jumper_db(lane) for lane in range(8)]
    assert _control([sim], "jumper tx_breakout MPO8-TX-0999 1.0") == "ok"
    assert world.tx_jumper is not None and world.tx_jumper.serial == "MPO8-TX-0999"
    after = [world.tx_jumper_db(lane) for lane in range(8)]
    assert np.mean(after) - np.mean(before) == pytest.approx(1.0, abs=0.25)
    assert _control([sim], "jumper rx_breakout MPO8-RX-0999") == "ok"
    assert world.rx.breakout is not None and world.rx.breakout.serial == "MPO8-RX-0999"
    assert _control([sim], "jumper nosuch X").startswith("error: no jumper 'nosuch'")
    # the same serial is the same jumper: its legs' losses are its own
    assert _control([sim], "jumper tx_breakout MPO8-TX-0999 1.0") == "ok"
    assert [world.tx_jumper_db(lane) for lane in range(8)] == pytest.approx(after, abs=1e-3)
    jumper = world.tx_jumper
    hour, day = 3600.0, 86400.0
    start = jumper.installed_at_s
    assert abs(jumper.drift_at_db(0, start + 60.0)) < 0.002  # a run's minutes: no change
    swings = [abs(jumper.drift_at_db(leg, start + t)) for leg in range(8) for t in (hour, day)]
    assert max(swings) <= 0.04 and max(swings) > 0.005  # over hours it moves, a little
