"""From the engine's event bus to every open operator page: small JSON messages, one per event,
through a bounded channel per browser, and operator prompts answered from the page.

A subscriber on the bus runs on the engine's thread, so publishing never blocks: a browser that
falls behind has its progress messages coalesced (the latest per step row and per site counter
is kept) while run starts, verdicts and prompts are always delivered.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from station.events import (
    MeasurementRecorded,
    PromptRequested,
    RunEnded,
    RunStarted,
    StepEnded,
    StepStarted,
)
from station.outcome import Outcome

#: progress messages a browser may have waiting before they are coalesced
CHANNEL_CAPACITY = 256

Message = dict[str, Any]


class Channel:
    """One browser's queue. `put` is called from engine threads, `get` awaited on the server's
    event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int = CHANNEL_CAPACITY) -> None:
        self._loop = loop
        self._capacity = capacity
        self._lock = threading.Lock()
        self._queue: deque[Message] = deque()
        self._coalesced: dict[tuple[Any, ...], Message] = {}
        self._wake = asyncio.Event()
        self.coalesced = 0  # progress messages replaced by a later one for this browser
        self.closed = False

    def put(self, message: Message, key: tuple[Any, ...] | None) -> None:
        """Queue `message`; one with a `key` (progress) may be coalesced with later ones."""
        with self._lock:
            if key is not None and (key in self._coalesced or len(self._queue) >= self._capacity):
                if key in self._coalesced:
                    self.coalesced += 1
                self._coalesced[key] = message
            else:
                self._queue.append(message)
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the server's loop has closed: nobody is listening any more
            self.closed = True

    async def get(self, timeout_s: float) -> list[Message]:
        """Every waiting message in publishing order; empty after `timeout_s`."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            return []
        self._wake.clear()
        with self._lock:
            batch = [*self._queue, *self._coalesced.values()]
            self._queue.clear()
            self._coalesced.clear()
        return sorted(batch, key=lambda m: m["seq"])


@dataclass
class SiteView:
    """What the page shows for one site: kept so a page opened mid-run starts from it."""

    site: int
    serial: str = ""
    run_id: str = ""
    state: str = "idle"  # idle, running, done
    steps: list[dict[str, Any]] = field(default_factory=list)
    measured: int = 0
    verdict: Message | None = None


class Broadcaster:
    """Bus subscriber: turns events into messages for every connected page."""

    def __init__(self, sites: int, steps: tuple[str, ...]) -> None:
        self.steps = steps
        self._lock = threading.Lock()
        self._channels: list[Channel] = []
        self._seq = itertools.count(1)
        self.views = {site: SiteView(site) for site in range(1, sites + 1)}
        self._site_of: dict[str, int] = {}  # run id -> site
        self._failing: dict[str, dict[tuple[str, str, int | None], Message]] = {}
        self._prompts: dict[str, Message] = {}  # open prompts, by id
        self.published = 0  # messages sent to every page

    # --- channels ------------------------------------------------------------------------------
    def connect(self, loop: asyncio.AbstractEventLoop) -> tuple[Channel, Message]:
        """A new page's channel and the snapshot it starts from (the only full state sent)."""
        channel = Channel(loop)
        with self._lock:
            self._channels.append(channel)
            snapshot = {
                "type": "snapshot",
                "seq": self.published,
                "steps": list(self.steps),
                "sites": [self._view_message(v) for v in self.views.values()],
                "prompts": list(self._prompts.values()),
            }
        return channel, snapshot

    def stats(self) -> Message:
        """Messages published, pages listening, and progress coalesced for lagging pages."""
        with self._lock:
            channels = list(self._channels)
        return {
            "published": self.published,
            "pages": len(channels),
            "coalesced": [c.coalesced for c in channels],
        }

    def disconnect(self, channel: Channel) -> None:
        with self._lock:
            if channel in self._channels:
                self._channels.remove(channel)

    def publish(self, message: Message, key: tuple[Any, ...] | None = None) -> None:
        with self._lock:
            self.published += 1
            message["seq"] = self.published
            channels = list(self._channels)
        for channel in channels:
            channel.put(message, key)
            if channel.closed:
                self.disconnect(channel)

    # --- events --------------------------------------------------------------------------------
    def __call__(self, event: object) -> None:
        if isinstance(event, RunStarted):
            self._run_started(event)
            return
        site = self._site_of.get(getattr(event, "run_id", ""))
        if site is None:
            return
        view = self.views[site]
        if isinstance(event, StepStarted):
            row = {"index": event.index, "step": event.step, "state": "running"}
            self._set_step(view, row)
            self.publish({"type": "step", "site": site, **row}, ("step", site, event.index))
        elif isinstance(event, StepEnded):
            row = {
                "index": event.index,
                "step": event.step,
                "state": str(event.outcome),
                "duration_s": round(event.duration_s, 3),
                "error": event.error,
            }
            self._set_step(view, row)
            self.publish({"type": "step", "site": site, **row}, ("step", site, event.index))
        elif isinstance(event, MeasurementRecorded):
            view.measured += 1
            failing = self._failing[event.run_id]
            key = (event.step, event.name, event.lane)
            if event.outcome != Outcome.PASS:
                failing[key] = _measurement(event)
            else:
                failing.pop(key, None)  # a retried step's later attempt passed
            message = {
                "type": "measured",
                "site": site,
                "count": view.measured,
                "name": event.name,
                "lane": event.lane,
                "outcome": str(event.outcome),
            }
            self.publish(message, ("measured", site))
        elif isinstance(event, RunEnded):
            verdict = {
                "type": "verdict",
                "site": site,
                "run_id": event.run_id,
                "serial": view.serial,
                "outcome": str(event.outcome),
                "error": event.error,
                "failing": list(self._failing.pop(event.run_id).values()),
            }
            view.state, view.verdict = "done", verdict
            self.publish(verdict)

    def prompt_opened(self, request: PromptRequested) -> None:
        """The page is asked `request` (prompts that the bench's hands answer never get here)."""
        message = {
            "type": "prompt",
            "site": self._site_of.get(request.run_id),
            "prompt_id": request.prompt_id,
            "step": request.step,
            "message": request.message,
            "choices": list(request.choices),
            "timeout_s": request.timeout_s,
        }
        with self._lock:
            self._prompts[request.prompt_id] = message
        self.publish(message)

    def prompt_closed(self, prompt_id: str) -> None:
        with self._lock:
            self._prompts.pop(prompt_id, None)
        self.publish({"type": "prompt_closed", "prompt_id": prompt_id})

    def batch(self, state: str, sites: list[int], error: str | None = None) -> None:
        """The station started or finished a batch of sites (or could not start it)."""
        self.publish({"type": "batch", "state": state, "sites": sites, "error": error})

    def _run_started(self, event: RunStarted) -> None:
        self._site_of[event.run_id] = event.site
        self._failing[event.run_id] = {}
        view = self.views[event.site]
        view.serial, view.run_id, view.state = event.dut_serial, event.run_id, "running"
        view.steps, view.measured, view.verdict = [], 0, None
        self.publish(
            {
                "type": "run",
                "site": event.site,
                "run_id": event.run_id,
                "serial": event.dut_serial,
                "product": event.product,
                "sequence": event.sequence,
            }
        )

    @staticmethod
    def _set_step(view: SiteView, row: dict[str, Any]) -> None:
        if view.steps and view.steps[-1]["index"] == row["index"]:
            view.steps[-1] = row
        else:
            view.steps.append(row)

    @staticmethod
    def _view_message(view: SiteView) -> Message:
        return {
            "site": view.site,
            "serial": view.serial,
            "run_id": view.run_id,
            "state": view.state,
            "steps": list(view.steps),
            "measured": view.measured,
            "verdict": view.verdict,
        }


def _measurement(m: MeasurementRecorded) -> Message:
    return {
        "step": m.step,
        "name": m.name,
        "lane": m.lane,
        "value": m.value if not isinstance(m.value, float) else float(f"{m.value:.6g}"),
        "unit": m.unit,
        "low": m.low_limit,
        "high": m.high_limit,
        "expected": m.expected,
        "outcome": str(m.outcome),
    }


class WebPrompter:
    """Prompter whose questions are shown on every operator page and answered from one of them
    (`answer`)."""

    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self._lock = threading.Lock()
        self._open: dict[str, tuple[PromptRequested, threading.Event, list[str]]] = {}

    def __call__(self, request: PromptRequested, abort: threading.Event) -> str | None:
        answered = threading.Event()
        slot: list[str] = []
        with self._lock:
            self._open[request.prompt_id] = (request, answered, slot)
        self.broadcaster.prompt_opened(request)
        try:
            deadline = time.monotonic() + request.timeout_s
            while not abort.is_set() and (left := deadline - time.monotonic()) > 0:
                if answered.wait(min(left, 0.1)):
                    return slot[0]
            return None
        finally:
            with self._lock:
                self._open.pop(request.prompt_id, None)
            self.broadcaster.prompt_closed(request.prompt_id)

    def answer(self, prompt_id: str, answer: str) -> None:
        """Answer an open prompt; ValueError names what is wrong (no such prompt, bad choice)."""
        with self._lock:
            found = self._open.get(prompt_id)
            if found is None:
                raise LookupError(f"no open prompt {prompt_id!r}")
            request, answered, slot = found
            if answer not in request.choices:
                raise ValueError(f"answer {answer!r} is not one of {list(request.choices)}")
            if not answered.is_set():
                slot.append(answer)
                answered.set()

    def open_prompts(self) -> list[str]:
        with self._lock:
            return list(self._open)
