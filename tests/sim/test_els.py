"""The simulated ELS bench is physically coupled: an LIV sweep through the laser diode controller
and the power meter recovers what the ELS model put into each laser (threshold, slope, roll-over,
kinks, diode voltage), and the TEC, the monitor photodiode and the light agree with each other."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.ilx.ldc3724c import LDC3724C
from drivers.keysight.n7734a import N7734A
from drivers.keysight.n7744c import N7744C
from drivers.yokogawa.aq6370d import AQ6370D
from sim_instruments.bench import SimBench
from sim_instruments.els import (
    ELS_PRODUCTS,
    WAVELENGTH_TEMPERATURE_NM_PER_K,
    LaserTruth,
    diode_voltage_v,
    make_els,
    operating_point,
)
from sim_instruments.keysight_n7744c import SimN7744C
from station.bench import open_bench
from station.config import load_station_config

FAST = 0.02


@dataclass
class Station:
    bench: SimBench
    ldc: LDC3724C
    switch: N7734A
    meter: N7744C
    osa: AQ6370D

    def laser(self, k: int) -> LaserTruth:
        assert self.bench.world.els is not None and self.bench.world.els.part is not None
        return self.bench.world.els.part.lasers[k - 1]

    def select(self, k: int, wavelength_nm: float) -> None:
        self.ldc.set_output(False)
        self.switch.route(k)
        self.meter.set_wavelength_nm(1, wavelength_nm)

    def liv(self, currents_a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(power_w, voltage_v, monitor_a) at each current: instrument I/O, one point at a time."""
        self.ldc.set_current_a(0.0)
        self.ldc.set_output(True)
        power, voltage, monitor = [], [], []
        for current in currents_a:
            self.ldc.set_current_a(float(current))
            power.append(self.meter.read_power_w(1))
            voltage.append(self.ldc.laser_voltage_v())
            monitor.append(self.ldc.monitor_current_a())
        self.ldc.set_output(False)
        return np.array(power), np.array(voltage), np.array(monitor)


def _kinked_serial() -> tuple[str, int]:
    """The first ELS8-DR part with a kink well inside the sweep, and which laser (1-based)."""
    for n in range(1, 500):
        part = make_els(f"ELS{n:04d}", "ELS8-DR")
        for k, laser in enumerate(part.lasers, start=1):
            if laser.kink_current_a is not None and 0.1 < laser.kink_current_a < 0.25:
                return part.serial, k
    raise AssertionError("the population has no kinked laser")


KINKED_SERIAL, KINKED_LASER = _kinked_serial()


@pytest.fixture
def station() -> Iterator[Station]:
    with SimBench.build("els", time_factor=FAST) as sim, ExitStack() as stack:
        sim.insert(KINKED_SERIAL, "ELS8-DR")
        resources = sim.resources()
        ldc = stack.enter_context(LDC3724C.open(resources["laser_driver"]))
        switch = stack.enter_context(N7734A.open(resources["optical_switch"]))
        meter = stack.enter_context(N7744C.open(resources["power_meter"]))
        osa = stack.enter_context(AQ6370D.open(resources["osa"]))
        stack.callback(ldc.safe_state)
        meter.set_averaging_time_s(1, 0.01)
        ldc.tec_hold_s = 0.06  # three simulated seconds
        ldc.set_tec_temperature_c(25.0)
        ldc.set_tec_output(True)
        ldc.wait_tec_settled(0.1, timeout_s=10.0)
        ldc.set_current_limit_a(ELS_PRODUCTS["ELS8-DR"].max_current_a)
        yield Station(sim, ldc, switch, meter, osa)


def _line_fit_threshold(current_a: np.ndarray, power_w: np.ndarray) -> tuple[float, float]:
    """(threshold_a, slope_w_per_a) of a line through the points between 3 % and 25 % of the peak
    power, just above threshold where self-heating is still small."""
    window = (power_w > 0.03 * power_w.max()) & (power_w < 0.25 * power_w.max())
    slope, intercept = np.polyfit(current_a[window], power_w[window], 1)
    return -intercept / slope, slope


def station_loss(station: Station, k: int) -> float:
    """Loss from laser k's fibre to the meter, as the bench has it today (dB)."""
    world = station.bench.world
    assert world.switch is not None
    return world.els_path_loss_db(k - 1) + world.switch.route_error_db


def test_population_varies_like_a_production_line() -> None:
    assert make_els("ELS0007", "ELS8-FR4") == make_els("ELS0007", "ELS8-FR4")
    parts = [make_els(f"ELS{n:04d}", "ELS8-DR") for n in range(1, 301)]
    lasers = [laser for part in parts for laser in part.lasers]
    thresholds = np.array([laser.threshold_a for laser in lasers if not laser.weak])
    slopes = np.array([laser.slope_w_per_a for laser in lasers if not laser.weak])
    assert thresholds.min() >= 0.010 and thresholds.max() <= 0.025
    assert slopes.min() >= 0.15 and slopes.max() <= 0.35 and slopes.std() > 0.01
    weak = sum(part.weak_laser is not None for part in parts)
    kinks = sum(laser.kink_current_a is not None for laser in lasers)
    low_smsr = sum(laser.smsr_db < 35.0 for laser in lasers)
    assert 3 <= weak <= 30  # a few percent of parts
    assert 0.01 * len(lasers) <= kinks <= 0.08 * len(lasers)
    assert 0.005 * len(lasers) <= low_smsr <= 0.06 * len(lasers)
    fr4 = make_els("ELS0001", "ELS8-FR4")
    grid = np.array([laser.wavelength_nm for laser in fr4.lasers])
    assert np.abs(grid - np.array(ELS_PRODUCTS["ELS8-FR4"].grid_nm)).max() < 4.0


def test_liv_sweep_recovers_threshold_slope_rollover_and_diode_voltage(station: Station) -> None:
    k = 1 if KINKED_LASER != 1 else 2  # a laser without a kink
    laser = station.laser(k)
    station.select(k, laser.wavelength_nm)
    currents = np.concatenate([np.arange(0.0, 0.08, 0.002), np.arange(0.08, 0.4501, 0.01)])
    power, voltage, monitor = station.liv(currents)

    threshold, slope = _line_fit_threshold(currents, power)
    assert threshold == pytest.approx(laser.threshold_a, rel=0.06)
    # at the fibre, before the path loss; self-heating lowers it a little below the 25 degC truth
    fibre_slope = slope * 10 ** (station_loss(station, k) / 10)
    assert 0.85 * laser.slope_w_per_a < fibre_slope < 1.02 * laser.slope_w_per_a

    # roll-over: the power peaks inside the sweep, where the model's does
    peak = currents[np.argmax(power)]
    truth = operating_point(laser, currents, 25.0)
    assert 0.2 < peak < currents[-1]
    assert peak == pytest.approx(currents[np.argmax(truth.power_w)], abs=0.02)
    assert power[-1] < 0.97 * power.max()

    # the 4-wire voltage follows the diode model at the junction temperature the current sets
    expected = diode_voltage_v(laser, currents, truth.junction_c)
    assert np.abs(voltage - expected).max() < 0.004
    above = currents > 0.05
    basis = np.column_stack([np.ones(above.sum()), np.log(currents[above]), currents[above]])
    (_, _, series_ohm), *_ = np.linalg.lstsq(basis, voltage[above], rcond=None)
    assert series_ohm == pytest.approx(laser.series_resistance_ohm, rel=0.15)

    # the back-facet monitor tracks the light in the fibre, up to where the junction runs hot
    lit = (currents > 2 * laser.threshold_a) & (currents <= 0.2)
    ratio = monitor[lit] / power[lit]
    assert np.abs(ratio / np.median(ratio) - 1.0).max() < 0.05
    loss = 10 ** (-station_loss(station, k) / 10)
    assert np.median(ratio) * loss == pytest.approx(laser.monitor_a_per_w, rel=0.05)
    assert np.abs(monitor[currents < 0.5 * laser.threshold_a]).max() < 2e-6  # LED light only


def test_the_kink_shows_where_the_model_put_it(station: Station) -> None:
    laser = station.laser(KINKED_LASER)
    assert laser.kink_current_a is not None
    station.select(KINKED_LASER, laser.wavelength_nm)
    currents = np.arange(laser.kink_current_a - 0.02, laser.kink_current_a + 0.0201, 0.0005)
    power, _, _ = station.liv(currents)
    smoothed = np.convolve(np.gradient(power, currents), np.ones(5) / 5, mode="same")[2:-2]
    assert currents[2:-2][np.argmin(smoothed)] == pytest.approx(laser.kink_current_a, abs=0.0015)
    assert smoothed.min() < 0.5 * np.median(smoothed)  # a real dip in dL/dI, not noise
    assert _curvature_residual(currents, power) > 0.015

    # a laser without a kink, over the same currents, follows a smooth curve to within the noise
    other = 1 if KINKED_LASER != 1 else 2
    station.select(other, station.laser(other).wavelength_nm)
    power, _, _ = station.liv(currents[::2])
    assert _curvature_residual(currents[::2], power) < 0.005


def _curvature_residual(current_a: np.ndarray, power_w: np.ndarray) -> float:
    """Largest departure of the L-I points from a cubic through them, relative to the mean."""
    fit = np.polyval(np.polyfit(current_a, power_w, 3), current_a)
    return float(np.abs(power_w - fit).max() / power_w.mean())


def test_meter_and_osa_see_the_selected_laser_through_the_switch(station: Station) -> None:
    world = station.bench.world
    for k in (2, 5, 8):
        laser = station.laser(k)
        station.select(k, laser.wavelength_nm)
        assert abs(station.meter.read_power_w(1)) < 1e-9  # output off: dark
        station.ldc.set_current_a(0.15)
        station.ldc.set_output(True)
        truth = operating_point(laser, 0.15, station.ldc.tec_temperature_c())
        read_dbm = 10 * np.log10(station.meter.read_power_w(1) / 1e-3)
        expected_dbm = 10 * np.log10(float(truth.power_w) / 1e-3) - station_loss(station, k)
        # the meter reads with its own correction-table error at the wavelength it was told
        twin = station.bench.devices["power_meter"]
        assert isinstance(twin, SimN7744C)
        expected_dbm += twin.table_error.error_db(twin.wavelength_m[0] * 1e9)
        assert read_dbm == pytest.approx(expected_dbm, abs=0.05)

        # the OSA on the tap's other leg sees the same laser: its wavelength and side modes
        station.osa.configure(float(truth.wavelength_nm), 6.0, 0.02, 1201)
        station.osa.sweep()
        assert station.osa.peak_wavelength_nm() == pytest.approx(
            float(truth.wavelength_nm), abs=0.03
        )
        assert station.osa.smsr_db() == pytest.approx(float(truth.smsr_db), abs=1.5)
        osa_dbm = station.osa.total_power_dbm() + world.els_path_loss_db(k - 1, "osa")
        meter_dbm = read_dbm + world.els_path_loss_db(k - 1)
        assert osa_dbm == pytest.approx(meter_dbm, abs=0.4)
        station.ldc.set_output(False)


def test_tec_settles_holds_and_tunes_the_wavelength(station: Station) -> None:
    laser = station.laser(3)
    station.select(3, laser.wavelength_nm)
    station.ldc.set_current_a(0.1)
    station.ldc.set_output(True)
    world = station.bench.world
    (cool,) = world.light_at("power_meter:1")

    clock = world.clock
    started = clock.now_s()
    station.ldc.set_tec_temperature_c(35.0)
    station.ldc.wait_tec_settled(0.1, timeout_s=10.0)
    took_s = clock.now_s() - started
    # first order with a 6 s time constant: 10 K to within 0.1 K takes about 28 s, plus the hold
    assert 20.0 < took_s < 120.0
    readings = []
    for _ in range(12):
        readings.append(station.ldc.tec_temperature_c())
        clock.sleep(1.0)
    assert np.abs(np.array(readings) - 35.0).max() <= 0.1  # holds +-0.1 K once settled

    (warm,) = world.light_at("power_meter:1")
    shift = warm.wavelength_nm - cool.wavelength_nm
    assert shift == pytest.approx(10.0 * WAVELENGTH_TEMPERATURE_NM_PER_K, rel=0.1)
    assert warm.power_w < cool.power_w  # a hotter laser is less efficient


def test_a_weak_laser_delivers_far_less_than_its_siblings() -> None:
    serial = next(
        f"ELS{n:04d}"
        for n in range(1, 500)
        if make_els(f"ELS{n:04d}", "ELS8-DR").weak_laser is not None
    )
    part = make_els(serial, "ELS8-DR")
    assert part.weak_laser is not None
    weak = part.lasers[part.weak_laser]
    others = [laser for laser in part.lasers if not laser.weak]
    at_operating = [float(operating_point(laser, 0.2, 25.0).power_w) for laser in others]
    assert float(operating_point(weak, 0.2, 25.0).power_w) < 0.7 * min(at_operating)


def test_the_shipped_station_config_opens_the_simulated_els_bench() -> None:
    config = load_station_config(bench="els")
    with SimBench.build("els", time_factor=FAST) as sim:
        sim.insert("ELS0001", "ELS8-DR")
        with open_bench(config, sorted(config.instruments), sim.resources()) as opened:
            assert {record.model for record in opened.records} >= {"LDC-3724C", "N7744C"}
        for laser in range(8):  # the calibrated path losses are this bench's, within their budget
            measured = config.path_loss_db("els_to_power_meter", laser)
            assert measured == pytest.approx(sim.world.els_path_loss_db(laser), abs=0.05)
