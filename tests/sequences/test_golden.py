"""The golden-unit check: a healthy station passes its golden unit; a drifted one fails the station
figures on the drifted path (and lane), labelled as a station check."""

from __future__ import annotations

import pytest

from sim_instruments.bench import SimBench
from station.limits import load_limits
from station.outcome import Outcome
from tests.sequences.helpers import GOLDEN_LIMITS, TIME_FACTOR, benches, run_sites, run_unit

GOLDEN = "SIM0003"  # sequences/references/golden_units.toml
TX_FIGURES = ("station_tx_power_offset", "station_oma_offset", "station_er_offset",
              "station_tdecq_offset")  # fmt: skip


def test_a_healthy_station_passes_and_a_drifted_one_fails_on_the_drifted_path() -> None:
    """Two stations at once: one as commissioned; on the other, a dirty connector at the RX
    attenuator (+0.5 dB on every RX lane) and a dirty MPO leg on TX lane 3 (+0.4 dB)."""
    with benches([GOLDEN, GOLDEN]) as (healthy, drifted):
        assert drifted.world.rx is not None
        drifted.world.rx.attenuator.insertion_loss_db += 0.5
        drifted.world.jumper_loss_db[2] += 0.4
        results, recorder, _ = run_sites(
            [healthy, drifted],
            [GOLDEN, GOLDEN],
            sequence="golden",
            limits=load_limits(GOLDEN_LIMITS),
            mode="characterisation",
        )
    good, bad = (site.result for site in results)
    assert good is not None and bad is not None
    assert good.outcome == Outcome.PASS, [m for m in good.measurements if m.outcome != "PASS"]
    for m in good.measurements:
        if m.name in TX_FIGURES or m.name == "station_sensitivity_offset":
            assert abs(m.value) < 0.15, m  # type: ignore[arg-type]
    assert bad.outcome == Outcome.FAIL
    failed = {(m.name, m.lane) for m in bad.measurements if m.outcome == Outcome.FAIL}
    assert failed == {
        ("station_tx_power_offset", 3),
        ("station_oma_offset", 3),
        ("station_tx_drift_max", None),
        *(("station_sensitivity_offset", lane) for lane in range(1, 9)),
        ("station_rx_drift_max", None),
    }
    offsets = {(m.name, m.lane): m.value for m in bad.measurements}
    assert offsets[("station_sensitivity_offset", 5)] == pytest.approx(0.5, abs=0.1)
    assert offsets[("station_tx_power_offset", 3)] == pytest.approx(-0.4, abs=0.1)
    meanings = {
        e.value  # type: ignore[attr-defined]
        for e in recorder.events
        if getattr(e, "name", "") == "verdict_meaning"
    }
    assert meanings == {
        "station check: FAIL means the station drifted from its golden-unit reference"
    }


def test_a_unit_without_a_reference_cannot_check_the_station() -> None:
    with SimBench.build(time_factor=TIME_FACTOR) as sim:
        run = run_unit(sim, "SIM0001", sequence="golden", limits=load_limits(GOLDEN_LIMITS))
    assert run.outcome == Outcome.ERROR  # never a verdict on the station or the unit
    assert "units.SIM0001" in (run.result.error or "")
