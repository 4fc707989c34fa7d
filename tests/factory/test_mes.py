"""The MES client against the simulated MES: check-in rules, idempotent check-out, outages and
clear errors; and `python -m sim_mes serve` as its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sim_mes.server import MesServer
from station.mes.http import HttpMes
from station.mes.protocol import (
    CheckIn,
    CheckInDecision,
    CheckOut,
    MesProtocolError,
    MesRejected,
    MesUnavailable,
    checkout_key,
)
from tests.factory.conftest import LOT

OP = "final_test"
ROOT = Path(__file__).resolve().parents[2]  # the source tree: `-m sim_mes` from here


def control(server: MesServer, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as reply:
        return json.loads(reply.read())


def checkout(serial: str, station: str, run_id: str, disposition: str) -> CheckOut:
    return CheckOut(
        idempotency_key=checkout_key(station, run_id),
        serial=serial,
        operation=OP,
        station=station,
        run_id=run_id,
        disposition=disposition,
        bin=1 if disposition == "PASS" else 2,
        summary={"tx_average_power_min_dbm": 1.2},
    )


def test_a_unit_checks_in_tests_and_checks_out(mes: HttpMes) -> None:
    decision = mes.check_in(CheckIn("SIM0001", OP, "ST1"))
    assert decision.allowed and decision.attempt == 1 and decision.reasons == ()
    assert (decision.lot_id, decision.product) == (LOT, "800G-DR8")
    receipt = mes.check_out(checkout("SIM0001", "ST1", "r1", "PASS"))
    assert not receipt.duplicate and receipt.unit_state == "complete"
    unit = mes.unit("SIM0001")
    assert unit["final_disposition"] == "PASS" and len(unit["attempts"][OP]) == 1
    again = mes.check_in(CheckIn("SIM0001", OP, "ST1"))
    assert not again.allowed and again.reasons == ("final_test already passed",)


def test_check_in_refuses_with_reasons(mes: HttpMes, mes_server: MesServer) -> None:
    unknown = mes.check_in(CheckIn("NOPE", OP, "ST1"))
    assert not unknown.allowed and unknown.reasons == ("unknown serial NOPE",)
    off_route = mes.check_in(CheckIn("SIM0002", "burn_in", "ST1"))
    assert not off_route.allowed and "not on route final_test" in off_route.reasons[0]
    control(mes_server, "/control/hold", {"target": "SIM0002", "reason": "ESD event"})
    held = mes.check_in(CheckIn("SIM0002", OP, "ST1"))
    assert held.reasons == ("unit on hold: ESD event",)
    control(mes_server, "/control/hold", {"target": "SIM0002", "reason": None})
    assert mes.check_in(CheckIn("SIM0002", OP, "ST1")).allowed
    busy = mes.check_in(CheckIn("SIM0002", OP, "ST2"))
    assert busy.reasons == ("checked in at ST1",)


def test_previous_operation_must_have_passed(mes: HttpMes, mes_server: MesServer) -> None:
    control(
        mes_server,
        "/control/lots",
        {"lot_id": "LOT-B", "product": "800G-DR8", "route": ["golden_check", OP],
         "serials": ["SIM0100"]},
    )  # fmt: skip
    refused = mes.check_in(CheckIn("SIM0100", OP, "ST1"))
    assert refused.reasons == ("previous operation golden_check has not passed",)
    assert mes.check_in(CheckIn("SIM0100", "golden_check", "ST1")).allowed
    mes.check_out(
        CheckOut(checkout_key("ST1", "g1"), "SIM0100", "golden_check", "ST1", "g1", "PASS", 1)
    )
    assert mes.check_in(CheckIn("SIM0100", OP, "ST1")).allowed


def test_retests_follow_the_policy_across_stations(mes: HttpMes) -> None:
    assert mes.check_in(CheckIn("SIM0003", OP, "ST1")).allowed
    assert mes.check_out(checkout("SIM0003", "ST1", "r1", "ERROR")).unit_state == "in_route"
    second = mes.check_in(CheckIn("SIM0003", OP, "ST2"))  # ERROR: retest anywhere, no action
    assert second.allowed and second.attempt == 2
    mes.check_out(checkout("SIM0003", "ST2", "r2", "FAIL"))
    bare = mes.check_in(CheckIn("SIM0003", OP, "ST1"))
    assert not bare.allowed and "needs an action" in bare.reasons[0]
    third = mes.check_in(CheckIn("SIM0003", OP, "ST1", action="reseat", reason_code="RS01"))
    assert third.allowed and third.attempt == 3
    receipt = mes.check_out(checkout("SIM0003", "ST1", "r3", "FAIL"))
    assert receipt.unit_state == "exhausted"
    done = mes.check_in(CheckIn("SIM0003", OP, "ST2", action="clean", reason_code="CL01"))
    assert not done.allowed and "3 of 3 attempts used" in done.reasons[0]
    unit = mes.unit("SIM0003")
    assert unit["final_disposition"] == "FAIL"
    assert [a["action"] for a in unit["attempts"][OP]] == [None, None, "reseat"]


def test_check_out_is_applied_once_per_key(mes: HttpMes, mes_server: MesServer) -> None:
    mes.check_in(CheckIn("SIM0004", OP, "ST1"))
    first = mes.check_out(checkout("SIM0004", "ST1", "r1", "PASS"))
    repeat = mes.check_out(checkout("SIM0004", "ST1", "r1", "PASS"))
    assert (first.duplicate, repeat.duplicate) == (False, True)
    assert len(mes_server.state.applied_view()) == 1
    with pytest.raises(MesRejected) as conflict:
        mes.check_out(checkout("SIM0004", "ST1", "r1", "FAIL"))  # same key, another body
    assert conflict.value.status == 409 and "different body" in conflict.value.message


def test_check_out_without_check_in_is_rejected(mes: HttpMes) -> None:
    with pytest.raises(MesRejected, match="not checked in for final_test at ST1") as caught:
        mes.check_out(checkout("SIM0005", "ST1", "r1", "PASS"))
    assert caught.value.status == 409


def test_outage_and_unreachable_raise_unavailable(mes: HttpMes, mes_server: MesServer) -> None:
    control(mes_server, "/control/outage", {"down": True})
    with pytest.raises(MesUnavailable, match="HTTP 503"):
        mes.check_in(CheckIn("SIM0006", OP, "ST1"))
    control(mes_server, "/control/outage", {"down": False})
    assert mes.check_in(CheckIn("SIM0006", OP, "ST1")).allowed
    url = mes_server.url
    mes_server.close()
    with pytest.raises(MesUnavailable, match="unreachable"):
        HttpMes(url, timeout_s=1.0).check_in(CheckIn("SIM0006", OP, "ST1"))


def test_a_lost_reply_is_unavailable_and_the_resend_a_duplicate(
    mes: HttpMes, mes_server: MesServer
) -> None:
    mes.check_in(CheckIn("SIM0007", OP, "ST1"))
    control(mes_server, "/control/lose-replies", {"count": 1})
    with pytest.raises(MesUnavailable):
        mes.check_out(checkout("SIM0007", "ST1", "r1", "PASS"))
    assert mes.check_out(checkout("SIM0007", "ST1", "r1", "PASS")).duplicate
    assert len(mes_server.state.applied_view()) == 1


def test_bad_requests_and_replies_are_clear(mes: HttpMes, mes_server: MesServer) -> None:
    with pytest.raises(MesRejected, match="HTTP 404"):
        mes.unit("NOPE")
    with pytest.raises(ValueError, match="disposition 'MAYBE'"):
        checkout("SIM0001", "ST1", "r1", "MAYBE")
    with pytest.raises(ValueError, match="http://"):
        HttpMes("127.0.0.1:80")
    with pytest.raises(MesRejected, match="no such endpoint"):
        HttpMes(mes_server.url + "/elsewhere").check_in(CheckIn("SIM0001", OP, "ST1"))


def test_malformed_reply_is_a_protocol_error(mes: HttpMes) -> None:
    # The unit view is valid JSON but not a check-in decision.
    with pytest.raises(MesProtocolError, match="field 'operation' = None: expected text"):
        CheckInDecision.from_json(mes.unit("SIM0001"))


def test_sim_mes_serves_as_its_own_process(tmp_path: Path) -> None:
    lots = tmp_path / "lots.toml"
    lots.write_text(
        '[lots.L7]\nproduct = "800G-DR8"\nroute = ["final_test"]\n'
        'serial_range = { prefix = "SIM", first = 1, count = 3 }\n'
    )
    with subprocess.Popen(
        [sys.executable, "-m", "sim_mes", "serve", "--port", "0", "--lots", str(lots)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        first = process.stdout.readline().split()
        assert first[0] == "URL" and process.stdout.readline().strip() == "READY"
        client = HttpMes(first[1], timeout_s=2.0)
        assert client.check_in(CheckIn("SIM0003", OP, "ST1")).allowed
        assert not client.check_in(CheckIn("SIM0004", OP, "ST1")).allowed
        process.stdin.write("outage on\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "ok"
        with pytest.raises(MesUnavailable):
            client.check_in(CheckIn("SIM0002", OP, "ST1"))
        process.stdin.write("outage sideways\n")
        process.stdin.flush()
        assert process.stdout.readline().startswith("error: cannot parse")
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_sim_mes_bad_lots_file_exits_2(tmp_path: Path) -> None:
    lots = tmp_path / "lots.toml"
    lots.write_text('[lots.L7]\nproduct = "800G-DR8"\nroute = "final_test"\nserials = ["A"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "sim_mes", "serve", "--lots", str(lots)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"error: {lots}: lots.L7.route = 'final_test': must list operations"
    )


def test_the_simulator_refuses_bad_bodies(mes_server: MesServer) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for path, data, status, message in (
        ("/api/v1/check-in", b"not json", 400, "body is not JSON"),
        ("/api/v1/check-in", b"[1]", 400, "body must be a JSON object"),
        ("/api/v1/check-in", b'{"serial": "SIM0001"}', 400, "operation missing"),
        ("/control/lose-replies", b'{"count": -1}', 400, "count must be an integer >= 0"),
        ("/control/lots", b'{"lot_id": "LOT-A", "serials": ["X"], "route": ["t"]}', 409,
         "lot LOT-A exists"),
    ):  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(urllib.request.Request(mes_server.url + path, data=data))
        assert caught.value.code == status
        assert json.loads(caught.value.read())["error"].startswith(message)
        caught.value.close()
