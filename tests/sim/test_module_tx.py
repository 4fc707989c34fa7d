"""The module bench's transmit side is physically coupled: meter, scope, OSA and the module's own
monitors see the same light, the scope's waveform is the lane's, and the case follows the head.

Tolerances (after the station's calibrated path losses): scope average power within 0.3 dB of the
power meter, OSA integrated power within 0.4 dB, module DDM TX power within 1 dB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.devantech.usb_iss import UsbIssCmisHost
from drivers.interfaces import ModuleState
from drivers.keysight.n1000a import N1000A
from drivers.keysight.n7734a import N7734A
from drivers.keysight.n7744c import N7744C
from drivers.temptronic.ats710 import ATS710
from drivers.yokogawa.aq6370d import AQ6370D
from sim_instruments.bench import SimBench
from sim_instruments.population import make_module
from sim_instruments.transmitter import make_module_tx
from sim_instruments.waveforms import prbs13q
from station.config import load_station_config

TIME_FACTOR = 0.005  # module warm-up and head settling take minutes of simulated time


def _dbm(watts: float) -> float:
    return float(10.0 * np.log10(watts / 1e-3))


@dataclass
class Bench:
    sim: SimBench
    host: UsbIssCmisHost
    switch: N7734A
    meter: N7744C
    scope: N1000A
    osa: AQ6370D
    head: ATS710


def _open(sim: SimBench, serial: str, product: str) -> Iterator[Bench]:
    sim.insert(serial, product)
    resources = sim.resources()
    with ExitStack() as stack:
        bench = Bench(
            sim,
            stack.enter_context(UsbIssCmisHost.open(resources["module_host"])),
            stack.enter_context(N7734A.open(resources["optical_switch"])),
            stack.enter_context(N7744C.open(resources["power_meter"])),
            stack.enter_context(N1000A.open(resources["sampling_scope"])),
            stack.enter_context(AQ6370D.open(resources["osa"])),
            stack.enter_context(ATS710.open(resources["thermal_head"])),
        )
        bench.host.set_low_power(False)
        assert bench.host.wait_module_state(ModuleState.READY) is not None
        assert bench.host.activate_data_paths(1) is not None
        sim.world.clock.sleep(100.0)  # self-heating settles (20 s time constant)
        bench.meter.set_wavelength_nm(1, 1311)
        bench.meter.set_averaging_time_s(1, 0.01)
        baud = 106.25 if product == "1.6T-DR8" else 53.125
        bench.scope.configure_eye(1, baud, "PRBS13Q", 1311)
        bench.osa.configure(1313.0, 20.0, 0.02, 2001)
        yield bench


@pytest.fixture
def dr8() -> Iterator[Bench]:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        yield from _open(sim, "SIM0001", "800G-DR8")


def _signal_at_scope(bench: Bench):
    signal = bench.sim.world.signals["scope:1"]()
    assert signal is not None
    return signal


# --- the population of transmitters ---------------------------------------------------------------
def test_transmitter_population_varies_within_its_design_and_keeps_the_launch_power() -> None:
    ers, rlms, slow, low_smsr = [], [], 0, 0
    for i in range(1, 301):
        serial = f"SIM{i:04d}"
        tx = make_module_tx(serial, "800G-DR8")
        assert tx == make_module_tx(serial, "800G-DR8")  # same serial, same unit
        slow += tx.slow_lane is not None
        low_smsr += tx.low_smsr_lane is not None
        for lane, truth in zip(tx.lanes, make_module(serial, "800G-DR8").lanes, strict=True):
            launched = 10 ** (truth.tx_power_dbm / 10.0) * 1e-3
            signal = lane.signal(launched, truth.wavelength_nm, 40.0, 53.125e9)
            assert signal.average_power_w == pytest.approx(launched, rel=1e-12)
            p0, p1, p2, p3 = signal.levels_w
            middle = (p0 + p3) / 2
            es1, es2 = (p1 - middle) / (p0 - middle), (p2 - middle) / (p3 - middle)
            rlms.append(min(3 * es1, 3 * es2, 2 - 3 * es1, 2 - 3 * es2))
            ers.append(signal.er_outer_db)
    assert min(ers) >= 4.5 and max(ers) <= 6.0
    assert min(rlms) >= 0.95 and max(rlms) <= 1.0
    assert 3 <= slow <= 30  # a few percent of units carry a slow lane
    assert 0 < low_smsr <= 12  # and rarely a weak side-mode suppression


def test_the_pattern_is_prbs13q_as_the_open_implementation_generates_it() -> None:
    patterns = pytest.importorskip("station.analysis.patterns")
    ours, theirs = prbs13q(), patterns.prbs13q()
    assert np.bincount(ours).tolist() == [2047, 2048, 2048, 2048]
    # the same cyclic sequence, started wherever the seed puts it
    doubled = np.concatenate([theirs, theirs]).astype(np.int64)
    match = [k for k in range(ours.size) if np.array_equal(doubled[k : k + 64], ours[:64])]
    assert match and np.array_equal(doubled[match[0] : match[0] + ours.size], ours)


# --- one light, four instruments -----------------------------------------------------------------
def test_meter_scope_osa_and_ddm_agree_on_each_lane(dr8: Bench) -> None:
    config = load_station_config()
    for lane in (1, 4, 8):
        dr8.switch.route(lane)
        meter_dbm = _dbm(dr8.meter.read_power_w(1)) + config.path_loss_db(
            "tx_to_power_meter", lane - 1
        )
        scope_dbm = _dbm(dr8.scope.eye_readouts(1).average_power_w) + config.path_loss_db(
            "tx_to_scope", lane - 1
        )
        dr8.osa.sweep()
        osa_dbm = dr8.osa.total_power_dbm() + config.path_loss_db("tx_to_osa", lane - 1)
        ddm_dbm = _dbm(dr8.host.monitors().tx_power_w[lane - 1])
        module = dr8.sim.world.module
        assert module is not None
        launched_dbm = _dbm(module.emitted_power_w()[lane - 1])
        assert meter_dbm == pytest.approx(launched_dbm, abs=0.2)
        assert scope_dbm == pytest.approx(meter_dbm, abs=0.3)
        assert osa_dbm == pytest.approx(meter_dbm, abs=0.4)
        assert ddm_dbm == pytest.approx(meter_dbm, abs=1.0)


def test_tx_disable_drops_the_meter_and_the_scope_to_the_dark_level(dr8: Bench) -> None:
    dr8.switch.route(3)
    assert dr8.meter.read_power_w(1) > 1e-4
    assert dr8.scope.eye_readouts(1).oma_outer_w > 1e-4
    dr8.host.set_tx_disable((False, False, True, False, False, False, False, False))
    assert abs(dr8.meter.read_power_w(1)) < 1e-9
    dark = dr8.scope.eye_readouts(1)
    assert abs(dark.average_power_w) < 1e-6
    assert np.isnan(dark.oma_outer_w) and np.isnan(dark.tdecq_db)  # nothing to measure
    waveform = dr8.scope.acquire_waveform(1, 8191 * 4)
    assert abs(float(waveform.samples_w.mean())) < 1e-6
    assert 1e-6 < float(waveform.samples_w.std()) < 5e-6  # the scope's own noise


def test_osa_finds_each_lane_within_the_rbw_and_its_smsr(dr8: Bench) -> None:
    module = dr8.sim.world.module
    assert module is not None
    for lane in (2, 5, 7):
        dr8.switch.route(lane)
        dr8.osa.sweep()
        peak_nm = dr8.osa.peak_wavelength_nm()
        result = dr8.osa.smsr_analysis()
        truth = module.lane_signal(lane - 1)
        assert truth is not None
        assert peak_nm == pytest.approx(truth.wavelength_nm, abs=0.02)
        assert result.side_mode_wavelength_nm - peak_nm == pytest.approx(
            truth.side_mode_offset_nm, abs=0.05
        )
        if truth.smsr_db <= 45.0:  # above that the side mode hides in the modulation skirt
            assert result.smsr_db == pytest.approx(truth.smsr_db, abs=2.5)


def test_a_weak_side_mode_reads_below_the_limit() -> None:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        for bench in _open(sim, "SIM0059", "800G-DR8"):
            tx = make_module_tx("SIM0059", "800G-DR8")
            assert tx.low_smsr_lane == 4
            bench.switch.route(5)
            bench.osa.sweep()
            assert bench.osa.smsr_db() < 30.0


# --- the scope's waveform is the lane's -----------------------------------------------------------
def test_scope_waveform_and_readouts_match_the_lane_truth(dr8: Bench) -> None:
    eye = pytest.importorskip("station.analysis.eye")
    tdecq = pytest.importorskip("station.analysis.tdecq")
    dr8.switch.route(6)
    truth = _signal_at_scope(dr8)
    waveform = dr8.scope.acquire_waveform(1, 8191 * 16)
    readouts = dr8.scope.eye_readouts(1)
    measured = eye.pam4_eye(waveform.samples_w, waveform.samples_per_ui)
    result = tdecq.tdecq(
        waveform.samples_w,
        waveform.samples_per_ui,
        waveform.baud_rate_hz,
        2.5e-6,
        symbols=prbs13q(),
        pattern_name=waveform.pattern,
    )
    # the sampler's gain is calibrated to +-0.1 dB and its responsivity is set for 1310 nm
    assert measured.average_power == pytest.approx(truth.average_power_w, rel=0.03)
    assert result.oma_outer == pytest.approx(truth.oma_outer_w, rel=0.04)
    assert result.er_outer_db == pytest.approx(truth.er_outer_db, abs=0.3)
    assert measured.rlm > 0.93
    # the firmware's own readouts agree with the open analysis of the waveform it returned
    assert readouts.oma_outer_w == pytest.approx(result.oma_outer, rel=0.04)
    assert readouts.er_outer_db == pytest.approx(result.er_outer_db, abs=0.3)
    assert readouts.tdecq_db == pytest.approx(result.tdecq_db, abs=0.8)
    assert readouts.tdecq_db < 3.4


def test_a_slow_lane_fails_tdecq_on_the_scope_and_in_the_open_analysis() -> None:
    tdecq = pytest.importorskip("station.analysis.tdecq")
    assert make_module_tx("SIM0007", "800G-DR8").slow_lane == 1
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        for bench in _open(sim, "SIM0007", "800G-DR8"):
            found = {}
            for lane in (1, 2):
                bench.switch.route(lane)
                waveform = bench.scope.acquire_waveform(1, 8191 * 16)
                open_db = tdecq.tdecq(
                    waveform.samples_w, 16, waveform.baud_rate_hz, 2.5e-6, symbols=prbs13q()
                ).tdecq_db
                found[lane] = (bench.scope.eye_readouts(1).tdecq_db, open_db)
    assert found[2][0] > 3.4 and found[2][1] > 3.4  # lane 2 is the slow one
    assert found[1][0] < 3.4 and found[1][1] < 3.4


def test_a_1p6t_lane_runs_at_106_gbd() -> None:
    eye = pytest.importorskip("station.analysis.eye")
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        for bench in _open(sim, "SIM0001", "1.6T-DR8"):
            bench.switch.route(1)
            truth = _signal_at_scope(bench)
            waveform = bench.scope.acquire_waveform(1, 8191 * 8)
            readouts = bench.scope.eye_readouts(1)
    assert waveform.baud_rate_hz == 106.25e9 and truth.baud_rate_hz == 106.25e9
    measured = eye.pam4_eye(waveform.samples_w, waveform.samples_per_ui)
    assert measured.average_power == pytest.approx(truth.average_power_w, rel=0.03)
    assert readouts.oma_outer_w == pytest.approx(truth.oma_outer_w, rel=0.05)
    assert 0.0 < readouts.tdecq_db < 3.0


# --- the case follows the head --------------------------------------------------------------------
def test_head_settles_first_order_and_the_module_follows(dr8: Bench) -> None:
    clock = dr8.sim.world.clock
    module = dr8.sim.world.module
    assert module is not None
    dr8.switch.route(4)
    dr8.osa.sweep()
    cool_nm = dr8.osa.peak_wavelength_nm()
    cool_ddm = dr8.host.monitors().temperature_c
    dr8.head.configure(window_c=0.5, soak_time_s=20)
    dr8.head.set_setpoint_c(70.0)
    start = clock.now_s()
    times, readings = [], []
    while clock.now_s() - start < 120.0:
        times.append(clock.now_s() - start)
        readings.append(dr8.head.temperature_c())
        clock.sleep(4.0)
    # first order: ln(70 - T) falls on a straight line whose slope is -1/tau
    t, gap = np.array(times), 70.0 - np.array(readings)
    keep = gap > 5.0  # where the reading's 0.1 degC resolution and noise stay small
    slope, intercept = np.polyfit(t[keep], np.log(gap[keep]), 1)
    residual = np.log(gap[keep]) - (slope * t[keep] + intercept)
    assert 30.0 < -1.0 / slope < 90.0
    assert np.abs(residual).max() < 0.06
    while not dr8.head.settled(0.5):
        assert clock.now_s() - start < 900.0, "the head never settled"
        clock.sleep(5.0)
    case_c = dr8.head.temperature_c()
    truth = module.truth
    ddm = dr8.host.monitors().temperature_c
    # DDM reads the module's inside: case + 2 degC + its own heating (+ the sensor's offset)
    assert ddm == pytest.approx(
        case_c + 2.0 + truth.self_heating_c + truth.ddm_temperature_offset_c, abs=0.6
    )
    assert ddm - cool_ddm == pytest.approx(45.0, abs=1.0)
    dr8.osa.sweep()
    assert dr8.osa.peak_wavelength_nm() - cool_nm == pytest.approx(0.09 * 45.0, abs=0.1)
