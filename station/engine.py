"""The sequence engine: runs steps in order with timeouts and retries, judges every measurement
against the limits, emits the event stream, and puts every instrument in its safe state on every
exit path (normal end, FAIL, exception, step timeout, abort by signal).

Steps run on the engine's own thread. Timeouts and aborts are cooperative: every call a step
makes into its context checks the deadline and the abort flag, `ctx.sleep` and prompts wake up for
them, and instrument I/O is bounded by the instruments' own timeouts. No thread hand-off per step,
so a step costs microseconds, and a signal never lands in the middle of an instrument exchange.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from drivers.errors import InstrumentError
from drivers.interfaces import Instrument
from station import __version__
from station.config import PathLossDb, StationConfig
from station.errors import RunAborted, StationError, StepTimeout
from station.events import (
    ArtefactRecorded,
    AttributeRecorded,
    EventBus,
    InstrumentRecord,
    JumperRecord,
    LimitRecord,
    MeasurementRecorded,
    PromptAnswered,
    PromptRequested,
    RunEnded,
    RunStarted,
    SafeStateApplied,
    StepEnded,
    StepStarted,
    UnitCompleted,
)
from station.limits import DUT_SERIAL, Limit, LimitsFile, Product
from station.outcome import Outcome, worst
from station.sequence import Sequence, Step

T = TypeVar("T")


class StepCancelled(StationError):
    """Raised inside a step when the engine has given up on it (timeout or abort)."""


class PromptTimeout(RunAborted):
    """The operator did not answer a prompt in time: the site is aborted."""


#: Answers an operator prompt: blocks until answered and returns the answer; returns None when
#: the prompt's timeout passes or the abort event (second argument) is set.
Prompter = Callable[[PromptRequested, threading.Event], "str | None"]


def no_operator(request: PromptRequested, abort: threading.Event) -> str | None:
    raise StationError(
        f"step {request.step!r} asks the operator {request.message!r} but this "
        "station has no operator interface"
    )


class Arbiter:
    """Hands instruments shared between sites to one step at a time.

    A step holds every shared instrument it declared for its whole duration (a scope behind a
    switch must not be re-routed by another site mid-measurement). Locks are taken in one global
    order, so two sites can never deadlock; waiting stays abortable. `hold` gives the seconds
    the step waited for them (its share of the run's time split).
    """

    def __init__(self) -> None:
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.wait_s: dict[str, float] = {}  # role -> total time sites waited for it

    def _lock(self, device: object) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(id(device), threading.Lock())

    @contextlib.contextmanager
    def hold(self, shared: list[tuple[str, object]], abort: threading.Event) -> Iterator[float]:
        held: list[threading.Lock] = []
        waited_s = 0.0
        try:
            for role, device in sorted(shared, key=lambda item: item[0]):
                lock = self._lock(device)
                started = time.monotonic()
                while not lock.acquire(timeout=0.05):
                    if abort.is_set():
                        raise RunAborted(f"while waiting for the shared {role}")
                held.append(lock)
                waited = time.monotonic() - started
                waited_s += waited
                with self._guard:
                    self.wait_s[role] = self.wait_s.get(role, 0.0) + waited
            yield waited_s
        finally:
            for lock in reversed(held):
                lock.release()


@dataclass(frozen=True)
class RunParameters:
    """Typed options of one run, chosen by the operator (`station run --corners ...`) and read by
    steps as `ctx.parameters`; a step records what it used. None means the sequence's default."""

    #: case temperatures (degC) to test at
    corners_c: tuple[float, ...] | None = None


@runtime_checkable
class PlannedSequence(Protocol):
    """A sequence whose steps depend on the run's parameters (one group of steps per corner,
    say); its `steps` stay the union, from which roles and limits are checked."""

    def steps_for(self, parameters: RunParameters) -> tuple[Step, ...]: ...


class StepContext:
    """What a step sees: its instruments (by role), the DUT, the product, and `measure`."""

    __slots__ = (
        "_deadline",
        "_engine",
        "_instruments",
        "_prompt_open",
        "_rules",
        "_unit_from",
        "attempt",
        "completed_units",
        "die",
        "dut_serial",
        "outcomes",
        "product",
        "run_id",
        "station",
        "step",
    )

    def __init__(
        self, engine: RunEngine, run_id: str, dut_serial: str, step: Step, attempt: int
    ) -> None:
        self._engine = engine
        self._instruments = engine.instruments
        self.run_id = run_id
        self.dut_serial = dut_serial
        self.product: Product = engine.limits.product
        self.station: StationConfig = engine.station
        self.step = step
        self.attempt = attempt
        self.outcomes: list[Outcome] = []
        self._deadline = time.monotonic() + step.timeout_s
        self._prompt_open = False
        #: wafer runs: the (column, row) of the die being tested; measurements carry it
        self.die: tuple[int, int] | None = None
        #: units (dies) a resumed run completed before: a step skips them (see `checkpoint`)
        self.completed_units: frozenset[str] = engine._completed_units
        self._unit_from = 0  # outcomes[_unit_from:] belong to the unit in progress
        self._rules: dict[str, tuple[Limit, str | None]] = {}  # see `_rule`

    # --- cancellation ------------------------------------------------------------------------
    def check_cancelled(self) -> None:
        """Raise if the run was aborted or the step has run past its timeout."""
        if self._engine._abort.is_set():
            raise RunAborted(f"during step {self.step.name}")
        if time.monotonic() > self._deadline:
            raise StepTimeout(self.step.name, self.step.timeout_s)

    def sleep(self, seconds: float) -> None:
        """Wait, but come back at once on an abort, and never past the step's deadline."""
        self.check_cancelled()
        wake = time.monotonic() + seconds
        if self._engine._abort.wait(max(0.0, min(wake, self._deadline) - time.monotonic())):
            self.check_cancelled()
        if wake > self._deadline:
            self.check_cancelled()

    # --- instruments ----------------------------------------------------------------------------
    def instrument(self, role: str, capability: type[T]) -> T:
        """The instrument playing `role`, checked against the capability the step needs."""
        self.check_cancelled()
        if role not in self.step.roles:
            raise StationError(f"step {self.step.name!r} uses role {role!r} it did not declare")
        device = self._instruments.get(role)
        if device is None:
            raise StationError(f"the station has no instrument for role {role!r}")
        if not isinstance(device, capability):
            raise StationError(f"{role} ({type(device).__name__}) is not a {capability.__name__}")
        return device

    def path_loss_db(self, path: str, index: int) -> float:
        """The loss in force for `path` at `index`; pass it on as `measure(correction_db=...)`
        and the measurement names the calibration record it came from."""
        return self.station.path_loss_db(path, index)

    @property
    def parameters(self) -> RunParameters:
        """The run's typed parameters (e.g. the temperature corners asked for)."""
        return self._engine.parameters

    @property
    def limits(self) -> LimitsFile:
        """The product's limits file: a part's ratings (a maximum drive current) and its bin
        table. Judging stays the engine's: steps record, they do not compare."""
        return self._engine.limits

    # --- recording ------------------------------------------------------------------------------
    def measure(
        self,
        name: str,
        value: float | int | str,
        *,
        unit: str,
        lane: int | None = None,
        raw_value: float | None = None,
        correction_db: float | None = None,
        die: tuple[int, int] | None = None,
    ) -> Outcome:
        """Record a measurement; the engine judges it against the product's limits.

        `die` (wafer runs) defaults to `ctx.die`, the die the step says it is testing.
        """
        engine = self._engine
        if engine._abort.is_set() or time.monotonic() > self._deadline:
            self.check_cancelled()
        rule = self._rules.get(name)
        if rule is None:
            rule = self._rule(name)
        limit, expected = rule
        if unit != limit.unit:
            raise StationError(f"{name} recorded in {unit!r}, its limit is in {limit.unit!r}")
        if limit.per_lane != (lane is not None):
            raise StationError(
                f"{name} is {'per lane' if limit.per_lane else 'scalar'} in "
                f"{engine.limits.path.name}, recorded with lane={lane}"
            )
        if self.station.offsets and isinstance(value, float):
            value, raw_value, correction_db = self._offset(
                name, lane, value, raw_value, correction_db
            )
        outcome, marginal = limit.judge(value, self.dut_serial)
        self.outcomes.append(outcome)
        die_x, die_y = die or self.die or (None, None)
        event = MeasurementRecorded(
            self.run_id,
            self.step.name,
            name,
            value,
            unit,
            lane,
            outcome,
            marginal,
            limit.low,
            limit.high,
            expected,
            self.attempt,
            raw_value,
            correction_db,
            die_x,
            die_y,
            time.time_ns(),
            # a loss from `path_loss_db` names the calibration record it came from
            getattr(correction_db, "calibration_id", None),
        )
        engine.bus.emit(event)
        engine._measured.append(event)
        return outcome

    def _offset(
        self,
        name: str,
        lane: int | None,
        value: float,
        raw_value: float | None,
        correction_db: float | None,
    ) -> tuple[float, float | None, float | None]:
        """The station's golden-unit offset applied like a path loss: the value less the offset,
        the raw value kept, the offset added into the correction (which keeps naming the path
        calibration record it includes)."""
        offset = self.station.offsets.get(self.station.site or 1, {}).get((name, lane))
        if offset is None:
            return value, raw_value, correction_db
        earlier = correction_db or 0.0
        corrected = earlier - offset
        calibration_id = getattr(correction_db, "calibration_id", None)
        return (
            value - offset,
            value - earlier if raw_value is None else raw_value,  # value = raw + correction
            corrected if calibration_id is None else PathLossDb(corrected, calibration_id),
        )

    def _rule(self, name: str) -> tuple[Limit, str | None]:
        """The limit of a measurement the step declared, and how it reads when not numeric
        (looked up once per step and name: `measure` is called per measured value)."""
        if name not in self.step.measures:
            raise StationError(f"step {self.step.name!r} records {name!r} it did not declare")
        rule = (
            self._engine.limits.limits[name],
            self._engine.expected_text(name, self.dut_serial),
        )
        self._rules[name] = rule
        return rule

    def artefact(
        self, name: str, arrays: dict[str, np.ndarray], *, lane: int | None = None, **metadata: str
    ) -> None:
        """Record arrays behind a measurement (waveform, spectrum, LIV curve, waterfall)."""
        self.check_cancelled()
        self._engine.bus.emit(
            ArtefactRecorded(
                self.run_id,
                self.step.name,
                name,
                {key: np.asarray(array) for key, array in arrays.items()},
                lane,
                {key: str(text) for key, text in metadata.items()},
            )
        )

    def checkpoint(
        self,
        unit: str,
        *,
        die: tuple[int, int] | None = None,
        hard_bin: int | None = None,
        soft_bin: int | None = None,
        bin_name: str | None = None,
    ) -> Outcome:
        """Mark `unit` (a die, a laser) complete: the store commits everything recorded since the
        last checkpoint with it, as at a step's end, and a resumed run lists it in
        `completed_units`. The step's timeout starts again: in a step of many units it bounds
        each unit. Returns the unit's outcome (the worst of its measurements)."""
        self.check_cancelled()
        outcome = worst(self.outcomes[self._unit_from :])
        self._unit_from = len(self.outcomes)
        self._engine.bus.emit(
            UnitCompleted(
                self.run_id,
                self.step.name,
                unit,
                outcome,
                die_x=die[0] if die else None,
                die_y=die[1] if die else None,
                hard_bin=hard_bin,
                soft_bin=soft_bin,
                bin_name=bin_name,
            )
        )
        self._deadline = time.monotonic() + self.step.timeout_s
        return outcome

    def attribute(self, name: str, value: object) -> None:
        """Record a fact that is not judged (firmware version, settle time, ...)."""
        self.check_cancelled()
        self._engine.bus.emit(AttributeRecorded(self.run_id, self.step.name, name, str(value)))

    # --- the operator ---------------------------------------------------------------------------
    def prompt(
        self, message: str, *, choices: tuple[str, ...] = ("OK",), timeout_s: float = 300.0
    ) -> str:
        """Ask the operator and wait; the time waited does not count against the step timeout.

        No answer within `timeout_s` aborts the site (ABORTED, never FAIL).
        """
        self.check_cancelled()
        request = PromptRequested(
            self.run_id, self.step.name, uuid.uuid4().hex[:8], message, choices, timeout_s
        )
        self._engine.bus.emit(request)
        opened = time.monotonic()
        try:
            answer = self._engine.prompter(request, self._engine._abort)
        finally:
            self._deadline += time.monotonic() - opened
        self._engine.bus.emit(
            PromptAnswered(self.run_id, self.step.name, request.prompt_id, answer)
        )
        if answer is None:
            if self._engine._abort.is_set():
                raise RunAborted(f"while asking {message!r}")
            raise PromptTimeout(f"no answer to {message!r} within {timeout_s:g} s")
        self.check_cancelled()
        return answer


@dataclass(frozen=True)
class RunResult:
    run_id: str
    outcome: Outcome
    error: str | None
    measurements: tuple[MeasurementRecorded, ...]
    duration_s: float


class RunEngine:
    """Runs one sequence on one DUT with the instruments it is handed (already opened)."""

    def __init__(
        self,
        *,
        sequence: Sequence,
        limits: LimitsFile,
        station: StationConfig,
        instruments: dict[str, Instrument],
        instrument_records: tuple[InstrumentRecord, ...],
        bus: EventBus,
        operator: str = "unknown",
        mode: str = "production",
        site: int = 1,
        calibration_override: str | None = None,
        prompter: Prompter | None = None,
        shared_roles: frozenset[str] = frozenset(),
        arbiter: Arbiter | None = None,
        parameters: RunParameters | None = None,
    ) -> None:
        if mode not in ("production", "characterisation"):
            raise ValueError(f"mode {mode!r} is not production or characterisation")
        self.sequence = sequence
        self.limits = limits
        self.station = station
        self.instruments = instruments
        self.instrument_records = instrument_records
        self.bus = bus
        self.operator = operator
        self.mode = mode
        self.site = site
        self.calibration_override = calibration_override
        self.prompter: Prompter = prompter or no_operator
        self.shared_roles = shared_roles  # instruments other sites use too
        self.arbiter = arbiter or Arbiter()
        self.parameters = parameters or RunParameters()
        self._abort = threading.Event()
        self._measured: list[MeasurementRecorded] = []
        self._expected: dict[str, str | None] = {}
        self._completed_units: frozenset[str] = frozenset()

    def abort(self) -> None:
        """Ask the run to stop (thread-safe; a signal handler may call it)."""
        self._abort.set()

    def expected_text(self, name: str, dut_serial: str) -> str | None:
        """How a non-numeric limit reads in the record (cached: it is asked per measurement)."""
        text = self._expected.get(name, "")
        if text == "":
            limit = self.limits.limits[name]
            text = (
                limit.describe().replace(DUT_SERIAL, dut_serial)
                if limit.low is None and limit.high is None
                else None
            )
            self._expected[name] = text
        return text

    def run(
        self,
        dut_serial: str,
        run_id: str | None = None,
        *,
        lot_id: str | None = None,
        wafer_id: str | None = None,
        completed_units: Iterable[str] | None = None,
        work_order: str | None = None,
        route_operation: str | None = None,
        genealogy: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run the sequence on `dut_serial`. With `completed_units`, continue the existing run
        `run_id` after a crash: its steps run again and skip those units (dies), which the
        store lists for it (`ResultsStore.completed_units`). Lot, work order, route operation
        and genealogy come from the unit's traveller (`Traveller.run_options()`)."""
        resumed = completed_units is not None
        if resumed and run_id is None:
            raise ValueError("resuming needs the run id of the run to continue")
        self._completed_units = frozenset(completed_units or ())
        run_id = run_id or uuid.uuid4().hex[:16]
        self._expected.clear()
        self._measured = []  # this run's measurements, in order (RunResult)
        started = time.monotonic()
        self.bus.emit(
            RunStarted(
                run_id=run_id,
                sequence=self.sequence.name,
                product=self.limits.product.name,
                dut_serial=dut_serial,
                site=self.site,
                station_id=self.station.station_id,
                operator=self.operator,
                software_version=__version__,
                limits_path=str(self.limits.path),
                limits_sha256=self.limits.sha256,
                mode=self.mode,
                instruments=self.instrument_records,
                limits=tuple(
                    LimitRecord(
                        limit.name,
                        limit.unit,
                        limit.low,
                        limit.high,
                        self.expected_text(limit.name, dut_serial),
                        limit.per_lane,
                        limit.marginal,
                        limit.spec,
                    )
                    for limit in self.limits.limits.values()
                ),
                calibration_override=self.calibration_override,
                lot_id=lot_id,
                wafer_id=wafer_id,
                resumed=resumed,
                work_order=work_order,
                route_operation=route_operation,
                genealogy=tuple(sorted((genealogy or {}).items())),
                jumpers=tuple(
                    JumperRecord(j.name, j.serial, j.mating_count, j.mating_limit)
                    for j in self.station.jumpers.values()
                ),
            )
        )
        outcomes: list[Outcome] = []
        error: str | None = None
        try:
            steps = (
                self.sequence.steps_for(self.parameters)
                if isinstance(self.sequence, PlannedSequence)
                else self.sequence.steps
            )
            for index, step in enumerate(steps):
                if self._abort.is_set():
                    raise RunAborted("aborted before step " + step.name)
                outcome, step_error = self._run_step(run_id, dut_serial, index, step)
                outcomes.append(outcome)
                if outcome in (Outcome.ERROR, Outcome.ABORTED):
                    error = step_error
                    break
                if outcome == Outcome.FAIL and self.mode == "production":
                    break
        except (KeyboardInterrupt, RunAborted) as err:
            outcomes.append(Outcome.ABORTED)
            error = f"aborted: {err}" if str(err) else "aborted by operator"
        finally:
            safe_errors = self._safe_state()
            own = tuple(role for role in self.instruments if role not in self.shared_roles)
            self.bus.emit(SafeStateApplied(run_id, own, safe_errors))
            if safe_errors:
                outcomes.append(Outcome.ERROR)
                error = error or "; ".join(safe_errors)
        outcome = worst(outcomes)
        self.bus.emit(RunEnded(run_id, outcome, error))
        return RunResult(run_id, outcome, error, tuple(self._measured), time.monotonic() - started)

    def _run_step(
        self, run_id: str, dut_serial: str, index: int, step: Step
    ) -> tuple[Outcome, str | None]:
        self.bus.emit(StepStarted(run_id, step.name, index))
        started = time.monotonic()
        outcome, error = Outcome.ERROR, None
        waited_s = retry_s = 0.0
        for attempt in range(1, step.retries + 2):
            attempt_started = time.monotonic()
            with self.arbiter.hold(self._shared_in(step), self._abort) as waited:
                ctx = StepContext(self, run_id, dut_serial, step, attempt)  # timeout starts here
                outcome, error = self._attempt(ctx)
            waited_s += waited
            if outcome != Outcome.ERROR or attempt == step.retries + 1:
                break
            retry_s += time.monotonic() - attempt_started - waited
            self.bus.emit(
                AttributeRecorded(run_id, step.name, f"attempt_{attempt}_error", error or "")
            )
        duration_s = time.monotonic() - started
        self.bus.emit(
            StepEnded(
                run_id,
                step.name,
                index,
                outcome,
                error,
                duration_s,
                waited_s=waited_s,
                retry_s=retry_s,
            )
        )
        return outcome, error

    def _attempt(self, ctx: StepContext) -> tuple[Outcome, str | None]:
        try:
            ctx.step(ctx)
            if time.monotonic() > ctx._deadline:  # finished, but later than it may
                raise StepTimeout(ctx.step.name, ctx.step.timeout_s)
        except RunAborted as err:
            if isinstance(err, PromptTimeout) or not self._abort.is_set():
                return Outcome.ABORTED, f"aborted: {err}"
            raise
        except KeyboardInterrupt:
            raise
        except Exception as err:  # an instrument fault, a timeout, bad data, a bug: all ERROR
            return Outcome.ERROR, _describe(err)
        if not ctx.outcomes:
            return Outcome.PASS, None
        return worst(ctx.outcomes), None

    def _shared_in(self, step: Step) -> list[tuple[str, object]]:
        return [(role, self.instruments[role]) for role in step.roles if role in self.shared_roles]

    def _safe_state(self) -> tuple[str, ...]:
        """Safe state of this site's own instruments; shared ones are left to the multi-site
        runner, which makes them safe when every site has finished."""
        errors = []
        for role, device in self.instruments.items():
            if role in self.shared_roles:
                continue
            try:
                device.safe_state()
            except Exception as err:  # every instrument gets its turn, whatever the others do
                errors.append(f"{role}: safe_state failed: {_describe(err)}")
        return tuple(errors)


class Abortable(Protocol):
    def abort(self) -> None: ...


@contextlib.contextmanager
def abort_on_signals(engine: Abortable) -> Iterator[None]:
    """SIGINT and SIGTERM abort the run cleanly (teardown and safe state still run)."""
    handler = lambda *_: engine.abort()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _describe(err: BaseException) -> str:
    if isinstance(err, InstrumentError | StationError):
        return f"{type(err).__name__}: {err}"
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return f"{type(err).__name__}: {err}{where}"
