"""Crossed gauge R&R ANOVA: a published dataset's ANOVA table and variance components, the
pooling rule, the tolerance figures, and recovery of known variances from synthetic studies."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from drivers.interfaces import ModuleHost, OpticalSwitch, PowerMeter
from sequences.pluggable import power_up
from sim_instruments.bench import SimBench
from station.analysis.errors import AnalysisError
from station.analysis.grr import crossed_grr, repeatability_interval
from station.engine import StepContext, no_operator
from station.events import EventBus
from station.grr import GrrStudy, StudyDesign, run_study
from station.launch import open_station, prepare_run
from station.limits import limits_path
from station.results.schema import grr_results, grr_runs, grr_studies, limits_releases
from station.results.store import ResultsStore
from station.sequence import Sequence, step

# Five parts, three operators, three trials: the crossed example of the spcforexcel.com articles
# "ANOVA Gage R&R" parts 1 and 2 (also in the README of the open-source GaugeRnR package), laid
# out here as (part, operator, trial).
BY_OPERATOR = np.array(
    [
        [[3.29, 3.41, 3.64], [2.44, 2.32, 2.42], [4.34, 4.17, 4.27], [3.47, 3.50, 3.64],
         [2.20, 2.08, 2.16]],
        [[3.08, 3.25, 3.07], [2.53, 1.78, 2.32], [4.19, 3.94, 4.34], [3.01, 4.03, 3.20],
         [2.44, 1.80, 1.72]],
        [[3.04, 2.89, 2.85], [1.62, 1.87, 2.04], [3.88, 4.09, 3.67], [3.14, 3.20, 3.11],
         [1.54, 1.93, 1.55]],
    ]
)  # fmt: skip
STUDY = BY_OPERATOR.transpose(1, 0, 2)  # (part, operator, trial)


def test_the_published_anova_table() -> None:
    """Sums of squares, mean squares, F and p of the interaction model as published: operator
    SS 1.63035 (df 2), part 28.9094 (df 4), interaction 0.0650044 (df 8, F 0.142376, p 0.99637),
    repeatability 1.71213 (df 30, MS 0.0570711)."""
    result = crossed_grr(STUDY, alpha_interaction=1.0)  # p > 1 never: the published model
    assert (result.df_appraiser, result.df_part, result.df_interaction, result.df_error) == (
        2, 4, 8, 30,
    )  # fmt: skip
    assert result.ss_appraiser[0] == pytest.approx(1.63035, rel=1e-5)
    assert result.ss_part[0] == pytest.approx(28.9094, rel=1e-5)
    assert result.ss_interaction[0] == pytest.approx(0.0650044, rel=1e-5)
    assert result.ss_error[0] == pytest.approx(1.71213, rel=1e-5)
    assert result.ms_error[0] == pytest.approx(0.0570711, rel=1e-5)
    assert result.f_interaction[0] == pytest.approx(0.142376, rel=1e-5)
    assert result.p_interaction[0] == pytest.approx(0.996373, rel=1e-5)
    # variances published for that model: operator 0.0538033, part 0.802135, interaction 0
    assert result.av[0] ** 2 == pytest.approx(0.0538033, rel=1e-5)
    assert result.pv[0] ** 2 == pytest.approx(0.802135, rel=1e-5)
    assert result.interaction[0] == 0.0
    assert result.ev[0] == pytest.approx(0.238896, rel=1e-5)
    assert not result.pooled[0]


def test_an_insignificant_interaction_is_pooled_into_the_repeatability() -> None:
    """p = 0.996 > 0.05: the additive model, with the published sums of squares."""
    result = crossed_grr(STUDY)
    assert result.pooled[0]
    pooled = (1.71213 + 0.0650044) / 38
    assert result.ev[0] ** 2 == pytest.approx(pooled, rel=1e-5)
    assert result.av[0] ** 2 == pytest.approx((1.63035 / 2 - pooled) / 15, rel=1e-5)
    assert result.pv[0] ** 2 == pytest.approx((28.9094 / 4 - pooled) / 9, rel=1e-5)
    grr = np.sqrt(result.ev[0] ** 2 + result.av[0] ** 2)
    assert result.grr[0] == pytest.approx(grr)
    assert result.tv[0] == pytest.approx(np.hypot(grr, result.pv[0]))
    assert result.pct_grr_study[0] == pytest.approx(100 * grr / result.tv[0])
    assert result.ndc[0] == pytest.approx(1.41 * result.pv[0] / grr)
    assert np.isnan(result.pct_grr_tolerance[0])  # no tolerance given
    with_tolerance = crossed_grr(STUDY, tolerance=4.0)
    assert with_tolerance.pct_grr_tolerance[0] == pytest.approx(100 * 6 * grr / 4.0)


def test_many_measurements_at_once_equal_one_at_a_time() -> None:
    rng = np.random.default_rng(7)
    stack = np.stack([STUDY, STUDY * 2 + 1, rng.normal(0, 1, STUDY.shape)])
    together = crossed_grr(stack, tolerance=np.array([4.0, 8.0, np.nan]))
    for index in range(3):
        alone = crossed_grr(stack[index], tolerance=[4.0, 8.0, np.nan][index])
        assert together.grr[index] == pytest.approx(alone.grr[0])
        assert together.pooled[index] == alone.pooled[0]
    # a linear change of unit scales the sigmas and leaves the percentages alone
    assert together.grr[1] == pytest.approx(2 * together.grr[0])
    assert together.pct_grr_tolerance[1] == pytest.approx(together.pct_grr_tolerance[0])


def test_known_variances_are_recovered_within_their_sampling_error() -> None:
    """200 synthetic measurements: parts sigma 1.0, appraisers 0.3, repeatability 0.1, and a
    real interaction 0.2 in half of them. Each estimate of the repeatability falls in its 99.9 %
    chi-square interval; the interaction is kept where it exists."""
    rng = np.random.default_rng(11)
    m, n, k, r = 200, 10, 3, 3
    parts = rng.normal(0, 1.0, (m, n, 1, 1))
    appraisers = rng.normal(0, 0.3, (m, 1, k, 1))
    interaction = rng.normal(0, 0.2, (m, n, k, 1)) * (np.arange(m) < m // 2)[:, None, None, None]
    y = 5.0 + parts + appraisers + interaction + rng.normal(0, 0.1, (m, n, k, r))
    result = crossed_grr(y)
    low, high = repeatability_interval(0.1, n * k * (r - 1), 0.999)
    with_interaction = result.ev[: m // 2]
    assert ((with_interaction > low) & (with_interaction < high)).all()
    assert result.pooled[: m // 2].mean() < 0.01  # a 0.2 interaction is found
    assert result.pooled[m // 2 :].mean() > 0.85  # and 95 % of the null cases pool
    assert np.median(result.interaction[: m // 2]) == pytest.approx(0.2, rel=0.2)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((3, 3), "must be"), ((1, 3, 3), ">= 2 parts"), ((3, 3, 1), ">= 2 parts")],
)
def test_bad_designs_are_refused(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        crossed_grr(np.zeros(shape))
    with pytest.raises(AnalysisError, match="finite"):
        crossed_grr(np.full((2, 2, 2), np.nan))


# --- the study on the simulated bench ----------------------------------------------------------
# A study of the TX power chain alone (switch, jumpers, power meter, path loss), the part of the
# pluggable TX test whose repeatability the simulator configures: each routing of the simulated
# switch lands with an insertion-loss error of N(0, repeatability_db). The meter averages 1 s,
# which leaves its own noise at 3e-4 dB rms (0.04 % of the variance), and the step first waits
# for the module's self-heating to settle (time constant 20 simulated s; launch power moves by
# -0.006 dB/K), so that how long a loaded machine takes between insertion and measurement does not
# add to the repeatability. The benches' TX jumpers are made not to drift (a stability term, a
# few hundredths of a dB over hours, that a study spread over simulated hours would count in).
METER_AVERAGING_S = 1.0
STUDY_TIME_FACTOR = 0.002
SELF_HEATING_SETTLE_S = 160.0  # simulated: 8 time constants


@step(
    roles=("module_host", "optical_switch", "power_meter"),
    measures=("tx_average_power",),
    timeout_s=60.0,
)
def tx_power_only(ctx: StepContext) -> None:
    """Every lane's average launch power through the TX switch and the meter's path."""
    host = ctx.instrument("module_host", ModuleHost)
    switch = ctx.instrument("optical_switch", OpticalSwitch)
    meter = ctx.instrument("power_meter", PowerMeter)
    meter.set_wavelength_nm(1, ctx.product.wavelength_nm)
    meter.set_averaging_time_s(1, METER_AVERAGING_S)
    ctx.sleep(SELF_HEATING_SETTLE_S * STUDY_TIME_FACTOR)  # wall seconds on this bench
    for lane in range(1, host.lane_count + 1):
        switch.route(lane)
        raw_dbm = 10.0 * math.log10(meter.read_power_w(1) / 1e-3)
        loss_db = ctx.path_loss_db("tx_to_power_meter", lane - 1)
        ctx.measure(
            "tx_average_power",
            raw_dbm + loss_db,
            unit="dBm",
            lane=lane,
            raw_value=raw_dbm,
            correction_db=loss_db,
        )


def _study(
    tmp_path: Path, design: StudyDesign, site_bias_db: float = 0.0
) -> tuple[GrrStudy, float]:
    """Run `design` on simulated sites (site 2 with `site_bias_db` more jumper loss); returns
    the study and the switch repeatability the simulator was configured with."""
    limits = tmp_path / "800G-DR8.toml"
    text = limits_path("800G-DR8").read_text()
    limits.write_text(text.replace('"tx_average_power", "tx_oma_outer"', '"tx_average_power"'))
    sequence = Sequence("grr-tx-power", "TX power chain", ("800G-DR8",), (power_up, tx_power_only))
    with ExitStack() as stack:
        sims = [
            stack.enter_context(SimBench.build(time_factor=STUDY_TIME_FACTOR))
            for _ in range(design.appraisers)
        ]
        assert sims[1].world.switch is not None
        configured = sims[0].world.switch.repeatability_db
        for sim in sims:
            if sim.world.tx_jumper is not None:
                sim.world.tx_jumper.drift_db[:] = 0.0
        sims[1].world.jumper_loss_db = sims[1].world.jumper_loss_db + site_bias_db
        setup = prepare_run(
            sequence="pluggable",
            product="800G-DR8",
            limits=str(limits),
            sites=design.appraisers,
            sim=True,
            time_factor=STUDY_TIME_FACTOR,
        )
        setup = dataclasses.replace(setup, sequence=sequence)
        resources = {
            (role, site): resource
            for site, sim in enumerate(sims, start=1)
            for role, resource in sim.resources().items()
        }
        with open_station(setup, resources) as station:
            study = run_study(
                setup,
                station,
                design,
                insert=lambda serial, site: sims[site - 1].insert(serial, "800G-DR8"),
                bus=EventBus(),
                prompter=no_operator,
                measurements=["tx_average_power"],
            )
    return study, configured


def test_the_study_reproduces_the_simulators_repeatability_and_releases_the_limits(
    tmp_path: Path,
) -> None:
    design = StudyDesign(("SIM0001", "SIM0002", "SIM0005"), appraisers=2, repeats=3)
    study, configured = _study(tmp_path, design)
    assert len(study.runs) == 3 * 2 * 3
    assert study.keys == tuple(("tx_average_power", lane) for lane in range(1, 9))
    # the 8 lanes are 8 studies of one repeatability: pool them (at least n k (r - 1) degrees of
    # freedom each; the pooled interaction only adds some) and compare with the configuration
    df = 8 * 3 * 2 * (3 - 1)
    pooled = float(np.sqrt(np.mean(study.result.ev**2)))
    low, high = repeatability_interval(configured, df, 0.999)
    assert low < pooled < high, (pooled, configured, (low, high))
    assert (study.result.pv > 3 * study.result.grr).sum() >= 5  # the parts differ, as parts do
    assert set(study.verdicts) == {"accept"} and study.released
    frame = study.frame()
    assert np.allclose(frame["pct_grr_tolerance"], 600 * frame["grr"] / 6.9)  # -2.9..4.0 dBm


def test_a_station_biased_against_another_shows_as_reproducibility(tmp_path: Path) -> None:
    """Site 2's jumpers lose 0.3 dB more: the appraisers differ by a fixed 0.3 dB, so AV is
    0.3 / sqrt(2) (two appraisers), %GRR of tolerance about 6 x 0.21 / 6.9 = 18 %."""
    design = StudyDesign(("SIM0001", "SIM0002"), appraisers=2, repeats=2)
    study, _ = _study(tmp_path, design, site_bias_db=0.3)
    # each lane's AV carries the noise of two appraiser means (sd 3.5 % here), their mean less
    assert np.mean(study.result.av) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert np.allclose(study.result.av, 0.3 / np.sqrt(2), rtol=0.2)
    assert set(study.verdicts) == {"conditional"} and not study.released


@pytest.mark.slow
def test_station_grr_on_the_simulated_bench_stores_the_study_and_releases_the_limits(
    tmp_path: Path,
) -> None:
    """`station grr` end to end: the pluggable sequence's steps up to the TX test, 2 parts x 2
    simulated stations x 2 insertions, in its own process (a few minutes)."""
    db = tmp_path / "results.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", "grr", "--product", "800G-DR8", "--parts", "2",
         "--appraisers", "2", "--repeats", "2", "--sim", "--time-factor", "0.01",
         "--db", str(db), "--calibration-override", "gauge study of the uncalibrated demo bench"],
        input="\n" * 40,  # the operator confirms every prompt (Enter: "Cleaned")
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "tx_average_power *" in done.stdout and "tx_oma_outer *" in done.stdout
    with ResultsStore(db) as store, store.engine.connect() as conn:
        study = conn.execute(sa.select(grr_studies)).one()
        rows = conn.execute(sa.select(grr_results)).mappings().all()
        runs = conn.execute(sa.select(grr_runs)).all()
        releases = conn.execute(sa.select(limits_releases)).all()
    assert (study.parts, study.appraisers, study.repeats, study.limits_version) == (
        2, 2, 2, "2026-11-C",
    )  # fmt: skip
    assert len(runs) == 8
    power = [r for r in rows if r["measurement"] == "tx_average_power"]
    assert sorted(r["lane"] for r in power) == list(range(1, 9))
    assert all(r["key"] and r["verdict"] == "accept" for r in power)
    assert bool(study.released) == (done.returncode == 0) == (len(releases) == 1)
