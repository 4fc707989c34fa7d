"""Errors of the station layer: one root, typed subclasses that also inherit the matching builtin.

Input errors carry the file, field and value so the CLI can print one line that names them.
"""

from __future__ import annotations

from pathlib import Path


class StationError(Exception):
    """Root of every error the station raises."""


class InputError(StationError, ValueError):
    """Bad input: a config, limits file, argument or serial that cannot be used."""

    def __init__(self, source: str | Path, field: str, value: object, problem: str) -> None:
        self.source = str(source)
        self.field = field
        self.value = value
        self.problem = problem
        shown = repr(value) if not isinstance(value, str) or value else "''"
        super().__init__(f"{self.source}: {field} = {shown}: {problem}")


class CalibrationExpired(StationError):
    """An instrument is past its calibration due date and no engineering override was given."""


class StepTimeout(StationError, TimeoutError):
    """A step ran past its declared timeout."""

    def __init__(self, step: str, timeout_s: float) -> None:
        super().__init__(f"step {step!r} ran past its {timeout_s:g} s timeout")
        self.step = step
        self.timeout_s = timeout_s


class RunAborted(StationError):
    """The operator or a signal aborted the run."""


class SimBenchError(StationError, RuntimeError):
    """The simulated bench process could not be started."""
