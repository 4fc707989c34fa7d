"""From events to the page's messages: one per event, a lagging page's progress coalesced and
never its verdicts, failing measurements listed with value and limits, and the web prompter."""

from __future__ import annotations

import asyncio
import threading

import pytest

from station.events import (
    MeasurementRecorded,
    PromptRequested,
    RunEnded,
    RunStarted,
    StepEnded,
    StepStarted,
)
from station.outcome import Outcome
from station.ui.stream import Broadcaster, Channel, WebPrompter


def started(run_id: str, site: int, serial: str) -> RunStarted:
    return RunStarted(
        run_id, "pluggable", "800G-DR8", serial, site, "bench", "op", "0", "l.toml", "sha", "p", ()
    )


def measured(run_id: str, name: str, value: float, outcome: Outcome, lane: int | None = 4):
    return MeasurementRecorded(
        run_id, "tx", name, value, "dBm", lane, outcome, False, -2.9, 4.0, None
    )


def drain(loop: asyncio.AbstractEventLoop, channel: Channel) -> list[dict]:
    return asyncio.run_coroutine_threadsafe(channel.get(0.5), loop).result(10)


def server_loop() -> asyncio.AbstractEventLoop:
    """An event loop on its own thread, as the page's server runs one."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop


def close(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon_threadsafe(loop.stop)
    while loop.is_running():
        threading.Event().wait(0.01)
    loop.close()


def test_a_lagging_page_gets_the_latest_progress_and_every_verdict() -> None:
    loop = server_loop()
    try:
        broadcaster = Broadcaster(2, ("tx",))
        channel, snapshot = broadcaster.connect(loop)
        assert snapshot["type"] == "snapshot" and len(snapshot["sites"]) == 2
        small = Channel(loop, capacity=4)  # a second page that stops reading
        with broadcaster._lock:
            broadcaster._channels.append(small)
        broadcaster(started("r1", 1, "SIM0001"))
        broadcaster(StepStarted("r1", "tx", 0))
        for n in range(100):
            broadcaster(measured("r1", f"m{n}", 1.0, Outcome.PASS))
        broadcaster(measured("r1", "tx_average_power", -3.5, Outcome.FAIL))
        broadcaster(StepEnded("r1", "tx", 0, Outcome.FAIL, None, 1.0))
        broadcaster(RunEnded("r1", Outcome.FAIL, None))

        everything = drain(loop, channel)
        assert len(everything) == broadcaster.published == 105  # run, step, 101, step, verdict
        assert [m["seq"] for m in everything] == list(range(1, 106))

        lagging = drain(loop, small)
        kinds = [m["type"] for m in lagging]
        assert kinds.count("verdict") == 1 and kinds.count("run") == 1
        counts = [m["count"] for m in lagging if m["type"] == "measured"]
        assert counts[-1] == 101  # the latest count arrives; the ones between were coalesced
        assert small.coalesced > 90 and len(lagging) < 10
        step = [m for m in lagging if m["type"] == "step"]
        assert step[-1]["state"] == "FAIL"
        assert [m["seq"] for m in lagging] == sorted(m["seq"] for m in lagging)
    finally:
        close(loop)


def test_the_verdict_lists_what_failed_with_value_and_limits_after_retries() -> None:
    loop = server_loop()
    try:
        broadcaster = Broadcaster(1, ("tx",))
        channel, _ = broadcaster.connect(loop)
        broadcaster(started("r1", 1, "SIM0022"))
        broadcaster(measured("r1", "tx_tdecq", 3.6, Outcome.FAIL, lane=2))  # first attempt
        broadcaster(measured("r1", "tx_tdecq", 3.1, Outcome.PASS, lane=2))  # the retry passed
        broadcaster(measured("r1", "tx_average_power", -3.5069312, Outcome.FAIL))
        broadcaster(RunEnded("r1", Outcome.FAIL, None))
        verdict = next(m for m in drain(loop, channel) if m["type"] == "verdict")
        assert verdict["outcome"] == "FAIL" and verdict["serial"] == "SIM0022"
        assert verdict["failing"] == [
            {
                "step": "tx",
                "name": "tx_average_power",
                "lane": 4,
                "value": -3.50693,
                "unit": "dBm",
                "low": -2.9,
                "high": 4.0,
                "expected": None,
                "outcome": "FAIL",
            }
        ]
        # a page opened now starts from the site's state, not from an empty card
        _, snapshot = broadcaster.connect(loop)
        assert snapshot["sites"][0]["verdict"] == verdict
    finally:
        close(loop)


def test_pages_that_never_read_hold_a_bounded_backlog() -> None:
    loop = server_loop()
    try:
        broadcaster = Broadcaster(1, ("tx",))
        for _ in range(20):  # twenty pages that never read
            broadcaster.connect(loop)
        broadcaster(started("r1", 1, "SIM0001"))
        for n in range(2000):  # returns at once: nothing here is ever read
            broadcaster(measured("r1", f"m{n}", 1.0, Outcome.PASS))
        # each page holds its 256 queued messages (the run and 255 counts) and one latest count
        assert broadcaster.stats()["coalesced"] == [2000 - 255 - 1] * 20
    finally:
        close(loop)


def test_the_web_prompter_times_out_and_stops_on_abort() -> None:
    broadcaster = Broadcaster(1, ())
    prompter = WebPrompter(broadcaster)
    quick = PromptRequested("r1", "inspect", "p1", "Seat the probe", ("Seated",), 0.2)
    assert prompter(quick, threading.Event()) is None
    abort = threading.Event()
    slow = PromptRequested("r1", "inspect", "p2", "Seat the probe", ("Seated",), 60)
    threading.Timer(0.1, abort.set).start()
    assert prompter(slow, abort) is None
    assert prompter.open_prompts() == []
    with pytest.raises(LookupError):
        prompter.answer("p2", "Seated")
