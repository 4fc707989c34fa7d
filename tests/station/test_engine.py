"""The engine judges, stops, times out and always leaves instruments safe."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from drivers.errors import InstrumentTimeout
from drivers.interfaces import Instrument
from station.engine import StepContext, abort_on_signals
from station.events import EventBus, PromptRequested
from station.limits import LimitsFile
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.sequence import step
from tests.station.helpers import FakeSource, make_engine, measure_later, measure_power


def test_pass_judged_by_engine_and_safe_state_called(limits: LimitsFile) -> None:
    source = FakeSource()
    result = make_engine(limits, (measure_power, measure_later), source).run("T1")
    assert result.outcome == Outcome.PASS
    assert [m.outcome for m in result.measurements] == [Outcome.PASS] * 3
    assert not source.output_on and source.safe_calls == 1


def test_fail_stops_production_but_not_characterisation(limits: LimitsFile) -> None:
    source = FakeSource()
    source.values = [0.5, 1.5]
    production = make_engine(limits, (measure_power, measure_later), source).run("T1")
    assert production.outcome == Outcome.FAIL
    assert [m.name for m in production.measurements] == ["power", "power"]
    full = make_engine(limits, (measure_power, measure_later), source, "characterisation").run("T1")
    assert full.outcome == Outcome.FAIL
    assert [m.name for m in full.measurements] == ["power", "power", "later"]


def test_instrument_fault_mid_step_is_error_not_fail_and_keeps_measurements(
    limits: LimitsFile, tmp_path: Path
) -> None:
    @step(roles=("source",), measures=("power",))
    def faulty(ctx: StepContext) -> None:
        ctx.instrument("source", Instrument).output_on = True  # type: ignore[attr-defined]
        ctx.measure("power", 2.0, unit="mW", lane=1)  # a FAIL value, then the meter dies
        raise InstrumentTimeout("READ1:POW?", 2.0, resource="TCPIP::x::SOCKET")

    source = FakeSource()
    bus = EventBus()
    store = ResultsStore(tmp_path / "r.sqlite")
    bus.subscribe(store)
    result = make_engine(limits, (faulty, measure_later), source, bus=bus).run("T1")
    assert result.outcome == Outcome.ERROR
    assert "InstrumentTimeout" in (result.error or "")
    assert not source.output_on
    stored = store.measurements()
    assert list(stored["outcome"]) == ["FAIL"]  # the completed measurement is kept
    assert store.runs()["outcome"].tolist() == ["ERROR"]


def test_step_timeout_is_error_and_does_not_hang(limits: LimitsFile) -> None:
    @step(roles=("source",), measures=("power",), timeout_s=0.2)
    def hangs(ctx: StepContext) -> None:
        ctx.instrument("source", Instrument).output_on = True  # type: ignore[attr-defined]
        ctx.sleep(30)

    source = FakeSource()
    started = time.monotonic()
    result = make_engine(limits, (hangs, measure_later), source).run("T1")
    assert time.monotonic() - started < 10.0  # the 0.2 s timeout, not the step's 30 s
    assert result.outcome == Outcome.ERROR and "timeout" in (result.error or "")
    assert not source.output_on


def test_retryable_step_is_retried_after_error_only(limits: LimitsFile) -> None:
    attempts: list[int] = []

    @step(roles=("source",), measures=("power",), retries=2)
    def flaky(ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 2:
            raise InstrumentTimeout("X?", 1.0)
        for lane in (1, 2):
            ctx.measure("power", 0.5, unit="mW", lane=lane)

    result = make_engine(limits, (flaky, measure_later), FakeSource()).run("T1")
    assert attempts == [1, 2] and result.outcome == Outcome.PASS


def test_abort_from_another_thread_is_aborted_and_safe(limits: LimitsFile) -> None:
    @step(roles=("source",), measures=("power",))
    def slow(ctx: StepContext) -> None:
        ctx.instrument("source", Instrument).output_on = True  # type: ignore[attr-defined]
        ctx.sleep(30)

    source = FakeSource()
    engine = make_engine(limits, (slow, measure_later), source)
    threading.Timer(0.2, engine.abort).start()
    result = engine.run("T1")
    assert result.outcome == Outcome.ABORTED
    assert not source.output_on and source.safe_calls == 1


def test_measurement_contract_errors_are_errors(limits: LimitsFile) -> None:
    @step(roles=("source",), measures=("power",))
    def wrong_unit(ctx: StepContext) -> None:
        ctx.measure("power", 0.5, unit="W", lane=1)

    @step(roles=("source",), measures=("power",))
    def undeclared(ctx: StepContext) -> None:
        ctx.measure("later", 0.5, unit="V")

    @step(roles=(), measures=("power",))
    def undeclared_role(ctx: StepContext) -> None:
        ctx.instrument("source", Instrument)

    for bad in (wrong_unit, undeclared, undeclared_role):
        result = make_engine(limits, (bad, measure_later), FakeSource()).run("T1")
        assert result.outcome == Outcome.ERROR, bad.name


def test_events_arrive_in_order(limits: LimitsFile) -> None:
    seen: list[str] = []
    bus = EventBus()
    bus.subscribe(lambda e: seen.append(type(e).__name__))
    make_engine(limits, (measure_power, measure_later), FakeSource(), bus=bus).run("T1")
    assert seen == [
        "RunStarted",
        "StepStarted",
        "MeasurementRecorded",
        "MeasurementRecorded",
        "StepEnded",
        "StepStarted",
        "MeasurementRecorded",
        "StepEnded",
        "SafeStateApplied",
        "RunEnded",
    ]


def test_prompt_answer_is_recorded_and_prompt_time_is_not_step_time(limits: LimitsFile) -> None:
    @step(roles=("source",), measures=("power",), timeout_s=0.3)
    def asks(ctx: StepContext) -> None:
        answer = ctx.prompt("Clean the connector and confirm", choices=("Done", "Cannot"))
        assert answer == "Done"
        for lane in (1, 2):
            ctx.measure("power", 0.5, unit="mW", lane=lane)

    asked: list[str] = []

    def operator(request: PromptRequested, abort: threading.Event) -> str | None:
        asked.append(request.message)
        time.sleep(0.5)  # longer than the step's timeout: the operator's time does not count
        return "Done"

    engine = make_engine(limits, (asks, measure_later), FakeSource())
    engine.prompter = operator
    result = engine.run("T1")
    assert asked == ["Clean the connector and confirm"]
    assert result.outcome == Outcome.PASS


def test_unanswered_prompt_aborts_the_site_cleanly(limits: LimitsFile) -> None:
    @step(roles=("source",), measures=("power",))
    def asks(ctx: StepContext) -> None:
        ctx.instrument("source", Instrument).output_on = True  # type: ignore[attr-defined]
        ctx.prompt("Insert the module", timeout_s=0.1)

    source = FakeSource()
    engine = make_engine(limits, (asks, measure_later), source)
    engine.prompter = lambda request, abort: None  # nobody answered in time
    result = engine.run("T1")
    assert result.outcome == Outcome.ABORTED
    assert "Insert the module" in (result.error or "")
    assert not source.output_on


def test_station_without_operator_interface_cannot_prompt(limits: LimitsFile) -> None:
    @step(roles=("source",), measures=("power",))
    def asks(ctx: StepContext) -> None:
        ctx.prompt("Confirm")

    result = make_engine(limits, (asks, measure_later), FakeSource()).run("T1")
    assert result.outcome == Outcome.ERROR and "no operator interface" in (result.error or "")


def test_artefacts_round_trip_with_their_hash(limits: LimitsFile, tmp_path: Path) -> None:
    waveform = np.linspace(0.0, 1.0, 1000, dtype=np.float32)

    @step(roles=("source",), measures=("power",))
    def records(ctx: StepContext) -> None:
        ctx.artefact("waveform", {"samples_w": waveform}, lane=2, samples_per_ui="16")
        for lane in (1, 2):
            ctx.measure("power", 0.5, unit="mW", lane=lane)

    bus = EventBus()
    store = ResultsStore(tmp_path / "r.sqlite")
    bus.subscribe(store)
    result = make_engine(limits, (records, measure_later), FakeSource(), bus=bus).run("T1")
    arrays = store.artefact(result.run_id, "waveform", lane=2)
    np.testing.assert_array_equal(arrays["samples_w"], waveform)
    assert arrays["samples_w"].dtype == np.float32
    store.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_run_aborts_and_leaves_sources_off(limits: LimitsFile, signum: int) -> None:
    @step(roles=("source",), measures=("power",))
    def long_step(ctx: StepContext) -> None:
        ctx.instrument("source", Instrument).output_on = True  # type: ignore[attr-defined]
        ctx.sleep(30)

    source = FakeSource()
    engine = make_engine(limits, (long_step, measure_later), source)
    threading.Timer(0.2, os.kill, args=(os.getpid(), signum)).start()
    with abort_on_signals(engine):
        result = engine.run("T1")
    assert result.outcome == Outcome.ABORTED
    assert not source.output_on and source.safe_calls == 1
