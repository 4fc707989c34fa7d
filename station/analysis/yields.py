"""Yield analysis of tidy test results: bins, yield, Pareto, process capability, wafer maps.

Owns bin assignment, yield and Pareto tables, Cpk/Ppk, wafer maps, edge exclusion and radial zones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from station.analysis.errors import AnalysisError

# Tidy results (one row per measurement, as the results store returns them) carry a measurement
# name, an outcome and the columns that identify a unit (die or module). A measurement recorded
# several times for one unit (lanes, repeats) is FAIL if any row failed, ERROR if any row errored.
DEFAULT_UNIT_KEYS: tuple[str, ...] = ("lot", "wafer", "die_x", "die_y")
MEASUREMENT_COLUMN = "measurement"
OUTCOME_COLUMN = "outcome"
OUTCOMES: tuple[str, ...] = ("PASS", "FAIL", "ERROR")
# d2 for subgroups of 2 (moving range of consecutive values).
_D2_MOVING_RANGE = 1.128379

_PASS, _FAIL, _ERROR = 1, 2, 4  # outcome bits; 0 = not measured
Limit = np.ndarray | float | None  # spec limit: scalar or (columns,); None or NaN for none
Condition = Literal["all_pass", "any_fail", "any_error", "any_missing", "always"]
# Each condition maps (units, measurements) outcome bits to a (units,) bool.
_CONDITION_TESTS = {
    "all_pass": lambda bits: np.all(bits == _PASS, axis=1),
    "any_fail": lambda bits: np.any(bits & _FAIL, axis=1),
    "any_error": lambda bits: np.any(bits & _ERROR, axis=1),
    "any_missing": lambda bits: np.any(bits == 0, axis=1),
    "always": lambda bits: np.ones(bits.shape[0], dtype=bool),
}


@dataclass(frozen=True, slots=True)
class BinRule:
    """One row of an ordered bin table: the first rule whose condition holds bins the unit.

    Attributes:
        hard_bin: Hard bin number (STDF HBIN, 0..32767).
        soft_bin: Soft bin number (STDF SBIN, 0..32767).
        name: Bin name, e.g. "PASS", "COUPLER_IL", "ERROR".
        when: Condition over the outcomes of ``measurements``: "all_pass" (every one measured and
            PASS), "any_fail", "any_error", "any_missing" (some not measured), "always".
        measurements: Measurement names the condition looks at; empty means all of them.
    """

    hard_bin: int
    soft_bin: int
    name: str
    when: Condition
    measurements: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.when not in _CONDITION_TESTS:
            raise AnalysisError(
                f"BinRule.when must be one of {list(_CONDITION_TESTS)}, got {self.when!r}"
            )
        for field, value in (("hard_bin", self.hard_bin), ("soft_bin", self.soft_bin)):
            if not isinstance(value, int | np.integer) or not 0 <= value <= 32767:
                raise AnalysisError(f"BinRule.{field} must be an int in 0..32767, got {value!r}")
        if isinstance(self.measurements, str):
            raise AnalysisError(
                f"BinRule.measurements must be a sequence, not {self.measurements!r}"
            )
        object.__setattr__(self, "measurements", tuple(self.measurements))


@dataclass(frozen=True, slots=True)
class Capability:
    """Process capability per column.

    Attributes:
        mean: (columns,) mean, NaN ignored.
        sigma_within: (columns,) within-subgroup standard deviation used by Cpk.
        sigma_overall: (columns,) overall sample standard deviation (ddof=1) used by Ppk.
        cpk: (columns,) min(USL - mean, mean - LSL) / (3 sigma_within); one-sided with one limit.
        ppk: (columns,) the same with sigma_overall.
    """

    mean: np.ndarray
    sigma_within: np.ndarray
    sigma_overall: np.ndarray
    cpk: np.ndarray
    ppk: np.ndarray


@dataclass(frozen=True, slots=True)
class WaferMap:
    """A per-die quantity on the die grid.

    Attributes:
        values: (rows, columns) float; row i is die_y == y[i], column j is die_x == x[j]; NaN
            where no die was given (outside the wafer or not tested).
        x: (columns,) die x of every column, ascending.
        y: (rows,) die y of every row, ascending (flip to plot with the prober's y pointing down).
    """

    values: np.ndarray
    x: np.ndarray
    y: np.ndarray


def assign_bins(
    outcomes: pd.DataFrame | Mapping[str, np.ndarray],
    bin_table: Sequence[BinRule | Mapping[str, Any]],
    *,
    unit_keys: Sequence[str] = DEFAULT_UNIT_KEYS,
) -> pd.DataFrame:
    """Bin every unit by the first rule of an ordered bin table that matches its outcomes.

    Args:
        outcomes: Either tidy results (a DataFrame with ``measurement``, ``outcome`` and the
            ``unit_keys`` columns) or wide outcomes: a DataFrame or mapping with one column per
            measurement and one row per unit holding "PASS"/"FAIL"/"ERROR" or NaN/None for not
            measured.
        bin_table: Ordered rules, BinRule or mappings with the same keys (e.g. from TOML).
        unit_keys: Columns identifying a unit in tidy input.

    Returns:
        DataFrame with one row per unit (indexed by ``unit_keys`` for tidy input, by the input's
        index for wide input) and columns ``hard_bin``, ``soft_bin`` (nullable Int64: NA when no
        rule matched) and ``bin_name`` ("UNBINNED" when no rule matched).

    Raises:
        AnalysisError: On unknown outcomes, missing columns, an empty table or unknown names.
    """
    rules = [rule if isinstance(rule, BinRule) else BinRule(**rule) for rule in bin_table]
    if not rules:
        raise AnalysisError("bin_table is empty")
    bits, measurements, index = _outcome_bits(outcomes, unit_keys)
    column_of = {name: i for i, name in enumerate(measurements)}
    conditions = []
    for rule in rules:
        unknown = [m for m in rule.measurements if m not in column_of]
        if unknown:
            raise AnalysisError(
                f"bin rule {rule.name!r} names measurements not in the data: {unknown}"
            )
        scope = bits[:, [column_of[m] for m in rule.measurements]] if rule.measurements else bits
        conditions.append(_CONDITION_TESTS[rule.when](scope))
    matched = np.select(conditions, np.arange(len(rules)), default=len(rules))
    unbinned = matched == len(rules)
    hard = pd.array(np.array([r.hard_bin for r in rules] + [0])[matched], dtype="Int64")
    soft = pd.array(np.array([r.soft_bin for r in rules] + [0])[matched], dtype="Int64")
    hard[unbinned] = pd.NA
    soft[unbinned] = pd.NA
    names = np.array([r.name for r in rules] + ["UNBINNED"], dtype=object)[matched]
    return pd.DataFrame({"hard_bin": hard, "soft_bin": soft, "bin_name": names}, index=index)


def yield_by(
    results: pd.DataFrame,
    by: Sequence[str] = ("lot", "wafer"),
    *,
    unit_keys: Sequence[str] = DEFAULT_UNIT_KEYS,
) -> pd.DataFrame:
    """Unit yield per group of a tidy result table.

    A unit's status within a group is ERROR if any of its rows in the group is ERROR (it was not
    fully tested and goes to retest), else FAIL if any row is FAIL, else PASS. Grouping by
    ``step`` or ``measurement`` therefore gives per-step or per-measurement yield.

    Args:
        results: Tidy results with ``outcome``, the ``by`` columns and the ``unit_keys`` columns.
        by: Grouping columns, e.g. ["lot", "wafer", "product", "step"].
        unit_keys: Columns identifying a unit.

    Returns:
        DataFrame with the ``by`` columns and ``n_units``, ``n_pass``, ``n_fail``, ``n_error``,
        ``yield_fraction`` (n_pass / n_units) and ``yield_tested_fraction`` (n_pass / (n_units -
        n_error): yield of the units with a verdict), sorted by the ``by`` columns.

    Raises:
        AnalysisError: On missing columns or unknown outcomes.
    """
    by = list(by)
    unit_only = [k for k in unit_keys if k not in by]
    _require_columns(results, [*by, *unit_only, OUTCOME_COLUMN], "results")
    severity = _outcome_codes(results[OUTCOME_COLUMN])
    by_code, by_labels = _group_codes(results, by)
    unit_code, unit_labels = _group_codes(results, unit_only)
    group_code, group_key = _compress(
        by_code * len(unit_labels) + unit_code, len(by_labels) * len(unit_labels)
    )
    seen = _presence(group_code, severity, group_key.size)  # (groups, outcomes) bool
    status = np.where(seen[:, 2], 2, seen[:, 1].astype(int))
    per_status = np.bincount(
        group_key // len(unit_labels) * 3 + status, minlength=3 * len(by_labels)
    ).reshape(-1, 3)
    table = by_labels.assign(
        n_units=per_status.sum(axis=1),
        n_pass=per_status[:, 0],
        n_fail=per_status[:, 1],
        n_error=per_status[:, 2],
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        table["yield_fraction"] = table["n_pass"] / table["n_units"]
        table["yield_tested_fraction"] = table["n_pass"] / (table["n_units"] - table["n_error"])
    return table


def pareto(
    results: pd.DataFrame,
    *,
    unit_keys: Sequence[str] = DEFAULT_UNIT_KEYS,
) -> pd.DataFrame:
    """Pareto of failing measurements: units failing each measurement, largest first.

    A unit failing one measurement on several rows (lanes, repeats) counts once for it; a unit
    failing several measurements counts once for each.

    Args:
        results: Tidy results with ``measurement``, ``outcome`` and the ``unit_keys`` columns.
        unit_keys: Columns identifying a unit.

    Returns:
        DataFrame with ``measurement``, ``count`` (failing units), ``percent`` (of all counts)
        and ``cumulative_percent``, sorted by count descending then measurement name; empty when
        nothing failed.

    Raises:
        AnalysisError: On missing columns or unknown outcomes.
    """
    _require_columns(results, [*unit_keys, MEASUREMENT_COLUMN, OUTCOME_COLUMN], "results")
    failed = results.loc[
        _outcome_codes(results[OUTCOME_COLUMN]) == 1, [*unit_keys, MEASUREMENT_COLUMN]
    ]
    counts = (
        failed.drop_duplicates()[MEASUREMENT_COLUMN]
        .astype(object)
        .value_counts()
        .rename_axis(MEASUREMENT_COLUMN)
        .reset_index(name="count")
        .sort_values(["count", MEASUREMENT_COLUMN], ascending=[False, True], ignore_index=True)
    )
    total = counts["count"].sum()
    counts["percent"] = 100.0 * counts["count"] / total if total else np.empty(0)
    counts["cumulative_percent"] = counts["percent"].cumsum()
    return counts


def capability(
    values: np.ndarray, lsl: Limit, usl: Limit, *, subgroup: np.ndarray | None = None
) -> Capability:
    """Cpk and Ppk of every column.

    Within-subgroup sigma (for Cpk): with ``subgroup`` labels, the pooled standard deviation
    sqrt(sum over subgroups of sum (x - subgroup mean)^2 / sum (n_g - 1)), with no c4 unbiasing
    constant (its correction is under 0.3 % beyond 100 degrees of freedom); it does not depend on
    row order. Without labels, the average moving range of consecutive rows divided by
    d2 = 1.128: the rows must then be in production order. Overall sigma (for Ppk): the sample
    standard deviation (ddof=1). A missing limit (None or NaN) makes the index one-sided; with
    neither limit it is NaN. NaN values are ignored.

    Args:
        values: (units,) or (units, columns) measured values.
        lsl, usl: Lower and upper spec limits, scalar or (columns,), None/NaN for none.
        subgroup: (units,) subgroup labels (e.g. wafer), or None for the moving range.

    Returns:
        A Capability with (columns,) arrays, or numpy scalars for 1-D ``values``.

    Raises:
        AnalysisError: On bad shapes or fewer than two values in a column.
    """
    data, table, lower, upper = _capability_inputs(values, lsl, usl)
    mean = np.nanmean(table, axis=0)
    sigma_overall = np.nanstd(table, axis=0, ddof=1)
    if subgroup is None:
        sigma_within = np.nanmean(np.abs(np.diff(table, axis=0)), axis=0) / _D2_MOVING_RANGE
    else:
        sigma_within = _pooled_sigma(table, np.asarray(subgroup))

    def shaped(result: np.ndarray) -> np.ndarray:
        return result[0] if data.ndim == 1 else result

    return Capability(
        mean=shaped(mean),
        sigma_within=shaped(sigma_within),
        sigma_overall=shaped(sigma_overall),
        cpk=shaped(_index(mean, sigma_within, lower, upper)),
        ppk=shaped(_index(mean, sigma_overall, lower, upper)),
    )


def cpk(
    values: np.ndarray, lsl: Limit, usl: Limit, *, subgroup: np.ndarray | None = None
) -> np.ndarray:
    """Cpk per column with the within-subgroup sigma; see ``capability`` for the definitions."""
    return capability(values, lsl, usl, subgroup=subgroup).cpk


def ppk(values: np.ndarray, lsl: Limit, usl: Limit) -> np.ndarray:
    """Ppk per column with the overall sample sigma; see ``capability`` for the definitions."""
    return capability(values, lsl, usl).ppk


def wafer_map(
    die_x: np.ndarray,
    die_y: np.ndarray,
    values: np.ndarray,
    *,
    x_range: tuple[int, int] | None = None,
    y_range: tuple[int, int] | None = None,
) -> WaferMap:
    """Place per-die values on the die grid; the last value wins for a die given twice (retest).

    Args:
        die_x, die_y: (dies,) integer die column and row indices.
        values: (dies,) value per die (a measurement, a bin number, ...).
        x_range: (first, last) die x of the grid, inclusive; default the data's extent.
        y_range: (first, last) die y of the grid, inclusive; default the data's extent.

    Returns:
        A WaferMap, NaN where no die was given; dies outside the ranges are left out.

    Raises:
        AnalysisError: On shape mismatch, non-integer die indices or no dies.
    """
    x, y = _die_indices(die_x, die_y)
    vals = np.asarray(values, dtype=float)
    if vals.shape != x.shape:
        raise AnalysisError(f"values has shape {vals.shape}, die_x has shape {x.shape}")
    if x.size == 0:
        raise AnalysisError("die_x is empty: no dies to map")
    x_lo, x_hi = x_range if x_range is not None else (int(x.min()), int(x.max()))
    y_lo, y_hi = y_range if y_range is not None else (int(y.min()), int(y.max()))
    last = ~pd.DataFrame({"x": x, "y": y}).duplicated(keep="last").to_numpy()
    keep = last & (x >= x_lo) & (x <= x_hi) & (y >= y_lo) & (y <= y_hi)
    grid = np.full((y_hi - y_lo + 1, x_hi - x_lo + 1), np.nan)
    grid[y[keep] - y_lo, x[keep] - x_lo] = vals[keep]
    return WaferMap(values=grid, x=np.arange(x_lo, x_hi + 1), y=np.arange(y_lo, y_hi + 1))


def edge_exclusion_mask(
    die_x: np.ndarray,
    die_y: np.ndarray,
    die_pitch_x_mm: float,
    die_pitch_y_mm: float,
    wafer_diameter_mm: float,
    edge_exclusion_mm: float,
    *,
    centre_die_x: float = 0.0,
    centre_die_y: float = 0.0,
) -> np.ndarray:
    """True for dies that are not wholly inside the usable disc (radius R - edge exclusion).

    Die (x, y) is the rectangle of pitch size centred at ((x - centre_die_x) pitch_x,
    (y - centre_die_y) pitch_y) mm from the wafer centre; it is usable when its farthest corner
    lies within wafer_diameter_mm / 2 - edge_exclusion_mm.

    Args:
        die_x, die_y: (dies,) integer die column and row indices.
        die_pitch_x_mm, die_pitch_y_mm: Die pitch along x and y in mm.
        wafer_diameter_mm: Wafer diameter in mm (e.g. 300).
        edge_exclusion_mm: Width of the excluded ring at the wafer edge in mm.
        centre_die_x, centre_die_y: Die coordinates of the wafer centre (may be fractional, e.g.
            -0.5 when the centre falls between dies).

    Returns:
        (dies,) bool, True where the die is excluded.

    Raises:
        AnalysisError: On shape mismatch or non-positive geometry.
    """
    dx, dy = _die_offsets_mm(
        die_x, die_y, die_pitch_x_mm, die_pitch_y_mm, wafer_diameter_mm, centre_die_x, centre_die_y
    )
    if edge_exclusion_mm < 0.0:
        raise AnalysisError(f"edge_exclusion_mm must be >= 0, got {edge_exclusion_mm!r}")
    far_x = np.abs(dx) + die_pitch_x_mm / 2.0
    far_y = np.abs(dy) + die_pitch_y_mm / 2.0
    return np.hypot(far_x, far_y) > wafer_diameter_mm / 2.0 - edge_exclusion_mm


def radial_zone(
    die_x: np.ndarray,
    die_y: np.ndarray,
    die_pitch_x_mm: float,
    die_pitch_y_mm: float,
    wafer_diameter_mm: float,
    *,
    zone_edges_mm: Sequence[float] | None = None,
    zone_names: Sequence[str] = ("centre", "middle", "edge"),
    centre_die_x: float = 0.0,
    centre_die_y: float = 0.0,
) -> pd.Categorical:
    """Radial zone of every die by the distance of its centre from the wafer centre.

    Args:
        die_x, die_y, die_pitch_x_mm, die_pitch_y_mm, wafer_diameter_mm, centre_die_x,
            centre_die_y: The die grid and wafer, as in ``edge_exclusion_mask``.
        zone_edges_mm: Increasing inner radii in mm where each zone after the first starts;
            default equal-area zones, R sqrt(k / zones) for k = 1 .. zones - 1.
        zone_names: Zone names from the centre outwards (one more than the edges).

    Returns:
        (dies,) ordered Categorical of zone names; NaN for dies whose centre is off the wafer.

    Raises:
        AnalysisError: On shape mismatch, bad geometry or zone edges that do not fit the names.
    """
    dx, dy = _die_offsets_mm(
        die_x, die_y, die_pitch_x_mm, die_pitch_y_mm, wafer_diameter_mm, centre_die_x, centre_die_y
    )
    radius = wafer_diameter_mm / 2.0
    names = list(zone_names)
    if zone_edges_mm is None:
        edges = radius * np.sqrt(np.arange(1, len(names)) / len(names))
    else:
        edges = np.asarray(zone_edges_mm, dtype=float)
    if edges.size != len(names) - 1 or np.any(np.diff(edges) <= 0.0) or np.any(edges <= 0.0):
        raise AnalysisError(
            f"zone_edges_mm must be {len(names) - 1} increasing positive radii for "
            f"{len(names)} zone_names, got {edges.tolist()}"
        )
    distance = np.hypot(dx, dy)
    zone = np.where(distance <= radius, np.searchsorted(edges, distance, side="right"), -1)
    return pd.Categorical.from_codes(zone, categories=names, ordered=True)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{name} lacks columns {missing}; it has {list(frame.columns)}")


def _outcome_codes(outcome: pd.Series) -> np.ndarray:
    """Index into OUTCOMES of every row (0 PASS, 1 FAIL, 2 ERROR)."""
    codes, uniques = _key_codes(outcome)
    lookup = np.array([OUTCOMES.index(u) if u in OUTCOMES else -1 for u in uniques])
    result = lookup[codes]
    if np.any(result < 0):
        bad = [str(u) for u in uniques[np.unique(codes[result < 0])]]
        raise AnalysisError(f"outcome holds values other than {OUTCOMES}: {bad}")
    return result


def _key_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes 0..size-1 of one key column and the value of every code, in sorted order (NaN last).

    Categoricals use their codes and integers with a compact range their offset from the minimum
    (codes may then name absent values); anything else is hashed by pd.factorize.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)
        uniques = column.cat.categories
        if np.any(codes < 0):
            codes[codes < 0] = len(uniques)
            uniques = pd.Index([*uniques, np.nan], dtype=object)
        return codes, uniques
    values = column.to_numpy()
    if values.dtype.kind in "iu" and values.size:
        low, high = int(values.min()), int(values.max())
        if high - low <= max(4 * values.size, 1 << 20):
            return values.astype(np.int64) - low, pd.RangeIndex(low, high + 1)
    codes, uniques = pd.factorize(column, sort=True, use_na_sentinel=False)
    return codes.astype(np.int64), pd.Index(uniques)


def _group_codes(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group code of every row for the combination of ``keys``, and each group's key values.

    Groups are numbered in key order. Each key is coded on its own and the codes are combined
    into one mixed-radix integer, much cheaper than a multi-key groupby on millions of rows. No
    keys make one group.
    """
    if not keys:
        return np.zeros(len(frame), dtype=np.int64), pd.DataFrame(index=pd.RangeIndex(1))
    coded = [_key_codes(frame[key]) for key in keys]
    sizes = [max(len(uniques), 1) for _, uniques in coded]
    if float(np.prod(np.array(sizes, dtype=float))) >= 2.0**62:
        grouped = frame.groupby(list(keys), sort=True, dropna=False, observed=True)
        codes = grouped.ngroup().to_numpy(dtype=np.int64)
        return codes, grouped.size().index.to_frame(index=False)
    combined = np.ravel_multi_index([codes for codes, _ in coded], sizes)
    codes, unique_keys = _compress(combined, int(np.prod(sizes)))
    positions = np.unravel_index(unique_keys, sizes)
    labels = {
        key: uniques[position]
        for key, (_, uniques), position in zip(keys, coded, positions, strict=True)
    }
    return codes, pd.DataFrame(labels)


def _presence(group: np.ndarray, outcome: np.ndarray, groups: int) -> np.ndarray:
    """(groups, 3) bool: whether each outcome occurs among the rows of each group."""
    counts = np.bincount(group * len(OUTCOMES) + outcome, minlength=groups * len(OUTCOMES))
    return counts.reshape(groups, len(OUTCOMES)) > 0


def _compress(keys: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes 0..groups-1 of integer ``keys`` in [0, span), in key order, and the keys.

    A bincount over the key range replaces hashing when the range is small enough to allocate.
    """
    if span <= max(4 * keys.size, 1 << 20):
        present = np.bincount(keys, minlength=span) > 0
        return (np.cumsum(present) - 1)[keys], np.flatnonzero(present)
    codes, uniques = pd.factorize(keys, sort=True)
    return codes, np.asarray(uniques)


def _outcome_bits(
    outcomes: pd.DataFrame | Mapping[str, np.ndarray], unit_keys: Sequence[str]
) -> tuple[np.ndarray, list[str], pd.Index]:
    """(units, measurements) outcome bits (OR of the rows), measurement names, unit index."""
    bit_of = np.array([_PASS, _FAIL, _ERROR], dtype=np.uint8)
    if isinstance(outcomes, pd.DataFrame) and {MEASUREMENT_COLUMN, OUTCOME_COLUMN} <= set(
        outcomes.columns
    ):
        keys = list(unit_keys)
        _require_columns(outcomes, keys, "outcomes")
        outcome = _outcome_codes(outcomes[OUTCOME_COLUMN])
        unit, labels = _group_codes(outcomes, keys)
        measurement, names = _key_codes(outcomes[MEASUREMENT_COLUMN])
        seen = _presence(unit * len(names) + measurement, outcome, len(labels) * len(names))
        bits = (seen.astype(np.uint8) @ bit_of).reshape(len(labels), len(names))
        measured = bits.any(axis=0)  # drop unused categories and absent integer codes
        bits, names = bits[:, measured], names[measured]
        index = pd.MultiIndex.from_frame(labels)
        return bits, [str(n) for n in names], index
    wide = pd.DataFrame(outcomes)
    if wide.shape[1] == 0:
        raise AnalysisError("outcomes has no measurement columns")
    stacked = wide.to_numpy(dtype=object).ravel()
    present = pd.notna(stacked)
    bits = np.zeros(stacked.size, dtype=np.uint8)
    bits[present] = bit_of[_outcome_codes(pd.Series(stacked[present]))]
    return bits.reshape(wide.shape), [str(c) for c in wide.columns], wide.index


def _capability_inputs(
    values: np.ndarray, lsl: Limit, usl: Limit
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values as given, values as (units, columns), lower limits, upper limits), checked."""
    data = np.asarray(values, dtype=float)
    if data.ndim not in (1, 2):
        raise AnalysisError(f"values must be 1-D or 2-D, got shape {data.shape}")
    table = data.reshape(data.shape[0], -1)
    count = np.sum(~np.isnan(table), axis=0)
    if np.any(count < 2):
        raise AnalysisError(f"values needs at least 2 non-NaN values per column, got {count.min()}")
    columns = table.shape[1]
    return data, table, _limit(lsl, columns, "lsl"), _limit(usl, columns, "usl")


def _index(mean: np.ndarray, sigma: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """min(upper - mean, mean - lower) / (3 sigma); fmin drops the side whose limit is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.fmin((upper - mean) / (3.0 * sigma), (mean - lower) / (3.0 * sigma))


def _limit(limit: Limit, columns: int, name: str) -> np.ndarray:
    array = np.full(columns, np.nan) if limit is None else np.asarray(limit, dtype=float)
    try:
        return np.broadcast_to(array, (columns,)).astype(float)
    except ValueError as err:
        raise AnalysisError(
            f"{name} has shape {array.shape}; expected a scalar or ({columns},)"
        ) from err


def _pooled_sigma(table: np.ndarray, subgroup: np.ndarray) -> np.ndarray:
    """Pooled within-subgroup standard deviation of every column of ``table`` (units, columns)."""
    if subgroup.shape != (table.shape[0],):
        raise AnalysisError(f"subgroup has shape {subgroup.shape}; expected ({table.shape[0]},)")
    codes, uniques = pd.factorize(subgroup, use_na_sentinel=False)
    valid = ~np.isnan(table)
    filled = np.where(valid, table, 0.0)
    counts = _sum_by(codes, valid.astype(float), len(uniques))
    with np.errstate(divide="ignore", invalid="ignore"):
        means = _sum_by(codes, filled, len(uniques)) / counts
    deviation = np.where(valid, table - means[codes], 0.0)
    squares = _sum_by(codes, deviation**2, len(uniques)).sum(axis=0)
    dof = np.clip(counts - 1.0, 0.0, None).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(squares / dof)


def _sum_by(codes: np.ndarray, table: np.ndarray, groups: int) -> np.ndarray:
    """(groups, columns) column sums of ``table`` (rows, columns) per group code."""
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(groups))
    return np.add.reduceat(table[order], starts, axis=0)


def _die_indices(die_x: np.ndarray, die_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(die_x), np.asarray(die_y)
    if x.ndim != 1 or x.shape != y.shape:
        raise AnalysisError(
            f"die_x and die_y must be 1-D of equal length, got {x.shape}, {y.shape}"
        )
    for name, array in (("die_x", x), ("die_y", y)):
        if array.size and not np.all(np.asarray(array, dtype=float) == np.round(array)):
            raise AnalysisError(f"{name} must hold integer die indices")
    return x.astype(np.int64), y.astype(np.int64)


def _die_offsets_mm(
    die_x: np.ndarray,
    die_y: np.ndarray,
    pitch_x_mm: float,
    pitch_y_mm: float,
    wafer_diameter_mm: float,
    centre_die_x: float,
    centre_die_y: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Die centre offsets from the wafer centre in mm, (dies,) each."""
    x, y = _die_indices(die_x, die_y)
    if not min(pitch_x_mm, pitch_y_mm, wafer_diameter_mm) > 0.0:
        raise AnalysisError(
            f"die pitches and wafer_diameter_mm must be > 0, got {pitch_x_mm!r}, {pitch_y_mm!r}, "
            f"{wafer_diameter_mm!r}"
        )
    return (x - centre_die_x) * pitch_x_mm, (y - centre_die_y) * pitch_y_mm
