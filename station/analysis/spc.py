"""Statistical process control of a station: individuals and moving-range (I-MR) chart limits and
the four Western Electric rules, evaluated on a whole series at once.

Limits come from a baseline (phase I: the station's golden-unit results when it was qualified)
and are applied to later points (phase II). sigma is estimated from the average moving range of
span 2, sigma = MR-bar / d2 with d2 = 1.128; the MR chart's upper limit is D4 MR-bar, D4 = 3.267
(its lower limit is 0). Zones are counted in sigma from the centre line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.analysis.errors import AnalysisError

D2 = 1.128  # E[range] / sigma for subgroups of 2
D4 = 3.267  # upper MR limit factor for subgroups of 2
RULES = ("rule1", "rule2", "rule3", "rule4")
RULE_TEXT = {
    "rule1": "one point beyond 3 sigma",
    "rule2": "2 of 3 consecutive points beyond 2 sigma on one side",
    "rule3": "4 of 5 consecutive points beyond 1 sigma on one side",
    "rule4": "8 consecutive points on one side of the centre line",
}


@dataclass(frozen=True)
class ImrLimits:
    """Individuals chart centre and limits, and the moving-range chart's, in the values' unit."""

    center: float
    sigma: float
    ucl: float
    lcl: float
    mr_center: float
    mr_ucl: float
    baseline_n: int


def imr_limits(baseline: np.ndarray) -> ImrLimits:
    """Limits of `baseline`, shape (n,), n >= 2, in time order."""
    x = np.asarray(baseline, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise AnalysisError(f"an I-MR baseline needs >= 2 points in one axis, got {x.shape}")
    if not np.isfinite(x).all():
        raise AnalysisError("an I-MR baseline must be finite")
    mr_bar = float(np.mean(np.abs(np.diff(x))))
    if mr_bar == 0.0:
        raise AnalysisError("the I-MR baseline does not vary: no sigma to judge against")
    center, sigma = float(x.mean()), mr_bar / D2
    return ImrLimits(
        center, sigma, center + 3 * sigma, center - 3 * sigma, mr_bar, D4 * mr_bar, x.size
    )


@dataclass(frozen=True)
class RuleViolations:
    """Per point (shape (n,) each): which rule the point completes. A rule marks a point only
    when that point is itself in the pattern's zone, so it marks where the pattern shows."""

    rule1: np.ndarray
    rule2: np.ndarray
    rule3: np.ndarray
    rule4: np.ndarray
    mr_out: np.ndarray  # moving range of this point and the one before above the MR limit

    @property
    def any(self) -> np.ndarray:
        return self.rule1 | self.rule2 | self.rule3 | self.rule4

    def at(self, index: int) -> tuple[str, ...]:
        """The rules point `index` violates."""
        return tuple(rule for rule in RULES if getattr(self, rule)[index])


def _trailing_count(flags: np.ndarray, window: int) -> np.ndarray:
    """How many of each point and the window-1 before it are set (fewer at the start)."""
    total = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    index = np.arange(flags.size)
    return total[index + 1] - total[np.maximum(0, index + 1 - window)]


def western_electric(values: np.ndarray, limits: ImrLimits) -> RuleViolations:
    """The four Western Electric rules on `values`, shape (n,), against `limits`."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise AnalysisError(f"SPC values must be one series, got shape {x.shape}")
    z = (x - limits.center) / limits.sigma
    rules = {"rule1": np.abs(z) > 3}
    for rule, zone, window, needed in (("rule2", 2, 3, 2), ("rule3", 1, 5, 4)):
        above, below = z > zone, z < -zone
        rules[rule] = (above & (_trailing_count(above, window) >= needed)) | (
            below & (_trailing_count(below, window) >= needed)
        )
    rules["rule4"] = (_trailing_count(z > 0, 8) >= 8) | (_trailing_count(z < 0, 8) >= 8)
    mr = np.concatenate(([0.0], np.abs(np.diff(x))))
    return RuleViolations(**rules, mr_out=mr > limits.mr_ucl)
