"""The pic-wafer sequence in process on the simulated wafer bench: die maps, a wafer region end to
end against the simulated truth, bins, kept spectra, die-by-die commits, prober faults (stuck,
lost contact: one retry, then ERROR and on to the next die), abort, and resuming in process.

Tolerances against the truth (what the simulated wafer put into each die): per-coupler peak loss
0.05 dB (the station's path calibration is within 0.005 dB of the bench, the meter reads 0.2 %),
bandwidth and peak wavelength 0.3 nm, ring resonance 10 pm (the laser's lambda log), loaded Q 5 %
(6-9 points per FWHM), extinction 1 dB below 20 dB, FSR 10 pm, responsivity 2 %, dark current
5 %, heater 1 %, alignment 0.3 um.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sequences.pic_wafer import make_sequence
from sequences.pic_wafer_analysis import DIE_MEASURES
from sequences.pic_wafer_map import Die, DieMap, die_key, load_die_map
from sim_instruments.bench import SimBench
from sim_instruments.wafer import SPLIT_LOOPBACK, DieTruth, make_wafer
from station.analysis.yields import assign_bins, edge_exclusion_mask
from station.bench import open_bench
from station.config import StationConfig, load_station_config
from station.engine import RunEngine, RunResult
from station.errors import InputError
from station.events import ArtefactRecorded, AttributeRecorded, EventBus, UnitCompleted
from station.limits import LimitsFile, limits_path, load_limits
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.wafer_outputs import die_bins, wafer_outputs

TIME_FACTOR = 0.002
PRODUCT = "CPO-PIC-A1"
WAFER = "W01"
#: a region of wafer W01 with a die of every kind: an open heater, a weak and a leaky detector,
#: defect-cluster dies (couplers and ring ruined), and good dies
REGION: tuple[Die, ...] = ((6, 2), (7, 5), (8, 5), (9, 5), (10, 5), (14, 5), (15, 5), (16, 4))
EXPECTED_BINS = {
    (6, 2): "HEATER",
    (7, 5): "PD_RESPONSIVITY",
    (8, 5): "PASS",
    (9, 5): "PD_DARK",
    (10, 5): "PASS",
    (14, 5): "PD_DARK",
    (15, 5): "COUPLER",
    (16, 4): "COUPLER",
}


# --- running the sequence in process ------------------------------------------------------------
@dataclasses.dataclass
class WaferRun:
    result: RunResult
    events: list[object]
    #: (die, units committed, the die's measurements committed) as each checkpoint was handled
    committed: list[tuple[Die, int, int]] = dataclasses.field(default_factory=list)

    def values(self, die: Die) -> dict[str, float]:
        return {
            m.name: float(m.value)
            for m in self.result.measurements
            if (m.die_x, m.die_y) == die and not isinstance(m.value, str)
        }

    def units(self) -> list[UnitCompleted]:
        return [e for e in self.events if isinstance(e, UnitCompleted)]

    def attributes(self) -> dict[str, str]:
        return {e.name: e.value for e in self.events if isinstance(e, AttributeRecorded)}

    def artefacts(self) -> list[ArtefactRecorded]:
        return [e for e in self.events if isinstance(e, ArtefactRecorded)]


def run_wafer(
    sim: SimBench,
    die_map: DieMap,
    *,
    config: StationConfig | None = None,
    store: ResultsStore | None = None,
    run_id: str | None = None,
    completed_units: Iterable[str] | None = None,
    subscriber: Callable[[RunEngine, object], None] | None = None,
) -> WaferRun:
    """Run pic-wafer on `die_map` through the real drivers; `subscriber(engine, event)` sees
    every event after the store has."""
    sequence = make_sequence(die_map)
    config = config or load_station_config(None, "wafer")
    events: list[object] = []
    bus = EventBus()
    if store is not None:
        bus.subscribe(store)
    bus.subscribe(events.append)
    with open_bench(config, sequence.roles, sim.resources()) as opened:
        engine = RunEngine(
            sequence=sequence,
            limits=load_limits(limits_path(die_map.product)),
            station=config,
            instruments=opened.instruments,
            instrument_records=tuple(opened.records),
            bus=bus,
        )
        if subscriber is not None:
            bus.subscribe(lambda event: subscriber(engine, event))
        result = engine.run(
            WAFER, run_id, lot_id="LOT7", wafer_id=WAFER, completed_units=completed_units
        )
    if store is not None:
        store.flush()
    return WaferRun(result, events)


def fast_prober(config: StationConfig, timeout_s: float = 0.5) -> StationConfig:
    prober = dataclasses.replace(config.instruments["prober"], timeout_s=timeout_s)
    return dataclasses.replace(config, instruments={**config.instruments, "prober": prober})


def region_map(dies: Iterable[Die] = REGION, product: str = PRODUCT) -> DieMap:
    return load_die_map(product).restricted(dies)


# --- the simulated truth, judged by the product's limits ------------------------------------------
def truth_values(die: DieTruth, paths_db: tuple[float, float], die_map: DieMap) -> dict[str, float]:
    """What each die measurement should read (paths_db: the bench's real input and loop-back
    output fibre losses)."""
    ring = die_map.device("ring_resonator")
    assert ring is not None and ring.design_wavelength_nm is not None
    sweep = die_map.sweep
    comb = die.ring_resonances_nm(sweep.start_nm + 0.3, sweep.stop_nm - 0.3)
    chosen = float(comb[np.argmin(np.abs(comb - ring.design_wavelength_nm))])
    align_nm = die_map.alignment.wavelength_nm
    coupler_db = (
        die.gc_peak_loss_db + ((align_nm - die.gc_centre_nm) / (die.gc_bandwidth_1db_nm / 2)) ** 2
    )
    loopback_dbm = (
        sweep.power_dbm - sum(paths_db) - 2 * coupler_db + 10 * math.log10(SPLIT_LOOPBACK)
    )
    found = die.ring_extinction_db >= ring.min_extinction_db + 0.3
    values = {
        "die_probed": 1.0,
        "alignment_power": loopback_dbm,
        "alignment_x": die.fibre_optimum_um[0],
        "alignment_y": die.fibre_optimum_um[1],
        "coupler_peak_il": die.gc_peak_loss_db,
        "coupler_bandwidth_1db": die.gc_bandwidth_1db_nm,
        "coupler_peak_wavelength": die.gc_centre_nm,
        "ring_resonance_count": float(comb.size if found else 0),
        "pd_responsivity": die.pd_responsivity_a_per_w,
        "pd_dark_current": die.pd_dark_current_a,
        "heater_resistance": die.heater_resistance_ohm,
    }
    if found:
        values |= {
            "ring_resonance_wavelength": chosen,
            "ring_q_loaded": die.ring_q_loaded * chosen / die.ring_resonance_nm,
            "ring_extinction": die.ring_extinction_db,
            "ring_fsr": die.ring_fsr_nm,
        }
    return values


def truth_bins(values: dict[Die, dict[str, float]], limits: LimitsFile) -> pd.DataFrame:
    """Bins of the true values by the product's bin table, one row per die."""
    dies = list(values)
    wide = {
        name: [
            limits.limits[name].judge(values[d][name], "")[0].value if name in values[d] else None
            for d in dies
        ]
        for name in DIE_MEASURES
    }
    binned = assign_bins(wide, limits.bins)
    binned.index = pd.MultiIndex.from_tuples(dies, names=["die_x", "die_y"])
    return binned


def bench_paths(sim: SimBench) -> tuple[float, float]:
    station = sim.world.wafer
    assert station is not None
    return station.input_loss_db, station.output_loss_db[1]


TOLERANCE = {
    "alignment_power": (0.1, None),
    "alignment_x": (0.3, None),
    "alignment_y": (0.3, None),
    "coupler_peak_il": (0.05, None),
    "coupler_bandwidth_1db": (0.3, None),
    "coupler_peak_wavelength": (0.3, None),
    "ring_resonance_count": (0.0, None),
    "ring_resonance_wavelength": (0.01, None),
    "ring_q_loaded": (None, 0.05),
    "ring_extinction": (1.0, None),
    "ring_fsr": (0.01, None),
    "pd_responsivity": (None, 0.02),
    "pd_dark_current": (None, 0.05),
    "heater_resistance": (None, 0.01),
}


def assert_matches_truth(measured: dict[str, float], truth: dict[str, float], where: Any) -> None:
    for name, (absolute, relative) in TOLERANCE.items():
        if name not in truth:
            assert name not in measured, f"{where}: {name} measured on a ring without resonances"
            continue
        expected = truth[name]
        if name == "heater_resistance" and expected > 1e9:  # open: anything huge
            assert measured[name] > 1e7, where
            continue
        if name == "ring_extinction" and expected > 20.0:  # deep dips: sampled depth saturates
            assert measured[name] > 15.0, where
            continue
        assert measured[name] == pytest.approx(expected, abs=absolute, rel=relative), (where, name)


# --- die maps ------------------------------------------------------------------------------------
@pytest.mark.parametrize("product", ["CPO-PIC-A1", "CPO-PIC-B1"])
def test_the_die_map_file_names_the_simulated_wafers_dies_in_its_test_order(product: str) -> None:
    die_map = load_die_map(product)
    wafer = make_wafer("W05", product)
    assert die_map.dies == tuple(zip(wafer.columns.tolist(), wafer.rows.tolist(), strict=True))
    assert die_map.home_die in die_map.dies
    assert (die_map.pitch_x_mm, die_map.pitch_y_mm) == (
        wafer.design.pitch_x_mm,
        wafer.design.pitch_y_mm,
    )
    x_mm, y_mm = die_map.die_offsets_mm(die_map.dies)
    assert np.allclose(x_mm, wafer.x_mm) and np.allclose(y_mm, wafer.y_mm)
    columns, rows = np.array(die_map.dies).T
    inside = ~edge_exclusion_mask(
        columns, rows, die_map.pitch_x_mm, die_map.pitch_y_mm, die_map.diameter_mm,
        die_map.edge_exclusion_mm, centre_die_x=die_map.centre_column,
        centre_die_y=die_map.centre_row,
    )  # fmt: skip
    assert inside.all()
    assert {d.type for d in die_map.devices} == {
        "grating_coupler_loopback", "ring_resonator", "photodetector", "heater"
    }  # fmt: skip
    assert len(load_die_map("CPO-PIC-B1").dies) >= 1000


def _broken_map(tmp_path: Path, old: str, new: str) -> Path:
    text = load_die_map(PRODUCT).path.read_text()
    assert old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('name = "ring"', 'name = "ring"\nwidth_um = 3', "devices[1].width_um"),
        ("averaging_time_s = 1e-4", "averaging_time_s = 1e-3", "sweep.averaging_time_s"),
        ('rule = "inside_edge_exclusion"', 'rule = "all"', "dies.rule"),
        ('order = "serpentine_rows"', 'order = "serpentine_rows"\nlist = [[1, 1]]', "dies"),
        ("[home_die]", "[home]\ncolumn=1\n[home_die]", "home"),
        ("column = 10", "column = 40", "home_die"),
        ('type = "heater"', 'type = "modulator"', "devices[3].type"),
    ],
)
def test_a_bad_die_map_is_refused_naming_the_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    with pytest.raises(InputError) as refused:
        load_die_map(_broken_map(tmp_path, old, new))
    assert refused.value.field == field


def test_a_bin_rule_naming_an_unknown_measurement_is_refused(tmp_path: Path) -> None:
    text = limits_path(PRODUCT).read_text().replace('"pd_dark_current"]', '"pd_dark_curent"]')
    path = tmp_path / f"{PRODUCT}.toml"
    path.write_text(text)
    with pytest.raises(InputError) as refused:
        load_limits(path)
    assert refused.value.field == "bins[3].measurements"
    assert [rule.name for rule in load_limits(limits_path(PRODUCT)).bins][-1] == "PASS"


# --- a region end to end -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def region(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WaferRun, SimBench, ResultsStore]]:
    """REGION of W01 tested once, recorded in a SQLite store; every die's commit is checked as
    it happens (the store holds the die as soon as its checkpoint is handled)."""
    store = ResultsStore(tmp_path_factory.mktemp("wafer") / "results.sqlite")
    seen: list[tuple[Die, int, int]] = []

    def check_commit(engine: RunEngine, event: object) -> None:
        if isinstance(event, UnitCompleted):
            store.flush()  # what the writer was handed at this checkpoint is now committed
            with store.engine.connect() as conn:
                units = conn.exec_driver_sql("SELECT count(*) FROM units").scalar()
                mine = conn.exec_driver_sql(
                    "SELECT count(*) FROM measurements WHERE die_x = ? AND die_y = ?",
                    (event.die_x, event.die_y),
                ).scalar()
            seen.append(((event.die_x, event.die_y), int(units or 0), int(mine or 0)))

    with SimBench.build("wafer", time_factor=TIME_FACTOR) as sim:
        sim.insert(WAFER, PRODUCT)
        run = run_wafer(sim, region_map(), store=store, subscriber=check_commit)
        run.committed = seen
        yield run, sim, store
    store.close()


def test_every_die_of_the_region_reads_its_simulated_truth(region) -> None:
    run, sim, _ = region
    wafer = sim.world.wafer.wafer
    assert [(u.die_x, u.die_y) for u in run.units()] == list(region_map().dies)
    for die in REGION:
        truth = truth_values(wafer.die(wafer.index_of(*die)), bench_paths(sim), region_map())
        assert_matches_truth(run.values(die), truth, die)


def test_known_bad_dies_fail_on_the_right_measurement_and_get_the_right_bin(region) -> None:
    run, sim, _ = region
    assert run.result.outcome == Outcome.FAIL and run.result.error is None
    bins = {(u.die_x, u.die_y): u.bin_name for u in run.units()}
    assert bins == EXPECTED_BINS
    failing = {
        (m.die_x, m.die_y): m.name for m in run.result.measurements if m.outcome == Outcome.FAIL
    }
    assert failing[(6, 2)] == "heater_resistance"
    assert failing[(7, 5)] == "pd_responsivity"
    assert failing[(9, 5)] == "pd_dark_current"
    # the defect-cluster dies: couplers ruined (their bin) and no ring resonance left
    for die in ((15, 5), (16, 4)):
        names = {
            m.name
            for m in run.result.measurements
            if (m.die_x, m.die_y) == die and m.outcome == Outcome.FAIL
        }
        assert {"coupler_peak_il", "ring_resonance_count"} <= names
        assert "ring_q_loaded" not in run.values(die)  # nothing to measure: not recorded
    units = {(u.die_x, u.die_y): u for u in run.units()}
    assert units[(8, 5)].outcome == Outcome.PASS and (
        units[(8, 5)].hard_bin,
        units[(8, 5)].soft_bin,
    ) == (1, 1)
    assert (units[(15, 5)].hard_bin, units[(15, 5)].soft_bin) == (2, 10)
    # the bins are what the bin table gives the simulated truth
    wafer = sim.world.wafer.wafer
    truth = {
        d: truth_values(wafer.die(wafer.index_of(*d)), bench_paths(sim), region_map())
        for d in REGION
    }
    expected = truth_bins(truth, load_limits(limits_path(PRODUCT)))["bin_name"].to_dict()
    assert expected == EXPECTED_BINS


def test_each_die_is_committed_with_its_bins_at_its_checkpoint(region) -> None:
    run, _, store = region
    committed = run.committed
    assert [die for die, _, _ in committed] == list(region_map().dies)
    assert [units for _, units, _ in committed] == list(range(1, len(REGION) + 1))
    assert all(count >= 10 for _, _, count in committed)  # its measurements came with it
    stored = store.units(run.result.run_id)
    assert stored["unit"].tolist() == [die_key(d) for d in region_map().dies]
    # the checkpoint's bins are the bin table's verdict over the stored wafer data
    limits = load_limits(limits_path(PRODUCT))
    recomputed = die_bins(store.measurements(run_id=run.result.run_id), limits)
    merged = stored.merge(recomputed, on=["die_x", "die_y"], suffixes=("", "_wafer"))
    assert len(merged) == len(REGION)
    assert (merged["bin_name"] == merged["bin_name_wafer"]).all()
    assert (merged["soft_bin"] == merged["soft_bin_wafer"]).all()
    assert store.runs(run_id=run.result.run_id)[["lot_id", "wafer_id"]].values.tolist() == [
        ["LOT7", WAFER]
    ]


def test_spectra_are_kept_for_sampled_and_failing_dies_only(region) -> None:
    run, _, store = region
    die_map = region_map()
    bins = {(u.die_x, u.die_y): u.bin_name for u in run.units()}
    kept = {(int(a.metadata["die_x"]), int(a.metadata["die_y"])) for a in run.artefacts()}
    every = die_map.storage.every_dies  # counted in the test order of the map that was run
    sampled = {d for i, d in enumerate(die_map.dies) if i % every == 0}
    assert kept == sampled | {d for d in REGION if bins[d] != "PASS"}
    ring = next(a for a in run.artefacts() if a.name == "ring_spectrum")
    coupler = next(a for a in run.artefacts() if a.name == "gc_loopback_spectrum")
    assert ring.arrays["transmission_db"].dtype == np.float32
    assert ring.arrays["wavelength_nm"].size == die_map.sweep.points == 10_001
    assert coupler.arrays["wavelength_nm"].size == 1001
    assert ring.metadata["kind"] == coupler.metadata["kind"] == "spectrum"
    # in the store, each die's ring measurements link to that die's ring spectrum
    rows = store.measurements(run_id=run.result.run_id, measurement="ring_resonance_count")
    rows = rows.set_index(["die_x", "die_y"])
    artefacts = store.artefacts(run.result.run_id).set_index("id")
    for die in kept:
        linked = rows.loc[die, "artefact_id"]
        assert (artefacts.loc[linked, "die_x"], artefacts.loc[linked, "die_y"]) == die
        assert artefacts.loc[linked, "name"] == "ring_spectrum"
    assert pd.isna(rows.loc[(8, 5), "artefact_id"])  # a passing die not sampled


def test_the_wafer_outputs_are_written(region, tmp_path: Path) -> None:
    run, _, store = region
    outputs = wafer_outputs(store, run.result.run_id, tmp_path, maps=("coupler_peak_il",))
    names = {p.name for p in outputs.files}
    assert {"bins.png", "bins.csv", "dies.csv", "pareto.png", "cpk.csv", "yield.csv"} <= names
    assert {"map_coupler_peak_il.png", "map_coupler_peak_il.csv"} <= names
    assert all(p.stat().st_size > 0 for p in outputs.files)
    summary = outputs.yield_summary.iloc[0]
    assert (summary["n_units"], summary["n_pass"], summary["n_fail"]) == (8, 2, 6)
    counts = dict(zip(outputs.bins["bin_name"], outputs.bins["dies"], strict=True))
    assert counts == {"PASS": 2, "COUPLER": 2, "PD_DARK": 2, "PD_RESPONSIVITY": 1, "HEATER": 1}
    top = outputs.pareto.set_index("measurement")["count"]
    assert top["pd_dark_current"] >= 2 and top["coupler_peak_il"] == 2
    cpk = outputs.capability.set_index("measurement")
    assert {"coupler_peak_il", "ring_q_loaded", "heater_resistance"} <= set(cpk.index)
    assert cpk.loc["ring_fsr", "n"] == 6  # the two defect dies have no resonances


# --- prober faults --------------------------------------------------------------------------------
def _hook(sim: SimBench, command: str, action: Callable[[Any, list[str]], str | None]) -> None:
    """Wrap one of the simulated prober's command handlers (a test-side fault): `action` runs
    first and may answer in the command's place."""
    velox = sim.devices["prober"]
    original = velox._commands[command]  # type: ignore[union-attr]

    def hooked(args: list[str]) -> str:
        replaced = action(velox, args)
        return original(args) if replaced is None else replaced

    velox._commands[command] = hooked  # type: ignore[union-attr]


def _stick_after_stepping_to(moves: dict[Die, int]) -> Callable[[Any, list[str]], str | None]:
    """Stepping to a die arms the twin's stuck-axis fault: its next `moves[die]` moves never
    complete (nor answer)."""

    def action(velox: Any, args: list[str]) -> str:
        reply = velox._go_to(velox.station.wafer.index_of(int(args[0]), int(args[1])))
        die = (int(args[0]), int(args[1]))
        if die in moves:
            velox.stick(moves.pop(die))
        return reply  # the handler's data: handle() adds the "0: " code

    return action


def test_a_stuck_prober_retries_the_die_once_then_bins_it_error_and_moves_on() -> None:
    dies = ((8, 5), (9, 5), (10, 5), (11, 5))
    with SimBench.build("wafer", time_factor=TIME_FACTOR) as sim:
        sim.insert(WAFER, PRODUCT)
        _hook(sim, "STEPNEXTDIE", _stick_after_stepping_to({(9, 5): 1, (10, 5): 2}))
        config = fast_prober(load_station_config(None, "wafer"))
        run = run_wafer(sim, region_map(dies), config=config)
    units = {(u.die_x, u.die_y): u for u in run.units()}
    assert list(units) == [(8, 5), (9, 5), (10, 5), (11, 5)]
    attributes = run.attributes()
    assert "InstrumentTimeout" in attributes["die_9_5_retried"]
    assert units[(9, 5)].bin_name == "PD_DARK"  # retried, then measured as usual (a leaky PD)
    assert run.values((9, 5))["coupler_peak_il"] < 5.0
    assert "die_10_5_error" in attributes and "die_10_5_retried" in attributes
    assert units[(10, 5)].outcome == Outcome.ERROR and units[(10, 5)].bin_name == "ERROR"
    assert (units[(10, 5)].hard_bin, units[(10, 5)].soft_bin) == (3, 3)
    assert math.isnan(run.values((10, 5))["die_probed"]) and len(run.values((10, 5))) == 1
    assert units[(11, 5)].bin_name == "PD_DARK"  # the wafer went on (another leaky PD)
    assert run.result.outcome == Outcome.ERROR  # the station could not test one die


def _lose_contact(dies: dict[Die, int]) -> Callable[[Any, list[str]], str | None]:
    """MoveChuckContact answers OK but the probes do not touch (`dies[die]` times per die)."""

    def action(velox: Any, args: list[str]) -> str | None:
        index = velox.station.die_index
        wafer = velox.station.wafer
        die = (int(wafer.columns[index]), int(wafer.rows[index]))
        if dies.get(die, 0) > 0:
            dies[die] -= 1
            return ""  # "0: " with nothing done
        return None

    return action


def test_lost_contact_is_retried_once_then_the_die_is_binned_error() -> None:
    dies = ((8, 5), (9, 5), (10, 5))
    with SimBench.build("wafer", time_factor=TIME_FACTOR) as sim:
        sim.insert(WAFER, PRODUCT)
        _hook(sim, "MOVECHUCKCONTACT", _lose_contact({(8, 5): 1, (9, 5): 2}))
        run = run_wafer(sim, region_map(dies))
    units = {(u.die_x, u.die_y): u for u in run.units()}
    attributes = run.attributes()
    assert "ContactLost" in attributes["die_8_5_retried"] and units[(8, 5)].bin_name == "PASS"
    assert "ContactLost" in attributes["die_9_5_error"] and units[(9, 5)].bin_name == "ERROR"
    assert units[(10, 5)].bin_name == "PASS"


def test_three_dies_in_a_row_that_cannot_be_tested_stop_the_wafer() -> None:
    dies = ((7, 5), (8, 5), (9, 5), (10, 5), (11, 5))
    with SimBench.build("wafer", time_factor=TIME_FACTOR) as sim:
        sim.insert(WAFER, PRODUCT)
        _hook(sim, "MOVECHUCKCONTACT", _lose_contact({d: 2 for d in dies[1:]}))
        run = run_wafer(sim, region_map(dies))
        station = sim.world.wafer
        assert station is not None and not station.in_contact
    assert run.result.outcome == Outcome.ERROR
    assert "3 dies in a row could not be tested" in (run.result.error or "")
    assert [u.bin_name for u in run.units()] == ["PD_RESPONSIVITY", "ERROR", "ERROR", "ERROR"]


# --- abort and resume in process ---------------------------------------------------------------
def test_an_aborted_wafer_is_safe_and_resumes_from_the_first_die_without_results(
    tmp_path: Path,
) -> None:
    dies = ((7, 5), (8, 5), (9, 5), (10, 5), (11, 5), (12, 5))
    store = ResultsStore(tmp_path / "results.sqlite")

    def abort_after_two(engine: RunEngine, event: object) -> None:
        if isinstance(event, UnitCompleted) and event.unit == "8,5":
            engine.abort()  # as the SIGINT / SIGTERM handler does

    with SimBench.build("wafer", time_factor=TIME_FACTOR) as sim:
        sim.insert(WAFER, PRODUCT)
        first = run_wafer(sim, region_map(dies), store=store, subscriber=abort_after_two)
        laser, smu, station = sim.devices["tunable_laser"], sim.devices["smu"], sim.world.wafer
        assert first.result.outcome == Outcome.ABORTED
        assert not laser.output_on and not smu.output_on  # type: ignore[union-attr]
        assert station is not None and not station.in_contact
        run_id = first.result.run_id
        done = store.completed_units(run_id)
        assert {"7,5", "8,5"} <= done and len(done) < len(dies)
        second = run_wafer(sim, region_map(dies), store=store, run_id=run_id, completed_units=done)
    assert second.result.outcome == Outcome.FAIL and second.result.run_id == run_id
    assert {u.unit for u in second.units()} == {die_key(d) for d in dies} - done
    assert second.attributes()["dies_already_done"] == str(len(done))
    stored = store.units(run_id)
    assert sorted(stored["unit"]) == sorted(die_key(d) for d in dies)  # each die once
    tidy = store.measurements(run_id=run_id)
    assert tidy.groupby(["die_x", "die_y", "measurement"]).size().max() == 1
    run_row = store.runs(run_id=run_id).iloc[0]
    assert bool(run_row["complete"]) and run_row["outcome"] == "FAIL"
    assert "resumed_at" in set(store.attributes(run_id)["name"])
    store.close()
