"""Golden-unit offsets on the simulated bench: a station whose TX lane 3 jumper drifted by 0.15 dB
(inside the +-0.25 dB budget) passes its golden check, which becomes its offsets version; the next
run on the station reads lane 3 as before the drift, and keeps the raw value and the correction."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequences.pluggable import power_up
from sim_instruments.bench import SimBench
from station.bench import open_bench
from station.calibration.offsets import GoldenOffsetsWriter, load_offsets
from station.config import StationConfig, load_station_config
from station.engine import RunEngine, RunResult
from station.events import EventBus
from station.limits import limits_path, load_limits
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.sequence import Sequence, load_sequence
from tests.analysis.test_grr import STUDY_TIME_FACTOR, tx_power_only
from tests.sequences.helpers import GOLDEN_LIMITS, first_choice, hands

GOLDEN = "SIM0003"  # sequences/references/golden_units.toml
# Without a drift this station's golden TX power offsets sit at -0.025 dB with 0.01-0.03 dB rms
# (ten runs), so a 0.15 dB drift keeps its lane 5 standard deviations inside the 0.25 dB budget.
DRIFT_DB = 0.15
TX_POWER = Sequence("tx-power", "TX power chain", ("800G-DR8",), (power_up, tx_power_only))


def run(
    sim: SimBench, sequence: Sequence, limits_file: Path, config: StationConfig, bus: EventBus
) -> RunResult:
    sim.insert(GOLDEN, "800G-DR8")
    sim_hands = hands([sim])
    bus.subscribe(sim_hands)
    with open_bench(config, sequence.roles, sim.resources()) as opened:
        engine = RunEngine(
            sequence=sequence,
            limits=load_limits(limits_file),
            station=config,
            instruments=opened.instruments,
            instrument_records=tuple(opened.records),
            bus=bus,
            mode="characterisation",
            prompter=sim_hands.wrap(first_choice),
        )
        return engine.run(GOLDEN)


def tx_power(result: RunResult) -> dict[int | None, object]:
    return {m.lane: m for m in result.measurements if m.name == "tx_average_power"}


def test_a_drift_within_budget_becomes_an_offset_that_corrects_the_next_run(
    tmp_path: Path,
) -> None:
    db = tmp_path / "results.sqlite"
    config = load_station_config()
    product = limits_path("800G-DR8")
    with SimBench.build(time_factor=STUDY_TIME_FACTOR) as sim, ResultsStore(db) as store:
        before = tx_power(run(sim, TX_POWER, product, config, EventBus()))
        sim.world.jumper_loss_db[2] += DRIFT_DB  # lane 3: a dirty MPO leg
        bus = EventBus()
        bus.subscribe(store)
        writer = GoldenOffsetsWriter(store.engine, load_limits(GOLDEN_LIMITS))
        bus.subscribe(writer)
        golden = run(sim, load_sequence("golden"), GOLDEN_LIMITS, config, bus)
        store.flush()
        failing = [
            (m.name, m.lane, m.value, m.low_limit, m.high_limit)
            for m in golden.measurements
            if m.outcome != Outcome.PASS
        ]
        assert golden.outcome == Outcome.PASS, golden.error or failing
        assert writer.versions == [(config.station_id, 1, 1)]
        offsets = load_offsets(db, config.station_id)[1]
        assert offsets[("tx_average_power", 3)] == pytest.approx(-DRIFT_DB, abs=0.08)
        assert offsets[("tx_oma_outer", 3)] == pytest.approx(-DRIFT_DB, abs=0.1)
        assert {name for name, _ in offsets} == {
            "tx_average_power", "tx_oma_outer", "tx_extinction_ratio", "tx_tdecq",
            "rx_sensitivity_oma",
        }  # fmt: skip
        after = tx_power(run(sim, TX_POWER, product, config.with_offsets({1: offsets}), EventBus()))
    lane3 = after[3]
    assert lane3.value == pytest.approx(before[3].value, abs=0.08)  # type: ignore[attr-defined]
    uncorrected = lane3.raw_value + config.path_loss_db("tx_to_power_meter", 2)  # type: ignore[attr-defined]
    assert uncorrected == pytest.approx(before[3].value - DRIFT_DB, abs=0.08)  # type: ignore[attr-defined]
    assert lane3.correction_db == pytest.approx(  # type: ignore[attr-defined]
        config.path_loss_db("tx_to_power_meter", 2) - offsets[("tx_average_power", 3)]
    )
