"""The store persists as events arrive: a crash loses at most the step in flight."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from station.engine import StepContext
from station.limits import LimitsFile
from station.results.store import ResultsStore, StoreError, database_url
from station.sequence import step
from tests.station.helpers import FakeSource, make_engine, measure_later, measure_power


def test_a_step_is_durable_while_the_next_one_runs(limits: LimitsFile, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db)
    seen_during_step_2: list[pd.DataFrame] = []

    def peek() -> pd.DataFrame:
        other = sa.create_engine(database_url(db))  # another connection, as after a crash
        try:
            with other.connect() as conn:
                return pd.read_sql("SELECT * FROM measurements", conn)
        finally:
            other.dispose()

    @step(roles=("source",), measures=("later",))
    def waits_for_step_1_on_disk(ctx: StepContext) -> None:
        deadline = time.monotonic() + 5.0
        while len(frame := peek()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_during_step_2.append(frame)
        ctx.measure("later", 1.0, unit="V")

    engine = make_engine(limits, (measure_power, waits_for_step_1_on_disk), FakeSource())
    engine.bus.subscribe(store)
    result = engine.run("T7")
    assert len(seen_during_step_2[0]) == 2  # step 1's two lanes, committed while step 2 ran
    frame = store.measurements()
    assert list(frame.columns[:6]) == [
        "run_id",
        "station_id",
        "dut_serial",
        "product",
        "site",
        "step",
    ]
    assert frame["run_id"].unique().tolist() == [result.run_id]
    assert frame["lane"].tolist()[:2] == [1, 2]
    assert frame["unit"].tolist() == ["mW", "mW", "V"]
    assert frame["high_limit"].tolist()[:2] == [1.0, 1.0]
    runs = store.runs()
    assert runs.loc[0, "outcome"] == "PASS" and bool(runs.loc[0, "complete"])
    assert len(runs.loc[0, "limits_sha256"]) == 64
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_a_write_failure_surfaces_instead_of_being_lost(limits: LimitsFile, tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE measurements")  # a database that cannot take them
    engine = make_engine(limits, (measure_power, measure_later), FakeSource())
    engine.bus.subscribe(store)
    engine.run("T8")
    with pytest.raises(StoreError, match="writing results failed"):
        store.flush()


def test_database_url_from_path_or_url(tmp_path: Path) -> None:
    assert database_url(tmp_path / "a.sqlite").startswith("sqlite:////")
    assert (
        database_url("postgresql+psycopg://u@localhost/db") == "postgresql+psycopg://u@localhost/db"
    )


def test_wafer_runs_carry_lot_wafer_and_die(limits: LimitsFile, tmp_path: Path) -> None:
    @step(roles=("source",), measures=("power",))
    def per_die(ctx: StepContext) -> None:
        for die in ((3, -2), (4, -2)):
            ctx.die = die
            ctx.measure("power", 0.5, unit="mW", lane=1)
        ctx.measure("power", 0.6, unit="mW", lane=2, die=(9, 9))

    store = ResultsStore(tmp_path / "r.sqlite")
    engine = make_engine(limits, (per_die, measure_later), FakeSource())
    engine.bus.subscribe(store)
    engine.run("T9", lot_id="LOT42", wafer_id="W07")
    frame = store.measurements(wafer_id="W07")
    assert frame["die_x"].tolist()[:3] == [3, 4, 9] and frame["die_y"].tolist()[:3] == [-2, -2, 9]
    assert set(frame["lot_id"]) == {"LOT42"}
    store.close()
