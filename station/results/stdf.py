"""STDF V4 writer for wafer and laser/module results, written with `struct` from the V4 spec:
FAR, MIR, WCR, WIR, PIR, PTR, PRR, WRR, TSR, HBR, SBR, PCR, MRR (little-endian, CPU_TYPE 2).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from station.results.bins import HARD_BINS, final_attempts, parts, stdf_test_numbers

# One part per die (wafer runs) or per run; one PTR per numeric (measurement, lane) with limits
# and units, numbered by station.results.bins.stdf_test_number; text values have no STDF record.
# Semi-ATE-STDF (0.1.x, last release 2022) was the library candidate; a struct writer of these
# thirteen record types is short, fast and needs nothing beyond the standard library.
HEAD = 1
ALL_HEADS = 255  # summary records over every head and site
MISSING_U4 = 4_294_967_295
MISSING_COORD = -32768
_MODE = {"production": b"P", "characterisation": b"E"}


class StdfExportError(ValueError):
    """The selection cannot be written as one STDF file."""


@dataclass(frozen=True)
class StdfSummary:
    path: Path
    parts: int
    results: int
    wafers: int


def _cn(text: Any) -> bytes:
    data = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    raw = data.encode("ascii", errors="replace")[:255]
    return bytes((len(raw),)) + raw


def _c1(text: str) -> bytes:
    return (text or " ").encode("ascii", errors="replace")[:1]


def _r4(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(np.float32(value))


def _seconds(stamp: Any) -> int:
    return 0 if stamp is None or pd.isna(stamp) else int(pd.Timestamp(stamp).timestamp())


def _coord(value: Any) -> int:
    return MISSING_COORD if pd.isna(value) else max(-32767, min(32767, int(value)))


class _Records:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, typ: int, sub: int, payload: bytes) -> None:
        if len(payload) > 65_535:
            raise StdfExportError(f"STDF record {typ},{sub} longer than 65535 bytes")
        self.out.write(struct.pack("<HBB", len(payload), typ, sub) + payload)


def write_stdf(path: Path, runs: pd.DataFrame, tidy: pd.DataFrame) -> StdfSummary:
    """Write the runs and their tidy measurements (the store's frames) as one STDF V4 file."""
    products = sorted(runs["product"].unique())
    if len(products) != 1:
        raise StdfExportError(
            f"an STDF file holds one product, the selection has {len(products)} "
            f"({', '.join(products) or 'none'}): filter with --product"
        )
    rows = final_attempts(tidy)
    numeric = rows[rows["text_value"].isna()]
    pairs = numeric[["measurement", "lane"]].drop_duplicates()
    lanes = [None if pd.isna(lane) else int(lane) for lane in pairs["lane"]]
    try:
        numbers = stdf_test_numbers(zip(pairs["measurement"], lanes, strict=True))
    except ValueError as err:
        raise StdfExportError(str(err)) from None
    table = parts(tidy, runs)
    with path.open("wb") as out:
        records = _Records(out)
        _header(records, runs, wafer=bool(numeric["die_x"].notna().any()))
        results = 0
        by_part = _rows_by_part(numeric)
        for wafer_id, wafer_parts in _by_wafer(table):
            if wafer_id is not None:
                records.write(
                    2, 10, struct.pack("<BBI", HEAD, 255, _start(wafer_parts)) + _cn(wafer_id)
                )
            for part in wafer_parts.itertuples(index=False):
                key = (part.run_id, _die_key(part.die_x), _die_key(part.die_y))
                rows_of_part = numeric.iloc[by_part.get(key, np.empty(0, dtype=int))]
                results += _part(records, part, rows_of_part, numbers)
            if wafer_id is not None:
                _wrr(records, wafer_id, wafer_parts)
        _summaries(records, numeric, numbers, table)
        finish = _seconds(runs["ended_at"].max()) or _seconds(runs["started_at"].max())
        records.write(1, 20, struct.pack("<I", finish) + _c1(" ") + _cn("") + _cn(""))
    wafers = table["wafer_id"].dropna().nunique()
    return StdfSummary(path, len(table), results, int(wafers))


def _header(records: _Records, runs: pd.DataFrame, *, wafer: bool) -> None:
    first = runs.iloc[0]
    lots = sorted(str(lot) for lot in runs["lot_id"].dropna().unique())
    setup = _seconds(runs["started_at"].min())
    records.write(0, 10, struct.pack("<BB", 2, 4))  # FAR: little-endian (x86), STDF V4
    mir = struct.pack("<IIB", setup, setup, 1) + _MODE.get(first["mode"], b"E") + b"  "
    mir += struct.pack("<H", 65535) + b" "
    for text in (
        ",".join(lots),  # LOT_ID
        first["product"],  # PART_TYP
        first["station_id"],  # NODE_NAM
        "optical-test-station",  # TSTR_TYP
        first["sequence"],  # JOB_NAM
        str(first["limits_sha256"])[:12],  # JOB_REV: the limits file the run judged against
        "",  # SBLOT_ID
        first["operator"],  # OPER_NAM
        "station",  # EXEC_TYP
        first["software_version"],  # EXEC_VER
        first["mode"],  # TEST_COD
    ):
        mir += _cn(text)
    records.write(1, 10, mir)
    if wafer:  # WCR: geometry unknown to the store; written so map tools find the record
        wcr = struct.pack("<fffB", 0.0, 0.0, 0.0, 0) + b" " + struct.pack("<hh", -32768, -32768)
        records.write(2, 30, wcr + b"  ")


def _by_wafer(table: pd.DataFrame) -> Iterator[tuple[str | None, pd.DataFrame]]:
    on_wafer = table[table["die_x"].notna() | table["die_y"].notna()]
    for wafer_id, wafer_parts in on_wafer.groupby("wafer_id", sort=False, dropna=False):
        yield (None if pd.isna(wafer_id) else str(wafer_id)), wafer_parts
    yield None, table[table["die_x"].isna() & table["die_y"].isna()]


def _start(table: pd.DataFrame) -> int:
    return int(table["first_ns"].min() // 1_000_000_000) if len(table) else 0


_NO_DIE = -(2**40)  # stands for a missing die coordinate in group keys


def _die_key(value: Any) -> int:
    return _NO_DIE if pd.isna(value) else int(value)


def _rows_by_part(numeric: pd.DataFrame) -> dict[tuple[str, int, int], np.ndarray]:
    """Row positions of each (run, die x, die y), in test order."""
    keys = [
        numeric["run_id"],
        numeric["die_x"].astype("Float64").fillna(_NO_DIE).astype("int64"),
        numeric["die_y"].astype("Float64").fillna(_NO_DIE).astype("int64"),
    ]
    return dict(numeric.groupby(keys, sort=False).indices) if len(numeric) else {}


def _part(records: _Records, part: Any, rows: pd.DataFrame, numbers: dict[Any, int]) -> int:
    site = int(part.site) if 0 <= int(part.site) <= 255 else 255
    records.write(5, 10, struct.pack("<BB", HEAD, site))  # PIR
    for row in rows.itertuples(index=False):
        lane = None if pd.isna(row.lane) else int(row.lane)
        records.write(15, 10, _ptr(numbers[(row.measurement, lane)], site, row, lane))
    flags = 0
    if part.outcome == "FAIL":
        flags |= 0x08
    elif part.outcome != "PASS":
        flags |= 0x04 | 0x10  # abnormal end, pass/fail not valid
    elapsed_ms = max(0, int((part.last_ns - part.first_ns) // 1_000_000))
    prr = struct.pack(
        "<BBBHHHhhI",
        HEAD,
        site,
        flags,
        min(len(rows), 65_535),
        part.hard_bin,
        part.soft_bin,
        _coord(part.die_x),
        _coord(part.die_y),
        min(elapsed_ms, MISSING_U4 - 1),
    )
    records.write(5, 20, prr + _cn(part.part_id) + _cn(part.bin_name) + b"\x00")
    return len(rows)


def _ptr(number: int, site: int, row: Any, lane: int | None) -> bytes:
    value, low, high = row.value, row.low_limit, row.high_limit
    test_flags, parm_flags = 0, 0x40 | 0x80  # a result equal to a limit passes (low <= v <= high)
    if row.outcome == "FAIL":
        test_flags |= 0x80
        parm_flags |= 0x10 if pd.notna(low) and value < low else 0x08
    elif row.outcome != "PASS" or pd.isna(value):
        test_flags |= 0x02 | 0x40  # result not valid, pass/fail not valid
    opt_flags = 0x04 | 0x08  # no spec limits
    opt_flags |= 0x40 if pd.isna(low) else 0
    opt_flags |= 0x80 if pd.isna(high) else 0
    label = row.measurement if lane is None else f"{row.measurement}[{lane}]"
    return (
        struct.pack("<IBBBBf", number, HEAD, site, test_flags, parm_flags, _r4(value))
        + _cn(label)
        + _cn("")
        + struct.pack("<Bbbbff", opt_flags, 0, 0, 0, _r4(low), _r4(high))
        + _cn(row.unit)
        + _cn("")
        + _cn("")
        + _cn("")
        + struct.pack("<ff", 0.0, 0.0)
    )


def _wrr(records: _Records, wafer_id: str, table: pd.DataFrame) -> None:
    finish = int(table["last_ns"].max() // 1_000_000_000) if len(table) else 0
    good = int((table["outcome"] == "PASS").sum())
    aborted = int(table["outcome"].isin(("ABORTED", "INCOMPLETE")).sum())
    wrr = struct.pack("<BBIIIIII", HEAD, 255, finish, len(table), 0, aborted, good, MISSING_U4)
    records.write(2, 20, wrr + _cn(wafer_id) + b"".join(_cn("") for _ in range(5)))


def _summaries(
    records: _Records, numeric: pd.DataFrame, numbers: dict[Any, int], table: pd.DataFrame
) -> None:
    lane = numeric["lane"].astype(object).where(numeric["lane"].notna(), None)
    keyed = numeric.assign(
        number=[numbers[(n, ln)] for n, ln in zip(numeric["measurement"], lane, strict=True)]
    )
    for number, rows in keyed.groupby("number", sort=True):
        values = rows["value"].dropna().to_numpy(dtype=float)
        first = rows.iloc[0]
        label = (
            first["measurement"]
            if pd.isna(first["lane"])
            else f"{first['measurement']}[{first['lane']}]"
        )
        fails = int((rows["outcome"] == "FAIL").sum())
        stats = (
            (values.min(), values.max(), values.sum(), (values**2).sum())
            if len(values)
            else (0.0,) * 4
        )
        tsr = struct.pack("<BBcIIII", ALL_HEADS, 0, b"P", int(number), len(rows), fails, MISSING_U4)
        tsr += _cn(label) + _cn(first["step"]) + _cn("")
        opt = 0x04 | (0x33 if not len(values) else 0)
        tsr += struct.pack("<Bfffff", opt, 0.0, *(float(np.float32(s)) for s in stats))
        records.write(10, 30, tsr)
    for outcome, hard in HARD_BINS.items():
        count = int((table["hard_bin"] == hard).sum())
        if count:
            pf = b"P" if outcome == "PASS" else b"F"
            records.write(
                1, 40, struct.pack("<BBHIc", ALL_HEADS, 0, hard, count, pf) + _cn(outcome)
            )
    soft = table.groupby("soft_bin", sort=True).agg(
        count=("soft_bin", "size"), name=("bin_name", "first")
    )
    for number, row in soft.iterrows():
        pf = b"P" if row["name"] == "PASS" else b"F"
        records.write(
            1,
            50,
            struct.pack("<BBHIc", ALL_HEADS, 0, int(number), int(row["count"]), pf)
            + _cn(row["name"]),
        )
    good = int((table["outcome"] == "PASS").sum())
    aborted = int(table["outcome"].isin(("ABORTED", "INCOMPLETE")).sum())
    records.write(
        1, 30, struct.pack("<BBIIIII", ALL_HEADS, 0, len(table), 0, aborted, good, MISSING_U4)
    )
