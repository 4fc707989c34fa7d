"""Station downtime with reasons: start and end, an open downtime reported twice, the reason
vocabulary enforced in one line, and the union of overlapping downtimes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pytest

from station.errors import StationError
from station.results.downtime import (
    REASONS,
    DowntimeError,
    downtime_end,
    downtime_frame,
    downtime_start,
    overlap_s,
)
from station.results.store import ResultsStore

T = dt.datetime(2027, 1, 4, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[ResultsStore]:
    with ResultsStore(store_url) as opened:
        yield opened


def _at(minutes: float) -> dt.datetime:
    return T + dt.timedelta(minutes=minutes)


def test_the_reason_vocabulary() -> None:
    assert list(REASONS) == [
        "locked", "mes_down", "db_down", "instrument_fault", "calibration", "no_material",
        "maintenance",
    ]  # fmt: skip
    assert all(text.strip() for text in REASONS.values())


def test_start_and_end_downtimes(store: ResultsStore) -> None:
    engine = store.engine
    mes = downtime_start(engine, "ST1", "mes_down", "check-in refused: 503", "station", at=_at(0))
    again = downtime_start(engine, "ST1", "mes_down", "still 503", "station", at=_at(5))
    assert again == mes  # the same condition reported again: still the one downtime
    fault = downtime_start(engine, "ST1", "instrument_fault", "BERT", "tom", site=2, at=_at(3))
    other = downtime_start(engine, "ST2", "mes_down", "check-in refused", "station", at=_at(1))
    assert len({mes, fault, other}) == 3
    assert downtime_end(engine, "ST1", site=2, at=_at(20)) == [fault]
    assert downtime_end(engine, "ST1", reason="mes_down", at=_at(30)) == [mes]
    assert downtime_end(engine, "ST1", at=_at(31)) == []  # nothing open any more
    with engine.connect() as conn:
        frame = downtime_frame(conn, ["ST1"])
    assert frame["id"].tolist() == [mes, fault]
    row = frame.set_index("id").loc[mes]
    assert (row["reason"], row["detail"], row["recorded_by"]) == (
        "mes_down", "check-in refused: 503", "station",
    )  # fmt: skip
    assert row["started_at"] == _at(0) and row["ended_at"] == _at(30)
    assert frame["site"].isna().tolist() == [True, False]
    with engine.connect() as conn:
        everything = downtime_frame(conn)
    assert everything["station_id"].tolist() == ["ST1", "ST2", "ST1"]  # by start
    assert everything.set_index("id")["ended_at"].isna()[other]  # ST2 is still down


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: downtime_start(e, "ST1", "lunch", "", "tom"), "downtime reason 'lunch' is"),
        (lambda e: downtime_start(e, "ST1", "locked", "", " "), "downtime recorded_by ''"),
        (lambda e: downtime_start(e, "", "locked", "", "tom"), "downtime station_id ''"),
        (lambda e: downtime_end(e, "ST1", reason="coffee"), "downtime reason 'coffee' is"),
        (
            lambda e: downtime_start(e, "ST1", "locked", "", "tom", at=dt.datetime(2027, 1, 1)),
            "give a time zone",
        ),
    ],
)
def test_bad_downtimes_are_refused_in_one_line(
    store: ResultsStore, call: object, message: str
) -> None:
    with pytest.raises(DowntimeError) as refused:
        call(store.engine)  # type: ignore[operator]
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert isinstance(refused.value, StationError)


def test_an_end_before_the_start_is_refused(store: ResultsStore) -> None:
    downtime_start(store.engine, "ST1", "maintenance", "jumper swap", "tom", at=_at(10))
    with pytest.raises(DowntimeError, match="is before its start"):
        downtime_end(store.engine, "ST1", at=_at(5))


def test_overlapping_downtimes_count_once() -> None:
    starts = np.array([10.0, 0.0, 50.0, 55.0, 90.0])
    ends = np.array([30.0, 20.0, 60.0, 58.0, np.nan])  # the last is still open
    # within 5..100: 5-30 (25), 50-60 (10), 90-100 (10)
    assert overlap_s(starts, ends, (5.0, 100.0)) == pytest.approx(45.0)
    assert overlap_s(starts, ends, (31.0, 49.0)) == 0.0
    assert overlap_s(np.array([]), np.array([]), (0.0, 10.0)) == 0.0
