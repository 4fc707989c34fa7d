"""The append-only event stream of a run. The store, the progress display and reports subscribe.

Events are small frozen dataclasses; a subscriber is any callable taking one. Subscribers are
called in order, on the thread that emitted the event.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from station.outcome import Outcome


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    calibration_override: str | None = None
    started_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: str
    step: str
    index: int
    at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
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
    at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class AttributeRecorded:
    """A recorded fact that is not judged (vendor name, firmware, settle time)."""

    run_id: str
    step: str
    name: str
    value: str
    at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class StepEnded:
    run_id: str
    step: str
    index: int
    outcome: Outcome
    error: str | None
    duration_s: float
    at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: str
    outcome: Outcome
    error: str | None
    at: dt.datetime = field(default_factory=utcnow)


Event = RunStarted | StepStarted | MeasurementRecorded | AttributeRecorded | StepEnded | RunEnded
Subscriber = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        with self._lock:  # one event at a time, in order, whatever thread emits it
            for subscriber in self._subscribers:
                subscriber(event)
