"""The durable outbox: queued on disk, delivered in order once the receiver is back, backing off
while it is down, and exactly once in effect even when the process dies between send and ack."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sim_mes.server import MesServer
from station.mes import CHECK_OUT, check_out_sender, queue_check_out
from station.mes.http import HttpMes
from station.mes.outbox import DELIVERED, PENDING, REJECTED, Backoff, Outbox, OutboxConflict
from station.mes.protocol import CheckIn, CheckOut, checkout_key

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A results database stand-in: honours keys, can be down."""

    def __init__(self) -> None:
        self.down = False
        self.applied: dict[str, dict[str, Any]] = {}
        self.calls = 0

    def __call__(self, payload: dict[str, Any]) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("database unreachable")
        if payload.get("bad"):
            raise ValueError("schema mismatch")
        self.applied.setdefault(payload["key"], payload)


def test_put_is_durable_and_deduplicated(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        assert outbox.put("results", "run-1", {"key": "run-1", "rows": 3})
        assert not outbox.put("results", "run-1", {"key": "run-1", "rows": 3})
        with pytest.raises(OutboxConflict, match="run-1"):
            outbox.put("results", "run-1", {"key": "run-1", "rows": 4})
    with Outbox(path) as reopened:
        (entry,) = reopened.entries()
        assert (entry.key, entry.state, entry.payload["rows"]) == ("run-1", PENDING, 3)
        mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_delivery_waits_with_backoff_and_keeps_order(tmp_path: Path) -> None:
    receiver = Receiver()
    with Outbox(tmp_path / "o.sqlite", backoff=Backoff(base_s=1.0, max_s=4.0)) as outbox:
        for n in range(3):
            outbox.put("results", f"run-{n}", {"key": f"run-{n}"})
        t0 = time.time_ns()
        receiver.down = True
        report = outbox.deliver_due({"results": receiver}, now_ns=t0)
        assert list(report.retry_later) == ["run-0"] and receiver.calls == 1  # no hammering
        assert outbox.deliver_due({"results": receiver}, now_ns=t0 + 999_999_999).retry_later == {}
        assert receiver.calls == 1  # still backing off: 1 s after the first failure
        outbox.deliver_due({"results": receiver}, now_ns=t0 + 1_000_000_000)  # second failure
        (head, *_) = outbox.entries()
        assert head.attempts == 2 and head.last_error == "database unreachable"
        assert (
            outbox.deliver_due({"results": receiver}, now_ns=t0 + 2_999_999_999).retry_later == {}
        )
        receiver.down = False
        report = outbox.deliver_due({"results": receiver}, now_ns=t0 + 3_000_000_000)
        assert report.delivered == ["run-0", "run-1", "run-2"]
        assert outbox.pending_count() == 0 and list(receiver.applied) == report.delivered


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(base_s=0.5, max_s=3.0)
    assert [backoff.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_refused_entry_is_set_aside_and_the_rest_flow(tmp_path: Path) -> None:
    receiver = Receiver()
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.put("results", "a", {"key": "a", "bad": True})
        outbox.put("results", "b", {"key": "b"})
        report = outbox.deliver_due({"results": receiver})
        assert report.rejected == {"a": "schema mismatch"} and report.delivered == ["b"]
        assert [e.state for e in outbox.entries()] == [REJECTED, DELIVERED]


def _control(server: MesServer, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode())
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request).close()


def test_check_outs_cross_an_mes_outage_exactly_once(
    tmp_path: Path, mes: HttpMes, mes_server: MesServer
) -> None:
    serials = [f"SIM{n:04d}" for n in range(1, 7)]
    for serial in serials:
        assert mes.check_in(CheckIn(serial, "final_test", "ST1")).allowed
    _control(mes_server, "/control/outage", {"down": True})
    with Outbox(tmp_path / "o.sqlite", backoff=Backoff(base_s=0.0)) as outbox:
        for n, serial in enumerate(serials):
            run = f"run-{n}"
            queue_check_out(
                outbox,
                CheckOut(checkout_key("ST1", run), serial, "final_test", "ST1", run, "PASS", 1),
            )
        senders = {CHECK_OUT: check_out_sender(mes)}
        assert outbox.deliver_due(senders).delivered == []
        _control(mes_server, "/control/outage", {"down": False})
        _control(mes_server, "/control/lose-replies", {"count": 2})  # applied, replies lost
        delivered: list[str] = []
        for _ in range(4):
            delivered += outbox.deliver_due(senders).delivered
        assert delivered == [checkout_key("ST1", f"run-{n}") for n in range(6)]
    applied = mes_server.state.applied_view()
    assert sorted(a["serial"] for a in applied) == serials  # each once, despite resends
    assert all(mes.unit(s)["final_disposition"] == "PASS" for s in serials)


def test_kill_between_send_and_ack_delivers_once(
    tmp_path: Path, mes: HttpMes, mes_server: MesServer
) -> None:
    assert mes.check_in(CheckIn("SIM0009", "final_test", "ST1")).allowed
    path = tmp_path / "o.sqlite"
    child = subprocess.run(
        [sys.executable, "-m", "tests.factory.outbox_worker", str(path), mes_server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(mes_server.state.applied_view()) == 1
    with Outbox(path) as outbox:
        assert [e.state for e in outbox.entries()] == [PENDING]  # the ack never got recorded
        report = outbox.deliver_due({CHECK_OUT: check_out_sender(mes)})
        assert report.delivered == ["ST1/run-9"]
    assert len(mes_server.state.applied_view()) == 1
    assert mes.unit("SIM0009")["final_disposition"] == "PASS"


def test_the_delivery_loop_drains_when_the_receiver_returns(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.down = True
    stop = threading.Event()
    with Outbox(tmp_path / "o.sqlite", backoff=Backoff(base_s=0.01, max_s=0.05)) as outbox:
        outbox.put("results", "r", {"key": "r"})
        worker = threading.Thread(target=outbox.run, args=({"results": receiver}, stop, 0.01))
        worker.start()
        try:
            while receiver.calls < 2:  # it keeps retrying while the receiver is down
                stop.wait(0.01)
            receiver.down = False
            while outbox.pending_count():
                stop.wait(0.01)
        finally:
            stop.set()
            worker.join(timeout=10)
    assert list(receiver.applied) == ["r"]
