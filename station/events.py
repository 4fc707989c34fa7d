"""The append-only event stream of a run. The store, the progress display and reports subscribe.

Events are small frozen dataclasses stamped with `time.time_ns()` (cheap enough to stamp every
measurement); a subscriber is any callable taking one. Subscribers are called in order, one event
at a time, on the thread that emitted it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from station.outcome import Outcome


def ns_to_datetime(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)


@dataclass(frozen=True, slots=True)
class InstrumentRecord:
    role: str
    driver: str
    resource: str
    manufacturer: str
    model: str
    serial_number: str
    firmware: str
    calibration_due: dt.date | None


@dataclass(frozen=True, slots=True)
class LimitRecord:
    """A limit as the run applied it (with the scanned serial filled in)."""

    name: str
    unit: str
    low: float | None
    high: float | None
    expected: str | None  # how a non-numeric limit reads, e.g. "= SIM0001", "in {24, 25}"
    per_lane: bool
    marginal: float | None
    spec: str


@dataclass(frozen=True, slots=True)
class JumperRecord:
    """A DUT-side station jumper of the run's site: every run mates it once."""

    name: str
    serial: str
    mating_count: int  # as configured: where the store's counter starts for a new serial
    mating_limit: int


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    sequence: str
    product: str
    dut_serial: str
    site: int
    station_id: str
    operator: str
    software_version: str
    limits_path: str
    limits_sha256: str
    mode: str
    instruments: tuple[InstrumentRecord, ...]
    limits: tuple[LimitRecord, ...] = ()
    calibration_override: str | None = None
    lot_id: str | None = None  # lot / work order the DUT belongs to, where known
    wafer_id: str | None = None  # wafer runs: the wafer on the chuck
    resumed: bool = False  # the run `run_id` already exists: it continues after a crash
    at_ns: int = field(default_factory=time.time_ns)
    # the traveller (station.mes.traveller): work order, route operation, and the unit's parts
    # as (part role, part identity) pairs, e.g. ("laser_3", "ELS-W12-L0457")
    work_order: str | None = None
    route_operation: str | None = None
    genealogy: tuple[tuple[str, str], ...] = ()
    jumpers: tuple[JumperRecord, ...] = ()  # the site's DUT-side jumpers this run mates


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: str
    step: str
    index: int
    at_ns: int = field(default_factory=time.time_ns)


# Not frozen, unlike the other events: a frozen dataclass sets each of its 17 fields through
# object.__setattr__ (2.2 us per event against 0.4 us), and this one is made per measurement.
# Subscribers treat it as immutable all the same.
@dataclass(slots=True)
class MeasurementRecorded:
    run_id: str
    step: str
    name: str
    value: float | int | str
    unit: str
    lane: int | None
    outcome: Outcome
    marginal: bool
    low_limit: float | None
    high_limit: float | None
    expected: str | None
    attempt: int = 1
    raw_value: float | None = None  # before path-loss correction, where one was applied
    correction_db: float | None = None
    die_x: int | None = None  # wafer runs: the die the measurement belongs to
    die_y: int | None = None
    at_ns: int = field(default_factory=time.time_ns)
    calibration_id: int | None = None  # the path calibration record `correction_db` came from


@dataclass(frozen=True, slots=True)
class ArtefactRecorded:
    """Arrays behind a measurement (waveform, spectrum, LIV curve, BER waterfall)."""

    run_id: str
    step: str
    name: str
    arrays: dict[str, np.ndarray]
    lane: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    at_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class AttributeRecorded:
    """A recorded fact that is not judged (vendor name, firmware, settle time)."""

    run_id: str
    step: str
    name: str
    value: str
    at_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class PromptRequested:
    run_id: str
    step: str
    prompt_id: str
    message: str
    choices: tuple[str, ...]
    timeout_s: float
    at_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class PromptAnswered:
    run_id: str
    step: str
    prompt_id: str
    answer: str | None  # None: the prompt timed out
    at_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class StepEnded:
    run_id: str
    step: str
    index: int
    outcome: Outcome
    error: str | None
    duration_s: float
    at_ns: int = field(default_factory=time.time_ns)
    # of duration_s: waiting for the engine to hand over shared instruments (every attempt),
    # and the attempts that were retried (their own waiting left out)
    waited_s: float = 0.0
    retry_s: float = 0.0


@dataclass(frozen=True, slots=True)
class UnitCompleted:
    """A unit of a step (a die, a laser) is complete: what was recorded since the last one is
    committed with it, and a resumed run skips it. Wafer dies carry their die and bins."""

    run_id: str
    step: str
    unit: str  # the key a resumed run is told about (a die: "column,row")
    outcome: Outcome  # the worst of the unit's measurements (PASS when it recorded none)
    die_x: int | None = None
    die_y: int | None = None
    hard_bin: int | None = None
    soft_bin: int | None = None
    bin_name: str | None = None
    at_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class SafeStateApplied:
    """Every instrument of the run was told to go safe; `errors` names any that failed."""

    run_id: str
    roles: tuple[str, ...]
    errors: tuple[str, ...]
    at_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: str
    outcome: Outcome
    error: str | None
    at_ns: int = field(default_factory=time.time_ns)


Event = (RunStarted | StepStarted | MeasurementRecorded | ArtefactRecorded | AttributeRecorded
         | PromptRequested | PromptAnswered | StepEnded | UnitCompleted | SafeStateApplied
         | RunEnded)
Subscriber = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        with self._lock:  # one event at a time, in order, whatever thread emits it
            for subscriber in self._subscribers:
                subscriber(event)
