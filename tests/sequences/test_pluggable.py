"""The pluggable sequence on the simulated bench, in process: the whole population of serials."""

from __future__ import annotations

from collections import Counter

from sim_instruments.bench import SimBench
from station.bench import open_bench
from station.config import load_station_config
from station.engine import RunEngine
from station.events import EventBus
from station.limits import limits_path, load_limits
from station.outcome import Outcome
from station.sequence import load_sequence


def run_serials(bench: SimBench, serials: list[str]) -> dict[str, tuple[Outcome, dict]]:
    sequence = load_sequence("pluggable")
    limits = load_limits(limits_path("800G-DR8"))
    config = load_station_config()
    results = {}
    with open_bench(config, sequence.roles, bench.resources()) as opened:
        for serial in serials:
            bench.insert(serial, "800G-DR8")
            engine = RunEngine(
                sequence=sequence,
                limits=limits,
                station=config,
                instruments=opened.instruments,
                instrument_records=tuple(opened.records),
                bus=EventBus(),
                mode="characterisation",
            )
            result = engine.run(serial)
            powers = {m.lane: m.value for m in result.measurements if m.name == "tx_average_power"}
            results[serial] = (result.outcome, powers)
    return results


def test_population_sim0001_to_sim0050_mostly_passes_with_some_failures(bench: SimBench) -> None:
    results = run_serials(bench, [f"SIM{i:04d}" for i in range(1, 51)])
    verdicts = Counter(outcome for outcome, _ in results.values())
    assert set(verdicts) == {Outcome.PASS, Outcome.FAIL}, verdicts
    assert verdicts[Outcome.PASS] >= 40
    assert results["SIM0001"][0] == Outcome.PASS
    outcome, powers = results["SIM0022"]
    assert outcome == Outcome.FAIL and powers[4] < -2.9  # the README's failing serial, lane 4


def test_corrected_power_matches_what_the_module_launches(bench: SimBench) -> None:
    results = run_serials(bench, ["SIM0003"])
    assert bench.world.module is not None
    truth = [lane.tx_power_dbm for lane in bench.world.module.truth.lanes]
    measured = results["SIM0003"][1]
    for lane, expected in enumerate(truth, start=1):
        # path calibration is within 0.05 dB, switch repeatability 0.015 dB, temperature drift small
        assert abs(measured[lane] - expected) < 0.2
