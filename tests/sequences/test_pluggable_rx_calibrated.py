"""The pluggable receiver tests through a calibrated RX path: after path-cal the OMA the station
puts on each receiver and the sensitivity it finds agree with the simulated world's truth, every
received power names the RX path's calibration record, and the attenuator's linearity records
correct the attenuation at the setting used.

The bench here is made hard to measure on purpose: its RX breakout jumper was swapped for one
with an extra mated adapter (1 dB more than the station config's bootstrap values say) and its
attenuator is far less linear than a healthy one (a 0.25 dB ripple, inside path-cal's limits).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from sequences.pluggable import corner_steps, power_up
from sim_instruments.bench import SimBench
from station.calibration.paths import ATTENUATOR_PATH, PathCalibration
from station.config import load_station_config
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.sequence import Sequence
from tests.calibration.helpers import calibrated, path_cal, records_of, station_config
from tests.sequences.helpers import TIME_FACTOR, Run, run_unit

EXTRA_RX_LOSS_DB = 1.0
RIPPLE_DB = 0.25  # the attenuator's nonlinearity: RIPPLE_DB * sin(pi * setting / 20 dB)
SWAPPED_RX_JUMPER = "MPO8-RX-7002"
LANES = range(1, 9)
BOOTSTRAP_RX_LOSS_DB = load_station_config().paths["ref_tx_to_module_rx"].loss_db
RX_ONLY = Sequence(
    name="rx-calibrated",
    description="module receiver figures through the calibrated RX path",
    products=("800G-DR8",),
    steps=(power_up, corner_steps(25.0)[2]),
)


@dataclass
class Bench:
    sim: SimBench
    records: list[PathCalibration]
    before: Run  # characterisation on the station config's bootstrap losses
    after: Run  # production on the path calibration


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    tmp_path = tmp_path_factory.mktemp("rx-calibrated")
    config = station_config(
        tmp_path, "sim-module-bench-1", rx_jumper=SWAPPED_RX_JUMPER, monitor=True
    )
    store = ResultsStore(tmp_path / "results.sqlite")
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        rx = sim.world.rx
        assert rx is not None
        sim.world.swap_jumper("rx_breakout", SWAPPED_RX_JUMPER, EXTRA_RX_LOSS_DB)
        rx.attenuator.linearity_db = RIPPLE_DB
        before = run_unit(
            sim, "SIM0001", sequence=RX_ONLY, mode="characterisation", config=config.for_site(1)
        )
        calibration = path_cal(sim, config, store)
        assert calibration.outcome == Outcome.PASS, calibration.error
        view = calibrated(config, store, RX_ONLY.roles)
        after = run_unit(sim, "SIM0001", sequence=RX_ONLY, config=view)
        yield Bench(sim, records_of(config, store), before, after)
    store.close()


def _true_oma_dbm(sim: SimBench, lane: int, setting_db: float) -> float:
    """The OMA the world delivers to module RX `lane` at attenuator setting `setting_db` (the
    switch settled on it, the attenuator told the reference's wavelength)."""
    rx = sim.world.rx
    assert rx is not None
    attenuator = rx.attenuator
    actual = setting_db + attenuator.linearity_db * math.sin(math.pi * setting_db / 20.0)
    wdl = setting_db * attenuator.wdl_per_nm * (rx.ref_tx.wavelength_nm - 1310.69)  # the cert's
    return rx.ref_tx.oma_outer_dbm - rx.fixed_loss_db(lane) - actual - wdl


def _points(run: Run, lane: int) -> dict[str, np.ndarray]:
    (artefact,) = [a for a in run.artefacts("waterfall") if a.lane == lane]
    return artefact.arrays


def test_the_oma_at_each_receiver_is_the_worlds_after_path_cal_and_off_by_the_path_before(
    bench: Bench,
) -> None:
    assert bench.after.outcome == Outcome.PASS, bench.after.result.error
    records = {r.path_index: r for r in bench.records if r.path == "ref_tx_to_module_rx"}
    for lane in LANES:
        after = _points(bench.after, lane)
        truth = np.array([_true_oma_dbm(bench.sim, lane, s) for s in after["attenuation_db"]])
        # the switch's repeatability (0.015 dB) and the record's own uncertainty
        tolerance = 3 * math.hypot(records[lane - 1].uncertainty_db, 0.015)
        assert np.abs(after["oma_dbm"] - truth).max() < tolerance, lane
        # uncorrected (the source less the setting), the station is off by the whole path
        off = after["raw_oma_dbm"] - truth
        assert off == pytest.approx(
            np.full(off.size, bench.sim.world.rx.fixed_loss_db(lane)),  # type: ignore[union-attr]
            abs=RIPPLE_DB + 0.05,
        )
        # on the bootstrap losses the station is off by what the swapped jumper changed and
        # by the attenuator's nonlinearity at each setting
        before = _points(bench.before, lane)
        settings = before["attenuation_db"]
        truth = np.array([_true_oma_dbm(bench.sim, lane, s) for s in settings])
        expected = _missed_db(bench, lane) + RIPPLE_DB * np.sin(np.pi * settings / 20.0)
        assert before["oma_dbm"] - truth == pytest.approx(expected, abs=0.02)
    missed = [_missed_db(bench, lane) for lane in LANES]
    assert np.mean(missed) == pytest.approx(EXTRA_RX_LOSS_DB, abs=0.25)


def _missed_db(bench: Bench, lane: int) -> float:
    """The true RX path loss of `lane` less the station config's bootstrap value."""
    rx = bench.sim.world.rx
    assert rx is not None
    return rx.fixed_loss_db(lane) - BOOTSTRAP_RX_LOSS_DB[lane - 1]


def test_sensitivity_is_the_receivers_own_after_path_cal_and_worse_by_the_extra_loss_before(
    bench: Bench,
) -> None:
    rx = bench.sim.world.rx
    assert rx is not None
    receiver = rx.receiver()
    assert receiver is not None
    inside_c = bench.after.inside_temperature_c("rx_25c")
    before = bench.before.values("rx_sensitivity_oma")
    after = bench.after.values("rx_sensitivity_oma")
    for lane in LANES:
        expected = receiver.sensitivity_at(lane - 1, inside_c) + rx.ref_tx.penalty_db
        assert after[lane] == pytest.approx(expected, abs=0.3), lane
    raw = {
        m.lane: m.raw_value
        for m in bench.after.result.measurements
        if m.name == "rx_sensitivity_oma"
    }
    for lane in LANES:
        # before: the missed loss and the nonlinearity at the sensitivity's setting (the two
        # fits see their own BER counts: +-0.15 dB)
        setting = rx.ref_tx.oma_outer_dbm - raw[lane]  # type: ignore[operator]
        missed = _missed_db(bench, lane) + RIPPLE_DB * math.sin(math.pi * setting / 20.0)
        assert before[lane] - after[lane] == pytest.approx(missed, abs=0.15)  # type: ignore[operator]


def test_every_received_power_keeps_raw_value_correction_and_its_calibration_record(
    bench: Bench,
) -> None:
    ids = {r.path_index + 1: r.id for r in bench.records if r.path == "ref_tx_to_module_rx"}
    corrected = [
        m
        for m in bench.after.result.measurements
        if m.name in ("rx_sensitivity_oma", "ddm_rx_power_error")
    ]
    assert len(corrected) == 16
    for m in corrected:
        assert m.calibration_id == ids[m.lane], (m.name, m.lane)
        assert m.raw_value is not None and m.correction_db is not None
        assert m.value == pytest.approx(m.raw_value + m.correction_db, abs=1e-9)
    # a sensitivity's correction is the path loss (and the linearity at its setting), negated
    for m in (m for m in corrected if m.name == "rx_sensitivity_oma"):
        loss = next(r.loss_db for r in bench.records if r.id == m.calibration_id)
        assert -m.correction_db == pytest.approx(loss, abs=RIPPLE_DB + 0.02)  # type: ignore[operator]
    attributes = bench.after.attributes("rx_25c")
    for lane in LANES:
        assert f"calibration {ids[lane]};" in attributes[f"rx_nominal_oma_lane_{lane}"]
        assert _metadata(bench.after, lane)["rx_calibration_id"] == str(ids[lane])
    linearity = sorted(r.id for r in bench.records if r.path == ATTENUATOR_PATH)
    assert attributes["rx_attenuator_linearity"].startswith(
        "records " + ", ".join(str(i) for i in linearity)
    )
    # before path-cal nothing names a record, and the step says the settings were nominal
    for m in bench.before.result.measurements:
        assert m.calibration_id is None
    assert bench.before.attributes("rx_25c")["rx_attenuator_linearity"].startswith("not calibrated")


def _metadata(run: Run, lane: int) -> dict[str, str]:
    (artefact,) = [a for a in run.artefacts("waterfall") if a.lane == lane]
    return artefact.metadata


def test_the_attenuators_linearity_is_applied_at_the_setting_used(bench: Bench) -> None:
    """Each waterfall point at its own setting: the nonlinearity moves them by up to 0.25 dB,
    the linearity records take it out."""
    worst_nominal = 0.0
    for lane in LANES:
        points = _points(bench.after, lane)
        settings = points["attenuation_db"]
        truth = np.array([_true_oma_dbm(bench.sim, lane, s) for s in settings])
        ripple = RIPPLE_DB * np.sin(np.pi * settings / 20.0)
        assert np.abs(points["oma_dbm"] - truth).max() < 0.06
        # taking the setting as the attenuation (only the path loss applied) misses the ripple
        nominal = points["oma_dbm"] - ripple
        worst_nominal = max(worst_nominal, float(np.abs(nominal - truth).max()))
    assert worst_nominal > 0.15
