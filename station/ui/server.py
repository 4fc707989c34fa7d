"""The operator page's web server: the page and its files, the event stream (server-sent events),
start / abort / prompt answers, and the engineer's recent runs, yields and reports.

Bound to 127.0.0.1 unless told otherwise; any other address needs a token, which every request
then carries (a cookie set by opening the page once with `?token=...`, or a bearer header).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from station.errors import InputError, StationError
from station.launch import RunSetup
from station.results.report import ReportError
from station.ui.service import StationBusy, StationService

TOKEN_COOKIE = "station_token"
#: how long the event stream waits before a keep-alive comment
KEEPALIVE_S = 10.0
MAX_BODY_BYTES = 16_384


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenMiddleware:
    """Every request carries the token: `?token=` (then kept as a cookie), cookie or bearer."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        bearer = request.headers.get("authorization", "")
        offered = [
            request.cookies.get(TOKEN_COOKIE),
            bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None,
        ]
        if any(self._matches(o) for o in offered):
            await self.app(scope, receive, send)
            return
        response: Response
        if self._matches(request.query_params.get("token")):
            response = RedirectResponse(request.url.path, 303)
            response.set_cookie(TOKEN_COOKIE, self.token.decode(), httponly=True, samesite="strict")
        else:
            response = PlainTextResponse("a token is required: open the page with ?token=...", 401)
        await response(scope, receive, send)


def _static() -> Path:
    return Path(str(resources.files("station.ui") / "static"))


async def _json_body(request: Request) -> dict[str, Any]:
    """A small JSON object (the content type also keeps other sites' pages from posting)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InputError(request.url.path, "content-type", None, "must be application/json")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InputError(request.url.path, "body", len(body), f"is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        raise InputError(request.url.path, "body", None, "is not JSON") from None
    if not isinstance(data, dict):
        raise InputError(request.url.path, "body", None, "is not a JSON object")
    return data


def _bad(err: Exception, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(err)}, status)


def create_app(
    service: StationService, *, token: str | None = None, allowed_hosts: list[str] | None = None
) -> Starlette:
    """The web app over a started `service`."""
    setup = service.setup

    async def index(request: Request) -> Response:
        return FileResponse(_static() / "index.html", headers={"Cache-Control": "no-store"})

    async def station_info(request: Request) -> Response:
        return JSONResponse(
            {
                "station_id": setup.config.station_id,
                "product": setup.limits.product.name,
                "sequence": setup.sequence.name,
                "mode": setup.mode,
                "sites": setup.sites,
                "steps": list(setup.step_names),
                "serial_pattern": setup.limits.product.serial_pattern.pattern,
                "simulated": setup.sim,
            }
        )

    async def events(request: Request) -> Response:
        channel, snapshot = service.broadcaster.connect(asyncio.get_running_loop())

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"data: {json.dumps(snapshot)}\n\n"
                while not await request.is_disconnected():
                    batch = await channel.get(KEEPALIVE_S)
                    if not batch:
                        yield ": keep-alive\n\n"
                    for message in batch:
                        yield f"data: {json.dumps(message)}\n\n"
            finally:
                service.broadcaster.disconnect(channel)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def start(request: Request) -> Response:
        try:
            body = await _json_body(request)
            unknown = sorted(set(body) - {"serials"})
            if unknown:  # operators choose serials only: no limits, sequence or product here
                raise InputError("start", unknown[0], body[unknown[0]], "cannot be set here")
            serials = body.get("serials")
            if not isinstance(serials, dict):
                raise InputError("start", "serials", serials, "must map site numbers to serials")
            chosen = service.check_serials(serials)
            service.begin(chosen)
        except StationBusy as err:
            return _bad(err, 409)
        except StationError as err:
            return _bad(err)
        return JSONResponse({"started": {str(k): v for k, v in chosen.items()}}, 202)

    async def abort(request: Request) -> Response:
        try:
            await _json_body(request)
        except StationError as err:
            return _bad(err)
        service.abort()
        return JSONResponse({"aborting": service.running})

    async def answer(request: Request) -> Response:
        try:
            body = await _json_body(request)
            reply = body.get("answer")
            if not isinstance(reply, str):
                raise InputError("prompt", "answer", reply, "must be text")
            service.prompter.answer(request.path_params["prompt_id"], reply)
        except LookupError as err:
            return _bad(err, 404)
        except (StationError, ValueError) as err:
            return _bad(err)
        return JSONResponse({"answered": reply})

    async def stats(request: Request) -> Response:
        return JSONResponse({**service.broadcaster.stats(), "running": service.running})

    async def runs(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(service.recent_runs))

    async def yields(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(service.todays_yield))

    async def report(request: Request) -> Response:
        try:
            path = await asyncio.to_thread(service.report, request.path_params["run_id"])
        except InputError as err:
            return _bad(err)
        except ReportError as err:
            return _bad(err, 404)
        return RedirectResponse(f"/reports/{path.name}", 303)

    async def report_file(request: Request) -> Response:
        try:
            path = service.report_file(request.path_params["name"])
        except LookupError:
            return PlainTextResponse("no such report file", 404)
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"])]
    if token:
        middleware.append(Middleware(TokenMiddleware, token=token))
    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/station", station_info),
            Route("/api/events", events),
            Route("/api/start", start, methods=["POST"]),
            Route("/api/abort", abort, methods=["POST"]),
            Route("/api/prompts/{prompt_id}", answer, methods=["POST"]),
            Route("/api/stats", stats),
            Route("/api/runs", runs),
            Route("/api/yield", yields),
            Route("/report/{run_id}", report),
            Route("/reports/{name:path}", report_file),
            Mount("/static", StaticFiles(directory=_static()), name="static"),
        ],
        middleware=middleware,
    )


def check_binding(host: str, token: str | None) -> None:
    """Loopback needs nothing; any other address needs a token of at least 16 characters."""
    if is_loopback(host):
        return
    if not token:
        raise InputError(
            "--host",
            "host",
            host,
            "is reachable from other machines: give --token (or STATION_UI_TOKEN)",
        )
    if len(token) < 16:
        raise InputError("--token", "token", "<hidden>", "must be at least 16 characters")


def allowed_hosts_for(host: str, token: str | None) -> list[str]:
    """Host headers accepted: the loopback names (no DNS rebinding onto a local station), or
    any name when a token guards a station bound elsewhere."""
    if is_loopback(host) and not token:
        return sorted({"127.0.0.1", "localhost", host})
    return ["*"]


class UiServer:
    """uvicorn serving the app on an already bound socket: in the foreground (`station ui`) or
    on a thread (tests)."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="station-ui", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise StationError("the operator page's server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); InputError when it cannot be."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(64)
    except OSError as err:
        raise InputError(
            "--port", "port", f"{host}:{port}", f"cannot listen there ({err})"
        ) from err
    return sock


def serve_station(
    setup: RunSetup,
    *,
    host: str,
    port: int,
    token: str | None,
    db: str,
    reports: str | Path,
    announce: Callable[[str], None],
    check: Callable[[RunSetup], RunSetup] | None = None,
) -> int:
    """`station ui`: serve the page until Ctrl-C or SIGTERM; a run in progress is aborted (its
    teardown and safe state run) before the bench is let go. `check` is applied to the setup
    before every batch (a refusal shows on the page as the batch's error)."""
    check_binding(host, token)
    sock = bind(host, port)
    service = StationService(setup, db, Path(reports), check)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        service.start()
        app = create_app(service, token=token, allowed_hosts=allowed_hosts_for(host, token))
        server = UiServer(app, sock)
        announce(
            f"operator page for {setup.limits.product.name} ({setup.sequence.name}, "
            f"{setup.sites} site{'s' if setup.sites > 1 else ''}) at {server.url}/"
            + ("?token=<token>" if token else "")
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()
        sock.close()
    return 0
