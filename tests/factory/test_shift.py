"""The simulated shift end to end: two simulated stations, the MES simulator as its own process, a
lot, instrument faults, an MES outage, a line-database outage, a limits change, a fouling TX
jumper that SPC catches. The test checks the acceptance claims itself from the MES's view, the
line database, the stations' stores and outboxes and the audit log, and then that
`verify_shift` (what `station shift` reports) found no problem either."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from rich.console import Console

from sim_instruments.__main__ import _control
from sim_instruments.bench import SimBench
from station.calibration.paths import load_path_calibrations
from station.calibration.resolve import load_matings
from station.config import load_station_config
from station.limits import limits_path, load_limits
from station.mes.http import HttpMes
from station.mes.outbox import DELIVERED, Outbox
from station.mes.protocol import CheckIn, CheckOut, MesRejected, checkout_key
from station.mes.retest import load_retest_policy
from station.results import queries
from station.results.downtime import downtime_frame
from station.security.audit import AuditLog, verify_log
from station.security.changes import limit_fields, reconstruct_limits
from station.shift import ShiftResult, run_shift
from station.shift_station import OPERATION, PRODUCT, SEQUENCE, ShiftPlan, lot_serials
from tests.factory.conftest import LOT, SERIALS


def _shift(out: Path, units: int, golden_every: int) -> tuple[ShiftPlan, ShiftResult]:
    plan = ShiftPlan(
        out=out, units=units, stations=2, sites=1, time_factor=0.01, golden_every=golden_every,
        seed=7,
    )  # fmt: skip
    return plan, run_shift(plan, Console(file=io.StringIO(), width=200))


def _runs(url: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return queries.runs_frame(conn, {})
    finally:
        engine.dispose()


def _assert_acceptance(plan: ShiftPlan, result: ShiftResult) -> None:
    summary, serials = result.summary, lot_serials(plan)
    max_attempts = load_retest_policy().rule(PRODUCT, OPERATION).max_attempts
    stations = sorted(summary["per_station"])
    line_runs = _runs(summary["line_db"])
    lot_runs = line_runs[
        (line_runs["lot_id"] == plan.lot_id) & (line_runs["sequence"] == SEQUENCE)
    ].sort_values(["started_at", "run_id"], kind="stable")

    # every serial has exactly one final disposition, the same in the MES and the line store,
    # and no unit used more attempts than its retest rule allows
    mes_units = {u["serial"]: u for u in summary["mes_units"]}
    assert sorted(mes_units) == sorted(serials)
    assert set(lot_runs["route_operation"]) == {OPERATION}  # each run carries its traveller
    assert set(lot_runs["work_order"]) == {f"WO-{plan.lot_id}"}
    for serial in serials:
        unit = mes_units[serial]
        attempts = unit["attempts"][OPERATION]
        runs = lot_runs[lot_runs["dut_serial"] == serial]
        assert unit["unit_state"] in ("complete", "exhausted") and unit["open"] == {}
        assert unit["final_disposition"] == runs["outcome"].iloc[-1]
        assert [a["run_id"] for a in attempts] == runs["run_id"].tolist()
        assert 1 <= len(attempts) <= max_attempts

    # queued check-outs and results were delivered exactly once: the MES applied one check-out
    # per lot run of the stores, the line database holds every finished run of every station
    # once, and every outbox entry was delivered (some only after an outage)
    applied = summary["mes_check_outs"]
    keys = [a["idempotency_key"] for a in applied]
    assert len(keys) == len(set(keys)) == len(lot_runs)
    assert sorted(a["run_id"] for a in applied) == sorted(lot_runs["run_id"])
    station_runs, retried = [], {"check_out": 0, "results": 0, "downtime": 0}
    for station in stations:
        folder = plan.out / station
        local = _runs(f"sqlite:///{folder / 'results.sqlite'}")
        station_runs += local.loc[local["ended_at"].notna(), "run_id"].tolist()
        with Outbox(folder / "outbox.sqlite") as outbox:
            entries = outbox.entries()
        assert {e.state for e in entries} == {DELIVERED}
        for entry in entries:
            retried[entry.kind] += entry.attempts > 1
        assert sorted(e.key for e in entries if e.kind == "results") == sorted(
            f"{station}/{r}" for r in local.loc[local["ended_at"].notna(), "run_id"]
        )
    assert sorted(line_runs["run_id"]) == sorted(station_runs)
    # so was every ended downtime: the line database can set UPH against the time available
    line_engine = sa.create_engine(summary["line_db"])
    try:
        with line_engine.connect() as conn:
            line_down = downtime_frame(conn)
    finally:
        line_engine.dispose()
    for station in stations:
        local_engine = sa.create_engine(f"sqlite:///{plan.out / station / 'results.sqlite'}")
        try:
            with local_engine.connect() as conn:
                local_down = downtime_frame(conn, [station])
        finally:
            local_engine.dispose()
        assert local_down["ended_at"].notna().all()  # the shift ended every downtime it began
        theirs = line_down[line_down["station_id"] == station]
        columns = ["reason", "site", "started_at", "ended_at"]
        assert theirs[columns].reset_index(drop=True).equals(local_down[columns])
        assert {"calibration", "mes_down"} <= set(theirs["reason"])
    assert line_runs["run_id"].is_unique
    assert retried["results"] > 0  # queued through the line-database outage, then drained

    # the injected events happened: an MES outage (downtime recorded), a database outage, an
    # instrument fault giving an ERROR that retested automatically, an SPC lock and unlock
    events = {e["event"]: e for e in summary["events"]}
    assert {"mes_outage", "db_outage", "limits_change"} <= set(events)
    assert events["mes_outage"]["seen_by"] == stations
    assert events["db_outage"]["seen_by"] == stations
    assert any(f["downtime_s"].get("mes_down", 0) > 0 for f in summary["per_station"].values())
    errored = lot_runs[lot_runs["outcome"] == "ERROR"]["dut_serial"]
    assert len(errored) >= 1
    assert all((lot_runs["dut_serial"] == s).sum() > 1 for s in errored)
    drift = summary["per_station"][stations[plan.drift_station - 1]]
    assert [e["event"] for e in drift["events"] if e["event"] in ("spc_lock", "unlock")][:2] == [
        "spc_lock", "unlock",
    ]  # fmt: skip
    assert Path(drift["spc_chart"]).stat().st_size > 0
    # the technician's new TX jumper is in the drifting station's config, counted from no
    # matings, and its paths were calibrated through it before production went on
    station_id = stations[plan.drift_station - 1]
    folder = plan.out / station_id
    installed = load_station_config(folder / "station.toml").jumpers["tx_breakout"].serial
    shipped = load_station_config(bench="module").jumpers["tx_breakout"]
    assert installed != shipped.serial
    local_url = f"sqlite:///{folder / 'results.sqlite'}"
    matings = load_matings(local_url, station_id)
    assert matings[shipped.serial] > shipped.mating_count and matings[installed] > 0
    calibrated = {r.jumper_serial for r in load_path_calibrations(local_url, station_id)}
    assert {shipped.serial, installed} <= calibrated

    # the audit log verifies and reconstructs the limits change; runs after it used the new file
    log = Path(summary["audit_log"])
    verify_log(log)
    entries = AuditLog(log).entries()
    new = load_limits(summary["limits_file"])
    base = limit_fields(load_limits(limits_path(PRODUCT)))
    assert reconstruct_limits(base, entries, PRODUCT) == limit_fields(new)
    assert reconstruct_limits(base, entries, PRODUCT) != base
    assert (lot_runs["limits_sha256"] == new.sha256).any()
    assert (lot_runs["limits_sha256"] != new.sha256).any()
    locks = [e for e in entries if e["action"] in ("lock", "unlock")]
    assert [e["action"] for e in locks][:2] == ["lock", "unlock"]
    assert all(e["details"]["reason"] for e in locks)

    # yields and UPH are reported and agree with the MES's finals
    (lot,) = summary["yields_lot"]
    finals = [mes_units[s]["final_disposition"] for s in serials]
    assert lot["units"] == len(serials) and lot["runs"] == len(lot_runs)
    assert lot["final_yield"] == pytest.approx(finals.count("PASS") / len(serials))
    assert 0.0 <= lot["first_pass_yield"] <= lot["final_yield"] <= 1.0
    assert sum(r["units"] for r in summary["yields_by_station"]) >= len(serials)
    for station in stations:
        (uph,) = summary["per_station"][station]["uph"]
        assert uph["uph"] > 0 and uph["units"] > 0
    assert summary["lot_uph"] > 0
    assert result.problems == []


@pytest.mark.timeout(600)
def test_a_small_shift_with_every_event(tmp_path: Path) -> None:
    plan, result = _shift(tmp_path / "shift", units=12, golden_every=4)
    _assert_acceptance(plan, result)


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_a_200_unit_shift(tmp_path: Path) -> None:
    plan, result = _shift(tmp_path / "shift", units=200, golden_every=8)
    _assert_acceptance(plan, result)


def test_the_mes_queue_holds_what_may_be_tested_next(mes: HttpMes) -> None:
    assert mes.lot_queue(LOT, OPERATION) == SERIALS
    first = mes.check_in(CheckIn(SERIALS[0], OPERATION, "ST1"))
    second = mes.check_in(CheckIn(SERIALS[1], OPERATION, "ST2"))
    assert first.allowed and second.allowed
    assert mes.lot_queue(LOT, OPERATION) == SERIALS[2:]  # checked in: not offered elsewhere
    for decision, outcome, station in ((first, "PASS", "ST1"), (second, "FAIL", "ST2")):
        key = checkout_key(station, f"run-{decision.serial}")
        mes.check_out(
            CheckOut(key, decision.serial, OPERATION, station, f"run-{decision.serial}",
                     outcome, 1 if outcome == "PASS" else 2)
        )  # fmt: skip
    assert mes.lot_queue(LOT, OPERATION) == SERIALS[1:]  # passed: gone; failed: retest left
    assert [c["run_id"] for c in mes.check_outs()] == [f"run-{s}" for s in SERIALS[:2]]
    with pytest.raises(MesRejected, match="unknown lot"):
        mes.lot_queue("NO-LOT", OPERATION)


def test_a_fouling_jumper_gains_loss_at_every_mating_until_swapped() -> None:
    with SimBench.build(time_factor=0.01) as bench:
        before = bench.world.tx_jumper_db(0)
        assert _control([bench], "foul tx_breakout 0.05") == "ok"
        for serial in ("SIM0001", "SIM0002", "SIM0003"):
            assert _control([bench], f"insert {serial} {PRODUCT}") == "ok"
        assert bench.world.tx_jumper_db(0) == pytest.approx(before + 0.15, abs=1e-3)
        assert _control([bench], "jumper tx_breakout MPO8-TX-9001") == "ok"
        swapped = bench.world.tx_jumper_db(0)
        assert _control([bench], f"insert SIM0004 {PRODUCT}") == "ok"
        assert bench.world.tx_jumper_db(0) == pytest.approx(swapped, abs=1e-3)
        assert _control([bench], "foul rx_breakout 0.05").startswith("error: jumper")
