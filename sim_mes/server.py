"""HTTP/JSON front of the simulated MES (standard library threading server on loopback).

API (what a station uses): `POST /api/v1/check-in`, `POST /api/v1/check-out`,
`GET /api/v1/units/<serial>`, `GET /api/v1/lots/<lot>`, `GET /api/v1/lots/<lot>/queue/<operation>`
(the serials waiting for that operation), `GET /api/v1/check-outs`.
Control (what a test or demo uses, never affected by an outage): `POST /control/outage`
`{"down": true}`, `POST /control/lose-replies` `{"count": n}` (apply the next n check-outs but
drop the connection before replying), `POST /control/lots`, `POST /control/hold`
`{"target": serial or lot, "reason": text or null}`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sim_mes.state import MesFault, MesState


class Controls:
    """The injected faults: an outage switch and replies to lose."""

    def __init__(self) -> None:
        self.down = False
        self.lose_replies = 0
        self._lock = threading.Lock()

    def take_lost_reply(self) -> bool:
        with self._lock:
            if self.lose_replies > 0:
                self.lose_replies -= 1
                return True
            return False


class MesServer:
    """The simulated MES serving on `host:port` (port 0: any free port) until closed."""

    def __init__(self, state: MesState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self.controls = Controls()
        handler = type("Handler", (_Handler,), {"mes": self})
        self._http = ThreadingHTTPServer((host, port), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> MesServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class _Handler(BaseHTTPRequestHandler):
    mes: MesServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the station's logs are what matter; a request log would drown the test output

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlparse(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if path.startswith("/control/"):
                reply = self._control(method, path, _body(raw))
            elif self.mes.controls.down:  # down is down, whatever was asked
                raise MesFault(503, "MES out of service")
            else:
                reply = self._api(method, path, _body(raw) if method == "POST" else {})
                if reply is None:
                    self.close_connection = True  # applied, reply lost on the way back
                    return
        except MesFault as fault:
            self._send(fault.status, {"error": fault.message})
            return
        self._send(200, reply)

    def _api(self, method: str, path: str, body: dict[str, Any]) -> Any:
        state = self.mes.state
        if method == "POST" and path == "/api/v1/check-in":
            for name in ("serial", "operation", "station"):
                if not isinstance(body.get(name), str) or not body[name]:
                    raise MesFault(400, f"{name} missing")
            return state.check_in(
                body["serial"],
                body["operation"],
                body["station"],
                body.get("action"),
                body.get("reason_code"),
            )
        if method == "POST" and path == "/api/v1/check-out":
            header = self.headers.get("Idempotency-Key")
            if header is not None and header != body.get("idempotency_key"):
                raise MesFault(400, "Idempotency-Key header differs from the body's key")
            receipt = state.check_out(body)
            return None if self.mes.controls.take_lost_reply() else receipt
        if method == "GET" and path.startswith("/api/v1/units/"):
            return state.unit_view(urllib.parse.unquote(path.removeprefix("/api/v1/units/")))
        if method == "GET" and path.startswith("/api/v1/lots/") and "/queue/" in path:
            quoted_lot, _, quoted_op = path.removeprefix("/api/v1/lots/").partition("/queue/")
            lot, operation = urllib.parse.unquote(quoted_lot), urllib.parse.unquote(quoted_op)
            serials = state.lot_queue(lot, operation)
            return {"lot_id": lot, "operation": operation, "serials": serials}
        if method == "GET" and path.startswith("/api/v1/lots/"):
            return state.lot_view(urllib.parse.unquote(path.removeprefix("/api/v1/lots/")))
        if method == "GET" and path == "/api/v1/check-outs":
            return {"check_outs": state.applied_view()}
        raise MesFault(404, f"no such endpoint {method} {path}")

    def _control(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if method != "POST":
            raise MesFault(405, "control endpoints take POST")
        controls = self.mes.controls
        if path == "/control/outage":
            controls.down = bool(body.get("down", True))
            return {"down": controls.down}
        if path == "/control/lose-replies":
            count = body.get("count", 1)
            if type(count) is not int or count < 0:
                raise MesFault(400, "count must be an integer >= 0")
            controls.lose_replies = count
            return {"lose_replies": count}
        if path == "/control/lots":
            serials = body.get("serials")
            if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
                raise MesFault(400, "serials must be a list of serial numbers")
            self.mes.state.add_lot(
                str(body.get("lot_id", "")),
                str(body.get("product", "")),
                [str(op) for op in body.get("route", [])],
                serials,
                body.get("work_order"),
            )
            return {"lot_id": body["lot_id"], "units": len(serials)}
        if path == "/control/hold":
            reason = body.get("reason")
            self.mes.state.set_hold(str(body.get("target", "")), reason and str(reason))
            return {"target": body.get("target"), "hold": reason}
        raise MesFault(404, f"no such control {path}")

    def _send(self, status: int, reply: Any) -> None:
        data = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MesFault(400, f"body is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise MesFault(400, "body must be a JSON object")
    return body
