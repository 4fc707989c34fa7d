"""The stations of the simulated shift (`station shift --sim`): the shift's plan, what the line
shares, and one station's work on its own thread: path-cal and a golden baseline, then units from
the MES queue (check-in, the `pluggable` sequence in production, check-out, the retest rule), a
golden unit every K units judged by SPC, and the engineer's remedy when SPC locks the station.

Each station has its own simulated bench (a `SimBenchProcess`), results store and outbox; the
outbox carries its MES check-outs and its finished runs to the line database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from station.admission import admit_measurement_system
from station.analysis.spc import D2, D4, ImrLimits, imr_limits
from station.calibration.jumpers import replace_jumper
from station.calibration.paths import PATH_CAL_SEQUENCE
from station.calibration.writer import PathCalWriter
from station.config import load_station_config
from station.engine import RunResult
from station.errors import InputError, StationError
from station.events import EventBus, PromptRequested
from station.launch import open_station, prepare_run, run_sites
from station.limits import LimitsFile
from station.mes.http import HttpMes
from station.mes.outbox import Backoff, Outbox
from station.mes.protocol import CheckInDecision, MesUnavailable
from station.mes.retest import load_retest_policy
from station.mes.shopfloor import ShopFloor, store_history
from station.mes.traveller import Traveller
from station.release import production_problems
from station.results.downtime import downtime_end, downtime_start
from station.results.store import ResultsStore
from station.results.sync import (
    DOWNTIME,
    RESULTS,
    LineDatabase,
    downtime_sender,
    queue_downtime,
    queue_results,
    results_sender,
)
from station.security.audit import AuditLog
from station.security.changes import (
    record_calibration,
)
from station.security.lock import lock_state, spc_check, unlock
from station.security.users import User
from station.simbench import SimBenchProcess, SimulatedHands

PRODUCT, OPERATION, SEQUENCE = "800G-DR8", "final_test", "pluggable"
PATH_CAL_PRODUCT = "PATH-CAL-DR8"
FIXTURE = "REF-LB8-{site:04d}"  # the path-cal loopback fixture of each site
SPC_PARAMETER = "golden_tx_average_power"  # lane mean of tx_average_power (dBm)
TX_JUMPER = "tx_breakout"
#: smallest SPC sigma of the golden figure: its insertion-to-insertion repeatability over a shift
#: (about 0.015 dB on the simulated benches; golden_units.toml keeps the spread below 0.07 dB)
SPC_SIGMA_FLOOR_DB = 0.02
START_TIMEOUT_S = 30.0
STAFF = (("olga", "operator"), ("tom", "technician"), ("erin", "engineer"), ("eddie", "engineer"))


@dataclass(frozen=True)
class ShiftPlan:
    """What the shift does; the events fire at fractions of the lot finished."""

    out: Path
    units: int = 200
    stations: int = 2
    sites: int = 1
    line_db: str | None = None  # default: a SQLite file in `out`
    seed: int = 1
    time_factor: float = 0.02
    lot_id: str = "LOT-SHIFT-1"
    golden_every: int = 4  # fresh units between golden checks, per station
    baseline: int = 3  # golden checks at shift start that set the SPC limits
    fouling_db: float = 0.05  # loss the drifting station's TX jumper gains per mating
    drift_station: int = 1
    faults: int = 2  # instrument faults injected (one every other station in turn)
    mes_outage_at: float = 0.25
    db_outage_at: float = 0.45
    limits_change_at: float = 0.6
    min_outage_s: float = 2.0

    def check(self) -> None:
        for name, low in (("units", 1), ("stations", 1), ("sites", 1), ("golden_every", 1)):
            if getattr(self, name) < low:
                raise InputError(f"--{name}", name, getattr(self, name), f"must be >= {low}")
        if self.time_factor <= 0:
            raise InputError("--time-factor", "time_factor", self.time_factor, "must be > 0")
        if not 1 <= self.drift_station <= self.stations:
            raise InputError("--drift-station", "drift_station", self.drift_station, "no such")


def lot_serials(plan: ShiftPlan) -> list[str]:
    """The lot's serials: a seeded sample of the simulated population (SIM0001..SIM8999)."""
    numbers = random.Random(plan.seed).sample(range(1, 9000), plan.units)
    return [f"SIM{n:04d}" for n in numbers]


def sigma_floor(limits: ImrLimits, floor: float) -> ImrLimits:
    """`limits` with sigma (and the zones and MR limits it sets) at least `floor`."""
    if limits.sigma >= floor:
        return limits
    mr_center = floor * D2
    return dataclasses.replace(
        limits, sigma=floor, ucl=limits.center + 3 * floor, lcl=limits.center - 3 * floor,
        mr_center=mr_center, mr_ucl=D4 * mr_center,
    )  # fmt: skip


def work_order(plan: ShiftPlan) -> str:
    return f"WO-{plan.lot_id}"


def golden_serial(station: int) -> str:
    return f"SIM99{station:02d}"


# --- what the line shares -------------------------------------------------------------------------
@dataclass
class Line:
    plan: ShiftPlan
    mes: HttpMes
    audit: AuditLog
    users: dict[str, User]
    users_file: Path
    line_db: LineDatabase
    console: Console
    limits_file: Path | None = None  # the limits in force once the engineer changed them
    finished: int = 0  # units with a final disposition
    seen_mes_down: set[str] = field(default_factory=set)
    seen_db_down: set[str] = field(default_factory=set)
    mes_units: list[dict[str, Any]] = field(default_factory=list)  # the MES's view at the end
    mes_check_outs: list[dict[str, Any]] = field(default_factory=list)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def note(self, text: str) -> None:
        self.console.print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} {text}", markup=False)

    def unit_done(self) -> None:
        with self.guard:
            self.finished += 1


def operator_answers(request: PromptRequested, _abort: threading.Event) -> str | None:
    """The operator's answers: clean when asked to, else the first choice offered."""
    return "Cleaned" if "Cleaned" in request.choices else request.choices[0]


def _no_guard(_runner: object) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


# --- one station --------------------------------------------------------------------------------
@dataclass
class Pending:
    """A unit a site will test next, and as whom (a FAIL retest is the technician's)."""

    serial: str
    user: User
    action: str | None = None
    reason_code: str | None = None


class StationWorker(threading.Thread):
    def __init__(self, line: Line, index: int) -> None:
        super().__init__(name=f"station-{index}", daemon=True)
        self.line, self.index, self.plan = line, index, line.plan
        # the simulated benches are copies of sim-module-bench-1: station k is sim-module-bench-k
        self.station_id = f"sim-module-bench-{index}"
        self.folder = self.plan.out / self.station_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = self._write_config()
        self.store = ResultsStore(self.folder / "results.sqlite")
        self.outbox = Outbox(self.folder / "outbox.sqlite", backoff=Backoff(0.2, 2.0))
        self.policy = load_retest_policy()
        self.floor = ShopFloor(
            line.mes, self.outbox, self.policy, station_id=self.station_id,
            history=store_history(self.store), audit=line.audit,
        )  # fmt: skip
        self.bench = SimBenchProcess(
            product=PRODUCT, time_factor=self.plan.time_factor, sites=self.plan.sites
        )
        self.operator, self.technician = line.users["olga"], line.users["tom"]
        self.engineer = line.users["eddie"]
        self.retests: list[Pending] = []
        self.fresh = 0  # lot units started here
        self.since_golden = 0
        self.spc_limits: ImrLimits | None = None
        self.spc_from = 0  # index of the golden series where the current limits' baseline starts
        self.faults_due: list[int] = []  # fresh-unit counts at which an instrument faults
        self.events: list[dict[str, Any]] = []
        self.failure: str | None = None
        self.jumpers = 0

    def _write_config(self) -> Path:
        shipped = load_station_config(bench="module").path
        text = shipped.read_text(encoding="utf-8")
        if text.count('id = "sim-module-bench-1"') != 1:
            raise StationError(f"{shipped}: no single [station] id to copy the bench from")
        text = text.replace('id = "sim-module-bench-1"', f'id = "{self.station_id}"')
        path = self.folder / "station.toml"
        path.write_text(text, encoding="utf-8")
        return path

    # --- the thread -----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            with self.bench:
                self._shift()
        except Exception as err:  # the shift report names it; the other stations go on
            self.failure = f"{type(err).__name__}: {err}"
            self.line.note(f"{self.station_id}: stopped by {self.failure}")
        finally:
            self._drain(timeout_s=30.0)
            self.store.close()

    def _shift(self) -> None:
        self._down("calibration", "path-cal and golden baseline at shift start")
        self._path_cal()
        self._baseline()
        self._up("calibration")
        if self.index == self.plan.drift_station:
            for site in self._sites():
                self.bench.control(f"foul {TX_JUMPER} {self.plan.fouling_db:g} @{site}")
            self.line.note(f"{self.station_id}: TX jumper starts fouling (hidden from the station)")
        while True:
            if lock_state(self.line.audit, self.station_id).locked:
                self._remedy()
            if self.since_golden >= self.plan.golden_every:
                self._golden(judge=True)
                continue
            batch = self._batch()
            if batch is None:
                continue  # the MES is down: waited, try again
            if not batch:
                break
            self._test(batch)

    def _sites(self) -> range:
        return range(1, self.plan.sites + 1)

    # --- downtime ---------------------------------------------------------------------------------
    def _down(self, reason: str, detail: str) -> None:
        downtime_start(self.store.engine, self.station_id, reason, detail, "shift")

    def _up(self, reason: str) -> None:
        """End the open downtime for `reason`; the line database gets it through the outbox."""
        for ended in downtime_end(self.store.engine, self.station_id, reason=reason):
            queue_downtime(self.outbox, self.station_id, ended)

    # --- units from the MES -------------------------------------------------------------------
    def _batch(self) -> list[tuple[Pending, CheckInDecision]] | None:
        """Checked-in units for the sites (retests first); None while the MES is down."""
        batch: list[tuple[Pending, CheckInDecision]] = []
        try:
            while self.retests and len(batch) < self.plan.sites:
                pending = self.retests[0]
                decision = self._check_in(pending)  # MesUnavailable: it stays queued here
                self.retests.pop(0)
                if decision is not None:
                    batch.append((pending, decision))
            tried: set[str] = set()
            while len(batch) < self.plan.sites:
                waiting = [
                    s
                    for s in self.line.mes.lot_queue(self.plan.lot_id, OPERATION)
                    if s not in tried
                ]
                if not waiting:
                    break
                offset = ((self.index - 1) * self.plan.sites) % len(waiting)
                serial = waiting[offset]
                tried.add(serial)
                decision = self._check_in(Pending(serial, self.operator))
                if decision is not None:
                    batch.append((Pending(serial, self.operator), decision))
                    self.fresh += 1
                    self.since_golden += 1
        except MesUnavailable as err:
            # units checked in already keep their open check-in: the next batch repeats it
            self.retests[:0] = [pending for pending, _ in batch]
            self._mes_down(str(err))
            return None
        self._up("mes_down")
        return batch

    def _check_in(self, pending: Pending) -> CheckInDecision | None:
        decision = self.floor.check_in(
            pending.serial, PRODUCT, OPERATION, pending.user,
            action=pending.action, reason_code=pending.reason_code,
        )  # fmt: skip
        if decision.allowed:
            return decision
        if any("still queued" in r for r in decision.reasons):
            raise MesUnavailable(decision.reasons[0])  # its check-out waits for the MES
        return None  # elsewhere, done or exhausted: not this station's unit now

    def _mes_down(self, why: str) -> None:
        with self.line.guard:
            self.line.seen_mes_down.add(self.station_id)
        self._down("mes_down", why[:200])
        self.floor.deliver()
        time.sleep(0.3)

    # --- testing --------------------------------------------------------------------------------
    def _test(self, batch: list[tuple[Pending, CheckInDecision]]) -> None:
        serials = {site: p.serial for site, (p, _) in zip(self._sites(), batch, strict=False)}
        if self.faults_due and self.fresh >= self.faults_due[0]:
            self.faults_due.pop(0)
            self._inject_fault(min(serials))
        traveller = Traveller(self.plan.lot_id, OPERATION, work_order(self.plan))
        results = self._run(
            SEQUENCE, PRODUCT, serials, limits=self.line.limits_file, traveller=traveller
        )
        for site, (pending, decision) in zip(self._sites(), batch, strict=False):
            result = results.get(site)
            if result is None:  # nothing recorded: the unit goes back to the queue
                self.retests.append(pending)
                continue
            outcome = str(result.outcome)
            self.floor.check_out(
                decision, result.run_id, outcome, _bin(outcome),
                {"attempt": decision.attempt}, action=pending.action,
                reason_code=pending.reason_code,
            )  # fmt: skip
            self._after(pending, decision, outcome)

    def _after(self, pending: Pending, decision: CheckInDecision, outcome: str) -> None:
        rule = self.policy.rule(PRODUCT, OPERATION)
        if outcome == "PASS" or decision.attempt >= rule.max_attempts:
            self.line.unit_done()
            return
        if outcome == "FAIL":  # the technician reseats the module before a retest
            self.retests.append(Pending(pending.serial, self.technician, "reseat", "RS01"))
        else:
            self.retests.append(Pending(pending.serial, self.operator))

    def _inject_fault(self, site: int) -> None:
        """The power meter stops answering its reads for a while: the run cannot measure."""
        for _ in range(6):
            self.bench.control(f"fault power_meter no_reply 0 READ @{site}")
        self.events.append({"event": "instrument_fault", "site": site, "fresh": self.fresh})
        self.line.note(f"{self.station_id}: power meter fault injected on site {site}")

    def _run(
        self,
        sequence: str,
        product: str,
        serials: dict[int, str],
        *,
        limits: Path | None = None,
        traveller: Traveller | None = None,
        mode: str = "production",
    ) -> dict[int, RunResult]:
        """Insert `serials` (site -> serial) and run `sequence` on them; every finished run is
        queued for the line database."""
        setup = prepare_run(
            sequence=sequence, product=product, limits=str(limits) if limits else None,
            station=str(self.config_path), sites=self.plan.sites, sim=True,
            time_factor=self.plan.time_factor, operator=self.operator.login, mode=mode,
        )  # fmt: skip
        self._admit_limits(setup.limits, sequence, mode)
        config, _ = admit_measurement_system(
            setup.config, setup.sequence, setup.limits.product.wavelength_nm, mode,
            db=self.store.url, log=self.line.audit,
        )  # fmt: skip
        setup = dataclasses.replace(setup, config=config)
        for site, serial in serials.items():
            self.bench.control(f"insert {serial} {product} @{site}")
        bus = EventBus()
        bus.subscribe(self.store)
        if sequence == PATH_CAL_SEQUENCE:
            bus.subscribe(PathCalWriter(self.store.engine, setup.config))
        hands = SimulatedHands(self.bench.control)
        bus.subscribe(hands)
        with open_station(setup, self.bench.site_resources) as station:
            done = run_sites(
                setup, station, serials, bus=bus, prompter=hands.wrap(operator_answers),
                guard=_no_guard, run_options=traveller.run_options() if traveller else None,
            )  # fmt: skip
        for site in self._sites():
            self.bench.control(f"clear power_meter @{site}")  # an unused fault goes too
        self.store.flush()
        results = {r.site: r.result for r in done.results if r.result is not None}
        for result in results.values():
            queue_results(self.outbox, self.station_id, result.run_id)
        self._deliver()
        return results

    def _admit_limits(self, limits: LimitsFile, sequence: str, mode: str) -> None:
        """The limits' admission, as `station run` does it without an override: the [release]
        table in effect, the exact content approved by an engineer (line audit log) and, for a
        product file, its version GR&R-released (line database)."""
        limits.check_release(mode, None, dt.date.today())
        found = production_problems(self.line.audit, self.line.line_db.url, limits, sequence)
        if found:
            raise StationError(f"{self.station_id}: {found[0]}; {mode} runs refuse it here")

    # --- delivery -----------------------------------------------------------------------------
    def _deliver(self) -> None:
        """Deliver what is due; results the line database refused for now wait in the outbox
        (the station keeps testing: its own store has every run)."""
        senders = {
            RESULTS: results_sender(self.store.engine, self.line.line_db),
            DOWNTIME: downtime_sender(self.store.engine, self.line.line_db),
        }
        report = self.outbox.deliver_due({**senders, **self.floor.senders()})
        if any("line database" in why for why in report.retry_later.values()):
            with self.line.guard:
                self.line.seen_db_down.add(self.station_id)

    def _drain(self, timeout_s: float) -> None:
        """At the end of the shift, deliver everything queued. An MES outage still open ends
        once its check-outs are through; the second pass delivers that downtime too."""
        deadline = time.monotonic() + timeout_s
        for _ in range(2):
            while self.outbox.pending_count() and time.monotonic() < deadline:
                self._deliver()
                time.sleep(0.2)
            self._up("mes_down")

    # --- golden unit, SPC and the engineer's remedy ------------------------------------------
    def _golden(self, *, judge: bool) -> None:
        serial = golden_serial(self.index)
        # on a locked station a golden check verifies the remedy: an engineer's investigation,
        # which the lock allows, where a production run is refused
        locked = lock_state(self.line.audit, self.station_id).locked
        mode = "characterisation" if locked else "production"
        result = self._run(
            SEQUENCE, PRODUCT, {1: serial}, limits=self.line.limits_file, mode=mode
        ).get(1)
        self.since_golden = 0
        if result is None or str(result.outcome) == "ERROR":
            return  # no reading: the next golden check gives the point
        if not judge or self.spc_limits is None:
            return
        values, runs = self.golden_series()
        since = self.spc_from  # phase II: the points since the limits were set
        entry = spc_check(
            self.line.audit, self.station_id, SPC_PARAMETER, values[since:], self.spc_limits,
            runs[since:],
        )  # fmt: skip
        if entry is not None:
            self.events.append({"event": "spc_lock", "seq": entry["seq"], "value": values[-1]})
            self.line.note(f"{self.station_id}: LOCKED by SPC ({entry['details']['reason']})")

    def _baseline(self) -> None:
        """SPC phase I: `baseline` golden checks set the chart's centre and sigma (sigma no
        smaller than the golden unit's insertion repeatability, which a few consecutive checks
        underestimate). Taken at shift start and again after a remedy that changed the
        measurement system (a new jumper, new path losses)."""
        start = self.golden_series()[0].size
        for _ in range(self.plan.baseline):
            self._golden(judge=False)
        values, _runs = self.golden_series()
        if values.size - start < 2:
            raise StationError(
                f"{self.station_id}: golden baseline has {values.size - start} points"
            )
        self.spc_from = start
        self.spc_limits = sigma_floor(imr_limits(values[start:]), SPC_SIGMA_FLOOR_DB)

    def golden_series(self) -> tuple[np.ndarray, list[str]]:
        rows = self.store.measurements(
            station_id=self.station_id, dut_serial=golden_serial(self.index),
            measurement="tx_average_power", sequence=SEQUENCE,
        )  # fmt: skip
        if rows.empty:
            return np.empty(0), []
        rows = rows.sort_values(["started_at", "attempt"], kind="stable")
        last = rows.drop_duplicates(["run_id", "lane"], keep="last")
        per_run = last.groupby("run_id", sort=False).agg(
            value=("value", "mean"), started=("started_at", "first")
        )
        per_run = per_run.sort_values("started")
        return per_run["value"].to_numpy(dtype=float), per_run.index.tolist()

    def _remedy(self) -> None:
        """The engineer investigates: the golden unit's TX power fell on every lane, so the TX
        jumper is suspect; the technician swaps it, path-cal is re-run, a golden check confirms,
        and the engineer unlocks with the reason."""
        state = lock_state(self.line.audit, self.station_id)
        self._down("locked", state.reason or "locked")
        self.jumpers += 1
        serial = f"MPO8-TX-{self.index}{self.jumpers:03d}"
        for site in self._sites():
            self.bench.control(f"jumper {TX_JUMPER} {serial} @{site}")
        replace_jumper(
            load_station_config(self.config_path), TX_JUMPER, serial, user=self.technician,
            log=self.line.audit, db=self.store.url, reason="golden TX power low on every lane",
        )  # fmt: skip
        before = self.spc_limits.center if self.spc_limits else float("nan")
        self._path_cal()
        self._baseline()
        values, runs = self.golden_series()
        entry = unlock(
            self.line.audit, self.station_id, self.engineer,
            f"SPC lock (entry {state.seq}): TX jumper suspect; swapped for {serial}, path-cal "
            f"re-run, golden re-baselined: centre {before:.3f} -> "
            f"{self.spc_limits.center if self.spc_limits else float('nan'):.3f} dBm "
            f"(last check {runs[-1]}: {values[-1]:.3f} dBm)",
        )  # fmt: skip
        self.events.append({"event": "unlock", "seq": entry["seq"], "lock_seq": state.seq})
        self._up("locked")
        self.line.note(f"{self.station_id}: unlocked by {self.engineer.login} after remedy")

    def _path_cal(self) -> None:
        fixtures = {site: FIXTURE.format(site=site) for site in self._sites()}
        results = self._run(PATH_CAL_SEQUENCE, PATH_CAL_PRODUCT, fixtures)
        bad = [f"site {s}: {r.outcome}" for s, r in results.items() if str(r.outcome) != "PASS"]
        if bad or len(results) != len(fixtures):
            raise StationError(f"{self.station_id}: path-cal did not pass ({', '.join(bad)})")
        record_calibration(
            self.line.audit, self.engineer, f"{self.station_id}:paths",
            runs=[r.run_id for r in results.values()], sequence=PATH_CAL_SEQUENCE,
        )  # fmt: skip


def _bin(outcome: str) -> int:
    return {"PASS": 1, "FAIL": 2, "ERROR": 3}.get(outcome, 4)
