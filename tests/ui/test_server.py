"""The operator page's server without a browser: bound to loopback unless a token guards it,
every input checked (serials, sites, fields an operator may not set), report files confined to
the report folder, prompts answered only with one of their choices."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from station.errors import InputError
from station.events import PromptRequested, RunEnded, RunStarted
from station.outcome import Outcome
from station.ui.server import allowed_hosts_for, check_binding
from tests.ui.conftest import StationUnderTest, serve

TOKEN = "s3cret-token-for-the-line-0123"


def request(
    station: StationUnderTest,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = station.server.sock.getsockname()[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    payload = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"} if payload is not None else {}
    connection.request(method, path, payload, {**sent, **(headers or {})})
    response = connection.getresponse()
    result = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return result


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationUnderTest]:
    """Two simulated sites, their bench not started: nothing here tests a DUT."""
    started = serve(tmp_path_factory.mktemp("server"), 2, start_bench=False)
    yield started
    started.close()


def test_loopback_needs_no_token_and_anywhere_else_needs_a_long_one() -> None:
    check_binding("127.0.0.1", None)
    check_binding("::1", None)
    with pytest.raises(InputError, match=r"--host.*0\.0\.0\.0.*token"):
        check_binding("0.0.0.0", None)
    with pytest.raises(InputError, match="at least 16"):
        check_binding("192.168.10.5", "short")
    check_binding("192.168.10.5", TOKEN)
    assert allowed_hosts_for("127.0.0.1", None) == ["127.0.0.1", "localhost"]


def test_station_ui_on_an_outside_address_without_token_is_one_line_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", "ui", "--host", "0.0.0.0", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "STATION_UI_TOKEN"} | {"COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--host" in lines[0] and "token" in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written: no database, no reports


def test_a_foreign_host_header_is_refused(station: StationUnderTest) -> None:
    # a page on another site resolving its own name to 127.0.0.1 (DNS rebinding) gets nothing
    status, _, _ = request(station, "GET", "/api/station", headers={"Host": "evil.example"})
    assert status == 400
    status, _, body = request(station, "GET", "/api/station")
    assert status == 200 and json.loads(body)["product"] == "800G-DR8"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"serials": {"1": "SIM 0001"}}, "printable"),
        ({"serials": {"1": "SIM0001\ninsert X"}}, "printable"),
        ({"serials": {"1": "../etc"}}, "pattern"),
        ({"serials": {"1": "XYZ0001"}}, "pattern"),
        ({"serials": {"1": "SIM0001", "2": "SIM0001"}}, "two sites"),
        ({"serials": {"3": "SIM0001"}}, "sites are 1..2"),
        ({"serials": {"one": "SIM0001"}}, "sites are 1..2"),
        ({"serials": {"\u00b2": "SIM0001"}}, "sites are 1..2"),  # a superscript digit
        ({"serials": {"1": ""}}, "at least one site"),
        ({"serials": {"1": 1}}, "not text"),
        ({"serials": ["SIM0001"]}, "must map"),
        ({"serials": {"1": "SIM0001"}, "limits": "wide.toml"}, "limits"),
        ({"serials": {"1": "SIM0001"}, "sequence": "quick"}, "sequence"),
        ([1, 2], "JSON object"),
    ],
)
def test_start_refuses_bad_input_with_a_reason_and_starts_nothing(
    station: StationUnderTest, body: Any, problem: str
) -> None:
    status, _, reply = request(station, "POST", "/api/start", body)
    assert status == 400, reply
    assert problem in json.loads(reply)["error"]
    assert not station.service.running
    assert station.service.store.runs().empty


def test_posts_must_be_json_so_that_other_pages_cannot_send_them(
    station: StationUnderTest,
) -> None:
    status, _, reply = request(
        station,
        "POST",
        "/api/start",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400 and b"application/json" in reply
    status, _, _ = request(station, "GET", "/api/start")
    assert status == 405


@pytest.mark.parametrize(
    "path",
    [
        "/reports/../results.sqlite",
        "/reports/%2e%2e/results.sqlite",
        "/reports/..%2Fresults.sqlite",
        "/reports//etc/passwd",
        "/reports/",
        "/reports/run-missing.html",
    ],
)
def test_report_files_cannot_escape_the_report_folder(station: StationUnderTest, path: str) -> None:
    (station.service.reports).mkdir(parents=True, exist_ok=True)
    status, _, body = request(station, "GET", path)
    assert status == 404, (path, body[:200])


def test_a_report_of_an_unknown_or_malformed_run_is_refused(station: StationUnderTest) -> None:
    assert request(station, "GET", "/report/0123456789abcdef")[0] == 404
    assert request(station, "GET", "/report/..%2F..%2Fetc")[0] in (400, 404)
    assert request(station, "GET", "/report/a.b")[0] == 400


def test_a_prompt_is_answered_only_with_one_of_its_choices(station: StationUnderTest) -> None:
    prompter = station.service.prompter
    ask = PromptRequested("run1", "inspect", "p1", "Clean it and confirm", ("Cleaned", "No"), 30)
    answers: list[str | None] = []
    asking = threading.Thread(target=lambda: answers.append(prompter(ask, threading.Event())))
    asking.start()
    try:
        while "p1" not in prompter.open_prompts():
            threading.Event().wait(0.01)
        assert request(station, "POST", "/api/prompts/p2", {"answer": "Cleaned"})[0] == 404
        status, _, reply = request(station, "POST", "/api/prompts/p1", {"answer": "Maybe"})
        assert status == 400 and b"not one of" in reply
        assert request(station, "POST", "/api/prompts/p1", {"answer": 1})[0] == 400
        assert request(station, "POST", "/api/prompts/p1", {"answer": "Cleaned"})[0] == 200
    finally:
        asking.join(30)
    assert answers == ["Cleaned"]


def test_with_a_token_every_request_carries_it(tmp_path: Path) -> None:
    guarded = serve(tmp_path, 1, start_bench=False, token=TOKEN)
    try:
        assert request(guarded, "GET", "/api/station")[0] == 401
        assert request(guarded, "GET", "/?token=wrong")[0] == 401
        assert request(guarded, "POST", "/api/start", {"serials": {"1": "SIM0001"}})[0] == 401
        status, headers, _ = request(guarded, "GET", f"/?token={TOKEN}")
        assert status == 303 and headers["location"] == "/"  # the token leaves the address bar
        cookie = headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        jar = {"Cookie": cookie.split(";")[0]}
        assert request(guarded, "GET", "/api/station", headers=jar)[0] == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert request(guarded, "GET", "/api/station", headers=bearer)[0] == 200
    finally:
        guarded.close()


def test_todays_yield_counts_units_not_the_stations_own_checks(station: StationUnderTest) -> None:
    store = station.service.store
    runs = [  # (sequence, product, serial, outcome), in the order tested
        ("path-cal", "PATH-CAL-DR8", "REF-LB8-0001", "PASS"),
        ("golden", "800G-DR8", "SIM0003", "FAIL"),
        ("pluggable", "800G-DR8", "YLD0001", "FAIL"),
        ("pluggable", "800G-DR8", "YLD0001", "PASS"),  # a retest counts once, by its last run
        ("pluggable", "800G-DR8", "YLD0002", "FAIL"),
        ("pluggable", "800G-DR8", "YLD0003", "ERROR"),
    ]
    for n, (sequence, product, serial, outcome) in enumerate(runs):
        store(
            RunStarted(
                run_id=f"yield-{n}", sequence=sequence, product=product, dut_serial=serial,
                site=1, station_id="sim-module-bench-1", operator="op", software_version="0",
                limits_path="l.toml", limits_sha256="0" * 64, mode="production", instruments=(),
            )
        )  # fmt: skip
        store(RunEnded(f"yield-{n}", Outcome(outcome), None))
    store.flush()
    status, _, body = request(station, "GET", "/api/yield")
    assert status == 200
    assert json.loads(body) == [
        {
            "product": "800G-DR8", "units": 3, "pass": 1, "fail": 1, "error": 1,
            "yield": 0.3333, "yield_tested": 0.5,
        }
    ]  # fmt: skip
