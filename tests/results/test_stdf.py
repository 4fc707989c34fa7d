"""STDF V4 export of a wafer run, read back with pystdf: the same dies, bins and results."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from station.results import ResultsStore
from station.results.bins import HARD_BINS, parts, stdf_test_number, stdf_test_numbers
from station.results.stdf import StdfExportError, write_stdf
from tests.results.helpers import ERROR_DIE, FAILING_DIE, dies_of, module_run, wafer_run
from tests.results.stdf_reader import read_records


def test_a_wafer_run_reads_back_with_the_same_dies_bins_and_results(
    store: ResultsStore, tmp_path: Path
) -> None:
    result = wafer_run(store, tmp_path, radius=3, lot_id="LOT5", wafer_id="W05")
    runs, tidy = store.runs(run_id=result.run_id), store.measurements(run_id=result.run_id)
    path = tmp_path / "w05.stdf"
    summary = write_stdf(path, runs, tidy)
    records = read_records(path)
    kinds = [kind for kind, _ in records]
    assert kinds[:4] == ["FAR", "MIR", "WCR", "WIR"] and kinds[-1] == "MRR"
    assert {"WRR", "HBR", "SBR", "PCR", "TSR"} <= set(kinds)
    counts = Counter(kinds)
    dies = dies_of(3)
    assert counts["PIR"] == counts["PRR"] == len(dies) == summary.parts
    assert counts["PTR"] == len(tidy) == summary.results
    fields = dict(records)  # the last of each kind
    assert fields["FAR"] == {"CPU_TYPE": 2, "STDF_VER": 4}
    mir = next(f for k, f in records if k == "MIR")
    assert (mir["LOT_ID"], mir["PART_TYP"], mir["NODE_NAM"]) == ("LOT5", "PIC-A1", "st-1")
    assert next(f for k, f in records if k == "WIR")["WAFER_ID"] == "W05"

    # every die, with its bins, and every result with limits and units, per part
    expected_parts = parts(tidy, runs).set_index(["die_x", "die_y"])
    read_parts: dict[tuple[int, int], dict[str, object]] = {}
    results: dict[tuple[int, int, int], dict[str, object]] = {}
    pending: list[dict[str, object]] = []
    for kind, record in records:
        if kind == "PTR":
            pending.append(record)
        elif kind == "PRR":
            die = (record["X_COORD"], record["Y_COORD"])
            read_parts[die] = record
            results.update({(*die, ptr["TEST_NUM"]): ptr for ptr in pending})
            pending = []
    assert set(read_parts) == set(dies)
    for die, record in read_parts.items():
        part = expected_parts.loc[die]
        assert (record["HARD_BIN"], record["SOFT_BIN"]) == (part["hard_bin"], part["soft_bin"])
    assert read_parts[FAILING_DIE]["HARD_BIN"] == HARD_BINS["FAIL"]
    assert read_parts[FAILING_DIE]["PART_FLG"] & 0x08
    assert read_parts[ERROR_DIE]["HARD_BIN"] == HARD_BINS["ERROR"]
    assert read_parts[(0, 3)]["HARD_BIN"] == HARD_BINS["PASS"]
    for row in tidy.itertuples(index=False):
        lane = None if pd.isna(row.lane) else int(row.lane)
        ptr = results[(row.die_x, row.die_y, stdf_test_number(row.measurement, lane))]
        assert ptr["UNITS"] == row.unit
        assert ptr["TEST_TXT"] == (
            row.measurement if lane is None else f"{row.measurement}[{lane}]"
        )
        assert ptr["LO_LIMIT"] == np.float32(row.low_limit)
        if row.outcome == "ERROR":
            assert ptr["TEST_FLG"] & 0x02 and ptr["TEST_FLG"] & 0x40  # result not valid
            continue
        assert ptr["RESULT"] == np.float32(row.value)  # STDF values are float32
        assert bool(ptr["TEST_FLG"] & 0x80) == (row.outcome == "FAIL")
        assert bool(ptr["OPT_FLAG"] & 0x80) == pd.isna(row.high_limit)  # no high limit
    hbr = {f["HBIN_NUM"]: f["HBIN_CNT"] for k, f in records if k == "HBR"}
    assert hbr == {HARD_BINS["PASS"]: len(dies) - 2, HARD_BINS["FAIL"]: 1, HARD_BINS["ERROR"]: 1}
    sbr = {f["SBIN_NAM"] for k, f in records if k == "SBR"}
    assert sbr == {"PASS", "FAIL coupler_il", "ERROR"}
    pcr = fields["PCR"]
    assert (pcr["PART_CNT"], pcr["GOOD_CNT"]) == (len(dies), len(dies) - 2)


def test_a_module_run_is_one_part_and_text_values_stay_out(
    store: ResultsStore, tmp_path: Path
) -> None:
    result = module_run(store, tmp_path, serial="M0077")
    runs, tidy = store.runs(run_id=result.run_id), store.measurements(run_id=result.run_id)
    path = tmp_path / "m.stdf"
    write_stdf(path, runs, tidy)
    records = read_records(path)
    prr = [f for k, f in records if k == "PRR"]
    assert len(prr) == 1 and prr[0]["PART_ID"] == "M0077" and prr[0]["X_COORD"] == -32768
    assert "WIR" not in {k for k, _ in records}
    assert len([k for k, _ in records if k == "PTR"]) == len(tidy) - 1  # part_number is text


def test_one_product_per_file_and_test_numbers_never_collide(
    store: ResultsStore, tmp_path: Path
) -> None:
    wafer_run(store, tmp_path, radius=1)
    module_run(store, tmp_path)
    with pytest.raises(StdfExportError, match="filter with --product"):
        write_stdf(tmp_path / "x.stdf", store.runs(), store.measurements())
    assert stdf_test_number("tdecq", 3) == stdf_test_number("tdecq", None) + 3
    names = [f"m{i}" for i in range(2000)]
    numbers = stdf_test_numbers((name, lane) for name in names for lane in (None, 1, 8))
    assert len(set(numbers.values())) == len(numbers)
    with pytest.raises(ValueError, match=r"lanes 0\.\.99"):
        stdf_test_numbers([("tdecq", 100)])
