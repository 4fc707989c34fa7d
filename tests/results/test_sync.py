"""Delivering finished runs from a station's store to the line database through the outbox: every
row of a run arrives in one transaction, a redelivery changes nothing, and runs queued while the
line database is held by another session drain in order once it is free. On SQLite and on
PostgreSQL (where STATION_TEST_POSTGRES_URL names a server: a schema made for each test, as for
every store test)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from station.events import RunStarted
from station.mes.outbox import DELIVERED, PENDING, Backoff, Outbox
from station.results import schema as s
from station.results import sync
from station.results.downtime import downtime_end, downtime_start
from station.results.store import ResultsStore
from station.results.sync import (
    DOWNTIME,
    RESULTS,
    LineDatabase,
    LineDatabaseUnavailable,
    SyncRejected,
    deliver_downtime,
    deliver_run,
    downtime_sender,
    queue_downtime,
    queue_results,
    results_sender,
)
from tests.results.helpers import module_run, wafer_run

STATION = "st-1"
#: tables holding rows of a run, and the column that ties a row to it
RUN_TABLES = ("runs", "steps", "run_limits", "run_instruments", "measurements", "attributes",
              "artefacts", "units")  # fmt: skip


@pytest.fixture
def line_url(store_url: str) -> str:
    """The line database: a SQLite file or a fresh PostgreSQL schema (tests/results/conftest.py)."""
    return store_url if "://" in store_url else f"sqlite:///{store_url}"


@pytest.fixture
def line(line_url: str) -> Iterator[LineDatabase]:
    with LineDatabase(line_url, lock_timeout_s=0.3) as opened:
        yield opened


@pytest.fixture
def local(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "station.sqlite") as store:
        yield store


def _counts(engine: sa.Engine, run_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(
                sa.select(sa.func.count()).select_from(s.metadata.tables[name])
                .where(s.metadata.tables[name].c.run_id == run_id)
            ).scalar_one()
            for name in RUN_TABLES
        }  # fmt: skip


def _hold(line: LineDatabase, table: str = "runs") -> sa.Connection:
    """Another session holding the line database (a migration, a long report) until closed."""
    conn = line.engine.connect()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
    else:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn


def test_every_row_of_a_run_arrives_once(
    local: ResultsStore, line: LineDatabase, tmp_path: Path
) -> None:
    module = module_run(local, tmp_path, station_id=STATION).run_id
    wafer = wafer_run(local, tmp_path).run_id
    local.flush()
    for run_id in (module, wafer):
        first = deliver_run(local.engine, line, run_id)
        assert first.inserted and first.rows > 10
        expected = _counts(local.engine, run_id)
        assert _counts(line.engine, run_id) == expected
        assert expected["measurements"] > 0
    assert _counts(local.engine, module)["artefacts"] > 0
    again = deliver_run(local.engine, line, module)  # a crash between insert and acknowledgement
    assert not again.inserted and again.rows == 0
    assert _counts(line.engine, module) == _counts(local.engine, module)
    assert line.run_ids() == sorted([module, wafer])


def test_delivered_values_match_the_station_store(
    local: ResultsStore, line: LineDatabase, tmp_path: Path
) -> None:
    run_id = module_run(local, tmp_path, station_id=STATION).run_id
    local.flush()
    deliver_run(local.engine, line, run_id)
    mine = local.measurements(run_id=run_id).sort_values(["step", "measurement", "lane"])
    with ResultsStore(line.url) as remote:
        theirs = remote.measurements(run_id=run_id).sort_values(["step", "measurement", "lane"])
        artefacts = remote.artefacts(run_id)
    columns = ["step", "measurement", "lane", "value", "outcome", "unit", "low_limit"]
    assert mine[columns].reset_index(drop=True).equals(theirs[columns].reset_index(drop=True))
    assert sorted(artefacts["sha256"]) == sorted(local.artefacts(run_id)["sha256"])


def test_a_failure_half_way_leaves_no_trace(
    local: ResultsStore, line: LineDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = module_run(local, tmp_path, station_id=STATION).run_id
    local.flush()

    def broken(conn: sa.Connection, _rows: list[dict[str, object]]) -> dict[int, int]:
        raise sa.exc.OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(sync, "_calibrations", broken)  # after runs, steps, limits, instruments
    with pytest.raises(LineDatabaseUnavailable, match="connection lost"):
        deliver_run(local.engine, line, run_id)
    assert sum(_counts(line.engine, run_id).values()) == 0
    monkeypatch.undo()
    assert deliver_run(local.engine, line, run_id).inserted


def test_runs_wait_out_a_held_database_and_drain_in_order(
    local: ResultsStore, line: LineDatabase, tmp_path: Path
) -> None:
    runs = [module_run(local, tmp_path, f"M{n:04d}", station_id=STATION).run_id for n in range(3)]
    local.flush()
    with Outbox(tmp_path / "outbox.sqlite", backoff=Backoff(base_s=0.0)) as outbox:
        senders = {RESULTS: results_sender(local.engine, line)}
        held = _hold(line)
        try:
            for run_id in runs:
                assert queue_results(outbox, STATION, run_id)
            report = outbox.deliver_due(senders)
            assert report.delivered == [] and list(report.retry_later) == [f"{STATION}/{runs[0]}"]
            assert [e.state for e in outbox.entries()] == [PENDING] * 3
        finally:
            held.rollback()
            held.close()
        assert not queue_results(outbox, STATION, runs[0])  # queued once, whatever is resent
        report = outbox.deliver_due(senders)
        assert report.delivered == [f"{STATION}/{r}" for r in runs]
        assert [e.state for e in outbox.entries()] == [DELIVERED] * 3
    assert line.run_ids() == sorted(runs)


def test_a_run_has_one_results_entry_beside_its_check_out(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        assert outbox.put("check_out", f"{STATION}/run-1", {"run_id": "run-1", "bin": 1})
        assert queue_results(outbox, STATION, "run-1")  # same key, another kind (receiver)
        assert not queue_results(outbox, STATION, "run-1")
        kinds = [(e.kind, e.key) for e in outbox.entries()]
    assert kinds == [("check_out", f"{STATION}/run-1"), (RESULTS, f"{STATION}/run-1")]


def test_unfinished_and_unknown_runs_are_refused(local: ResultsStore, line: LineDatabase) -> None:
    local(
        RunStarted(
            run_id="in-flight", sequence="pluggable", product="800G-DR8", dut_serial="SIM0001",
            site=1, station_id=STATION, operator="olga", software_version="0",
            limits_path="l.toml", limits_sha256="0" * 64, mode="production", instruments=(),
        )
    )  # fmt: skip
    local.flush()
    with pytest.raises(SyncRejected, match="run in-flight has not ended"):
        deliver_run(local.engine, line, "in-flight")
    with pytest.raises(SyncRejected, match="run nope is not in the station's store"):
        deliver_run(local.engine, line, "nope")
    assert line.run_ids() == []


def _line_downtime(line: LineDatabase) -> list[tuple[object, ...]]:
    d = s.downtime
    columns = (d.c.station_id, d.c.site, d.c.reason, d.c.detail, d.c.recorded_by)
    with line.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(d.c.started_at))]


def test_ended_downtimes_reach_the_line_database_once_after_it_is_free(
    local: ResultsStore, line: LineDatabase, tmp_path: Path
) -> None:
    t0 = dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC)
    minutes = [t0 + dt.timedelta(minutes=m) for m in range(6)]
    mes = downtime_start(
        local.engine, STATION, "mes_down", "check-in refused", "shift", at=minutes[0]
    )
    fault = downtime_start(
        local.engine, STATION, "instrument_fault", "meter", "tech", site=2, at=minutes[1]
    )
    downtime_end(local.engine, STATION, reason="mes_down", at=minutes[2])
    downtime_end(local.engine, STATION, site=2, at=minutes[3])
    still = downtime_start(local.engine, STATION, "locked", "SPC rule 1", "spc", at=minutes[4])
    with Outbox(tmp_path / "outbox.sqlite", backoff=Backoff(base_s=0.0)) as outbox:
        senders = {DOWNTIME: downtime_sender(local.engine, line)}
        held = _hold(line, "downtime")
        try:
            assert queue_downtime(outbox, STATION, mes) and queue_downtime(outbox, STATION, fault)
            report = outbox.deliver_due(senders)
            assert report.delivered == [] and list(report.retry_later) == [
                f"{STATION}/downtime/{mes}"
            ]
        finally:
            held.rollback()
            held.close()
        assert not queue_downtime(outbox, STATION, mes)
        report = outbox.deliver_due(senders)
        assert report.delivered == [f"{STATION}/downtime/{i}" for i in (mes, fault)]
    assert _line_downtime(line) == [
        (STATION, None, "mes_down", "check-in refused", "shift"),
        (STATION, 2, "instrument_fault", "meter", "tech"),
    ]
    assert not deliver_downtime(local.engine, line, fault)  # a redelivery changes nothing
    with pytest.raises(SyncRejected, match=f"downtime {still}: still open"):
        deliver_downtime(local.engine, line, still)
    with pytest.raises(SyncRejected, match="downtime 99: not in the station's store"):
        deliver_downtime(local.engine, line, 99)
    assert len(_line_downtime(line)) == 2
