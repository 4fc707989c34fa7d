"""The simulated wafer bench is physically coupled: the prober, tunable laser, triggered power
meter and SMU all see the same die, and their readings agree with the wafer model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.formfactor.velox import Velox
from drivers.keithley.k2450 import K2450
from drivers.keysight.n7744c import N7744C
from drivers.keysight.n7776c import N7776C
from sim_instruments.bench import SimBench
from sim_instruments.wafer import SPLIT_LOOPBACK, DieTruth, make_wafer
from sim_instruments.wafer_station import WaferStation

FAST = 0.01


@dataclass
class Bench:
    sim: SimBench
    station: WaferStation
    prober: Velox
    laser: N7776C
    meter: N7744C
    smu: K2450

    def die(self) -> DieTruth:
        die = self.station.die()
        assert die is not None
        return die

    def sweep(
        self, start_nm: float, stop_nm: float, step_nm: float, speed_nm_per_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logged wavelengths and both output channels' triggered samples (W)."""
        points = self.laser.configure_sweep(start_nm, stop_nm, step_nm, speed_nm_per_s)
        for channel in (1, 2):
            self.meter.start_logging(channel, points, 1e-4, triggered=True)
        self.laser.start_sweep()
        self.laser.wait_sweep(timeout_s=20)
        deadline = time.monotonic() + 5
        while not all(self.meter.logging_complete(ch) for ch in (1, 2)):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        return (
            self.laser.logged_wavelengths_nm(),
            self.meter.fetch_logged_power_w(1).astype(float),
            self.meter.fetch_logged_power_w(2).astype(float),
        )


@pytest.fixture
def bench() -> Iterator[Bench]:
    with SimBench.build("wafer", time_factor=FAST) as sim:
        sim.insert("W07", "CPO-PIC-A1")
        resources = sim.resources()
        assert sim.world.wafer is not None
        with (
            Velox.open(resources["prober"], timeout_s=5) as prober,
            N7776C.open(resources["tunable_laser"], timeout_s=5) as laser,
            N7744C.open(resources["power_meter"], timeout_s=5) as meter,
            K2450.open(resources["smu"], timeout_s=5) as smu,
        ):
            bench = Bench(sim, sim.world.wafer, prober, laser, meter, smu)
            prober.step_first_die()
            prober.contact()
            die = bench.die()
            prober.move_fibre_um(*die.fibre_optimum_um)
            laser.set_power_dbm(0.0)
            laser.set_wavelength_nm(die.gc_centre_nm)
            laser.set_output(True)
            for channel in (1, 2):
                meter.set_wavelength_nm(channel, 1310.0)
                meter.set_averaging_time_s(channel, 0.001)
            yield bench


def _dbm(watts: np.ndarray | float) -> np.ndarray:
    return 10 * np.log10(np.asarray(watts) / 1e-3)


def _dip_nm(wavelengths: np.ndarray, through: np.ndarray, die: DieTruth) -> float:
    """Centre of the deepest dip: a parabola fitted to its bottom (noise alone can move the
    lowest sample by a step)."""
    lowest = wavelengths[np.argmin(through)]
    quarter_width_nm = lowest / die.ring_q_loaded / 4
    bottom = np.abs(wavelengths - lowest) < quarter_width_nm
    a, b, _ = np.polyfit(wavelengths[bottom] - lowest, through[bottom], 2)
    return float(lowest - b / (2 * a))


# --- the wafer model on its own -------------------------------------------------------------------
def test_same_wafer_id_same_wafer_and_a_realistic_map() -> None:
    wafer, again, other = (make_wafer(w, "CPO-PIC-A1") for w in ("W01", "W01", "W02"))
    assert np.array_equal(wafer.ring_resonance_nm, again.ring_resonance_nm)
    assert not np.allclose(wafer.ring_resonance_nm, other.ring_resonance_nm)
    assert 180 <= wafer.count <= 230  # 200 mm wafer, 10 x 12 mm dies, 5 mm edge exclusion
    corner = np.hypot(np.abs(wafer.x_mm) + 5, np.abs(wafer.y_mm) + 6)
    assert corner.max() <= 95.0
    with pytest.raises(ValueError, match="no simulated wafer product"):
        make_wafer("W01", "NOPE")


def test_process_variation_has_radial_trends_scatter_and_clusters() -> None:
    wafers = [make_wafer(f"W{i:02d}", "CPO-PIC-A1") for i in range(1, 11)]
    for wafer in wafers:
        radius = np.hypot(wafer.x_mm, wafer.y_mm)
        inner, outer = radius < 35, radius > 70
        assert wafer.gc_centre_nm[outer].mean() - wafer.gc_centre_nm[inner].mean() > 2.0
        assert wafer.ring_resonance_nm[outer].mean() > wafer.ring_resonance_nm[inner].mean()
        assert wafer.ring_resonance_nm[inner].std() > 0.1  # die-to-die scatter
        assert wafer.ring_q.min() >= 5e3 and wafer.ring_q.max() <= 5e4
        assert wafer.gc_bandwidth_nm.min() >= 20 and wafer.gc_bandwidth_nm.max() <= 35
        good = ~wafer.defect
        assert (
            np.mean((wafer.gc_peak_loss_db[good] > 3) & (wafer.gc_peak_loss_db[good] < 5.2)) > 0.95
        )
        # Bad dies come in clusters: each has a bad neighbour.
        bad = np.flatnonzero(wafer.defect)
        assert len(bad) >= 2
        for i in bad:
            distance = np.hypot(wafer.x_mm[bad] - wafer.x_mm[i], wafer.y_mm[bad] - wafer.y_mm[i])
            assert np.sort(distance)[1] <= 16.0
    good = np.concatenate([~w.defect for w in wafers])
    dark = np.concatenate([w.pd_dark_a for w in wafers])[good]
    responsivity = np.concatenate([w.pd_responsivity for w in wafers])[good]
    assert 0.005 < np.mean(dark > 10e-9) < 0.08  # a few leaky detectors
    assert np.mean(responsivity > 0.55) > 0.95


# --- across instruments ------------------------------------------------------------------------
def test_swept_spectrum_shows_the_coupler_envelope_and_ring_dips(bench: Bench) -> None:
    die, step = bench.die(), 0.005
    wavelengths, loopback, ring = bench.sweep(1280.0, 1340.0, step, 20.0)
    assert wavelengths.shape == loopback.shape == ring.shape == (12001,)
    # Loop-back: two couplers' Gaussian envelope, a parabola in dB.
    # (The meter's InGaAs responsivity, corrected at one wavelength setting, tilts it slightly.)
    a, b, c = np.polyfit(wavelengths - 1310.0, _dbm(loopback), 2)
    assert 1310.0 - b / (2 * a) == pytest.approx(die.gc_centre_nm, abs=0.2)
    assert 2 * np.sqrt(2 / -a) == pytest.approx(die.gc_bandwidth_1db_nm, rel=0.02)
    station = bench.station
    expected_peak_dbm = (
        -station.input_loss_db
        - station.output_loss_db[1]
        - 2 * die.gc_peak_loss_db
        + 10 * np.log10(SPLIT_LOOPBACK)
    )
    assert c - b * b / (4 * a) == pytest.approx(expected_peak_dbm, abs=0.1)
    # Ring through port, normalised by the loop-back: a dip at every resonance of the model.
    normalised = _dbm(ring / loopback)
    normalised -= np.median(normalised)
    resonances = die.ring_resonances_nm(1281.0, 1339.0)
    assert len(resonances) >= 8
    for resonance in resonances:
        near = np.abs(wavelengths - resonance) < 0.3
        dip_nm = _dip_nm(wavelengths[near], ring[near] / loopback[near], die)
        assert dip_nm == pytest.approx(resonance, abs=step)
        assert -normalised[near].min() == pytest.approx(die.ring_extinction_db, abs=1.0)
    between = np.abs(((wavelengths - resonances[0]) / die.ring_fsr_nm + 0.5) % 1 - 0.5) > 0.25
    assert np.abs(normalised[between]).max() < 0.3  # flat away from the resonances


def test_coupled_power_falls_with_fibre_offset_and_peaks_at_the_optimum(bench: Bench) -> None:
    die = bench.die()
    ox, oy = die.fibre_optimum_um
    offsets = np.arange(-5.0, 5.5, 1.0)
    grid = np.zeros((len(offsets), len(offsets)))
    for i, dx in enumerate(offsets):
        for j, dy in enumerate(offsets):
            bench.prober.move_fibre_um(float(dx), float(dy))
            grid[i, j] = bench.meter.read_power_w(1)
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    assert abs(offsets[i] - ox) <= 0.5 + 1e-9 and abs(offsets[j] - oy) <= 0.5 + 1e-9
    bench.prober.move_fibre_um(ox, oy)
    best = bench.meter.read_power_w(1)
    losses = []
    for offset in (1.75, 3.5, 6.0):
        bench.prober.move_fibre_um(ox + offset, oy)
        losses.append(float(_dbm(best) - _dbm(bench.meter.read_power_w(1))))
    # About 1 dB per coupler at 1.75 um (input and output fibre move together), falling fast.
    assert losses[0] == pytest.approx(2.0, abs=0.1)
    assert losses[0] < losses[1] < losses[2]


def test_light_and_current_only_reach_the_die_in_contact(bench: Bench) -> None:
    in_contact = bench.meter.read_power_w(1)
    assert in_contact > 1e-6
    bench.smu.source_voltage(-3.0, 1e-3)
    bench.smu.set_output(True)
    assert bench.smu.measure_current_a() < -1e-6  # photocurrent
    bench.prober.separate()
    assert bench.meter.read_power_w(1) < 1e-9
    assert abs(bench.smu.measure_current_a()) < 1e-10


def test_photodetector_current_follows_optical_power_and_bias(bench: Bench) -> None:
    die = bench.die()
    bench.smu.source_voltage(-3.0, 1e-3)
    bench.smu.set_output(True)
    detector_w, current_a = [], []
    for power_dbm in (-10.0, -5.0, 0.0, 5.0):
        bench.laser.set_power_dbm(power_dbm)
        detector_w.append(bench.station.detector_power_w())
        current_a.append(bench.smu.measure_current_a())
    slope, _ = np.polyfit(detector_w, current_a, 1)
    assert -slope == pytest.approx(die.pd_responsivity_a_per_w, rel=0.01)
    assert detector_w[-1] / detector_w[0] == pytest.approx(10**1.5, rel=0.01)
    # Dark current: laser off, and it grows with reverse bias.
    bench.laser.set_output(False)
    dark_3v = -bench.smu.measure_current_a()
    assert dark_3v == pytest.approx(die.pd_dark_current_a, rel=0.05)
    bench.smu.source_voltage(-1.0, 1e-3)
    dark_1v = -bench.smu.measure_current_a()
    assert 0 < dark_1v < dark_3v
    # Forward bias runs into the current limit.
    bench.smu.source_voltage(1.0, 1e-4)
    assert bench.smu.measure_current_a() == pytest.approx(1e-4, rel=1e-3)
    assert bench.smu.in_compliance()


def test_heater_iv_gives_its_resistance_and_its_power_tunes_the_ring(bench: Bench) -> None:
    die = bench.die()
    resonance = float(die.ring_resonances_nm(1300.0, 1320.0)[0])
    before, _, ring_before = bench.sweep(resonance - 1.0, resonance + 2.0, 0.002, 5.0)
    bench.smu.use_rear_terminals(True)
    voltage, current = bench.smu.sweep_voltage(0.0, 2.0, 21, 10e-3)
    slope, _ = np.polyfit(voltage, current, 1)
    assert 1 / slope == pytest.approx(die.heater_resistance_ohm, rel=0.005)
    heater_w = 2.0**2 / die.heater_resistance_ohm  # the sweep leaves the heater at 2 V
    after, _, ring_after = bench.sweep(resonance - 1.0, resonance + 2.0, 0.002, 5.0)
    shift = _dip_nm(after, ring_after, die) - _dip_nm(before, ring_before, die)
    assert shift == pytest.approx(die.heater_tuning_nm_per_mw * heater_w * 1e3, abs=0.006)
    bench.smu.safe_state()


def test_triggered_logging_waits_for_the_lasers_step_triggers(bench: Bench) -> None:
    bench.meter.start_logging(1, 101, 1e-4, triggered=True)
    time.sleep(0.05)  # 5 simulated seconds: free-running, 101 samples would long be done
    assert not bench.meter.logging_complete(1)
    bench.laser.configure_sweep(1300.0, 1301.0, 0.01, 10.0)
    bench.laser.start_sweep()
    bench.laser.wait_sweep(timeout_s=10)
    deadline = time.monotonic() + 5
    while not bench.meter.logging_complete(1):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    samples = bench.meter.fetch_logged_power_w(1)
    assert samples.shape == (101,) and samples.min() > 1e-6
    bench.meter.start_logging(1, 101, 1e-4)  # free-running again: done by time alone
    time.sleep(0.01)
    assert bench.meter.logging_complete(1)
