"""Station-to-station correlation (DOMAIN.md 9, budget +-0.25 dB): two simulated stations whose
TX and RX paths differ by about 1 dB (station B's MPO breakouts each carry an extra mated adapter
pair) read the same modules about 1 dB apart on their bootstrap losses, and agree within the
budget once each has run path-cal: TX power (and OMA), and on the receive side the module's RX
power monitor against the power each station puts on it."""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from drivers.interfaces import Attenuator, ModuleHost, OpticalSwitch, PowerMeter, SamplingScope
from sequences.conditions import ReferenceSource, product_conditions
from sequences.pluggable import power_up
from sequences.pluggable_rx import DDM_UPDATE_S, RxPlan, RxResult, ddm_reading, record_rx
from sim_instruments.bench import SimBench
from station.analysis.eye import pam4_eye
from station.analysis.units import watts_to_dbm
from station.bench import check_path_calibration
from station.config import PathLossDb, StationConfig
from station.engine import StepContext
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.sequence import Sequence, step
from tests.calibration.helpers import (
    TIME_FACTOR,
    calibrated,
    path_cal,
    records_of,
    run,
    station_config,
)

BUDGET_DB = 0.25
EXTRA_JUMPER_LOSS_DB = 1.0


@step(roles=("optical_switch", "power_meter"), measures=("tx_average_power",), timeout_s=60.0)
def tx_power(ctx: StepContext) -> None:
    """Every lane's average power on the meter, corrected by the TX meter path's loss."""
    switch = ctx.instrument("optical_switch", OpticalSwitch)
    meter = ctx.instrument("power_meter", PowerMeter)
    meter.set_wavelength_nm(1, ctx.product.wavelength_nm)
    meter.set_averaging_time_s(1, 0.05)
    for lane in range(1, ctx.product.lanes + 1):
        switch.route(lane)
        raw = float(watts_to_dbm(meter.read_power_w(1)))
        loss = ctx.path_loss_db("tx_to_power_meter", lane - 1)
        ctx.measure(
            "tx_average_power", raw + loss, unit="dBm", lane=lane, raw_value=raw, correction_db=loss
        )


OMA_LANES = (1, 4, 8)  # a scope capture costs a quarter second: a few lanes show the path


@step(roles=("optical_switch", "sampling_scope"), measures=("tx_oma_outer",), timeout_s=60.0)
def tx_oma(ctx: StepContext) -> None:
    """OMA outer of a few lanes from the scope's PAM4 levels, corrected by the TX scope path."""
    switch = ctx.instrument("optical_switch", OpticalSwitch)
    scope = ctx.instrument("sampling_scope", SamplingScope)
    product = ctx.product
    scope.configure_eye(1, product.baud_rate_gbd, "PRBS13Q", product.wavelength_nm)
    for lane in OMA_LANES:
        switch.route(lane)
        waveform = scope.acquire_waveform(1, 16 * 8191)
        levels = pam4_eye(waveform.samples_w, waveform.samples_per_ui).levels
        raw = float(watts_to_dbm(levels[3] - levels[0]))
        loss = ctx.path_loss_db("tx_to_scope", lane - 1)
        ctx.measure(
            "tx_oma_outer", raw + loss, unit="dBm", lane=lane, raw_value=raw, correction_db=loss
        )


@step(
    roles=("module_host", "attenuator", "rx_switch"),
    measures=("ddm_rx_power_error",),
    timeout_s=60.0,
)
def rx_power(ctx: StepContext) -> None:
    """Every lane's RX power monitor against the average power the station puts on the lane
    (the pluggable RX step's plan and record, without the BERT's waterfall)."""
    plan = RxPlan(ctx, product_conditions(ctx.product.name))
    host = ctx.instrument("module_host", ModuleHost)
    attenuator = ctx.instrument("attenuator", Attenuator)
    switch = ctx.instrument("rx_switch", OpticalSwitch)
    target_dbm = product_conditions(ctx.product.name).ddm_rx_power_dbm
    attenuator.set_wavelength_nm(plan.source.wavelength_nm)
    attenuator.set_output(True)
    monitors = []
    try:
        for lane in range(1, ctx.product.lanes + 1):
            setting = plan.attenuation_for_average(lane, target_dbm, attenuator.max_attenuation_db)
            attenuator.set_attenuation_db(setting)
            switch.route(lane)
            ctx.sleep(DDM_UPDATE_S)
            monitors.append(ddm_reading(plan, host, lane, setting))
    finally:
        attenuator.set_output(False)
        attenuator.set_attenuation_db(attenuator.max_attenuation_db)
    ids = plan.calibration_ids()
    record_rx(ctx, RxResult((), plan.source, plan.min_attenuation_db, 0.0, tuple(monitors), ids))


FIGURES = ("tx_average_power", "tx_oma_outer", "ddm_rx_power_error")


def _sequence(with_scope: bool) -> Sequence:
    steps = (power_up, tx_power, tx_oma, rx_power) if with_scope else (power_up, tx_power, rx_power)
    return Sequence("correlation", "TX and RX figures through the paths", ("800G-DR8",), steps)


def _certificate(sim: SimBench) -> ReferenceSource:
    """The simulated bench's reference transmitter as its calibration certificate states it."""
    tx = sim.world.rx.ref_tx  # type: ignore[union-attr]
    return ReferenceSource(
        description=f"reference PAM4 transmitter of {sim.world.bench_id}",
        oma_outer_dbm=round(tx.oma_outer_dbm, 2),
        average_power_dbm=round(float(watts_to_dbm(tx.average_power_w)), 2),
        extinction_ratio_db=round(tx.er_db, 2),
        secq_db=round(tx.penalty_db, 2),
        wavelength_nm=round(tx.wavelength_nm, 2),
        calibrated_on=dt.date(2026, 10, 15),
        calibration_due=dt.date(2099, 10, 15),
    )


def _figures(
    sim: SimBench, config: StationConfig, sequence: Sequence, serials: list[str], mode: str
) -> dict[tuple[str, str, int], float]:
    """(serial, measurement, lane) -> value, every module measured in turn."""
    values = {}
    for serial in serials:
        result = run(sim, config, sequence, serial, product="800G-DR8", mode=mode)
        assert result.error is None, result.error
        for m in result.measurements:
            if m.name in FIGURES:
                assert m.lane is not None and isinstance(m.value, float)
                values[(serial, m.name, m.lane)] = m.value
    return values


def _correlate(
    tmp_path: Path, serials: list[str], with_scope: bool, monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Station B minus station A, per figure (module and lane): before and after path-cal."""
    sequence = _sequence(with_scope)
    line = ResultsStore(tmp_path / "line.sqlite")  # one results store shared by the line
    station_a = station_config(tmp_path, "station-a", monitor=True)
    station_b = station_config(
        tmp_path, "station-b", tx_jumper="MPO8-TX-7001", rx_jumper="MPO8-RX-7001", monitor=True
    )
    with ExitStack() as stack:
        sim_a = stack.enter_context(SimBench.build(time_factor=TIME_FACTOR))
        sim_b = stack.enter_context(
            SimBench.build(time_factor=TIME_FACTOR, bench_id="sim-module-bench-2")
        )
        sim_b.world.swap_jumper("tx_breakout", "MPO8-TX-7001", EXTRA_JUMPER_LOSS_DB)
        sim_b.world.swap_jumper("rx_breakout", "MPO8-RX-7001", EXTRA_JUMPER_LOSS_DB)
        # each station's reference transmitter has its certificate (sources.toml has only the
        # shipped bench's)
        certificates = {"station-a": _certificate(sim_a), "station-b": _certificate(sim_b)}
        for module in ("sequences.path_cal", "sequences.pluggable_rx"):
            monkeypatch.setattr(f"{module}.rx_reference", certificates.__getitem__)

        # Before path-cal: only characterisation may run, on the bootstrap losses, overridden.
        now = dt.datetime.now(dt.UTC)
        before = {}
        for sim, config in ((sim_a, station_a), (sim_b, station_b)):
            with pytest.raises(Exception, match="not calibrated"):
                check_path_calibration(
                    config, "pluggable", sequence.roles, [], 1311.0, now, "production", None
                )
            bootstrap, override = check_path_calibration(
                config, "pluggable", sequence.roles, [], 1311.0, now, "characterisation", "study"
            )
            assert override is not None and override.startswith("study [path calibration")
            before[config.station_id] = _figures(
                sim, bootstrap.for_site(1), sequence, serials, "characterisation"
            )

        for sim, config in ((sim_a, station_a), (sim_b, station_b)):
            calibration = path_cal(sim, config, line)
            assert calibration.outcome == Outcome.PASS, calibration.error
        after = {}
        for sim, config in ((sim_a, station_a), (sim_b, station_b)):
            view = calibrated(config, line, sequence.roles)
            assert all(isinstance(view.path_loss_db("tx_to_power_meter", i), PathLossDb)
                       for i in range(8))  # fmt: skip
            after[config.station_id] = _figures(sim, view, sequence, serials, "production")

    keys = sorted(before["station-a"])
    assert len(keys) == len(serials) * (16 + (len(OMA_LANES) if with_scope else 0))
    diffs = {}
    for figure in FIGURES:
        mine = [k for k in keys if k[1] == figure]
        if not mine:
            continue  # OMA: with the scope only
        diffs[figure] = (
            np.array([before["station-b"][k] - before["station-a"][k] for k in mine]),
            np.array([after["station-b"][k] - after["station-a"][k] for k in mine]),
        )
    # the calibrated paths differ between the stations by about the extra jumper loss
    for path in ("tx_to_power_meter", "ref_tx_to_module_rx"):
        loss = {
            s.station_id: {r.path_index: r.loss_db for r in records_of(s, line) if r.path == path}
            for s in (station_a, station_b)
        }
        steps = [loss["station-b"][i] - loss["station-a"][i] for i in range(8)]
        assert np.mean(steps) == pytest.approx(EXTRA_JUMPER_LOSS_DB, abs=0.5), path
    line.close()
    return diffs


def _check_correlation(diff_before: np.ndarray, diff_after: np.ndarray) -> None:
    # before: station B reads about 1 dB low (its extra loss and its own switch and splitter);
    # on the RX side it thinks it puts 1 dB more on the receiver than it does, so the
    # monitor's error reads 1 dB low too
    assert np.mean(diff_before) < -0.5 and np.all(np.abs(diff_before) > BUDGET_DB), diff_before
    # after: within the correlation budget, every module, every lane
    assert np.max(np.abs(diff_after)) <= BUDGET_DB, diff_after
    assert abs(np.mean(diff_after)) < 0.1


def test_two_stations_disagree_before_path_cal_and_agree_after_it_on_3_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diffs = _correlate(tmp_path, ["SIM0001", "SIM0002", "SIM0003"], False, monkeypatch)
    assert set(diffs) == {"tx_average_power", "ddm_rx_power_error"}
    for figure, (before, after) in diffs.items():
        assert before.size == after.size == 3 * 8, figure
        _check_correlation(before, after)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_stations_agree_within_budget_on_20_modules_power_oma_and_rx_power(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serials = [f"SIM{n:04d}" for n in range(1, 21)]
    diffs = _correlate(tmp_path, serials, True, monkeypatch)
    sizes = {figure: before.size for figure, (before, _) in diffs.items()}
    assert sizes == {
        "tx_average_power": 20 * 8,
        "tx_oma_outer": 20 * len(OMA_LANES),
        "ddm_rx_power_error": 20 * 8,
    }
    for before, after in diffs.values():
        _check_correlation(before, after)
