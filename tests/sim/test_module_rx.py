"""The module bench's receive path is physically coupled: the BERT's counts follow the OMA the
attenuator lets through, the module's RX DDM sees the same light, and a sensitivity fitted the way
the station fits it lands on the receiver's own, for 800G (53.125 GBd) and 1.6T (106.25 GBd)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import ndtri

from drivers.cmis import CmisHost
from drivers.devantech.usb_iss import UsbIssCmisHost
from drivers.interfaces import ModuleState
from drivers.keysight.m8040a import DetectorCondition
from drivers.keysight.m8050a import M8050A
from drivers.keysight.n7734a import N7734A
from drivers.keysight.n7764a import N7764A
from sim_instruments.bench import SimBench
from sim_instruments.receiver import BER_TARGET, RECEIVERS, make_receiver
from sim_instruments.rx_path import PRODUCT_BAUD_GBD, RxPath
from station.config import load_station_config

FAST = 0.01
LANE = 3
GATE_S = 1.0  # 106 Gbit per gate at 53.125 GBd PAM4, 212 Gbit at 106.25 GBd
#: the receive-path tests that run for both products (the rest run 800G)
BOTH = pytest.mark.parametrize("rx_bench", ["800G-DR8", "1.6T-DR8"], indirect=True)


@dataclass
class RxBench:
    sim: SimBench
    rx: RxPath
    host: CmisHost
    bert: M8050A
    product: str
    attenuator: N7764A
    switch: N7734A

    def oma_dbm(self, attenuation_db: float) -> float:
        """Received OMA at LANE as the station works it out: the reference transmitter's
        calibrated OMA, less the calibrated path loss and the attenuation set."""
        path = load_station_config().path_loss_db("ref_tx_to_module_rx", LANE - 1)
        return self.rx.ref_tx.oma_outer_dbm - path - attenuation_db

    def expected_sensitivity_dbm(self) -> float:
        """LANE's own sensitivity at its temperature, seen through this bench's source (whose
        eye penalty a real sensitivity measurement always includes)."""
        module = self.sim.world.module
        receiver = self.rx.receiver()
        assert module is not None and receiver is not None
        ideal = receiver.sensitivity_at(LANE - 1, module.internal_temperature_c())
        return ideal + self.rx.ref_tx.penalty_db

    def attenuation_at_target_db(self) -> float:
        return self.oma_dbm(0.0) - self.expected_sensitivity_dbm()


@pytest.fixture
def rx_bench(request: pytest.FixtureRequest) -> Iterator[RxBench]:
    product = getattr(request, "param", "800G-DR8")
    with SimBench.build(time_factor=FAST) as sim:
        sim.insert("SIM0001", product)
        resources = sim.resources()
        assert sim.world.rx is not None
        with (
            UsbIssCmisHost.open(resources["module_host"]) as host,
            M8050A.open(resources["bert"]) as bert,
            N7764A.open(resources["attenuator"]) as attenuator,
            N7734A.open(resources["rx_switch"]) as switch,
        ):
            host.set_low_power(False)
            host.wait_module_state(ModuleState.READY)
            host.activate_data_paths(1)
            bert.configure("PAM4", "PRBS31Q", PRODUCT_BAUD_GBD[product])
            bert.set_output(True)
            attenuator.set_wavelength_nm(sim.world.rx.ref_tx.wavelength_nm)
            attenuator.set_attenuation_db(10.0)
            attenuator.set_output(True)
            switch.route(LANE)
            yield RxBench(sim, sim.world.rx, host, bert, product, attenuator, switch)


def _sweep(bench: RxBench, attenuations_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bits, errors) of LANE at each attenuation."""
    bits, errors = [], []
    for attenuation in attenuations_db:
        bench.attenuator.set_attenuation_db(float(attenuation))
        (count,) = bench.bert.count_errors((LANE,), GATE_S)
        bits.append(count.bits)
        errors.append(count.errors)
    return np.array(bits, dtype=float), np.array(errors, dtype=float)


def _pam4_q(ber: np.ndarray) -> np.ndarray:
    """Invert SER = 2 BER = 1.5 Q(q) (Gray-coded PAM4)."""
    return -ndtri(2.0 * ber / 1.5)


@BOTH
def test_ber_falls_monotonically_as_the_received_oma_rises(rx_bench: RxBench) -> None:
    target = rx_bench.attenuation_at_target_db()
    attenuations = target + np.arange(2.5, -1.6, -0.5)  # OMA rising, BER 2e-2 down to 1e-6
    bits, errors = _sweep(rx_bench, attenuations)
    ber = errors / bits
    assert np.all(bits > 1e11)
    assert np.all(np.diff(ber) < 0), ber
    assert ber[0] > 1e-2 and ber[-1] < 1e-5


@BOTH
def test_sensitivity_fitted_from_an_attenuator_sweep_is_the_receivers_own(
    rx_bench: RxBench,
) -> None:
    target = rx_bench.attenuation_at_target_db()
    attenuations = target + np.arange(-2.5, 2.51, 0.5)
    bits, errors = _sweep(rx_bench, attenuations)
    oma_dbm = np.array([rx_bench.oma_dbm(a) for a in attenuations])
    ber = errors / bits
    # Leave out points with too few errors to take a Q from, and the floor (the lanes' error
    # floors are 3e-11 to 1e-9: below 1e-8 they bend the waterfall).
    usable = (errors >= 100) & (ber > 1e-8) & (ber < 0.05)
    assert usable.sum() >= 6
    oma_mw = 10 ** (oma_dbm[usable] / 10.0)
    slope, intercept = np.polyfit(oma_mw, _pam4_q(ber[usable]), 1)
    q_target = float(_pam4_q(np.array([BER_TARGET]))[0])
    fitted_dbm = 10 * math.log10((q_target - intercept) / slope)
    assert fitted_dbm == pytest.approx(rx_bench.expected_sensitivity_dbm(), abs=0.3)
    # Q is linear in OMA (mW) through the noise-limited waterfall and goes through the origin.
    assert abs(intercept) < 0.2


def test_module_rx_ddm_follows_the_attenuator_and_sees_only_the_routed_lane(
    rx_bench: RxBench,
) -> None:
    readings_dbm = []
    for attenuation in (0.0, 5.0, 10.0):
        rx_bench.attenuator.set_attenuation_db(attenuation)
        ddm_w = np.array(rx_bench.host.monitors().rx_power_w)
        truth_w = rx_bench.rx.input_w()
        lane_dbm = 10 * math.log10(ddm_w[LANE - 1] / 1e-3)
        assert lane_dbm == pytest.approx(10 * math.log10(truth_w[LANE - 1] / 1e-3), abs=1.0)
        others = np.delete(ddm_w, LANE - 1)
        assert np.all(others < 2e-6)  # dark lanes read monitor noise only
        readings_dbm.append(lane_dbm)
    assert np.diff(readings_dbm) == pytest.approx([-5.0, -5.0], abs=0.15)
    # The average power the DDM reports matches what the station expects from its calibration.
    average_dbm = 10 * math.log10(rx_bench.rx.ref_tx.average_power_w / 1e-3)
    path_db = load_station_config().path_loss_db("ref_tx_to_module_rx", LANE - 1)
    truth_dbm = 10 * math.log10(rx_bench.rx.input_w()[LANE - 1] / 1e-3)
    assert truth_dbm == pytest.approx(average_dbm - path_db - 10.0, abs=0.15)


@BOTH
def test_attenuator_at_maximum_is_loss_of_signal_on_the_bert(rx_bench: RxBench) -> None:
    rx_bench.attenuator.set_attenuation_db(rx_bench.attenuator.max_attenuation_db)
    (count,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert count.bits == 0 and math.isnan(count.ber)
    condition = rx_bench.bert.conditions(LANE)
    assert DetectorCondition.DATA_LOSS in condition and DetectorCondition.CDR_UNLOCKED in condition
    assert rx_bench.host.monitors().rx_power_w[LANE - 1] < 2e-6
    # Back in the waterfall the detector counts again.
    rx_bench.attenuator.set_attenuation_db(rx_bench.attenuation_at_target_db())
    (count,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert count.bits > 1e11 and 2e-5 < count.ber < 2e-3
    assert DetectorCondition.DATA_LOSS not in rx_bench.bert.conditions(LANE)


def test_unrouted_lanes_have_no_data_and_a_pattern_mismatch_saturates(rx_bench: RxBench) -> None:
    rx_bench.attenuator.set_attenuation_db(rx_bench.attenuation_at_target_db() - 2.0)
    routed, other = rx_bench.bert.count_errors((LANE, LANE + 1), GATE_S)
    assert routed.bits > 1e11 and routed.ber < 1e-5
    assert other.bits == 0
    # The detectors expect PRBS13 while the generator sends PRBS31: out of sync, errors saturate.
    analyzer = (
        '<sequenceDefinition xmlns="http://www.agilent.com/schemas/M8000/DataSequence">'
        '<sequence><syncAndLoopBlock length="512"><prbs polynomial="2^13-1" />'
        "</syncAndLoopBlock></sequence></sequenceDefinition>"
    )
    rx_bench.bert.write(f":DATA:SEQ:SET:VAL 'Analyzer',#3{len(analyzer)}{analyzer}")
    (count,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert count.ber == pytest.approx(0.5, abs=0.01)
    assert DetectorCondition.SYNC_LOSS in rx_bench.bert.conditions(LANE)


def test_generator_off_leaves_light_but_no_data(rx_bench: RxBench) -> None:
    rx_bench.attenuator.set_attenuation_db(3.0)
    rx_bench.bert.set_output(False)  # the reference transmitter keeps its laser on, unmodulated
    assert rx_bench.host.monitors().rx_power_w[LANE - 1] > 1e-4
    (count,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert count.bits == 0  # the module has nothing to lock to and squelches its output


@pytest.mark.parametrize("rx_bench", ["1.6T-DR8"], indirect=True)
def test_a_1p6t_receiver_counts_at_106p25_gbd_and_loses_lock_at_the_800g_rate(
    rx_bench: RxBench,
) -> None:
    rx_bench.attenuator.set_attenuation_db(rx_bench.attenuation_at_target_db() - 2.0)
    (count,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert count.symbols == pytest.approx(106.25e9 * GATE_S, rel=1e-6)
    assert count.bits == 2 * count.symbols  # PAM4: two bits a symbol
    assert 0 < count.ber < 1e-5
    # At the 800G rate the module's clock recovery cannot lock: its host output squelches.
    rx_bench.bert.configure("PAM4", "PRBS31Q", 53.125)
    (count,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert count.bits == 0
    assert DetectorCondition.DATA_LOSS in rx_bench.bert.conditions(LANE)
    assert rx_bench.host.monitors().rx_power_w[LANE - 1] > 1e-5  # light, but no data


def test_a_stuck_attenuator_shows_in_the_rx_ddm_not_in_its_own_reading(rx_bench: RxBench) -> None:
    rx_bench.attenuator.set_attenuation_db(4.0)
    before = rx_bench.host.monitors().rx_power_w[LANE - 1]
    attenuator_twin = rx_bench.sim.devices["attenuator"]
    attenuator_twin.stick_filter()  # type: ignore[union-attr]
    rx_bench.attenuator.set_attenuation_db(9.0)
    assert rx_bench.attenuator.attenuation_db() == pytest.approx(9.0)
    after = rx_bench.host.monitors().rx_power_w[LANE - 1]
    assert 10 * math.log10(before / after) < 0.3  # 5 dB asked for, none delivered


def test_error_burst_fault_adds_errors_the_channel_statistics_do_not_predict(
    rx_bench: RxBench,
) -> None:
    rx_bench.attenuator.set_attenuation_db(rx_bench.attenuation_at_target_db() - 2.5)
    (quiet,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    rx_bench.sim.devices["bert"].error_bursts[LANE] = 40_000  # type: ignore[union-attr]
    (bursty,) = rx_bench.bert.count_errors((LANE,), GATE_S)
    assert bursty.errors - quiet.errors > 30_000


def test_receiver_population_is_stable_per_serial_and_spreads_like_production() -> None:
    assert make_receiver("SIM0007", "800G-DR8") == make_receiver("SIM0007", "800G-DR8")
    units = [make_receiver(f"SIM{i:04d}", "800G-DR8") for i in range(1, 301)]
    healthy = np.array(
        [s for u in units for k, s in enumerate(u.sensitivity_oma_dbm) if k != u.weak_lane]
    )
    assert healthy.mean() == pytest.approx(RECEIVERS["800G-DR8"].sensitivity_oma_dbm, abs=0.15)
    assert 0.35 < healthy.std() < 0.65
    marginal = sum(max(u.sensitivity_oma_dbm) > -4.9 for u in units)
    assert 3 <= marginal <= 30  # a few percent of units sit near or past the -4.4 dBm limit
    fast = [make_receiver(f"SIM{i:04d}", "1.6T-DR8") for i in range(1, 101)]
    assert np.mean([np.median(u.sensitivity_oma_dbm) for u in fast]) == pytest.approx(-4.8, abs=0.2)


def test_receiver_error_rates_follow_the_pam4_formula() -> None:
    receiver = make_receiver("SIM0001", "800G-DR8")
    sensitivity_w = 10 ** (receiver.sensitivity_at(2, 40.0) / 10.0) * 1e-3
    at_target = receiver.error_rates(2, sensitivity_w, 40.0)
    assert at_target.ber == pytest.approx(BER_TARGET, rel=0.01)
    assert at_target.level_ser[1] == pytest.approx(2 * at_target.level_ser[0], rel=0.01)
    through_source = receiver.error_rates(2, sensitivity_w, 40.0, source_penalty_db=1.0)
    assert through_source.ber > 5 * BER_TARGET
    hotter = receiver.error_rates(2, sensitivity_w, 70.0)
    assert hotter.ber > at_target.ber
    dark = receiver.error_rates(2, 0.0, 40.0)
    assert dark.ser == pytest.approx(0.75, abs=0.01)  # a coin toss between neighbours
