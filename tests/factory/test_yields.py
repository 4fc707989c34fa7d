"""First-pass yield, final yield and retest rate per station and lot, from the results store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from station.events import RunEnded, RunStarted
from station.mes.traveller import Traveller
from station.outcome import Outcome
from station.results.queries import FilterError, retest_yields
from station.results.store import ResultsStore

T0 = 1_800_000_000_000_000_000
#: (serial, station, outcome) in the order tested; None: still in flight
ATTEMPTS = [
    ("U1", "ST1", "PASS"),
    ("U2", "ST1", "FAIL"),
    ("U3", "ST1", "ERROR"),
    ("U4", "ST2", "FAIL"),
    ("U2", "ST1", "PASS"),
    ("U3", "ST2", "PASS"),
    ("U4", "ST2", "FAIL"),
    ("U4", "ST2", "FAIL"),
    ("U5", "ST1", None),
]


def _run(store: ResultsStore, n: int, serial: str, station: str, outcome: str | None,
         lot: str = "L1") -> None:  # fmt: skip
    run_id = f"run-{lot}-{n}"
    store(
        RunStarted(
            run_id=run_id, sequence="pluggable", product="800G-DR8", dut_serial=serial, site=1,
            station_id=station, operator="op", software_version="0", limits_path="l.toml",
            limits_sha256="0" * 64, mode="production", instruments=(),
            at_ns=T0 + n * 1_000_000_000,
            **Traveller(lot, "final_test", "WO-7", {"pcb": "P1"}).run_fields(),
        )
    )  # fmt: skip
    if outcome is not None:
        store(RunEnded(run_id, Outcome(outcome), None, at_ns=T0 + n * 1_000_000_000 + 1))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "r.sqlite") as store:
        for n, (serial, station, outcome) in enumerate(ATTEMPTS):
            _run(store, n, serial, station, outcome)
        _run(store, 99, "V1", "ST1", "PASS", lot="L2")
        store.flush()
        yield store


def _yields(store: ResultsStore, **kwargs: object) -> pd.DataFrame:
    with store.engine.connect() as conn:
        return retest_yields(conn, **kwargs)  # type: ignore[arg-type]


def test_yields_per_lot_and_station(store: ResultsStore) -> None:
    table = _yields(store, filters={"lot": "L1"})
    assert table.columns.tolist() == [
        "lot_id", "station_id", "units", "runs", "first_pass_yield", "final_yield",
        "retest_rate",
    ]  # fmt: skip
    st1, st2 = (table[table["station_id"] == s].iloc[0] for s in ("ST1", "ST2"))
    # ST1: U1 PASS; U2 FAIL then PASS; U3 ERROR (then moved to ST2). U5 is still in flight.
    assert (st1["units"], st1["runs"]) == (3, 4)
    assert st1["first_pass_yield"] == pytest.approx(1 / 3)
    assert st1["final_yield"] == pytest.approx(2 / 3)
    assert st1["retest_rate"] == pytest.approx(1 / 4)
    # ST2: U4 FAIL x3; U3 PASS at its first attempt there
    assert (st2["units"], st2["runs"]) == (2, 4)
    assert st2["first_pass_yield"] == pytest.approx(1 / 2)
    assert st2["final_yield"] == pytest.approx(1 / 2)
    assert st2["retest_rate"] == pytest.approx(2 / 4)


def test_yields_of_a_lot_over_all_stations(store: ResultsStore) -> None:
    table = _yields(store, filters={}, by=("lot_id",))
    l1 = table[table["lot_id"] == "L1"].iloc[0]
    assert (l1["units"], l1["runs"]) == (4, 8)
    assert l1["first_pass_yield"] == pytest.approx(1 / 4)  # only U1 passed at once
    assert l1["final_yield"] == pytest.approx(3 / 4)  # U4 failed for good
    assert l1["retest_rate"] == pytest.approx(4 / 8)
    l2 = table[table["lot_id"] == "L2"].iloc[0]
    assert (l2["units"], l2["final_yield"], l2["retest_rate"]) == (1, 1.0, 0.0)


def test_unknown_grouping_is_refused(store: ResultsStore) -> None:
    with pytest.raises(FilterError, match="cannot group by 'shift'"):
        _yields(store, filters={}, by=("shift",))


def test_the_traveller_is_recorded_on_the_run(store: ResultsStore) -> None:
    run = store.runs(run_id="run-L1-0").iloc[0]
    assert (run["lot_id"], run["work_order"], run["route_operation"]) == (
        "L1", "WO-7", "final_test",
    )  # fmt: skip
    parts = store.unit_parts("U1")
    assert set(zip(parts["part_role"], parts["part_id"], strict=True)) == {("pcb", "P1")}
    assert store.attributes("run-L1-0").empty  # the traveller is no longer kept as attributes
