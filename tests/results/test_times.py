"""Test time split per run (load, waiting for shared instruments, steps, retries), units per
hour with downtime and availability, and the `station results times` / `uph` commands."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from station.cli import main
from station.config import StationConfig
from station.engine import Arbiter, RunEngine, StepContext
from station.events import (
    AttributeRecorded,
    EventBus,
    PromptAnswered,
    PromptRequested,
    RunEnded,
    RunStarted,
    StepEnded,
    StepStarted,
)
from station.limits import LimitsFile
from station.outcome import Outcome
from station.results import queries
from station.results.downtime import downtime_end, downtime_start
from station.results.store import ResultsStore
from station.sequence import Sequence, step
from tests.station.helpers import FakeSource, limits_file

T0 = 1_800_000_000_000_000_000  # ns
S = 1_000_000_000  # ns per second
T0_UTC = dt.datetime.fromtimestamp(T0 / S, dt.UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[ResultsStore]:
    with ResultsStore(store_url) as opened:
        yield opened


def _started(run_id: str, serial: str, at_ns: int, **fields: object) -> RunStarted:
    values: dict[str, object] = {
        "run_id": run_id, "sequence": "pluggable", "product": "800G-DR8", "dut_serial": serial,
        "site": 1, "station_id": "ST1", "operator": "op", "software_version": "0",
        "limits_path": "l.toml", "limits_sha256": "0" * 64, "mode": "production",
        "instruments": (), "lot_id": "L1", "at_ns": at_ns,
    }  # fmt: skip
    return RunStarted(**(values | fields))  # type: ignore[arg-type]


def _split(store: ResultsStore, **filters: object) -> pd.DataFrame:
    return store.test_time_split(**filters).set_index("run_id")


def test_the_split_of_a_recorded_run_adds_up(store: ResultsStore) -> None:
    """Run start 0 s, step from 2 s to 10 s with a 2 s insert prompt, 1.5 s waiting for a
    shared instrument and a 2 s retried attempt (whose 0.5 s clean prompt is retry time, not
    load); run end 11 s."""
    store(_started("r1", "U1", T0))
    store(StepStarted("r1", "tx", 0, at_ns=T0 + 2 * S))
    store(PromptRequested("r1", "tx", "p1", "Clean the jumper", ("OK",), 60.0, at_ns=T0 + 3 * S))
    store(PromptAnswered("r1", "tx", "p1", "OK", at_ns=T0 + 3 * S + S // 2))
    store(AttributeRecorded("r1", "tx", "attempt_1_error", "scope timeout", at_ns=T0 + 4 * S))
    store(PromptRequested("r1", "tx", "p2", "Insert U1 in the cage", ("OK",), 60.0, T0 + 5 * S))
    store(PromptRequested("r1", "tx", "p3", "Is the label readable?", ("y", "n"), 9, T0 + 7 * S))
    store(PromptAnswered("r1", "tx", "p2", "OK", at_ns=T0 + 7 * S))
    store(PromptAnswered("r1", "tx", "p3", "y", at_ns=T0 + 9 * S))  # not load: a question
    store(StepEnded("r1", "tx", 0, Outcome.PASS, None, 8.0, T0 + 10 * S, waited_s=1.5, retry_s=2.0))
    store(RunEnded("r1", Outcome.PASS, None, at_ns=T0 + 11 * S))
    store(_started("r2", "U2", T0 + 20 * S))  # in flight: left out
    row = _split(store).loc["r1"]
    assert row["total_s"] == pytest.approx(11.0)
    assert row["load_s"] == pytest.approx(2.0 + 2.0)  # to the first step, plus the insert
    assert row["wait_s"] == pytest.approx(1.5)
    assert row["retry_s"] == pytest.approx(2.0)
    assert row["steps_s"] == pytest.approx(11.0 - 4.0 - 1.5 - 2.0)
    assert (row["station_id"], row["site"], row["dut_serial"], row["lot_id"]) == (
        "ST1", 1, "U1", "L1",
    )  # fmt: skip
    assert _split(store).index.tolist() == ["r1"]
    steps = store.steps("r1")
    assert steps[["waited_s", "retry_s", "load_prompt_s"]].iloc[0].tolist() == [1.5, 2.0, 2.0]


def test_a_run_without_steps_is_all_load(store: ResultsStore) -> None:
    store(_started("r1", "U1", T0))
    store(RunEnded("r1", Outcome.ABORTED, "aborted by operator", at_ns=T0 + 3 * S))
    row = _split(store).loc["r1"]
    assert (row["load_s"], row["wait_s"], row["steps_s"], row["retry_s"]) == (3.0, 0.0, 0.0, 0.0)


def test_unknown_filters_are_refused(store: ResultsStore) -> None:
    with pytest.raises(Exception, match="unknown filter 'shift'"):
        store.test_time_split(shift="night")
    with pytest.raises(Exception, match="cannot group by 'shift'"):
        store.uph(by=("shift",))


# --- measured by the engine ---------------------------------------------------------------------
@pytest.fixture
def limits(tmp_path: Path) -> LimitsFile:
    return limits_file(tmp_path)


@step(roles=("source", "scope"), measures=("power",))
def through_scope(ctx: StepContext) -> None:
    for lane in (1, 2):
        ctx.measure("power", 0.5, unit="mW", lane=lane)


@step(roles=("source",))
def load(ctx: StepContext) -> None:
    ctx.prompt(f"Insert {ctx.dut_serial} into the cage")


def test_the_engine_measures_waiting_retries_and_load_prompts(
    store: ResultsStore, limits: LimitsFile
) -> None:
    attempts: list[int] = []

    @step(roles=("source",), measures=("later",), retries=1)
    def retried(ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise TimeoutError("scope did not trigger")
        ctx.measure("later", 1.0, unit="V")

    step_started = threading.Event()
    bus = EventBus()
    bus.subscribe(store)
    bus.subscribe(lambda e: isinstance(e, StepStarted) and e.index == 1 and step_started.set())
    scope, arbiter = FakeSource(), Arbiter()

    def prompter(request: PromptRequested, abort: threading.Event) -> str:
        abort.wait(0.01)  # the operator takes a moment
        return "OK"

    engine = RunEngine(
        sequence=Sequence("t", "t", ("T",), (load, through_scope, retried)),
        limits=limits,
        station=StationConfig(Path("s.toml"), "ST1", {}),
        instruments={"source": FakeSource(), "scope": scope},  # type: ignore[dict-item]
        instrument_records=(),
        bus=bus,
        prompter=prompter,
        shared_roles=frozenset({"scope"}),
        arbiter=arbiter,
    )
    abort = threading.Event()
    with arbiter.hold([("scope", scope)], abort):  # another site holds the scope ...
        worker = threading.Thread(target=engine.run, args=("T1",), kwargs={"run_id": "r1"})
        worker.start()
        assert step_started.wait(10)  # ... until this run's scope step has started
    worker.join(10)
    assert not worker.is_alive()
    steps = store.steps("r1").set_index("name")
    assert steps.loc["load", "load_prompt_s"] > 0 and steps.loc["load", "waited_s"] == 0
    assert steps.loc["through_scope", "waited_s"] > 0
    assert steps.loc["retried", "retry_s"] > 0 and steps.loc["retried", "outcome"] == "PASS"
    assert attempts == [1, 2]
    row = _split(store).loc["r1"]
    assert row["wait_s"] == pytest.approx(steps["waited_s"].sum())
    assert row["retry_s"] == pytest.approx(steps["retry_s"].sum())
    parts = row["load_s"] + row["wait_s"] + row["steps_s"] + row["retry_s"]
    assert parts == pytest.approx(row["total_s"])
    assert row["load_s"] >= steps.loc["load", "load_prompt_s"]


# --- units per hour -----------------------------------------------------------------------------
def _run(store: ResultsStore, run_id: str, serial: str, start_s: int, end_s: int,
         **fields: object) -> None:  # fmt: skip
    store(_started(run_id, serial, T0 + start_s * S, **fields))
    store(RunEnded(run_id, Outcome.PASS, None, at_ns=T0 + end_s * S))


def _at(seconds: float) -> dt.datetime:
    return T0_UTC + dt.timedelta(seconds=seconds)


@pytest.fixture
def line(store: ResultsStore) -> ResultsStore:
    """ST1 (one site): 3 runs of 2 units over one hour, down 600 s (an MES outage and a lock
    that overlap). ST2 (two sites): 4 units over 2400 s, site 2 down 1200 s and still down."""
    _run(store, "a1", "U1", 0, 600)
    _run(store, "a2", "U2", 1200, 1800)
    _run(store, "a3", "U1", 3000, 3600, lot_id="L2")  # a retest
    _run(store, "b1", "V1", 0, 1200, station_id="ST2", lot_id="L2")
    _run(store, "b2", "V2", 0, 1200, station_id="ST2", site=2, lot_id="L2")
    _run(store, "b3", "V3", 1200, 2400, station_id="ST2", lot_id="L2")
    _run(store, "b4", "V4", 1200, 2400, station_id="ST2", site=2, lot_id="L2")
    store.flush()
    engine = store.engine
    downtime_start(engine, "ST1", "mes_down", "no check-in", "station", at=_at(1800))
    downtime_end(engine, "ST1", reason="mes_down", at=_at(2160))
    downtime_start(engine, "ST1", "locked", "golden unit out", "spc", at=_at(2000))
    downtime_end(engine, "ST1", at=_at(2400))
    downtime_start(engine, "ST1", "maintenance", "before the window", "tom", at=_at(-900))
    downtime_end(engine, "ST1", at=_at(-100))
    downtime_start(engine, "ST2", "instrument_fault", "BERT", "tom", site=2, at=_at(1200))
    return store


def test_units_per_hour_with_downtime_per_station(line: ResultsStore) -> None:
    table = line.uph().set_index("station_id")
    assert table.columns.tolist() == list(queries.UPH_COLUMNS)
    st1 = table.loc["ST1"]
    assert (st1["units"], st1["runs"]) == (2, 3)
    assert st1["hours"] == pytest.approx(1.0)
    assert st1["uph"] == pytest.approx(2.0)
    assert st1["downtime_s"] == pytest.approx(600.0)  # 1800-2400: overlaps count once
    assert st1["availability"] == pytest.approx(1 - 600 / 3600)
    st2 = table.loc["ST2"]
    assert (st2["units"], st2["hours"]) == (4, pytest.approx(2400 / 3600))
    assert st2["uph"] == pytest.approx(4 / (2400 / 3600))
    assert st2["downtime_s"] == pytest.approx(1200 / 2)  # one site of two, open to the end
    assert st2["availability"] == pytest.approx(0.75)


def test_units_per_hour_per_site_and_per_lot(line: ResultsStore) -> None:
    sites = line.uph(by=("station_id", "site"), station_id="ST2").set_index("site")
    assert sites.loc[1, "downtime_s"] == 0 and sites.loc[2, "downtime_s"] == pytest.approx(1200)
    assert sites.loc[2, "availability"] == pytest.approx(0.5)
    lots = line.uph(by=("lot_id",)).set_index("lot_id")
    assert (lots.loc["L1", "units"], lots.loc["L1", "runs"]) == (2, 2)
    assert lots.loc["L2", "units"] == 5  # U1's retest on ST1 and V1-V4 on ST2
    # L2 spans 0-3600 s on ST1 (site 1) and ST2 (sites 1, 2): 600 + 0 + 2400 s down, averaged
    assert lots.loc["L2", "downtime_s"] == pytest.approx((600 + 0 + 2400) / 3)


# --- the commands -------------------------------------------------------------------------------
def test_results_times_and_uph_commands(
    line: ResultsStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = line.url
    assert main(["results", "times", "--db", db, "--station", "ST1"]) == 0
    out = capsys.readouterr().out
    assert "Test time per run" in out and "a1" in out and "b1" not in out
    assert main(["results", "times", "--db", db, "--csv", "--lot", "L2"]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert frame.columns.tolist() == list(queries.TIME_SPLIT_COLUMNS)
    assert sorted(frame["run_id"]) == ["a3", "b1", "b2", "b3", "b4"]
    assert main(["results", "uph", "--db", db, "--by", "lot", "--csv"]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert frame["lot_id"].tolist() == ["L1", "L2"] and frame["units"].tolist() == [2, 5]
    assert main(["results", "uph", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "Units per hour per station" in out and "0.833" in out  # ST1 availability


def test_results_commands_refuse_bad_input_in_one_line(
    line: ResultsStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the console would wrap a long line at 80
    assert main(["results", "times", "--db", line.url, "--since", "yesterday-ish"]) == 2
    err = capsys.readouterr().err.strip()
    assert "filter since = 'yesterday-ish'" in err and "\n" not in err
    assert main(["results", "uph", "--db", line.url, "--lot", "NOPE"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no finished runs match (lot_id NOPE)" in err and "\n" not in err
    missing = tmp_path / "none.sqlite"
    assert main(["results", "uph", "--db", str(missing)]) == 2
    assert "no such results database" in capsys.readouterr().err
    assert not missing.exists()
