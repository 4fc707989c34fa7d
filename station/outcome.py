"""Outcomes of measurements, steps, sites and runs, and how they combine."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"  # a measurement outside its limits: the DUT is bad
    ERROR = "ERROR"  # the station could not measure: never a verdict on the DUT
    ABORTED = "ABORTED"  # the operator or a signal stopped the run

    @property
    def exit_code(self) -> int:
        return {Outcome.PASS: 0, Outcome.FAIL: 1}.get(self, 2)


_SEVERITY = {Outcome.PASS: 0, Outcome.FAIL: 1, Outcome.ERROR: 2, Outcome.ABORTED: 3}


def worst(
    outcomes: list[Outcome] | tuple[Outcome, ...], default: Outcome = Outcome.PASS
) -> Outcome:
    """The combined outcome: ABORTED over ERROR over FAIL over PASS."""
    return max(outcomes, key=_SEVERITY.__getitem__, default=default)
