"""Steps and sequences: plain functions declared with the roles they use, the measurements they
record, a timeout and whether they may be retried. Loaded by name from the `sequences` package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from station.errors import InputError

if TYPE_CHECKING:
    from station.engine import StepContext


@dataclass(frozen=True)
class Step:
    func: Callable[[StepContext], None]
    name: str
    roles: tuple[str, ...]
    measures: tuple[str, ...]
    timeout_s: float
    retries: int  # extra attempts after an ERROR (never after a FAIL)
    description: str

    def __call__(self, ctx: StepContext) -> None:
        self.func(ctx)


def step(
    *,
    roles: tuple[str, ...] = (),
    measures: tuple[str, ...] = (),
    timeout_s: float = 60.0,
    retries: int = 0,
) -> Callable[[Callable[[StepContext], None]], Step]:
    """Declare a step function."""
    if timeout_s <= 0 or retries < 0:
        raise ValueError("timeout_s must be > 0 and retries >= 0")

    def wrap(func: Callable[[StepContext], None]) -> Step:
        doc = (func.__doc__ or "").strip().splitlines()
        return Step(
            func,
            func.__name__,
            tuple(roles),
            tuple(measures),
            float(timeout_s),
            retries,
            doc[0] if doc else "",
        )

    return wrap


@dataclass(frozen=True)
class Sequence:
    name: str
    description: str
    products: tuple[str, ...]
    steps: tuple[Step, ...]
    bench: str = "module"  # the kind of station it runs on ("module", "wafer", "els")

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"sequence {self.name!r} has duplicate step names")

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(role for s in self.steps for role in s.roles))

    @property
    def measurements(self) -> set[str]:
        return {m for s in self.steps for m in s.measures}


def load_sequence(name: str) -> Sequence:
    """The `SEQUENCE` of module `sequences.<name>` (dashes in `name` read as underscores)."""
    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        raise InputError("--sequence", "sequence", name, "is not a sequence name")
    try:
        module = importlib.import_module(f"sequences.{module_name}")
    except ModuleNotFoundError as err:
        if err.name != f"sequences.{module_name}":
            raise
        raise InputError("--sequence", "sequence", name, "no such sequence") from None
    sequence = getattr(module, "SEQUENCE", None)
    if not isinstance(sequence, Sequence):
        raise InputError("--sequence", "sequence", name, "module defines no SEQUENCE")
    return sequence
