"""I-MR limits and the Western Electric rules on hand-built series: each rule trips exactly where
the pattern completes and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest

from station.analysis.errors import AnalysisError
from station.analysis.spc import D2, D4, ImrLimits, imr_limits, western_electric

UNIT = ImrLimits(center=0.0, sigma=1.0, ucl=3.0, lcl=-3.0, mr_center=D2, mr_ucl=D4 * D2,
                 baseline_n=20)  # fmt: skip


def quiet(n: int = 20) -> np.ndarray:
    """+0.5, -0.5, ...: inside 1 sigma and alternating sides, so no rule can trip."""
    return np.where(np.arange(n) % 2 == 0, 0.5, -0.5)


def flagged(values: np.ndarray) -> dict[str, list[int]]:
    found = western_electric(values, UNIT)
    return {
        rule: np.flatnonzero(getattr(found, rule)).tolist()
        for rule in ("rule1", "rule2", "rule3", "rule4")
    }


def test_limits_of_a_known_baseline() -> None:
    limits = imr_limits(np.array([10.0, 12.0, 11.0, 13.0, 12.0]))  # MR 2, 1, 2, 1
    assert limits.center == pytest.approx(11.6)
    assert limits.mr_center == pytest.approx(1.5)
    assert limits.sigma == pytest.approx(1.5 / 1.128)
    assert limits.ucl == pytest.approx(11.6 + 3 * 1.5 / 1.128)
    assert limits.lcl == pytest.approx(11.6 - 3 * 1.5 / 1.128)
    assert limits.mr_ucl == pytest.approx(3.267 * 1.5)
    assert limits.baseline_n == 5


def test_a_quiet_series_trips_nothing() -> None:
    assert flagged(quiet()) == {"rule1": [], "rule2": [], "rule3": [], "rule4": []}


def test_rule1_one_point_beyond_3_sigma() -> None:
    x = quiet()
    x[6], x[12] = 3.5, -3.2
    assert flagged(x) == {"rule1": [6, 12], "rule2": [], "rule3": [], "rule4": []}


def test_rule2_two_of_three_beyond_2_sigma_on_one_side() -> None:
    x = quiet()
    x[5], x[7] = 2.5, 2.4  # with -0.5 between them
    x[12], x[13] = -2.5, -2.2
    x[16], x[18] = 2.5, -2.5  # beyond 2 sigma but on opposite sides: no pattern
    assert flagged(x) == {"rule1": [], "rule2": [7, 13], "rule3": [], "rule4": []}


def test_rule3_four_of_five_beyond_1_sigma_on_one_side() -> None:
    x = quiet()
    x[4], x[5], x[7], x[8] = 1.5, 1.2, 1.3, 1.4  # x[6] = +0.5 stays inside 1 sigma
    x[6] = -0.5  # and on the other side, so no run of 8 either
    x[13], x[14], x[15] = -1.5, -1.5, -1.5  # only 3 of 5 below: not a pattern
    assert flagged(x) == {"rule1": [], "rule2": [], "rule3": [8], "rule4": []}


def test_rule4_eight_in_a_row_on_one_side() -> None:
    x = quiet()
    x[2:10] = 0.4  # x[1] = -0.5 before the run
    x[10] = 0.0  # on the centre line: on neither side, so it ends the run
    x[12:19] = -0.3  # with x[11] = -0.5: 8 below, 11..18
    x[19] = 0.5
    assert flagged(x) == {"rule1": [], "rule2": [], "rule3": [], "rule4": [9, 18]}


def test_rules_combine_and_moving_range_is_checked() -> None:
    x = quiet()
    x[10] = 4.0
    found = western_electric(x, UNIT)
    assert found.at(10) == ("rule1",)
    assert found.any.nonzero()[0].tolist() == [10]
    # MR limit 3.267 * 1.128 = 3.685: the jumps into and out of x[10] (3.5 and 4.5) exceed it
    assert np.flatnonzero(found.mr_out).tolist() == [10, 11]


def test_a_drift_is_caught_after_it_starts() -> None:
    rng = np.random.default_rng(2)
    baseline = 1.5 + 0.05 * rng.standard_normal(30)
    limits = imr_limits(baseline)
    later = 1.5 + 0.05 * rng.standard_normal(40) + np.r_[np.zeros(10), 0.02 * np.arange(1, 31)]
    first = int(np.argmax(western_electric(later, limits).any))
    assert not western_electric(baseline, limits).any.any()  # this baseline is in control
    assert 10 < first < 20  # after the drift starts (index 10), within 10 steps of 0.5 sigma


@pytest.mark.parametrize(
    ("baseline", "message"),
    [([1.0], ">= 2 points"), ([1.0, np.nan], "finite"), ([2.0, 2.0, 2.0], "does not vary")],
)
def test_bad_baselines_are_refused(baseline: list[float], message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        imr_limits(np.array(baseline))
