"""The operator page in real headless Chromium over the simulated bench: scan, start, live
progress, PASS / FAIL with the failing measurements, ERROR on an instrument fault, two and eight
sites at once, prompts answered in the page's dialog, the engineer's runs, yield and reports."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from station.events import PromptRequested, RunEnded
from station.outcome import Outcome
from tests.ui.conftest import StationUnderTest, serve
from tests.ui.test_stream import started

PASSING, FAILING = "SIM0001", "SIM0022"  # SIM0022 lane 4 has a degraded laser (README)
OUTCOMES = ("PASS", "FAIL", "ERROR", "ABORTED")
READY = "document.body.dataset.ready === 'true' && window.stationStats.snapshots > 0"

Page = Any  # playwright.sync_api.Page


def open_page(browser: Any, station: StationUnderTest) -> Page:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(station.url + "/")
    page.wait_for_function(READY)
    return page


def scan(page: Page, site: int, serial: str) -> None:
    """A barcode scanner: types the serial into the focused field and presses Enter."""
    field = page.locator(f"#site-{site}-serial")
    field.click()
    page.keyboard.type(serial)
    page.keyboard.press("Enter")


def verdicts(page: Page, sites: list[int]) -> dict[int, tuple[str, str | None]]:
    """Each site's verdict text and the run it belongs to, read together."""
    read = page.evaluate(
        """sites => sites.map(site => {
            const verdict = document.querySelector(`#site-${site} .verdict`);
            return [verdict.textContent, verdict.dataset.run ?? null];
        })""",
        sites,
    )
    return {site: (text, run) for site, (text, run) in zip(sites, read, strict=True)}


def answer_prompt(page: Page) -> bool:
    """The operator acknowledges an open prompt dialog with its first choice."""
    dialog = page.locator("#prompt")
    if not dialog.is_visible():
        return False
    dialog.locator(".prompt-choices button").first.click(timeout=5_000)
    return True


def wait_for_verdicts(
    page: Page, sites: list[int], *, before: dict[int, tuple[str, str | None]], timeout_s: float
) -> tuple[dict[int, str], int]:
    """Wait until every site shows a verdict of a new run, answering operator prompts with
    their first choice meanwhile. Returns the verdicts and how many prompts were answered."""
    deadline = time.monotonic() + timeout_s
    answered = 0
    while True:
        if answer_prompt(page):
            answered += 1
        now = verdicts(page, sites)
        if all(
            text in OUTCOMES and run is not None and run != before[site][1]
            for site, (text, run) in now.items()
        ):
            return {site: text for site, (text, _) in now.items()}, answered
        assert time.monotonic() < deadline, f"no verdicts within {timeout_s} s: {now}"
        page.wait_for_timeout(50)


def failing_rows(page: Page, site: int) -> list[list[str]]:
    rows = page.locator(f"#site-{site} .failing tbody tr")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_text_contents()]
        for i in range(rows.count())
    ]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def check_engineer_view(page: Page, artefacts: Path) -> None:
    """After SIM0001 passed and SIM0022 failed: today's yield, the runs, a report opened."""
    page.click("#tab-engineer")
    page.wait_for_selector("#yield tbody tr")
    cells = page.locator("#yield tbody tr").first.locator("td").all_text_contents()
    assert cells == ["800G-DR8", "2", "1", "1", "0", "50.0 %", "50.0 %"], cells
    runs = page.locator("#runs tbody tr")
    assert runs.count() == 2
    page.screenshot(path=artefacts / "engineer-view.png", full_page=True)
    serials = [runs.nth(i).locator("td").nth(2).inner_text() for i in range(2)]
    with page.expect_popup() as popup:
        runs.nth(serials.index(FAILING)).locator("a").click()
    report = popup.value
    report.wait_for_load_state()
    assert FAILING in (report.text_content("h1") or "")
    assert report.text_content(".verdict") == "FAIL"
    assert "/reports/run-" in report.url
    report.screenshot(path=artefacts / "report-of-the-failing-run.png")
    report.close()
    page.click("#tab-operator")


# --- two sites ------------------------------------------------------------------------------------
def test_two_sites_at_once_pass_and_fail_then_the_engineers_yield_and_report(
    browser: Any, two_sites: StationUnderTest, artefacts: Path
) -> None:
    page = open_page(browser, two_sites)
    try:
        assert page.text_content("#product") == "800G-DR8"
        assert "pluggable" in (page.text_content("#sequence") or "")
        before = verdicts(page, [1, 2])
        scan(page, 1, PASSING)  # Enter moves on to the next site's field ...
        assert page.evaluate("document.activeElement.id") == "site-2-serial"
        scan(page, 2, FAILING)  # ... and on the last one starts the station
        page.wait_for_function(
            "document.querySelectorAll('.verdict.running').length === 2", timeout=30_000
        )
        page.wait_for_selector("#site-1 .steps li", timeout=30_000)  # live per-step progress
        page.screenshot(path=artefacts / "two-sites-running.png")
        assert page.is_disabled("#start")  # one batch at a time
        found, _ = wait_for_verdicts(page, [1, 2], before=before, timeout_s=90)
        page.screenshot(path=artefacts / "two-sites-pass-and-fail.png", full_page=True)
        assert found == {1: "PASS", 2: "FAIL"}
        assert page.is_hidden("#site-1 .failing")
        rows = failing_rows(page, 2)
        power = [r for r in rows if r[0] == "tx_average_power"]
        assert power and power[0][1] == "4", rows  # lane 4: the weak laser
        value, unit = power[0][2].split()
        assert float(value) < -2.9 and unit == "dBm"
        stored = two_sites.service.store.measurements(
            dut_serial=FAILING, measurement="tx_average_power", lane=4
        ).iloc[-1]
        assert float(value) == pytest.approx(stored["value"], abs=5e-3)
        low, high = (float(limit) for limit in power[0][3].split(" .. "))
        assert (low, high) == pytest.approx((stored["low_limit"], stored["high_limit"]))
        # each site's steps all shown, in order, as the stream delivered them
        steps = page.locator("#site-1 .steps li").all_text_contents()
        assert [s.split(" (")[0] for s in steps] == list(two_sites.service.setup.step_names)
        page.wait_for_function("!document.getElementById('start').disabled")
        check_engineer_view(page, artefacts)
    finally:
        page.close()
    runs = two_sites.service.store.runs()
    assert set(runs["dut_serial"]) == {PASSING, FAILING}
    first, second = runs.iloc[0], runs.iloc[1]
    assert first["started_at"] < second["ended_at"] and second["started_at"] < first["ended_at"]


def test_an_instrument_fault_shows_error_and_retest_runs_the_site_again(
    browser: Any, two_sites: StationUnderTest, artefacts: Path
) -> None:
    page = open_page(browser, two_sites)
    try:
        # the thermal head refuses its first set-point (a device error in its status register)
        two_sites.service.bench_control("fault thermal_head error 0 SETP @1")
        before = verdicts(page, [1])
        scan(page, 1, PASSING)
        page.click("#start")
        found, _ = wait_for_verdicts(page, [1], before=before, timeout_s=60)
        page.screenshot(path=artefacts / "instrument-fault-error.png", full_page=True)
        assert found == {1: "ERROR"}
        error = page.text_content("#site-1 .error") or ""
        assert "InstrumentCommandError" in error, error
        assert page.text_content("#site-1 .steps li.ERROR").startswith("case_temperature_plan")
        assert page.is_hidden("#site-1 .failing")  # ERROR is not FAIL: nothing judged failing
        first_run = page.get_attribute("#site-1 .verdict", "data-run")

        # Retest: the same serial again, on that site only; the fault strikes again
        page.wait_for_function("!document.getElementById('start').disabled")
        two_sites.service.bench_control("fault thermal_head error 0 SETP @1")
        before = verdicts(page, [1])
        page.click("#site-1 .retest")
        found, _ = wait_for_verdicts(page, [1], before=before, timeout_s=60)
        assert found == {1: "ERROR"}
        assert page.get_attribute("#site-1 .verdict", "data-run") != first_run
        assert page.text_content("#site-1 .now") == f"{PASSING} run " + str(
            page.get_attribute("#site-1 .verdict", "data-run")
        )
    finally:
        page.close()
    runs = two_sites.service.store.runs(dut_serial=PASSING)
    errors = runs[runs["outcome"] == "ERROR"]
    assert len(errors) == 2 and set(errors["site"]) == {1}  # after any earlier PASS of it


def test_abort_ends_the_running_sites_aborted(
    browser: Any, two_sites: StationUnderTest, artefacts: Path
) -> None:
    page = open_page(browser, two_sites)
    try:
        before = verdicts(page, [1])
        scan(page, 1, PASSING)
        page.click("#start")
        page.wait_for_selector("#site-1 .steps li.running >> text=inspect", timeout=60_000)
        page.click("#abort")
        found, _ = wait_for_verdicts(page, [1], before=before, timeout_s=60)
        page.screenshot(path=artefacts / "aborted.png", full_page=True)
        assert found == {1: "ABORTED"}
        assert "abort" in (page.text_content("#site-1 .error") or "")
    finally:
        page.close()
    run = two_sites.service.store.runs(dut_serial=PASSING).iloc[-1]
    assert run["outcome"] == "ABORTED" and bool(run["complete"])


def test_an_operator_prompt_is_a_dialog_acknowledged_in_the_page(
    browser: Any, two_sites: StationUnderTest, artefacts: Path
) -> None:
    """The step's question (here asked of the page's prompter directly, as the engine does)
    appears as a dialog on the site's page, and the button pressed is the step's answer."""
    two_sites.service.broadcaster(started("q-run", 2, "SIM0099"))  # a run on site 2 asks
    request = PromptRequested(
        "q-run",
        "inspect",
        "q1",
        "Fibre 3 failed inspection: clean and confirm",
        ("Cleaned", "Cannot clean"),
        60.0,
    )
    page = open_page(browser, two_sites)
    answers: list[str | None] = []
    asking = threading.Thread(
        target=lambda: answers.append(two_sites.service.prompter(request, threading.Event()))
    )
    try:
        asking.start()
        page.wait_for_selector("#prompt[open]")
        assert page.text_content("#prompt .prompt-site") == "Site 2 — inspect"
        assert "clean and confirm" in (page.text_content("#prompt .prompt-message") or "")
        page.screenshot(path=artefacts / "operator-prompt.png")
        page.click("#prompt button:text-is('Cannot clean')")
        asking.join(30)
        page.wait_for_selector("#prompt", state="hidden")
    finally:
        page.close()
    assert answers == ["Cannot clean"]
    two_sites.service.broadcaster(RunEnded("q-run", Outcome.ABORTED, "operator could not clean"))


# --- eight sites ----------------------------------------------------------------------------------
#: the short run: the steps that are not about the transmitters' optics or the end faces (the
#: page's event handling is what is tested; about 90 events a site in a few seconds)
SHORT = {
    "without": ("tx_", "inspect"),
    "time_factor": 0.05,
    # SIM0010's receiver is over the sensitivity limit
    "serials": [f"SIM{n:04d}" for n in (1, 3, 4, 5, 6, 8, 9, 10)],
    "failing": 8,
}
#: the whole qualification (SIM0002 arrives with a dirty receptacle; SIM0007 has a slow lane)
FULL = {
    "without": (),
    "time_factor": 0.02,
    "serials": [f"SIM{n:04d}" for n in range(1, 9)],
    "failing": 7,
}


def test_eight_sites_keep_the_page_responsive_and_every_event_arrives(
    browser: Any, tmp_path: Path, artefacts: Path
) -> None:
    figures = eight_sites(browser, tmp_path, artefacts, "eight-sites", **SHORT)  # type: ignore[arg-type]
    # every event reached the page, once; a page interaction was answered while the sites ran
    assert figures["received"] == figures["published"] + 1, figures
    assert 0 < figures["interaction_s_max"] < 10.0, figures


@pytest.mark.slow
def test_eight_sites_through_the_whole_qualification(
    browser: Any, tmp_path: Path, artefacts: Path
) -> None:
    figures = eight_sites(browser, tmp_path, artefacts, "eight-sites-full", **FULL)  # type: ignore[arg-type]
    assert figures["prompts_answered_in_page"] >= 1  # SIM0002's receptacle: clean and confirm
    assert figures["received"] == figures["published"] + 1, figures
    assert 0 < figures["interaction_s_max"] < 10.0, figures


def eight_sites(
    browser: Any,
    tmp_path: Path,
    artefacts: Path,
    name: str,
    *,
    without: tuple[str, ...],
    time_factor: float,
    serials: list[str],
    failing: int,
) -> dict[str, Any]:
    station = serve(tmp_path, 8, without=without, time_factor=time_factor)
    page = open_page(browser, station)
    try:
        before = verdicts(page, list(range(1, 9)))
        for site, serial in enumerate(serials, start=1):
            page.fill(f"#site-{site}-serial", serial)
        page.click("#start")
        page.wait_for_function("document.querySelectorAll('.verdict.running').length === 8")
        # While the sites run: a page interaction (open the engineer's tables and come back) is
        # answered, and the browser's event handling keeps pace with what the station emits.
        interactions: list[float] = []
        lag: list[int] = []
        answered = 0
        while station.service.running:
            if page.locator("#prompt").is_visible():
                page.screenshot(path=artefacts / f"{name}-prompt.png")
                answered += answer_prompt(page)
                continue
            clicked = time.monotonic()
            try:
                page.click("#tab-engineer", timeout=10_000)
                page.wait_for_selector("#runs tbody tr")
                page.click("#tab-operator", timeout=10_000)
            except PlaywrightTimeout:
                assert page.locator("#prompt").is_visible()  # a prompt came up: answer first
                continue
            interactions.append(time.monotonic() - clicked)
            published = station.service.broadcaster.stats()["published"]
            lag.append(published - page.evaluate("window.stationStats.lastSeq"))
            if len(interactions) == 1:
                page.screenshot(path=artefacts / f"{name}-running.png", full_page=True)
            page.wait_for_timeout(100)
        found, more = wait_for_verdicts(page, list(range(1, 9)), before=before, timeout_s=60)
        answered += more
        page.screenshot(path=artefacts / f"{name}-verdicts.png", full_page=True)
        stats = page.evaluate("window.stationStats")
        server = get_json(station.url + "/api/stats")
    finally:
        page.close()
        station.close()
    figures = {
        "published": server["published"],
        "received": stats["received"],
        "snapshots": stats["snapshots"],
        "coalesced": server["coalesced"],
        "largest_message_bytes": stats["maxBytes"],
        "out_of_order": stats["outOfOrder"],
        "interactions": len(interactions),
        "interaction_s_max": round(max(interactions, default=0.0), 3),
        "interaction_s_median": round(float(pd.Series(interactions).median()), 3),
        "seq_lag_max": max(lag, default=0),
        "prompts_answered_in_page": answered,
        "verdicts": found,
    }
    (artefacts / f"{name}-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    expected = {site: "FAIL" if site == failing else "PASS" for site in range(1, 9)}
    assert found == expected, figures
    # in order, nothing coalesced; the only full state was the first snapshot
    assert server["coalesced"] == [0], figures
    assert stats["snapshots"] == 1 and stats["outOfOrder"] == 0, figures
    assert stats["maxBytes"] < 4096, figures  # per-event messages, never the whole state
    return figures  # the callers check that every event arrived and the page answered


@pytest.fixture(autouse=True)
def _no_running_batch(two_sites: StationUnderTest) -> None:
    """Tests of one module share the two-site station: each starts when it is idle."""
    deadline = time.monotonic() + 60
    while two_sites.service.running:
        assert time.monotonic() < deadline
        time.sleep(0.05)
