"""Known-answer and property tests of binning, yield, Pareto, capability and wafer geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.analysis.errors import AnalysisError
from station.analysis.yields import (
    BinRule,
    assign_bins,
    capability,
    cpk,
    edge_exclusion_mask,
    pareto,
    ppk,
    radial_zone,
    wafer_map,
    yield_by,
)


def small_results() -> pd.DataFrame:
    """Two wafers, six dies, measurements il (two lanes) and q.

    die (wafer, x)  il lane 0/1     q        status
    (1, 0)          PASS PASS       PASS     PASS
    (1, 1)          FAIL FAIL       PASS     FAIL  (il twice: counts once in the Pareto)
    (1, 2)          PASS PASS       ERROR    ERROR
    (1, 3)          FAIL PASS       FAIL     FAIL
    (2, 0)          PASS PASS       PASS     PASS
    (2, 1)          PASS ERROR      FAIL     ERROR (error wins over fail)
    """
    rows = []
    table = {
        (1, 0): ("PASS", "PASS", "PASS"),
        (1, 1): ("FAIL", "FAIL", "PASS"),
        (1, 2): ("PASS", "PASS", "ERROR"),
        (1, 3): ("FAIL", "PASS", "FAIL"),
        (2, 0): ("PASS", "PASS", "PASS"),
        (2, 1): ("PASS", "ERROR", "FAIL"),
    }
    for (wafer, x), (il0, il1, q) in table.items():
        for measurement, lane, outcome in (("il", 0, il0), ("il", 1, il1), ("q", 0, q)):
            rows.append(
                {
                    "lot": "L1",
                    "wafer": wafer,
                    "die_x": x,
                    "die_y": 0,
                    "step": "optical",
                    "measurement": measurement,
                    "lane": lane,
                    "outcome": outcome,
                }
            )
    return pd.DataFrame(rows)


BIN_TABLE = [
    BinRule(1, 1, "PASS", "all_pass"),
    BinRule(9, 90, "ERROR", "any_error"),
    BinRule(2, 21, "IL", "any_fail", ("il",)),
    BinRule(3, 31, "Q", "any_fail", ("q",)),
]


def test_yield_by_wafer_hand_computed() -> None:
    table = yield_by(small_results(), ["lot", "wafer"])

    expected = pd.DataFrame(
        {
            "lot": ["L1", "L1"],
            "wafer": [1, 2],
            "n_units": [4, 2],
            "n_pass": [1, 1],
            "n_fail": [2, 0],
            "n_error": [1, 1],
            "yield_fraction": [0.25, 0.5],
            "yield_tested_fraction": [1 / 3, 1.0],
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)


def test_yield_by_measurement_and_overall() -> None:
    per_measurement = yield_by(small_results(), ["measurement"]).set_index("measurement")
    # il: dies 1,3 fail, die (2,1) errors; q: dies 3 and (2,1) fail, die 2 errors.
    assert per_measurement.loc["il", ["n_units", "n_pass", "n_fail", "n_error"]].tolist() == [
        6,
        3,
        2,
        1,
    ]
    assert per_measurement.loc["q", ["n_pass", "n_fail", "n_error"]].tolist() == [3, 2, 1]
    overall = yield_by(small_results(), [])
    assert overall[["n_units", "n_pass", "n_fail", "n_error"]].iloc[0].tolist() == [6, 2, 2, 2]
    assert overall["yield_fraction"].iloc[0] == pytest.approx(2 / 6)


def test_pareto_hand_computed() -> None:
    table = pareto(small_results())

    # il fails on dies (1,1) (two lanes, once) and (1,3); q on (1,3) and (2,1): a tie, by name.
    assert table["measurement"].tolist() == ["il", "q"]
    assert table["count"].tolist() == [2, 2]
    np.testing.assert_allclose(table["percent"], [50.0, 50.0])
    np.testing.assert_allclose(table["cumulative_percent"], [50.0, 100.0])


def test_pareto_sorted_with_cumulative_percent() -> None:
    results = pd.DataFrame(
        {
            "lot": "L",
            "wafer": 1,
            "die_x": np.arange(10),
            "die_y": 0,
            "measurement": ["a", "b", "b", "c", "c", "c", "c", "a", "d", "d"],
            "outcome": ["FAIL"] * 8 + ["PASS", "ERROR"],
        }
    )
    table = pareto(results)

    assert table["measurement"].tolist() == ["c", "a", "b"]
    assert table["count"].tolist() == [4, 2, 2]
    np.testing.assert_allclose(table["percent"], [50.0, 25.0, 25.0])
    np.testing.assert_allclose(table["cumulative_percent"], [50.0, 75.0, 100.0])
    assert pareto(results.assign(outcome="PASS")).empty


def test_bins_first_matching_rule_wins() -> None:
    bins = assign_bins(small_results(), BIN_TABLE)

    assert bins.index.names == ["lot", "wafer", "die_x", "die_y"]
    assert bins["bin_name"].tolist() == ["PASS", "IL", "ERROR", "IL", "PASS", "ERROR"]
    assert bins["hard_bin"].tolist() == [1, 2, 9, 2, 1, 9]
    assert bins["soft_bin"].tolist() == [1, 21, 90, 21, 1, 90]

    # Failures ahead of errors: die (2,1) fails q and errors on il, so it now bins Q.
    fail_first = [BIN_TABLE[0], BIN_TABLE[2], BIN_TABLE[3], BIN_TABLE[1]]
    assert assign_bins(small_results(), fail_first)["bin_name"].tolist() == [
        "PASS",
        "IL",
        "ERROR",
        "IL",
        "PASS",
        "Q",
    ]


def test_unmatched_units_stay_unbinned_and_rules_may_be_mappings() -> None:
    wide = pd.DataFrame(
        {"il": ["PASS", "FAIL", None, "PASS"], "q": ["PASS", "PASS", "PASS", "FAIL"]},
        index=pd.Index([10, 11, 12, 13], name="die"),
    )
    table = [
        {"hard_bin": 1, "soft_bin": 1, "name": "PASS", "when": "all_pass"},
        {"hard_bin": 5, "soft_bin": 50, "name": "MISSING", "when": "any_missing"},
        {"hard_bin": 2, "soft_bin": 21, "name": "IL", "when": "any_fail", "measurements": ["il"]},
    ]
    bins = assign_bins(wide, table)

    assert bins.index.tolist() == [10, 11, 12, 13]
    assert bins["bin_name"].tolist() == ["PASS", "IL", "MISSING", "UNBINNED"]
    assert bins["hard_bin"].isna().tolist() == [False, False, False, True]
    catch_all = [*table, {"hard_bin": 8, "soft_bin": 80, "name": "OTHER", "when": "always"}]
    assert assign_bins(wide, catch_all)["hard_bin"].tolist() == [1, 2, 5, 8]


def test_categorical_columns_with_unused_categories() -> None:
    results = small_results()
    results["measurement"] = pd.Categorical(results["measurement"], categories=["il", "q", "x"])
    results["lot"] = pd.Categorical(results["lot"], categories=["L0", "L1"])

    assert assign_bins(results, BIN_TABLE)["bin_name"].tolist() == [
        "PASS",
        "IL",
        "ERROR",
        "IL",
        "PASS",
        "ERROR",
    ]
    assert yield_by(results, ["lot", "wafer"])["n_pass"].tolist() == [1, 1]


def test_bad_bin_input_is_rejected() -> None:
    with pytest.raises(AnalysisError, match="not in the data"):
        assign_bins(small_results(), [BinRule(2, 2, "X", "any_fail", ("nope",))])
    with pytest.raises(AnalysisError, match="outcome holds"):
        assign_bins(small_results().assign(outcome="MAYBE"), BIN_TABLE)
    with pytest.raises(AnalysisError, match="when"):
        BinRule(1, 1, "PASS", "sometimes")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="lacks columns"):
        yield_by(small_results().drop(columns="wafer"), ["lot"])


@settings(max_examples=40, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["PASS", "FAIL", "ERROR"]), min_size=3, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_row_order_changes_neither_yield_nor_bins(outcomes: list[str], seed: int) -> None:
    n = len(outcomes)
    results = pd.DataFrame(
        {
            "lot": "L",
            "wafer": np.arange(n) % 2,
            "die_x": np.arange(n) // 6,
            "die_y": 0,
            "measurement": np.array(["il", "q", "r"])[np.arange(n) % 3],
            "outcome": outcomes,
        }
    )
    shuffled = results.sample(frac=1.0, random_state=np.random.RandomState(seed % 2**32))

    pd.testing.assert_frame_equal(
        yield_by(shuffled, ["wafer", "measurement"]), yield_by(results, ["wafer", "measurement"])
    )
    catch_all = [*BIN_TABLE[:2], BinRule(4, 40, "FAIL", "any_fail")]
    pd.testing.assert_frame_equal(
        assign_bins(shuffled, catch_all).sort_index(), assign_bins(results, catch_all).sort_index()
    )
    pd.testing.assert_frame_equal(pareto(shuffled), pareto(results))


def standardised(size: int, rng: np.random.Generator) -> np.ndarray:
    """Values with sample mean exactly 0 and sample std (ddof=1) exactly 1."""
    z = rng.normal(size=size)
    return (z - z.mean()) / z.std(ddof=1)


def test_capability_exact_on_constructed_data() -> None:
    rng = np.random.default_rng(0)
    # Eight subgroups of 50: offsets shift them apart, each has a std of exactly 0.5.
    offsets = np.repeat(np.linspace(-1.0, 1.0, 8), 50)
    within = np.concatenate([standardised(50, rng) for _ in range(8)])
    values = 10.0 + offsets - offsets.mean() + 0.5 * within
    subgroup = np.repeat(np.arange(8), 50)

    result = capability(values, 8.0, 13.0, subgroup=subgroup)

    assert result.mean == pytest.approx(10.0, abs=1e-12)
    assert result.sigma_within == pytest.approx(0.5, rel=1e-12)
    assert result.cpk == pytest.approx(2.0 / 1.5, rel=1e-12)  # (10 - 8) / (3 * 0.5)
    overall = np.std(values, ddof=1)
    assert result.ppk == pytest.approx(2.0 / (3.0 * overall), rel=1e-12)
    assert ppk(values, 8.0, 13.0) == pytest.approx(result.ppk, rel=1e-12)


def test_moving_range_sigma_on_alternating_series() -> None:
    # 10 +- 0.2 alternating: every moving range is 0.4, so sigma = 0.4 / 1.128379.
    values = 10.0 + 0.2 * (-1.0) ** np.arange(200)
    sigma = 0.4 / 1.128379
    assert cpk(values, 9.0, 12.0) == pytest.approx(1.0 / (3.0 * sigma), rel=1e-6)


def test_cpk_and_ppk_on_large_normal_sample() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 1.0, size=(200_000, 3))
    subgroup = np.repeat(np.arange(400), 500)
    lsl = np.array([7.0, 7.0, np.nan])
    usl = np.array([14.0, np.nan, 14.0])

    result = capability(values, lsl, usl, subgroup=subgroup)

    # Analytic: min(14 - 10, 10 - 7) / 3 = 1; lower only 3/3 = 1; upper only 4/3.
    # Standard error of Cpk at n = 2e5 is about 0.002.
    np.testing.assert_allclose(result.cpk, [1.0, 1.0, 4.0 / 3.0], atol=0.01)
    np.testing.assert_allclose(result.ppk, [1.0, 1.0, 4.0 / 3.0], atol=0.01)
    np.testing.assert_allclose(cpk(values, lsl, usl), [1.0, 1.0, 4.0 / 3.0], atol=0.01)
    assert np.isnan(cpk(values[:, 0], np.nan, None))


def test_capability_ignores_nan_values() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(5.0, 0.1, size=(1000, 2))
    holed = values.copy()
    holed[::10, 1] = np.nan
    subgroup = np.repeat(np.arange(10), 100)

    result = capability(holed, 4.5, 5.5, subgroup=subgroup)
    clean = capability(
        values[np.arange(1000) % 10 != 0, 1],
        4.5,
        5.5,
        subgroup=subgroup[np.arange(1000) % 10 != 0],
    )

    assert result.cpk[1] == pytest.approx(clean.cpk, rel=1e-12)
    assert result.ppk[1] == pytest.approx(clean.ppk, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-3, 1e3),
    offset=st.floats(-1e3, 1e3),
)
def test_cpk_invariant_to_order_and_to_scaling_with_the_limits(
    seed: int, scale: float, offset: float
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, size=(120, 3)) + rng.normal(0.0, 0.5, size=(1, 3))
    subgroup = np.repeat(np.arange(6), 20)
    lsl = np.array([-3.0, -4.0, np.nan])
    usl = np.array([3.0, np.nan, 2.5])
    base = capability(values, lsl, usl, subgroup=subgroup)

    order = rng.permutation(120)
    shuffled = capability(values[order], lsl, usl, subgroup=subgroup[order])
    moved = capability(
        scale * values + offset, scale * lsl + offset, scale * usl + offset, subgroup=subgroup
    )

    for other in (shuffled, moved):
        np.testing.assert_allclose(other.cpk, base.cpk, rtol=1e-9)
        np.testing.assert_allclose(other.ppk, base.ppk, rtol=1e-9)


def test_bad_capability_input_is_rejected() -> None:
    with pytest.raises(AnalysisError, match="at least 2"):
        cpk(np.array([1.0]), 0.0, 2.0)
    with pytest.raises(AnalysisError, match="usl"):
        cpk(np.ones((5, 3)), 0.0, np.ones(2))
    with pytest.raises(AnalysisError, match="subgroup"):
        cpk(np.arange(5.0), 0.0, 9.0, subgroup=np.zeros(4))


def test_wafer_map_places_values_and_keeps_the_retest() -> None:
    result = wafer_map([0, 1, 2, 1], [0, 0, 1, 0], [1.0, 2.0, 3.0, 5.0])

    np.testing.assert_array_equal(result.x, [0, 1, 2])
    np.testing.assert_array_equal(result.y, [0, 1])
    np.testing.assert_array_equal(result.values, [[1.0, 5.0, np.nan], [np.nan, np.nan, 3.0]])
    wide = wafer_map([0], [0], [7.0], x_range=(-1, 1), y_range=(0, 0))
    np.testing.assert_array_equal(wide.values, [[np.nan, 7.0, np.nan]])
    with pytest.raises(AnalysisError, match="integer"):
        wafer_map([0.5], [0], [1.0])


def test_edge_exclusion_hand_computed() -> None:
    # 300 mm wafer, 10 mm dies centred on die (0, 0), 3 mm exclusion: usable radius 147 mm.
    # (14, 0): far corner (145, 5) -> 145.09 kept; (14, 3): (145, 35) -> 149.2 out;
    # (10, 10): (105, 105) -> 148.5 out; (9, 10): (95, 105) -> 141.6 kept; (15, 0) -> 155 out.
    die_x = np.array([0, 14, 14, 10, 9, 15])
    die_y = np.array([0, 0, 3, 10, 10, 0])

    excluded = edge_exclusion_mask(die_x, die_y, 10.0, 10.0, 300.0, 3.0)

    assert excluded.tolist() == [False, False, True, True, False, True]
    # Centre between dies: die (14, 0) now sits at 145 mm, far corner (150, 5) -> out.
    shifted = edge_exclusion_mask(die_x, die_y, 10.0, 10.0, 300.0, 3.0, centre_die_x=-0.5)
    assert shifted.tolist()[:2] == [False, True]


def test_radial_zones_equal_area_by_default() -> None:
    # R = 150 mm: equal-area edges at 150 sqrt(1/3) = 86.6 mm and 150 sqrt(2/3) = 122.5 mm.
    zones = radial_zone([0, 8, 9, 12, 13, 16], [0, 0, 0, 0, 0, 0], 10.0, 10.0, 300.0)

    assert list(zones.categories) == ["centre", "middle", "edge"]
    assert zones.ordered
    assert zones.tolist()[:5] == ["centre", "centre", "middle", "middle", "edge"]
    assert pd.isna(zones[5])
    custom = radial_zone(
        [0, 5, 10], [0, 0, 0], 10.0, 10.0, 300.0, zone_edges_mm=[40.0], zone_names=("in", "out")
    )
    assert custom.tolist() == ["in", "out", "out"]
    with pytest.raises(AnalysisError, match="zone_edges_mm"):
        radial_zone([0], [0], 10.0, 10.0, 300.0, zone_edges_mm=[100.0, 50.0])
