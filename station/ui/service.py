"""The station behind the operator page: one batch of sites at a time on a worker thread, the
results store, the event bus every page listens to, and the engineer's queries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from station.admission import STATION_CHECKS
from station.analysis.yields import yield_by
from station.engine import Prompter
from station.errors import InputError, StationError
from station.events import EventBus
from station.launch import RunSetup, open_station, run_sites
from station.multisite import MultiSiteRunner
from station.outcome import Outcome
from station.results.report import run_report
from station.results.store import ResultsStore
from station.simbench import SimBenchProcess, SimulatedHands
from station.ui.stream import Broadcaster, WebPrompter

#: a run id as the engine makes them (and as a resumed run may carry): nothing path-like
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SITE = re.compile(r"^[0-9]{1,3}$")
#: a scanned serial before the product's own pattern judges it: printable, no spaces
SERIAL = re.compile(r"^[\x21-\x7e]{1,64}$")


class StationBusy(StationError, RuntimeError):
    """A batch is already running: the station tests one batch of sites at a time."""


class StationService:
    """Runs batches of sites for the page; `start()` before use, `stop()` at shutdown."""

    def __init__(
        self,
        setup: RunSetup,
        db: str,
        reports: Path,
        check: Callable[[RunSetup], RunSetup] | None = None,
    ) -> None:
        self.setup = setup
        #: re-checks the setup before each batch (calibrations expire while the page is open)
        self.check = check
        self.reports = reports.resolve()
        self.broadcaster = Broadcaster(setup.sites, setup.step_names)
        self.prompter = WebPrompter(self.broadcaster)
        self.store = ResultsStore(db)
        self.bus = EventBus()
        self.bus.subscribe(self.store)
        self.bus.subscribe(self.broadcaster)
        self.sim: SimBenchProcess | None = setup.simulated_bench() if setup.sim else None
        self._sim_lock = threading.Lock()
        self._prompter: Prompter = self.prompter
        if self.sim:  # the simulated bench seats the probe and cleans as the operator confirms
            hands = SimulatedHands(self.bench_control)
            self.bus.subscribe(hands)
            self._prompter = hands.wrap(self.prompter)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._runner: MultiSiteRunner | None = None
        self._abort = threading.Event()  # asked for this batch (perhaps before its engines exist)
        self._report_lock = threading.Lock()

    # --- life ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.sim:
            self.sim.start()  # empty cages: each batch puts the scanned DUTs in

    def stop(self) -> None:
        self.abort()
        thread = self._thread
        if thread is not None:
            thread.join()
        if self.sim:
            self.sim.stop()
        self.store.close()

    # --- batches -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def check_serials(self, serials: Mapping[str, Any]) -> dict[int, str]:
        """The page's {"site": "serial"} as {site: serial}, sites without a serial left out."""
        chosen: dict[int, str] = {}
        for key, serial in serials.items():
            if not (
                isinstance(key, str) and SITE.fullmatch(key) and 1 <= int(key) <= self.setup.sites
            ):
                raise InputError("start", "site", key, f"sites are 1..{self.setup.sites}")
            if not isinstance(serial, str):
                raise InputError("start", f"serial of site {key}", serial, "is not text")
            serial = serial.strip()
            if not serial:
                continue
            if not SERIAL.fullmatch(serial):
                raise InputError(
                    "start", f"serial of site {key}", serial, "is not 1-64 printable characters"
                )
            chosen[int(key)] = serial
        if not chosen:
            raise InputError("start", "serials", "", "scan a serial on at least one site")
        self.setup.check_serials(list(chosen.values()), source="start")
        return chosen

    def begin(self, serials: dict[int, str]) -> None:
        """Start testing `serials` (checked by `check_serials`) on a worker thread."""
        with self._lock:
            if self.running:
                raise StationBusy("the station is testing; wait for the verdicts or abort")
            self._abort.clear()
            self._thread = threading.Thread(
                target=self._batch, args=(dict(serials),), name="station-batch"
            )
            self._thread.start()

    def abort(self) -> None:
        self._abort.set()
        runner = self._runner
        if runner is not None:
            runner.abort()

    def bench_control(self, command: str) -> str:
        """A control line to the simulated bench (what hands would do on a real one)."""
        if self.sim is None:
            raise StationError("this station has no simulated bench")
        with self._sim_lock:
            return self.sim.control(command)

    def _batch(self, serials: dict[int, str]) -> None:
        sites = sorted(serials)
        self.broadcaster.batch("running", sites)
        try:
            if self.sim:
                for site, serial in serials.items():  # the operator puts the DUT in the cage
                    self.bench_control(f"insert {serial} {self.setup.limits.product.name} @{site}")
            setup = self.check(self.setup) if self.check else self.setup
            with open_station(setup, self.sim.site_resources if self.sim else None) as opened:
                done = run_sites(
                    setup,
                    opened,
                    serials,
                    bus=self.bus,
                    prompter=self._prompter,
                    guard=self._hold,
                )
            self.store.flush()
        except StationError as err:  # bad bench, instrument that cannot be opened
            self.broadcaster.batch("error", sites, f"station cannot test: {err}")
            return
        except Exception as err:  # the page must not wait for a batch that died
            self.broadcaster.batch("error", sites, f"station error: {err!r}")
            raise
        errors = [f"site {r.site}: {r.error}" for r in done.results if r.result is None]
        errors += done.shared_safe_errors
        self.broadcaster.batch("done", sites, "; ".join(errors) or None)

    @contextlib.contextmanager
    def _hold(self, runner: MultiSiteRunner) -> Iterator[None]:
        self._runner = runner
        if self._abort.is_set():  # asked while the sites were being opened
            runner.abort()
        try:
            yield
        finally:
            self._runner = None

    # --- engineer view -------------------------------------------------------------------------
    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        frame = self.store.runs().tail(limit).iloc[::-1]
        columns = ["run_id", "started_at", "product", "dut_serial", "site", "outcome", "complete"]
        rows = []
        for record in frame[columns].to_dict("records"):
            record["started_at"] = record["started_at"].isoformat(timespec="seconds")
            record["site"] = None if pd.isna(record["site"]) else int(record["site"])
            record["outcome"] = record["outcome"] if record["complete"] else "INCOMPLETE"
            record["complete"] = bool(record["complete"])
            rows.append(record)
        return rows

    def todays_yield(self, today: dt.date | None = None) -> list[dict[str, Any]]:
        """Per product: units tested today by the verdict of their latest run (a retested unit
        counts once); yield is PASS over units, and over units with a verdict (no ERROR). The
        station's own checks (path-cal, golden unit) are not units."""
        day = today or dt.datetime.now().astimezone().date()
        start = dt.datetime.combine(day, dt.time(), dt.datetime.now().astimezone().tzinfo)
        frame = self.store.runs(since=start.astimezone(dt.UTC).isoformat())
        judged = (Outcome.PASS, Outcome.FAIL, Outcome.ERROR)
        frame = frame[
            frame["complete"]
            & frame["outcome"].isin([str(o) for o in judged])
            & ~frame["sequence"].isin(STATION_CHECKS)
        ]
        if frame.empty:
            return []
        latest = frame.sort_values("started_at").groupby(["product", "dut_serial"]).tail(1)
        table = yield_by(latest, by=["product"], unit_keys=["dut_serial"])
        rows = []
        for record in table.to_dict("records"):
            rows.append(
                {
                    "product": record["product"],
                    "units": int(record["n_units"]),
                    "pass": int(record["n_pass"]),
                    "fail": int(record["n_fail"]),
                    "error": int(record["n_error"]),
                    "yield": _fraction(record["yield_fraction"]),
                    "yield_tested": _fraction(record["yield_tested_fraction"]),
                }
            )
        return rows

    def report(self, run_id: str) -> Path:
        """The HTML report of `run_id` in the report folder, written when first asked for."""
        if not RUN_ID.fullmatch(run_id):
            raise InputError("report", "run_id", run_id, "is not a run id")
        with self._report_lock:  # written afresh: the run may have been in progress last time
            return run_report(self.store, run_id, self.reports).path

    def report_file(self, name: str) -> Path:
        """A file of the report folder; LookupError for anything outside it or missing."""
        path = (self.reports / name).resolve()
        if not path.is_relative_to(self.reports) or path == self.reports or not path.is_file():
            raise LookupError(name)
        return path


def _fraction(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value), 4)
