"""Parts, bins and test numbers of tidy results, shared by the STDF export and the reports.

A part is a die of a wafer run, or a whole run where there are no dies (a module, a laser).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: hard bin of a part's outcome; soft bins are the same, except FAIL, which gets 100 + the index
#: of its first failing measurement in the alphabetical list of the export's measurement names
HARD_BINS = {"PASS": 1, "FAIL": 2, "ERROR": 3, "ABORTED": 4, "INCOMPLETE": 5}
FAIL_SOFT_BIN_BASE = 100
_SEVERITY = {"PASS": 0, "FAIL": 1, "ERROR": 2, "ABORTED": 3, "INCOMPLETE": 4}
_OUTCOMES = np.array(list(_SEVERITY))
PART_COLUMNS = (
    "run_id",
    "lot_id",
    "wafer_id",
    "product",
    "site",
    "die_x",
    "die_y",
    "part_id",
    "outcome",
    "hard_bin",
    "soft_bin",
    "bin_name",
    "first_fail",
    "n_tests",
    "first_ns",
    "last_ns",
)


class StdfNumberCollision(ValueError):
    """Two (measurement, lane) pairs derive the same STDF test number."""


def stdf_test_number(name: str, lane: int | None) -> int:
    """The STDF test number of a (measurement, lane) pair: crc32(name) mod 10^6, times 100, plus
    the lane (0 for a scalar). Stable across limits revisions and exports; lanes 0..99."""
    return (zlib.crc32(name.encode("utf-8")) % 1_000_000) * 100 + (lane or 0)


def stdf_test_numbers(pairs: Iterable[tuple[str, int | None]]) -> dict[tuple[str, int | None], int]:
    """Test numbers of every pair; raises StdfNumberCollision naming the two measurements."""
    numbers: dict[tuple[str, int | None], int] = {}
    owner: dict[int, tuple[str, int | None]] = {}
    for name, lane in pairs:
        if lane is not None and not 0 <= lane <= 99:
            raise StdfNumberCollision(f"{name} lane {lane}: STDF test numbers hold lanes 0..99")
        number = stdf_test_number(name, lane)
        other = owner.setdefault(number, (name, lane))
        if other != (name, lane):
            raise StdfNumberCollision(
                f"{other[0]} lane {other[1]} and {name} lane {lane} both derive STDF test "
                f"number {number}: rename one"
            )
        numbers[(name, lane)] = number
    return numbers


def final_attempts(tidy: pd.DataFrame) -> pd.DataFrame:
    """The rows of each step's last attempt (a retried step's earlier attempts are history)."""
    if tidy.empty:
        return tidy
    last = tidy.groupby(["run_id", "step"], sort=False)["attempt"].transform("max")
    return tidy[tidy["attempt"] == last]


def parts(tidy: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per part, in test order, with its outcome and bins (PART_COLUMNS).

    A die's outcome is the worst of its measurements (final attempts); a run without dies takes
    the run's outcome, INCOMPLETE when the run never ended (its process died).
    """
    rows = final_attempts(tidy)
    names = sorted(rows["measurement"].unique()) if len(rows) else []
    soft_of = {name: FAIL_SOFT_BIN_BASE + i for i, name in enumerate(names)}
    with_dies = set(rows.loc[rows["die_x"].notna(), "run_id"])
    run_info = runs.set_index("run_id")
    frames = []
    for run_id, run_rows in rows.groupby("run_id", sort=False):
        info = run_info.loc[run_id]
        if run_id in with_dies:
            frames.append(_die_parts(run_rows, info))
        else:
            frames.append(_run_part(run_rows, info, str(run_id)))
    measured = set(rows["run_id"])
    for run_id, info in run_info.iterrows():  # runs that recorded nothing are parts too
        if run_id not in measured:
            frames.append(_run_part(rows.iloc[0:0], info, str(run_id)))
    if not frames:
        return pd.DataFrame(columns=list(PART_COLUMNS))
    table = pd.concat(frames, ignore_index=True).sort_values("first_ns", kind="stable")
    table["hard_bin"] = table["outcome"].map(HARD_BINS).astype(int)
    fail_bins = table["first_fail"].map(soft_of)
    table["soft_bin"] = np.where(table["outcome"] == "FAIL", fail_bins, table["hard_bin"])
    table["soft_bin"] = table["soft_bin"].fillna(HARD_BINS["FAIL"]).astype(int)
    table["bin_name"] = np.where(
        table["outcome"] == "FAIL", "FAIL " + table["first_fail"].fillna(""), table["outcome"]
    )
    return table.reset_index(drop=True)[list(PART_COLUMNS)]


def _first_fail(rows: pd.DataFrame) -> pd.Series:
    failed = rows[rows["outcome"] == "FAIL"]
    return failed.groupby(["die_x", "die_y"], sort=False, dropna=False)["measurement"].first()


def _die_parts(rows: pd.DataFrame, info: pd.Series) -> pd.DataFrame:
    severity = rows["outcome"].map(_SEVERITY).fillna(_SEVERITY["ERROR"]).astype(int)
    keyed = rows.assign(severity=severity, ns=rows["recorded_at"].astype("int64"))
    grouped = keyed.groupby(["die_x", "die_y"], sort=False, dropna=False)
    table = grouped.agg(
        worst=("severity", "max"),
        n_tests=("measurement", "size"),
        first_ns=("ns", "min"),
        last_ns=("ns", "max"),
    ).reset_index()
    first_fail = _first_fail(keyed)
    at = pd.MultiIndex.from_frame(table[["die_x", "die_y"]])
    table["first_fail"] = first_fail.reindex(at).to_numpy() if len(first_fail) else None
    table["outcome"] = _OUTCOMES[table.pop("worst").to_numpy()]
    wafer = info["wafer_id"] if pd.notna(info["wafer_id"]) else info["dut_serial"]
    x = table["die_x"].astype(object).where(table["die_x"].notna(), "")
    y = table["die_y"].astype(object).where(table["die_y"].notna(), "")
    table["part_id"] = f"{wafer}:" + x.astype(str) + ":" + y.astype(str)
    return _with_run(table, info)


def _run_part(rows: pd.DataFrame, info: pd.Series, run_id: str) -> pd.DataFrame:
    outcome = info["outcome"] if bool(info["complete"]) else "INCOMPLETE"
    ns = rows["recorded_at"].astype("int64") if len(rows) else pd.Series([0])
    started = int(pd.Timestamp(info["started_at"]).value)
    failed = rows.loc[rows["outcome"] == "FAIL", "measurement"]
    table = pd.DataFrame(
        {
            "die_x": pd.array([pd.NA], dtype="Int64"),
            "die_y": pd.array([pd.NA], dtype="Int64"),
            "n_tests": [len(rows)],
            "first_ns": [started],
            "last_ns": [max(int(ns.max()), started)],
            "first_fail": [failed.iloc[0] if len(failed) else None],
            "outcome": [outcome if outcome in HARD_BINS else "ERROR"],
            "part_id": [info["dut_serial"]],
        }
    )
    if pd.notna(info["ended_at"]):
        table["last_ns"] = int(pd.Timestamp(info["ended_at"]).value)
    return _with_run(table, info, run_id)


def _with_run(table: pd.DataFrame, info: pd.Series, run_id: str | None = None) -> pd.DataFrame:
    table["run_id"] = run_id if run_id is not None else info.name
    for column in ("lot_id", "wafer_id", "product", "site"):
        table[column] = info[column]
    return table
