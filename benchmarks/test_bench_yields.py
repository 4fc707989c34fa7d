"""Yield, bins and Cpk over 100,000 dies x 50 measurements, against plain Python references.

Run: pytest benchmarks/test_bench_yields.py -m benchmark --benchmark-enable
The groupby-apply references (a Python function per die) run on the first 5,000 dies; multiply
their time by 20 for the full table. The Cpk reference runs on the full table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from station.analysis.yields import BinRule, assign_bins, capability, yield_by

pytestmark = pytest.mark.benchmark

DIES = 100_000
MEASUREMENTS = 50
REFERENCE_DIES = 5_000
DIES_PER_WAFER = 1_000
UNIT_KEYS = ["lot", "wafer", "die_x", "die_y"]
BIN_TABLE = [
    BinRule(9, 90, "ERROR", "any_error"),
    BinRule(1, 1, "PASS", "all_pass"),
    BinRule(2, 20, "M00", "any_fail", ("m00",)),
    BinRule(3, 30, "M01_M02", "any_fail", ("m01", "m02")),
    BinRule(4, 40, "OTHER", "any_fail"),
]


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """Tidy results, one row per die and measurement (5,000,000 rows), strings categorical."""
    rng = np.random.default_rng(0)
    die = np.arange(DIES)
    wafer = die // DIES_PER_WAFER
    lot = np.array(["L1", "L2", "L3", "L4"])[wafer * 4 // (DIES // DIES_PER_WAFER)]
    outcome = rng.choice(["PASS", "FAIL", "ERROR"], DIES * MEASUREMENTS, p=[0.997, 0.0025, 0.0005])
    return pd.DataFrame(
        {
            "lot": pd.Categorical(np.repeat(lot, MEASUREMENTS)),
            "wafer": np.repeat(wafer, MEASUREMENTS),
            "die_x": np.repeat(die % DIES_PER_WAFER % 40, MEASUREMENTS),
            "die_y": np.repeat(die % DIES_PER_WAFER // 40, MEASUREMENTS),
            "measurement": pd.Categorical(
                np.tile([f"m{j:02d}" for j in range(MEASUREMENTS)], DIES)
            ),
            "value": rng.normal(0.0, 1.0, DIES * MEASUREMENTS),
            "outcome": pd.Categorical(outcome),
        }
    )


def reference_yield_by(results: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The obvious way: groupby-apply a Python function per die, then count per group."""

    def unit_status(outcomes: pd.Series) -> str:
        seen = set(outcomes)
        return "ERROR" if "ERROR" in seen else "FAIL" if "FAIL" in seen else "PASS"

    keys = by + [k for k in UNIT_KEYS if k not in by]
    status = results.groupby(keys, observed=True)["outcome"].apply(unit_status)
    return status.groupby(level=by, observed=True).value_counts().unstack(fill_value=0)


def reference_bins(results: pd.DataFrame) -> pd.Series:
    """The obvious way: a Python function per die walking the bin table."""

    def bin_of(die: pd.DataFrame) -> int:
        outcome = dict(zip(die["measurement"], die["outcome"], strict=True))
        for rule in BIN_TABLE:
            scope = [outcome.get(m) for m in (rule.measurements or outcome)]
            if (
                (rule.when == "all_pass" and all(o == "PASS" for o in scope))
                or (rule.when == "any_error" and "ERROR" in scope)
                or (rule.when == "any_fail" and "FAIL" in scope)
            ):
                return rule.hard_bin
        return -1

    return results.groupby(UNIT_KEYS, observed=True)[["measurement", "outcome"]].apply(bin_of)


def reference_cpk(values: np.ndarray, lsl: np.ndarray, usl: np.ndarray, wafer: np.ndarray):
    """The obvious way: a loop over measurements and, inside, over wafers (pooled sigma)."""
    result = np.empty(values.shape[1])
    for j in range(values.shape[1]):
        column = values[:, j]
        squares, dof = 0.0, 0
        for group in np.unique(wafer):
            part = column[wafer == group]
            squares += float(np.sum((part - part.mean()) ** 2))
            dof += part.size - 1
        sigma = np.sqrt(squares / dof)
        mean = column.mean()
        result[j] = min((usl[j] - mean) / (3 * sigma), (mean - lsl[j]) / (3 * sigma))
    return result


def test_yield_by_wafer(benchmark, results) -> None:
    benchmark.group = "yield_by lot/wafer: 100k dies x 50 measurements"
    table = benchmark.pedantic(
        yield_by, args=(results, ["lot", "wafer"]), rounds=5, iterations=1, warmup_rounds=1
    )
    assert table["n_units"].sum() == DIES


def test_reference_yield_5000_dies_scale_by_20(benchmark, results) -> None:
    benchmark.group = "yield_by lot/wafer: 100k dies x 50 measurements"
    benchmark.extra_info["scale_to_full_table"] = DIES / REFERENCE_DIES
    subset = results.iloc[: REFERENCE_DIES * MEASUREMENTS]
    counts = benchmark.pedantic(
        reference_yield_by, args=(subset, ["lot", "wafer"]), rounds=3, iterations=1
    )
    ours = yield_by(subset, ["lot", "wafer"])
    np.testing.assert_array_equal(counts["PASS"].to_numpy(), ours["n_pass"].to_numpy())


def test_assign_bins(benchmark, results) -> None:
    benchmark.group = "assign_bins: 100k dies x 50 measurements"
    bins = benchmark.pedantic(
        assign_bins, args=(results, BIN_TABLE), rounds=5, iterations=1, warmup_rounds=1
    )
    assert len(bins) == DIES


def test_reference_bins_5000_dies_scale_by_20(benchmark, results) -> None:
    benchmark.group = "assign_bins: 100k dies x 50 measurements"
    benchmark.extra_info["scale_to_full_table"] = DIES / REFERENCE_DIES
    subset = results.iloc[: REFERENCE_DIES * MEASUREMENTS]
    hard = benchmark.pedantic(reference_bins, args=(subset,), rounds=3, iterations=1)
    np.testing.assert_array_equal(hard.to_numpy(), assign_bins(subset, BIN_TABLE)["hard_bin"])


@pytest.fixture(scope="module")
def wide_values(results) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    values = results["value"].to_numpy().reshape(DIES, MEASUREMENTS)
    wafer = np.arange(DIES) // DIES_PER_WAFER
    return values, np.full(MEASUREMENTS, -3.0), np.full(MEASUREMENTS, 3.5), wafer


def test_cpk_pooled_by_wafer(benchmark, wide_values) -> None:
    values, lsl, usl, wafer = wide_values
    benchmark.group = "cpk/ppk: 100k dies x 50 measurements"
    result = benchmark.pedantic(
        capability, args=(values, lsl, usl), kwargs={"subgroup": wafer}, rounds=5, iterations=1
    )
    np.testing.assert_allclose(result.cpk, reference_cpk(values, lsl, usl, wafer), rtol=1e-9)


def test_reference_cpk_loop(benchmark, wide_values) -> None:
    values, lsl, usl, wafer = wide_values
    benchmark.group = "cpk/ppk: 100k dies x 50 measurements"
    result = benchmark.pedantic(
        reference_cpk, args=(values, lsl, usl, wafer), rounds=3, iterations=1
    )
    assert np.all(np.isfinite(result))
