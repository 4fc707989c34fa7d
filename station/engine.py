"""The sequence engine: runs steps in order with timeouts and retries, judges every measurement
against the limits, emits the event stream, and puts every instrument in its safe state on every
exit path (normal end, FAIL, exception, step timeout, abort by signal).
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drivers.errors import InstrumentError
from drivers.interfaces import Instrument
from station import __version__
from station.config import StationConfig
from station.errors import RunAborted, StationError, StepTimeout
from station.events import (
    AttributeRecorded,
    EventBus,
    InstrumentRecord,
    MeasurementRecorded,
    RunEnded,
    RunStarted,
    StepEnded,
    StepStarted,
)
from station.limits import DUT_SERIAL, LimitsFile, Product
from station.outcome import Outcome, worst
from station.sequence import Sequence, Step

T = TypeVar("T")

#: How long the engine waits for a cancelled step's thread to come back from its current I/O.
CANCEL_GRACE_S = 10.0


class StepCancelled(StationError):
    """Raised inside a step when the engine has given up on it (timeout or abort)."""


@dataclass
class StepContext:
    """What a step sees: its instruments (by role), the DUT, the product, and `measure`."""

    run_id: str
    dut_serial: str
    product: Product
    station: StationConfig
    step: Step
    attempt: int
    _engine: RunEngine
    _instruments: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)
    _cancelled: threading.Event = field(default_factory=threading.Event)

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

    def measure(
        self,
        name: str,
        value: float | int | str,
        *,
        unit: str,
        lane: int | None = None,
        raw_value: float | None = None,
        correction_db: float | None = None,
    ) -> Outcome:
        """Record a measurement; the engine judges it against the product's limits."""
        self.check_cancelled()
        if name not in self.step.measures:
            raise StationError(f"step {self.step.name!r} records {name!r} it did not declare")
        limit = self._engine.limits.limits[name]
        if unit != limit.unit:
            raise StationError(f"{name} recorded in {unit!r}, its limit is in {limit.unit!r}")
        if limit.per_lane != (lane is not None):
            raise StationError(
                f"{name} is {'per lane' if limit.per_lane else 'scalar'} in "
                f"{self._engine.limits.path.name}, recorded with lane={lane}"
            )
        outcome, marginal = limit.judge(value, self.dut_serial)
        self.outcomes.append(outcome)
        expected = (
            limit.describe().replace(DUT_SERIAL, self.dut_serial)
            if limit.low is None and limit.high is None
            else None
        )
        self._engine.bus.emit(
            MeasurementRecorded(
                run_id=self.run_id,
                step=self.step.name,
                name=name,
                value=value,
                unit=unit,
                lane=lane,
                outcome=outcome,
                marginal=marginal,
                low_limit=limit.low,
                high_limit=limit.high,
                expected=expected,
                attempt=self.attempt,
                raw_value=raw_value,
                correction_db=correction_db,
            )
        )
        return outcome

    def attribute(self, name: str, value: object) -> None:
        """Record a fact that is not judged (firmware version, settle time, ...)."""
        self.check_cancelled()
        self._engine.bus.emit(AttributeRecorded(self.run_id, self.step.name, name, str(value)))

    def path_loss_db(self, path: str, index: int) -> float:
        return self.station.path_loss_db(path, index)

    def check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise StepCancelled(f"step {self.step.name!r} was cancelled")

    def sleep(self, seconds: float) -> None:
        """Wait, but come back at once when the step is cancelled."""
        if self._cancelled.wait(seconds):
            raise StepCancelled(f"step {self.step.name!r} was cancelled")


@dataclass(frozen=True)
class RunResult:
    run_id: str
    outcome: Outcome
    error: str | None
    measurements: tuple[MeasurementRecorded, ...]
    duration_s: float


class _Collector:
    def __init__(self) -> None:
        self.measurements: list[MeasurementRecorded] = []

    def __call__(self, event: object) -> None:
        if isinstance(event, MeasurementRecorded):
            self.measurements.append(event)


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
        self._abort = threading.Event()

    def abort(self) -> None:
        """Ask the run to stop (thread-safe; a signal handler may call it)."""
        self._abort.set()

    def run(self, dut_serial: str, run_id: str | None = None) -> RunResult:
        run_id = run_id or uuid.uuid4().hex[:16]
        collector = _Collector()
        self.bus.subscribe(collector)
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
                calibration_override=self.calibration_override,
            )
        )
        outcomes: list[Outcome] = []
        error: str | None = None
        try:
            for index, step in enumerate(self.sequence.steps):
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
            safe_error = self._safe_state()
            if safe_error:
                outcomes.append(Outcome.ERROR)
                error = error or safe_error
        outcome = worst(outcomes)
        self.bus.emit(RunEnded(run_id, outcome, error))
        return RunResult(
            run_id, outcome, error, tuple(collector.measurements), time.monotonic() - started
        )

    def _run_step(
        self, run_id: str, dut_serial: str, index: int, step: Step
    ) -> tuple[Outcome, str | None]:
        self.bus.emit(StepStarted(run_id, step.name, index))
        started = time.monotonic()
        outcome, error = Outcome.ERROR, None
        for attempt in range(1, step.retries + 2):
            ctx = StepContext(
                run_id,
                dut_serial,
                self.limits.product,
                self.station,
                step,
                attempt,
                self,
                self.instruments,
            )
            outcome, error = self._attempt(ctx)
            if outcome != Outcome.ERROR or attempt == step.retries + 1:
                break
            self.bus.emit(
                AttributeRecorded(run_id, step.name, f"attempt_{attempt}_error", error or "")
            )
        self.bus.emit(
            StepEnded(run_id, step.name, index, outcome, error, time.monotonic() - started)
        )
        return outcome, error

    def _attempt(self, ctx: StepContext) -> tuple[Outcome, str | None]:
        failure: list[BaseException] = []

        def target() -> None:
            try:
                ctx.step(ctx)
            except BaseException as err:  # reported to the engine thread, judged there
                failure.append(err)

        worker = threading.Thread(target=target, name=f"step-{ctx.step.name}", daemon=True)
        worker.start()
        deadline = time.monotonic() + ctx.step.timeout_s
        try:
            while worker.is_alive():
                if self._abort.is_set():
                    raise RunAborted(f"during step {ctx.step.name}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    ctx._cancelled.set()
                    worker.join(CANCEL_GRACE_S)
                    return Outcome.ERROR, str(StepTimeout(ctx.step.name, ctx.step.timeout_s))
                worker.join(min(remaining, 0.05))
        except (KeyboardInterrupt, RunAborted):
            ctx._cancelled.set()
            worker.join(CANCEL_GRACE_S)
            raise
        if failure:
            err = failure[0]
            if isinstance(err, KeyboardInterrupt):
                raise err
            return Outcome.ERROR, _describe(err)
        if not ctx.outcomes:
            return Outcome.PASS, None
        return worst(ctx.outcomes), None

    def _safe_state(self) -> str | None:
        errors = []
        for role, device in self.instruments.items():
            try:
                device.safe_state()
            except Exception as err:  # every instrument gets its turn, whatever the others do
                errors.append(f"{role}: safe_state failed: {_describe(err)}")
        return "; ".join(errors) or None


def _describe(err: BaseException) -> str:
    if isinstance(err, InstrumentError | StationError):
        return f"{type(err).__name__}: {err}"
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return f"{type(err).__name__}: {err}{where}"
