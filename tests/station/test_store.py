"""The store persists as events arrive: a crash loses at most the step in flight."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from station.events import StepStarted
from station.limits import LimitsFile
from station.store import ResultsStore, database_url
from tests.station.helpers import FakeSource, make_engine, measure_later, measure_power


def test_measurements_are_committed_when_their_step_ends(
    limits: LimitsFile, tmp_path: Path
) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db)
    seen_before_step_2: list[pd.DataFrame] = []
    engine = make_engine(limits, (measure_power, measure_later), FakeSource())
    engine.bus.subscribe(store)

    def peek(event: object) -> None:
        if isinstance(event, StepStarted) and event.index == 1:
            other = sa.create_engine(database_url(db))  # another connection, as after a crash
            with other.connect() as conn:
                seen_before_step_2.append(pd.read_sql("SELECT * FROM measurements", conn))
                runs = pd.read_sql("SELECT complete FROM runs", conn)
            other.dispose()
            assert not runs["complete"].any()

    engine.bus.subscribe(peek)
    result = engine.run("T7")
    assert len(seen_before_step_2[0]) == 2  # step 1's two lanes, before step 2 began
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
    runs = store.runs()
    assert runs.loc[0, "outcome"] == "PASS" and bool(runs.loc[0, "complete"])
    assert len(runs.loc[0, "limits_sha256"]) == 64
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_database_url_from_path_or_url(tmp_path: Path) -> None:
    assert database_url(tmp_path / "a.sqlite").startswith("sqlite:////")
    assert (
        database_url("postgresql+psycopg://u@localhost/db") == "postgresql+psycopg://u@localhost/db"
    )
