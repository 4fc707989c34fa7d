"""End-face inspection before mating, end to end on the simulated module bench: the operator's
prompts, cleaning by the bench's hands, re-inspection, who is blamed for a face that will not
pass, the stored images and the report that shows them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sequences.inspection import CLEANED, INSPECTION_MEASURES, MAX_CLEANINGS
from sequences.pluggable import SEQUENCE as PLUGGABLE
from sim_instruments.bench import SimBench
from station.events import PromptRequested, SafeStateApplied
from station.limits import LimitsFile, limits_path, load_limits
from station.outcome import Outcome
from station.results import ResultsStore
from station.results.report import run_report
from tests.sequences.helpers import TIME_FACTOR, Run, run_unit

LIMITS = Path(__file__).resolve().parents[2] / "sequences/limits/inspection"
FIBRES = range(1, 17)
# Found from the seeded population (sim_instruments/endfaces.py), checked by the runs below:
DIRTY = "SIM0002"  # dust on receptacle fibres 9 and 14, off at the first cleaning
DAMAGED = "SIM0192"  # a 5.4 um scratch across zone A of receptacle fibre 4
STUBBORN = "SIM0061"  # dried residue on receptacle fibre 6 that outlasts three cleanings
SCRATCHED_JUMPER_BENCH = "sim-module-bench-319"  # its jumper: a 4 um scratch on fibre 3


class Operator:
    """A scripted operator: answers each prompt that reaches it with the next answer."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.asked: list[PromptRequested] = []

    def __call__(self, request: PromptRequested, abort: threading.Event) -> str | None:
        self.asked.append(request)
        return self.answers.pop(0) if self.answers else CLEANED


def limits(product: str = "800G-DR8") -> LimitsFile:
    return load_limits(LIMITS / f"{product}.toml")


@pytest.fixture
def sim() -> Iterator[SimBench]:
    with SimBench.build(time_factor=TIME_FACTOR) as bench:
        yield bench


def inspect(sim: SimBench, serial: str, operator: Operator) -> Run:
    return run_unit(sim, serial, sequence="inspection", limits=limits(), operator=operator)


def grades(run: Run, connector: str) -> dict[int | None, object]:
    return run.values(f"{connector}_endface_grade")


def test_inspection_comes_before_power_up_in_the_pluggable_sequence() -> None:
    names = [s.name for s in PLUGGABLE.steps]
    assert names.index("inspect") < names.index("power_up") < names.index("tx_optical_25c")


@pytest.mark.parametrize("product", ["800G-DR8", "1.6T-DR8"])
def test_the_stand_alone_limits_are_the_products_end_face_limits(product: str) -> None:
    alone = tomllib.loads((LIMITS / f"{product}.toml").read_text())
    full = tomllib.loads(limits_path(product).read_text())
    assert set(alone["limits"]) == set(INSPECTION_MEASURES)
    assert alone["limits"] == {name: full["limits"][name] for name in INSPECTION_MEASURES}
    assert alone["product"] == full["product"] and alone["release"] == full["release"]


def test_a_clean_unit_passes_without_asking_the_operator_anything(sim: SimBench) -> None:
    operator = Operator()
    run = inspect(sim, "SIM0001", operator)
    assert run.outcome == Outcome.PASS, run.result.error
    assert operator.asked == []  # the bench's hands seated the probe
    assert grades(run, "jumper") == dict.fromkeys(FIBRES, "PASS")
    assert grades(run, "receptacle") == dict.fromkeys(FIBRES, "PASS")
    assert run.attributes()["receptacle_cleanings"] == "0"


def test_a_dirty_fibre_is_cleaned_on_the_operators_word_and_then_passes(sim: SimBench) -> None:
    operator = Operator(CLEANED)
    run = inspect(sim, DIRTY, operator)
    assert run.outcome == Outcome.PASS, run.result.error
    (asked,) = operator.asked
    assert f"{DIRTY}: fibre 9, 14 of the module's MPO receptacle" in asked.message
    assert asked.choices == ("Cleaned", "Cannot clean")
    receptacle = sim.endfaces().connector("dut")
    assert receptacle is not None and receptacle.cleanings == 1  # by the bench's hands
    left = [p.diameter_um for f in (9, 14) for p in receptacle.face(f).particles]
    assert all(size < 2.0 for size in left)  # what stays is below what zone B limits
    assert run.attributes()["receptacle_cleanings"] == "1"
    # Measurements are the last inspection's; the images of both are kept.
    assert grades(run, "receptacle") == dict.fromkeys(FIBRES, "PASS")
    before = {a.lane: a for a in run.artefacts("endface") if a.name == "receptacle_endface_1"}
    after = {a.lane: a for a in run.artefacts("endface") if a.name == "receptacle_endface_2"}
    assert sorted(before) == sorted(after) == list(FIBRES)
    assert [f for f in FIBRES if before[f].metadata["grade"] == "FAIL"] == [9, 14]
    assert "zone" in before[9].metadata["failures"]
    assert before[9].arrays["defect_mask"].any() and not after[9].arrays["defect_mask"].any()
    image = after[9].arrays["image"]
    assert image.dtype.name == "uint8" and image.shape == (128, 128)


def test_a_scratched_station_jumper_ends_the_site_in_error_with_its_measurements() -> None:
    with SimBench.build(time_factor=TIME_FACTOR, bench_id=SCRATCHED_JUMPER_BENCH) as sim:
        operator = Operator()  # cleans every time it is asked
        run = inspect(sim, "SIM0001", operator)
        cleanings = sim.endfaces().jumper.cleanings
    assert run.outcome == Outcome.ERROR  # the station's jumper, never the module's FAIL
    assert "EndFaceNotClean" in (run.result.error or "") and "jumper" in (run.result.error or "")
    assert len(operator.asked) == MAX_CLEANINGS == cleanings
    jumper = grades(run, "jumper")
    assert [f for f in FIBRES if jumper[f] == "FAIL"] == [3]
    assert run.values("jumper_scratches_over_3um")[3] == 1
    assert grades(run, "receptacle") == {}  # the module was not looked at
    assert any(isinstance(e, SafeStateApplied) for e in run.events)


def test_a_scratched_receptacle_is_damage_a_fail_of_the_module(sim: SimBench) -> None:
    run = inspect(sim, DAMAGED, Operator())
    assert run.outcome == Outcome.FAIL, run.result.error
    assert run.failed() == {("receptacle_endface_grade", 4), ("receptacle_scratches_over_3um", 4)}
    assert run.attributes()["receptacle_cleanings"] == str(MAX_CLEANINGS)


def test_a_receptacle_that_stays_dirty_is_an_error_not_a_fail(sim: SimBench) -> None:
    run = inspect(sim, STUBBORN, Operator())
    assert run.outcome == Outcome.ERROR
    assert "fibre 6 stays dirty" in (run.result.error or "")
    assert ("receptacle_endface_grade", 6) in run.failed()  # recorded before the error
    assert len(grades(run, "receptacle")) == 16


def test_an_operator_who_cannot_clean_ends_the_site_in_error(sim: SimBench) -> None:
    run = inspect(sim, DIRTY, Operator("Cannot clean"))
    assert run.outcome == Outcome.ERROR
    assert "could not clean" in (run.result.error or "")


def test_an_unanswered_cleaning_prompt_aborts_the_site_cleanly(sim: SimBench) -> None:
    run = inspect(sim, DIRTY, Operator(None))  # None: the prompt's time ran out
    assert run.outcome == Outcome.ABORTED
    assert "no answer" in (run.result.error or "")
    assert grades(run, "receptacle") == {}
    assert any(isinstance(e, SafeStateApplied) for e in run.events)


def test_the_run_report_shows_the_annotated_end_faces(sim: SimBench, tmp_path: Path) -> None:
    run = inspect(sim, DIRTY, Operator(CLEANED))
    store = ResultsStore(tmp_path / "results.sqlite")
    for event in run.events:  # what the CLI's store would have received on the run's bus
        store(event)
    store.close()
    with ResultsStore(tmp_path / "results.sqlite") as reopened:
        stored = reopened.artefacts(run.result.run_id)
        assert set(stored["kind"]) == {"endface"} and len(stored) == 3 * 16
        report = run_report(reopened, run.result.run_id, tmp_path / "reports")
    page = report.path.read_text()
    for name in ("jumper_endface_1", "receptacle_endface_1", "receptacle_endface_2"):
        assert f"inspect: {name} (endface)" in page
    assert len([p for p in report.images if "endface" in p.name]) == 3
    assert all(p.stat().st_size > 20_000 for p in report.images)


@pytest.mark.parametrize(("stdin", "exit_code"), [("Cleaned\n", 0), ("", 2)])
def test_station_run_sim_cleans_on_the_terminal_answer_and_aborts_without_one(
    stdin: str, exit_code: int, tmp_path: Path
) -> None:
    """`station run ... --sim`: the operator answers on standard input; at its end (nobody to
    answer) the site is aborted, exit 2."""
    db = tmp_path / "results.sqlite"
    args = ["run", "inspection", "--product", "800G-DR8", "--serial", DIRTY, "--sim"]
    args += ["--limits", str(LIMITS / "800G-DR8.toml"), "--db", str(db), "--time-factor", "0.01"]
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", *args],
        input=stdin,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert done.stdout.count("OPERATOR:") == 1  # seating the probe asked nobody
    with ResultsStore(db) as store:
        tidy = store.measurements()
        run = store.runs().iloc[0]
    grades = tidy[tidy["measurement"] == "receptacle_endface_grade"]
    if exit_code == 0:
        assert run["outcome"] == "PASS" and set(grades["text_value"]) == {"PASS"}
        assert len(grades) == 16
    else:
        assert run["outcome"] == "ABORTED" and grades.empty
