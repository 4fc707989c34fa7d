"""The station's route flow against the simulated MES: the station lock, the local retest check
from the results store, roles for retest actions, and check-outs that wait out an MES outage."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim_mes.server import MesServer
from station.events import RunEnded, RunStarted
from station.mes.http import HttpMes
from station.mes.outbox import DELIVERED, Backoff, Outbox
from station.mes.retest import load_retest_policy
from station.mes.shopfloor import ShopFloor, store_history
from station.mes.traveller import Traveller
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.security.audit import AuditLog
from station.security.lock import StationLocked, lock
from station.security.users import PermissionDenied, User

OP, PRODUCT = "final_test", "800G-DR8"
OPERATOR = User("olga", "operator", None, b"", b"")
TECHNICIAN = User("tom", "technician", None, b"", b"")


def _outage(server: MesServer, down: bool) -> None:
    request = urllib.request.Request(
        server.url + "/control/outage", data=json.dumps({"down": down}).encode()
    )
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request).close()


class Line:
    """One station's store, outbox, audit log and shop-floor flow."""

    def __init__(self, folder: Path, mes: HttpMes) -> None:
        self.store = ResultsStore(folder / "results.sqlite")
        self.outbox = Outbox(folder / "outbox.sqlite", backoff=Backoff(base_s=0.0))
        self.audit = AuditLog(folder / "audit.jsonl")
        self.floor = ShopFloor(
            mes, self.outbox, load_retest_policy(), station_id="ST1",
            history=store_history(self.store), audit=self.audit,
        )  # fmt: skip
        self.runs = 0

    def record_run(self, serial: str, outcome: str) -> str:
        """A run of `serial` at OP as the engine would record it."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        self.store(
            RunStarted(
                run_id=run_id, sequence="pluggable", product=PRODUCT, dut_serial=serial, site=1,
                station_id="ST1", operator="olga", software_version="0", limits_path="l.toml",
                limits_sha256="0" * 64, mode="production", instruments=(),
                **Traveller("LOT-A", OP, "WO-1").run_fields(),
            )
        )  # fmt: skip
        self.store(RunEnded(run_id, Outcome(outcome), None))
        self.store.flush()
        return run_id


@pytest.fixture
def line(tmp_path: Path, mes: HttpMes) -> Iterator[Line]:
    line = Line(tmp_path, mes)
    yield line
    line.outbox.close()
    line.store.close()


def test_a_unit_through_fail_retest_and_an_outage(
    line: Line, mes: HttpMes, mes_server: MesServer
) -> None:
    floor = line.floor
    first = floor.check_in("SIM0001", PRODUCT, OP, OPERATOR)
    assert first.allowed and first.attempt == 1
    _, report = floor.check_out(first, line.record_run("SIM0001", "FAIL"), "FAIL", 2)
    assert report.delivered == ["ST1/run-1"]
    with pytest.raises(PermissionDenied, match="may not reseat"):
        floor.check_in("SIM0001", PRODUCT, OP, OPERATOR, action="reseat", reason_code="RS01")
    bare = floor.check_in("SIM0001", PRODUCT, OP, TECHNICIAN)
    assert not bare.allowed and "needs an action" in bare.reasons[0]
    second = floor.check_in("SIM0001", PRODUCT, OP, TECHNICIAN, action="reseat", reason_code="RS01")
    assert second.allowed and second.attempt == 2
    _outage(mes_server, True)
    _, report = floor.check_out(second, line.record_run("SIM0001", "FAIL"), "FAIL", 2)
    assert list(report.retry_later) == ["ST1/run-2"]  # durable in the outbox, not lost
    waiting = floor.check_in("SIM0001", PRODUCT, OP, TECHNICIAN, action="clean", reason_code="CL01")
    assert waiting.reasons == ("check-out of run run-2 is still queued for the MES",)
    _outage(mes_server, False)
    third = floor.check_in("SIM0001", PRODUCT, OP, TECHNICIAN, action="clean", reason_code="CL01")
    assert third.allowed and third.attempt == 3  # the queued check-out went first
    floor.check_out(third, line.record_run("SIM0001", "PASS"), "PASS", 1)
    assert [e.state for e in line.outbox.entries()] == [DELIVERED] * 3
    unit = mes.unit("SIM0001")
    assert unit["final_disposition"] == "PASS"
    assert [a["disposition"] for a in unit["attempts"][OP]] == ["FAIL", "FAIL", "PASS"]
    assert len(mes_server.state.applied_view()) == 3


def test_the_station_enforces_the_limit_from_its_own_store(line: Line, mes: HttpMes) -> None:
    for _ in range(3):  # attempts the MES never heard of (e.g. another route's records)
        line.record_run("SIM0002", "FAIL")
    refused = line.floor.check_in(
        "SIM0002", PRODUCT, OP, TECHNICIAN, action="clean", reason_code="CL01"
    )
    assert not refused.allowed and "3 of 3 attempts used" in refused.reasons[0]
    assert mes.unit("SIM0002")["open"] == {}  # the MES was not even asked


def test_a_locked_station_tests_nothing(line: Line) -> None:
    lock(line.audit, "ST1", "SPC golden_tx_power_dbm: rule1", actor="spc", role="system")
    with pytest.raises(StationLocked, match="station ST1 is locked"):
        line.floor.check_in("SIM0003", PRODUCT, OP, OPERATOR)


def test_nothing_checks_out_without_a_check_in(line: Line) -> None:
    refused = line.floor.check_in("NOPE", PRODUCT, OP, OPERATOR)
    assert not refused.allowed and refused.reasons == ("unknown serial NOPE",)
    with pytest.raises(ValueError, match="was not checked in"):
        line.floor.check_out(refused, "run-x", "PASS", 1)
