"""The pluggable sequence end to end on the simulated module bench, in process: a passing unit and
its agreement with the simulated truth, known-bad units, instrument faults, 1.6T, corners.

Tolerances against the simulated truth (module output, after the station's calibrated losses):
average power 0.15 dB (path calibration 0.05 dB, switch repeatability 0.015 dB, meter); OMA
outer 0.25 dB (the scope channel's gain calibration is +-0.08 dB); outer ER 0.2 dB; centre
wavelength 0.05 nm (OSA steps of 0.02 nm, its +-8 pm calibration) plus the drift while the
module warms during the step (0.09 nm/K); SMSR 2.5 dB (truth <= 45 dB; above, the side mode
sinks into the modulation skirt); TDECQ within 0.3 dB of the same open analysis applied to the
lane's capture without the scope (the scope's 80 GHz O/E adds a little ISI: the station reads
0.05-0.2 dB higher); sensitivity within 0.3 dB of the receiver's own at its temperature, seen
through the reference source (whose eye penalty every sensitivity measurement includes).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Iterator

import numpy as np
import pytest

from sequences.pluggable import SEQUENCE
from sequences.pluggable_rx import BER_TARGET
from sequences.pluggable_tx import correlation_lane
from sim_instruments import waveforms as wf
from sim_instruments.bench import SimBench
from sim_instruments.faults import Fault
from sim_instruments.keysight_m8040a import SimM8040A
from sim_instruments.pluggable import SimulatedModule
from sim_instruments.server import ScpiSocketServer
from sim_instruments.transmitter import TxSignal
from station.analysis.patterns import prbs13q
from station.analysis.tdecq import tdecq
from station.config import load_station_config
from station.limits import limits_path
from station.multisite import SiteResult
from station.outcome import Outcome
from station.sequence import Sequence
from tests.sequences.helpers import TIME_FACTOR, Run, benches, run_sites, run_unit

LANES = range(1, 9)
TX_PER_LANE = (
    "tx_average_power",
    "tx_oma_outer",
    "tx_extinction_ratio",
    "tx_tdecq",
    "tx_tdecq_minus_ceq",
    "tx_rlm",
    "tx_wavelength",
    "tx_smsr",
    "tx_off_power",
)
RX_PER_LANE = ("rx_data_detected", "rx_ber_nominal", "rx_ber_nominal_confidence")


@pytest.fixture(scope="module")
def passing() -> Iterator[tuple[Run, SimulatedModule, SimBench]]:
    """SIM0001 (the README's passing unit), every step, at the production corner."""
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        run = run_unit(sim, "SIM0001", mode="characterisation")
        module = sim.world.module
        assert module is not None
        yield run, module, sim


def _lane_signal(module: SimulatedModule, lane: int, inside_c: float) -> TxSignal:
    """What lane `lane` (1-based) launches at the module's inside temperature `inside_c`."""
    truth = module.truth.lanes[lane - 1]
    power_w = 10 ** ((truth.tx_power_dbm - 0.006 * (inside_c - 40.0)) / 10.0) * 1e-3
    wavelength = truth.wavelength_nm + 0.09 * (inside_c - 40.0)
    baud_hz = module.truth.design.baud_rate_gbd * 1e9
    return module.tx.lanes[lane - 1].signal(power_w, wavelength, inside_c, baud_hz)


def _dbm(watts: float) -> float:
    return 10.0 * math.log10(watts / 1e-3)


def _open_tdecq_without_scope(signal: TxSignal, rng: np.random.Generator) -> float:
    """The open TDECQ of the lane's own capture: its band limit, RIN and jitter, no scope."""
    spb = 16
    fine = wf.periodic_waveform(signal.symbol_levels_w(), signal.baud_rate_hz, signal.response)
    times = wf.sample_times_ui(8191 * spb, spb, 0.0, signal.rj_ui, signal.pj_ui, rng)
    values = wf.interpolate_periodic(fine, times)
    values = values * (1.0 + rng.normal(0.0, signal.rin_sigma(80e9), values.size))
    return tdecq(values, spb, signal.baud_rate_hz, 0.0, symbols=prbs13q()).tdecq_db


def _without(*prefixes: str) -> Sequence:
    """The pluggable sequence less the steps whose names start with `prefixes`."""
    steps = tuple(s for s in SEQUENCE.steps if not s.name.startswith(prefixes))
    return dataclasses.replace(SEQUENCE, name="part", steps=steps)


# --- a passing unit ------------------------------------------------------------------------
def test_a_passing_unit_passes_every_lane_and_keeps_its_records(passing) -> None:
    run, _, _ = passing
    assert run.outcome == Outcome.PASS, run.result.error
    for name in (*TX_PER_LANE, *RX_PER_LANE, "rx_sensitivity_oma", "ddm_tx_power_error"):
        assert sorted(run.values(name)) == list(LANES), name  # type: ignore[type-var]
    oma_minus_tdecq = {
        **run.values("tx_oma_minus_tdecq"),
        **run.values("tx_oma_minus_tdecq_low_er"),
    }
    assert sorted(oma_minus_tdecq) == list(LANES)  # type: ignore[type-var]
    assert run.values("serial_number") == {None: "SIM0001"}
    # the scope's own TDECQ beside ours, on the one lane this unit correlates
    (lane, delta), *_ = run.values("tx_tdecq_scope_delta").items()
    assert len(run.values("tx_tdecq_scope_delta")) == 1
    assert lane == correlation_lane("SIM0001", 8) and abs(delta) < 0.8  # type: ignore[arg-type]
    # every TX lane's waveform and spectrum, every RX lane's waterfall, as artefacts
    eyes, waterfalls = run.artefacts("eye"), run.artefacts("waterfall")
    assert sorted(e.lane for e in eyes) == list(LANES)  # type: ignore[type-var]
    assert sorted(e.lane for e in waterfalls) == list(LANES)  # type: ignore[type-var]
    assert (
        eyes[0].arrays["samples_w"].size == 8191 * 16 and eyes[0].metadata["pattern"] == "PRBS13Q"
    )
    assert {"time_ui", "amplitude", "density", "levels"} <= set(eyes[0].arrays)  # for reports
    assert eyes[0].arrays["density"].sum() == 8191 * 16
    assert {"oma_dbm", "bits", "errors", "ber", "fit_oma_dbm", "fit_ber"} <= set(
        waterfalls[0].arrays
    )
    assert len(run.artefacts("osa_spectrum")) == 8
    # sigma_S measured in the run (a dark capture), not defaulted to 0
    assert 0.2 < float(run.attributes("tx_optical_25c")["scope_noise_rms_uw"]) < 2.0
    assert "SECQ 0.41 dB" in run.attributes("rx_25c")["rx_source"]
    assert float(run.attributes("rx_25c")["rx_min_attenuation_db"]) >= 0.0
    # production runs the 25 degC corner only: the other corners' steps are not run at all
    assert run.attributes("case_temperature_plan")["corners_c"] == "25"
    assert list(run.step_outcomes()) == [
        "identify_module",
        "case_temperature_plan",
        "inspect",
        "power_up",
        "case_temperature_25c",
        "tx_optical_25c",
        "rx_25c",
    ]


def test_the_transmitters_are_off_after_the_tx_tests(passing) -> None:
    run, module, _ = passing
    assert max(run.values("tx_off_power").values()) < -60.0  # type: ignore[type-var]
    assert not module.emitted_power_w().any()  # and safe state put the module in low power


def test_computed_power_oma_er_and_tdecq_agree_with_the_lane_truth(passing) -> None:
    run, module, _ = passing
    inside_c = run.inside_temperature_c("tx_optical_25c")
    rng = np.random.default_rng(7)
    for lane in LANES:
        signal = _lane_signal(module, lane, inside_c)
        assert run.values("tx_average_power")[lane] == pytest.approx(
            _dbm(signal.average_power_w), abs=0.15
        )
        assert run.values("tx_oma_outer")[lane] == pytest.approx(_dbm(signal.oma_outer_w), abs=0.25)
        assert run.values("tx_extinction_ratio")[lane] == pytest.approx(signal.er_outer_db, abs=0.2)
        if lane in (1, 4, 8):  # the truth's own analysis costs 0.5 s a lane
            assert run.values("tx_tdecq")[lane] == pytest.approx(
                _open_tdecq_without_scope(signal, rng), abs=0.3
            )
        # the lane warms (0.09 nm/K) while the step runs: between its start and end, +-0.05 nm
        drift_nm = 0.09 * abs(np.subtract(*run.inside_temperatures_c("tx_optical_25c"))) / 2.0
        assert run.values("tx_wavelength")[lane] == pytest.approx(
            signal.wavelength_nm, abs=0.05 + drift_nm
        )
        if signal.smsr_db <= 45.0:
            assert run.values("tx_smsr")[lane] == pytest.approx(signal.smsr_db, abs=2.5)
        assert 0.95 < run.values("tx_rlm")[lane] <= 1.0  # type: ignore[operator]


def test_fitted_sensitivity_is_the_receivers_own_within_0p3_db(passing) -> None:
    run, _, sim = passing
    rx = sim.world.rx
    receiver = rx.receiver()
    inside_c = run.inside_temperature_c("rx_25c")
    for lane in LANES:
        expected = receiver.sensitivity_at(lane - 1, inside_c) + rx.ref_tx.penalty_db
        assert run.values("rx_sensitivity_oma")[lane] == pytest.approx(expected, abs=0.3)
        assert run.values("rx_ber_nominal")[lane] < 1e-8  # type: ignore[operator]
        assert run.values("rx_ber_nominal_confidence")[lane] > 0.999  # type: ignore[operator]


def test_ddm_is_judged_against_the_station_not_against_itself(passing) -> None:
    run, module, _ = passing
    truth = module.truth
    for lane in LANES:  # the module's own monitor errors, as the station finds them
        assert run.values("ddm_tx_power_error")[lane] == pytest.approx(
            truth.lanes[lane - 1].ddm_tx_error_db, abs=0.15
        )
        assert run.values("ddm_rx_power_error")[lane] == pytest.approx(
            truth.lanes[lane - 1].ddm_rx_error_db, abs=0.15
        )
    # DDM reads the inside: case + 2 degC + self-heating + the sensor's offset, against the case
    rise = run.values("ddm_temperature_minus_case")[None]
    assert 2.0 < rise < 2.0 + truth.self_heating_c + truth.ddm_temperature_offset_c + 1.0  # type: ignore[operator]


# --- known-bad units, four sites at once ----------------------------------------------------------
#: serial -> (measurement that must fail, lane): found in the simulator's population
BAD_UNITS = {
    "SIM0022": ("tx_average_power", 4),  # weak TX laser (the README's failing unit)
    "SIM0007": ("tx_tdecq", 2),  # slow lane: too little bandwidth
    "SIM0059": ("tx_smsr", 5),  # weak side-mode suppression
    "SIM0010": ("rx_sensitivity_oma", 4),  # weak receiver
}


def test_known_bad_units_fail_on_the_right_measurement_and_lane_on_four_sites() -> None:
    serials = list(BAD_UNITS)
    with benches(serials) as sims:
        results, recorder, runner = run_sites(sims, serials, mode="characterisation")
        lasers = [sim.world.module.emitted_power_w() for sim in sims]  # type: ignore[union-attr]
    assert runner.shared == frozenset()  # every simulated site is a whole bench
    for site in results:
        assert site.result is not None and site.result.outcome == Outcome.FAIL, site
        name, lane = BAD_UNITS[site.serial]
        failed = {(m.name, m.lane) for m in site.result.measurements if m.outcome != "PASS"}
        assert (name, lane) in failed, (site.serial, failed)
        assert {m_lane for _, m_lane in failed} == {lane}, (site.serial, failed)  # only that lane
    assert all(not power.any() for power in lasers)  # every site ended with its lasers off
    run_ids = {e.run_id for e in recorder.events if hasattr(e, "run_id")}  # type: ignore[attr-defined]
    assert len(run_ids) == 4


# --- faults -------------------------------------------------------------------------------------
def test_a_scope_fault_mid_sequence_ends_the_site_in_error_with_the_lasers_off() -> None:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        # the scope rejects every waveform transfer (a device-specific error in its queue)
        sim.arm_fault("sampling_scope", Fault("error", match="WAVeform:SOUR", count=0))
        run = run_unit(sim, "SIM0001")
        module = sim.world.module
        assert module is not None
        assert run.outcome == Outcome.ERROR
        assert "InstrumentCommandError" in (run.result.error or "")
        assert run.step_outcomes()["tx_optical_25c"] == Outcome.ERROR  # after its one retry
        assert "attempt_1_error" in run.attributes("tx_optical_25c")
        assert not module.emitted_power_w().any()  # lasers off (CMIS TX disable + low power)
        assert module.data_path_states() == [1] * 8  # deactivated: the module is in low power


def test_a_bert_that_stops_answering_ends_the_site_in_error_with_the_path_dark() -> None:
    sequence = _without("tx_", "ddm_")
    config = load_station_config()
    fast = dataclasses.replace(config.instruments["bert"], timeout_s=0.3)
    config = dataclasses.replace(config, instruments={**config.instruments, "bert": fast})
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        sim.arm_fault("bert", Fault("no_reply", match="FETC:BCO", count=0))
        run = run_unit(sim, "SIM0001", sequence=sequence, config=config)
        module, rx = sim.world.module, sim.world.rx
        assert module is not None and rx is not None
        assert run.outcome == Outcome.ERROR and "InstrumentTimeout" in (run.result.error or "")
        assert not module.emitted_power_w().any()
        assert not rx.attenuator.shutter_open and rx.attenuator.set_db == rx.attenuator.max_db
        assert not rx.ref_tx.driven


# --- 1.6T: 106.25 GBd receivers on the bench's M8050A ----------------------------------------
@pytest.fixture(scope="module")
def passing_1p6t() -> Iterator[tuple[Run, SimulatedModule, SimBench]]:
    """SIM0001 as a 1.6T DR8 unit, every step, at the production corner."""
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        run = run_unit(sim, "SIM0001", "1.6T-DR8", mode="characterisation")
        module = sim.world.module
        assert module is not None
        yield run, module, sim


def test_a_1p6t_unit_is_measured_end_to_end_tx_and_rx(passing_1p6t) -> None:
    run, module, sim = passing_1p6t
    assert run.outcome == Outcome.PASS, run.failed()
    assert "rx_skipped" not in run.attributes("rx_25c")
    for name in (*RX_PER_LANE, "rx_sensitivity_oma", "ddm_rx_power_error"):
        assert sorted(run.values(name)) == list(LANES), name  # type: ignore[type-var]
    assert sorted(w.lane for w in run.artefacts("waterfall")) == list(LANES)  # type: ignore[type-var]
    assert "SECQ 0.41 dB" in run.attributes("rx_25c")["rx_source"]
    rx = sim.world.rx
    assert rx is not None  # the BERT ran the reference at the 1.6T rate, and left it undriven
    assert rx.ref_tx.baud_gbd == pytest.approx(106.25) and not rx.ref_tx.driven
    # A gate counts 2 bits a symbol at 106.25 GBd: twice the bits of an 800G gate.
    (first, *_) = run.artefacts("waterfall")
    assert first.arrays["bits"] == pytest.approx(2 * 106.25e9, rel=1e-6)
    inside_c = run.inside_temperature_c("tx_optical_25c")
    for lane in LANES:
        signal = _lane_signal(module, lane, inside_c)
        assert signal.baud_rate_hz == 106.25e9
        assert run.values("tx_oma_outer")[lane] == pytest.approx(_dbm(signal.oma_outer_w), abs=0.25)
        assert run.values("tx_extinction_ratio")[lane] == pytest.approx(signal.er_outer_db, abs=0.2)
        assert run.values("tx_tdecq")[lane] < 3.0  # type: ignore[operator]


def test_1p6t_fitted_sensitivity_is_the_receivers_own_within_0p3_db(passing_1p6t) -> None:
    run, _, sim = passing_1p6t
    rx = sim.world.rx
    receiver = rx.receiver()
    assert receiver is not None and receiver.product == "1.6T-DR8"
    inside_c = run.inside_temperature_c("rx_25c")
    for lane in LANES:
        expected = receiver.sensitivity_at(lane - 1, inside_c) + rx.ref_tx.penalty_db
        assert run.values("rx_sensitivity_oma")[lane] == pytest.approx(expected, abs=0.3)
        assert run.values("rx_ber_nominal")[lane] < 1e-8  # type: ignore[operator]
        assert run.values("rx_ber_nominal_confidence")[lane] > 0.999  # type: ignore[operator]


#: 1.6T serial -> (measurement that must fail, lane), found in the simulator's population
BAD_1P6T_UNITS = {
    "SIM0002": ("rx_sensitivity_oma", 7),  # weak receiver lane (truth about -1.5 dBm)
    "SIM0014": ("tx_oma_outer", 3),  # weak TX laser
}


def _check_1p6t_sites(results: list[SiteResult], lasers: list[np.ndarray]) -> None:
    """Every site measured every lane's receiver; the bad units fail on their own lane only."""
    for site in results:
        assert site.result is not None, site
        measured = {(m.name, m.lane) for m in site.result.measurements}
        assert {("rx_sensitivity_oma", lane) for lane in LANES} <= measured, site.serial
        failed = {(m.name, m.lane) for m in site.result.measurements if m.outcome != "PASS"}
        if site.serial in BAD_1P6T_UNITS:
            name, lane = BAD_1P6T_UNITS[site.serial]
            assert site.result.outcome == Outcome.FAIL, site
            assert (name, lane) in failed, (site.serial, failed)
            assert {m_lane for _, m_lane in failed} == {lane}, (site.serial, failed)
        else:
            assert site.result.outcome == Outcome.PASS, (site.serial, failed, site.result.error)
    assert all(not power.any() for power in lasers)  # every site ended with its lasers off


def test_1p6t_on_two_sites_a_weak_receiver_fails_on_its_own_lane() -> None:
    serials = ["SIM0001", "SIM0002"]
    with benches(serials, "1.6T-DR8") as sims:
        results, _, _ = run_sites(sims, serials, "1.6T-DR8", mode="characterisation")
        lasers = [sim.world.module.emitted_power_w() for sim in sims]  # type: ignore[union-attr]
    _check_1p6t_sites(results, lasers)
    bad = next(site for site in results if site.serial == "SIM0002")
    assert bad.result is not None
    weak = {m.lane: m.value for m in bad.result.measurements if m.name == "rx_sensitivity_oma"}
    assert weak[7] > -2.8 > max(v for lane, v in weak.items() if lane != 7)  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_1p6t_on_eight_sites() -> None:
    serials = ["SIM0001", "SIM0002", "SIM0003", "SIM0005", "SIM0009", "SIM0013", "SIM0014"]
    serials.append("SIM0015")
    with benches(serials, "1.6T-DR8") as sims:
        results, recorder, _ = run_sites(sims, serials, "1.6T-DR8", mode="characterisation")
        lasers = [sim.world.module.emitted_power_w() for sim in sims]  # type: ignore[union-attr]
    assert sorted(site.serial for site in results) == sorted(serials)
    _check_1p6t_sites(results, lasers)
    run_ids = {e.run_id for e in recorder.events if hasattr(e, "run_id")}  # type: ignore[attr-defined]
    assert len(run_ids) == 8


def test_a_station_whose_bert_stops_at_64_gbd_skips_1p6t_rx_and_says_why() -> None:
    """An 800G station's M8040A cannot run 106.25 GBd: RX DDM only, and the reason recorded."""
    sim = SimBench.build(time_factor=TIME_FACTOR)
    sim.servers["bert"].stop()  # the bench's own M8050A, never started
    sim.devices["bert"] = SimM8040A(sim.world, "MY58440123")
    sim.servers["bert"] = ScpiSocketServer("bert", sim.devices["bert"])
    config = load_station_config()
    m8040a = dataclasses.replace(
        config.instruments["bert"], driver="keysight.m8040a:M8040A", serial_number="MY58440123"
    )
    config = dataclasses.replace(config, instruments={**config.instruments, "bert": m8040a})
    with sim:
        run = run_unit(
            sim,
            "SIM0001",
            "1.6T-DR8",
            sequence=_without("tx_"),
            config=config,
            mode="characterisation",
        )
    assert run.outcome == Outcome.PASS, run.failed()
    reason = run.attributes("rx_25c")["rx_skipped"]
    assert "M8040A" in reason and "64 GBd" in reason and "106.25 GBd" in reason
    assert not run.values("rx_sensitivity_oma") and not run.artefacts("waterfall")
    assert len(run.values("ddm_rx_power_error")) == 8  # the RX monitors need light, not a BERT


@pytest.mark.parametrize("product", ["800G-DR8", "1.6T-DR8"])
def test_the_sensitivity_fit_aims_at_each_products_ber_limit(product: str) -> None:
    """The waterfall's BER target is the BER the product's limits file holds a receiver to."""
    limits = tomllib.loads(limits_path(product).read_text(encoding="utf-8"))
    assert limits["limits"]["rx_ber_nominal"]["high"] == BER_TARGET


# --- temperature corners ------------------------------------------------------------------------
def _corner_only_sequence() -> Sequence:
    return _without("tx_", "rx_", "ddm_")


def test_selected_corners_are_soaked_in_order_and_judged_against_the_case() -> None:
    with SimBench.build(time_factor=TIME_FACTOR / 5) as sim:  # minutes of head settling
        run = run_unit(sim, "SIM0001", sequence=_corner_only_sequence(), corners_c=(70.0, 0.0))
        head = sim.devices["thermal_head"].head  # type: ignore[attr-defined]
        assert run.outcome == Outcome.PASS, run.failed()
        assert run.attributes("case_temperature_plan")["corners_c"] == "0,70"  # run order
        assert "case_temperature_25c" not in run.step_outcomes()
        errors = run.values("case_temperature_error")
        assert len(run.values("case_temperature_error", "case_temperature_0c")) == 1
        assert len(run.values("case_temperature_error", "case_temperature_70c")) == 1
        assert all(abs(e) <= 1.0 for e in errors.values())  # type: ignore[arg-type]
        assert not head.flow and head.target_c == 25.0  # safe state: back to ambient, air off
    rise = run.values("ddm_temperature_minus_case", "case_temperature_70c")[None]
    assert 0.0 < rise < 25.0  # type: ignore[operator]


def test_a_corner_the_sequence_does_not_offer_is_bad_input_not_a_verdict() -> None:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        run = run_unit(sim, "SIM0001", sequence=_corner_only_sequence(), corners_c=(85.0,))
    assert run.outcome == Outcome.ERROR
    assert "offers 25, 0, 70 degC" in (run.result.error or "")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_corners_end_to_end() -> None:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        run = run_unit(sim, "SIM0003", mode="characterisation", corners_c=(0.0, 25.0, 70.0))
    assert run.outcome == Outcome.PASS, run.failed()
    for corner in ("0c", "25c", "70c"):
        assert len(run.values("tx_tdecq", f"tx_optical_{corner}")) == 8
        assert len(run.values("rx_sensitivity_oma", f"rx_{corner}")) == 8
    hot, cold = (
        run.values("tx_wavelength", "tx_optical_70c"),
        run.values("tx_wavelength", "tx_optical_0c"),
    )
    assert all(5.0 < hot[k] - cold[k] < 8.0 for k in LANES)  # type: ignore[operator]  # 0.09 nm/K


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_population_sim0001_to_sim0050() -> None:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        outcomes = {f"SIM{i:04d}": run_unit(sim, f"SIM{i:04d}").outcome for i in range(1, 51)}
    assert outcomes["SIM0001"] == Outcome.PASS and outcomes["SIM0022"] == Outcome.FAIL
    assert Outcome.ERROR not in outcomes.values()
    assert sum(o == Outcome.PASS for o in outcomes.values()) >= 35  # 38 (README)
