"""`station shift --sim`: a simulated production shift of a line, as one command.

Two (or more) simulated module stations, each with its own simulated bench, results store and
outbox, take the units of one lot from the MES simulator's queue: check-in, the `pluggable`
sequence in production mode, check-out; the retest policy decides what may follow. A golden unit
every K units feeds SPC; one station's TX jumper fouls a little at every mating until a Western
Electric rule locks it and an engineer swaps the jumper, re-runs path-cal and unlocks. In the
middle of the lot the MES goes down, the line database is held by another session, and an
engineer approves new limits. The stations share one line audit log: the limits approval and the
users are the line's, and one hash chain reconstructs every change of the shift.

The station never imports the simulators: the MES simulator runs as its own process reached over
HTTP, and each bench is a `SimBenchProcess` driven by its control lines.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from station.bench import resolve_run_paths
from station.calibration.paths import PATH_CAL_SEQUENCE
from station.errors import SimBenchError, StationError
from station.events import EventBus
from station.grr import StudyDesign, run_study, store_study
from station.launch import open_station, prepare_run
from station.limits import LimitsFile, limits_path, load_limits
from station.mes.http import HttpMes
from station.release import latest_study, release_limits
from station.results.store import ResultsStore
from station.results.sync import LineDatabase
from station.security.approvals import approve_limits
from station.security.audit import AuditLog
from station.security.changes import record_limits_change
from station.security.files import SecurityFiles
from station.security.simulated import seed_demo_release
from station.security.users import User, add_user, load_users
from station.shift_report import print_report, shift_summary, verify_shift
from station.shift_station import (
    OPERATION,
    PATH_CAL_PRODUCT,
    PRODUCT,
    SEQUENCE,
    STAFF,
    START_TIMEOUT_S,
    Line,
    ShiftPlan,
    StationWorker,
    lot_serials,
    operator_answers,
    work_order,
)
from station.simbench import SimBenchProcess, SimulatedHands, end_process


# --- the MES simulator as a process -------------------------------------------------------------
class MesProcess:
    """`python -m sim_mes serve` with the shift's lot, reached at `url`."""

    def __init__(self, lots: Path) -> None:
        self.args = [sys.executable, "-m", "sim_mes", "serve", "--lots", str(lots)]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> MesProcess:
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stream = self.process.stdout
        assert stream is not None

        def pump() -> None:
            with contextlib.suppress(ValueError, OSError):
                for line in stream:
                    lines.put(line.strip())
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                line = None
            if line is None:
                self.__exit__()
                raise SimBenchError("the MES simulator did not start")
            if line.startswith("URL "):
                self.url = line.removeprefix("URL ")
            if line == "READY":
                return self

    def control(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(request, timeout=5).close()

    def __exit__(self, *_exc: object) -> None:
        if self.process is None:
            return
        end_process(self.process)
        self.process = None


# --- the line's events ----------------------------------------------------------------------------
def _lots_file(plan: ShiftPlan, serials: list[str]) -> Path:
    path = plan.out / "lots.toml"
    listed = ", ".join(json.dumps(s) for s in serials)
    path.write_text(
        f'[lots.{plan.lot_id}]\nproduct = "{PRODUCT}"\nroute = ["{OPERATION}"]\n'
        f'work_order = "{work_order(plan)}"\nserials = [{listed}]\n',
        encoding="utf-8",
    )
    return path


def _users(path: Path) -> dict[str, User]:
    known = load_users(path)
    for login, role in STAFF:
        if login not in known:
            add_user(path, login, role, f"{login}-shift-secret")
    return load_users(path)


def _wait_until_seen(line: Line, seen: set[str], alive: list[StationWorker], max_s: float) -> float:
    """Hold an outage until every running station met it (at least `min_outage_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        running = {w.station_id for w in alive if w.is_alive()}
        long_enough = time.monotonic() - started >= line.plan.min_outage_s
        with line.guard:
            if long_enough and running <= seen:
                break
        time.sleep(0.1)
    return time.monotonic() - started


def _mes_outage(line: Line, mes: MesProcess, workers: list[StationWorker]) -> dict[str, Any]:
    line.note("MES OUTAGE: the MES stops answering")
    mes.control("/control/outage", {"down": True})
    try:
        seconds = _wait_until_seen(line, line.seen_mes_down, workers, 120.0)
    finally:
        mes.control("/control/outage", {"down": False})
    line.note(f"MES back after {seconds:.1f} s")
    return {"event": "mes_outage", "seconds": seconds, "seen_by": sorted(line.seen_mes_down)}


@contextlib.contextmanager
def held_database(line_db: LineDatabase) -> Iterator[None]:
    """Another session holds the line database exclusively (a migration, a vacuum) until the
    block ends: stations cannot write to it, and their results wait in their outboxes."""
    conn = line_db.engine.connect()
    try:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


def _db_outage(line: Line, workers: list[StationWorker]) -> dict[str, Any]:
    line.note("LINE DATABASE OUTAGE: held by another session")
    with held_database(line.line_db):
        seconds = _wait_until_seen(line, line.seen_db_down, workers, 180.0)
    line.note(f"line database back after {seconds:.1f} s")
    return {"event": "db_outage", "seconds": seconds, "seen_by": sorted(line.seen_db_down)}


GAUGE_PARTS = ("SIM9801", "SIM9802")  # the line's gauge R&R parts (2 x 2 sites x 2 insertions)


def gauge_study(line: Line) -> dict[str, Any]:
    """Line qualification: the measured gauge R&R study of the product that a later limits
    version is released from (`release_limits` re-judges it), made on a 2-site simulated bench
    on the bench's uncalibrated losses (an override: a study compares repeats, not absolute
    values) when the line database holds none yet. Its runs go to a store of its own."""
    if latest_study(line.line_db.engine, PRODUCT) is not None:
        return {"event": "gauge_study", "study_id": None, "note": "the line has one"}
    folder = line.plan.out / "gauge"
    folder.mkdir(parents=True, exist_ok=True)
    setup = prepare_run(
        sequence=SEQUENCE, product=PRODUCT, sites=2, sim=True,
        time_factor=line.plan.time_factor, operator=line.users["eddie"].login,
        calibration_override="gauge R&R on the qualification bench: repeats, not absolutes",
    )  # fmt: skip
    config, override = resolve_run_paths(
        setup.config, setup.sequence.name, setup.sequence.roles,
        setup.limits.product.wavelength_nm, line.line_db.url, "characterisation",
        setup.calibration_override,
    )  # fmt: skip
    setup = dataclasses.replace(setup, config=config, calibration_override=override)
    design = StudyDesign(GAUGE_PARTS, 2, 2)
    with (
        setup.simulated_bench() as bench,
        open_station(setup, bench.site_resources) as station,
        ResultsStore(folder / "results.sqlite") as store,
    ):
        bus = EventBus()
        bus.subscribe(store)
        hands = SimulatedHands(bench.control)
        bus.subscribe(hands)
        study = run_study(
            setup, station, design, bus=bus, prompter=hands.wrap(operator_answers),
            insert=lambda serial, site: _insert(bench, serial, site),
        )  # fmt: skip
        store.flush()
    store_study(line.line_db.engine, study, setup, config.station_id, "eddie", line.audit)
    line.note(f"gauge R&R study {study.study_id} of {PRODUCT} stored in the line database")
    return {"event": "gauge_study", "study_id": study.study_id}


TIGHTENED = ("tx_tdecq", "high", 3.4, 3.3)  # the engineer's change: TDECQ limit 3.4 -> 3.3 dB


def changed_limits(plan: ShiftPlan, author: str, approver: str) -> LimitsFile:
    """The product's limits with TDECQ tightened, as a new release by `author`."""
    shipped = limits_path(PRODUCT)
    text = shipped.read_text(encoding="utf-8")
    name, key, old, new = TIGHTENED
    block = f"[limits.{name}]\n{key} = {old}\n"
    release = load_limits(shipped).release
    if block not in text or release is None:
        raise StationError(f"{shipped}: cannot find [limits.{name}] {key} = {old} to change")
    text = text.replace(block, f"[limits.{name}]\n{key} = {new}\n")
    text = text.replace(f'version = "{release.version}"', f'version = "{release.version}-S1"')
    text = text.replace(f'author = "{release.author}"', f'author = "{author}"')
    text = text.replace(f'approver = "{release.approver}"', f'approver = "{approver}"')
    folder = plan.out / "limits"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / shipped.name
    path.write_text(text, encoding="utf-8")
    return load_limits(path)


def _limits_change(line: Line, gauge: threading.Thread) -> dict[str, Any]:
    """erin tightens the TDECQ limit; eddie, another engineer, approves it and releases it from
    the line's gauge R&R study (waiting for that study when it is still running)."""
    gauge.join()
    author, approver = line.users["erin"], line.users["eddie"]
    old = load_limits(limits_path(PRODUCT))
    new = changed_limits(line.plan, author.login, approver.login)
    reason = "TDECQ guard band: field returns near the limit"
    change = record_limits_change(line.audit, author, old, new, reason)
    approval = approve_limits(line.audit, new, approver, reason)
    release = release_limits(line.line_db.url, new, line.audit, approver)
    if not release.released:
        missing = ", ".join(release.missing) or "a key measurement above the accept threshold"
        line.note(f"LIMITS CHANGE: {new.version} approved but not GR&R-released ({missing})")
        return {"event": "limits_change_refused", "approval_seq": approval["seq"]}
    line.limits_file = new.path
    line.note(f"LIMITS CHANGE: {new.path.name} {new.version} approved by {approver.login}")
    return {
        "event": "limits_change", "change_seq": change["seq"], "approval_seq": approval["seq"],
        "release_seq": release.entry["seq"] if release.entry else None,
        "study_id": release.study_id, "sha256": new.sha256, "path": str(new.path),
    }  # fmt: skip


# --- the shift ------------------------------------------------------------------------------------
@dataclass
class ShiftResult:
    summary: dict[str, Any]
    problems: list[str]
    summary_path: Path


def run_shift(plan: ShiftPlan, console: Console) -> ShiftResult:
    """Run the shift `plan` describes, report it and check it; everything it writes (line
    database, audit log, users, stations' stores and outboxes, charts, the JSON summary) goes
    to `plan.out`, the line database to `plan.line_db` when one is named."""
    plan.check()
    plan.out.mkdir(parents=True, exist_ok=True)
    serials = lot_serials(plan)
    users_path = plan.out / "line-users.toml"
    users = _users(users_path)
    audit = AuditLog(plan.out / "line-audit.jsonl")
    line_url = plan.line_db or f"sqlite:///{(plan.out / 'line.sqlite').resolve()}"
    started = time.monotonic()
    with LineDatabase(line_url) as line_db, MesProcess(_lots_file(plan, serials)) as mes:
        line = Line(
            plan, HttpMes(mes.url, timeout_s=2.0), audit, users, users_path, line_db, console
        )
        seeded = [
            seed_demo_release(
                SecurityFiles(audit, users_path), line_url, load_limits(limits_path(product)),
                sequence, "shift-line",
            )
            for product, sequence in ((PRODUCT, SEQUENCE), (PATH_CAL_PRODUCT, PATH_CAL_SEQUENCE))
        ]  # fmt: skip
        if any(s.anything for s in seeded):
            line.note("shipped limits approved and released for the simulated line (demo seed)")
        workers = [StationWorker(line, i) for i in range(1, plan.stations + 1)]
        per_station = -(-plan.units // plan.stations)
        for n in range(plan.faults):  # spread over the lot, one station after the other
            worker = workers[n % plan.stations]
            worker.faults_due.append(1 + (n // plan.stations + 1) * per_station // 3)
        line.note(f"shift: {plan.units} units of {plan.lot_id} on {plan.stations} stations")
        for worker in workers:
            worker.start()
        events = _drive(line, mes, workers)
        for worker in workers:
            worker.join()
        wall_s = time.monotonic() - started
        summary = shift_summary(line, workers, serials, events, wall_s)
        problems = verify_shift(line, workers, serials, summary)
        for worker in workers:
            worker.outbox.close()
    summary["problems"] = problems
    path = plan.out / "shift-summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return ShiftResult(summary, problems, path)


def _drive(line: Line, mes: MesProcess, workers: list[StationWorker]) -> list[dict[str, Any]]:
    """Fire the line's events as the lot progresses; return what happened."""
    plan = line.plan
    events: list[dict[str, Any]] = []

    def qualify() -> None:
        try:
            events.append(gauge_study(line))
        except Exception as err:  # reported; the limits change then cannot be released
            events.append({"event": "gauge_study", "failure": f"{type(err).__name__}: {err}"})
            line.note(f"gauge R&R study failed: {err}")

    gauge = threading.Thread(target=qualify, name="gauge-study", daemon=True)
    gauge.start()
    pending = sorted(
        [
            (plan.mes_outage_at, "mes_outage", lambda: _mes_outage(line, mes, workers)),
            (plan.db_outage_at, "db_outage", lambda: _db_outage(line, workers)),
            (plan.limits_change_at, "limits_change", lambda: _limits_change(line, gauge)),
        ],
        key=lambda item: item[0],
    )
    last_shown = -1
    while any(w.is_alive() for w in workers):
        done = line.finished
        if pending and done >= pending[0][0] * plan.units:
            events.append({**pending.pop(0)[2](), "at_units": done})
        if done != last_shown:
            line.note(f"progress: {done}/{plan.units} units final")
            last_shown = done
        time.sleep(0.2)
    for _, name, _fire in pending:  # the lot ended before this event's threshold
        events.append({"event": "missed", "what": name})
    gauge.join()
    return events


# --- the command ----------------------------------------------------------------------------------
def add_shift_command(sub: Any) -> None:
    shift = sub.add_parser("shift", help="a simulated production shift of a line (--sim)")
    shift.add_argument("--sim", action="store_true", required=True, help="simulated line")
    shift.add_argument("--units", type=int, default=200, help="units in the lot (200)")
    shift.add_argument("--stations", type=int, default=2, help="stations (2)")
    shift.add_argument("--sites", type=int, default=1, help="sites per station (1)")
    shift.add_argument("--line-db", metavar="URL", help="line database (default: OUT/line.sqlite)")
    shift.add_argument("--out", type=Path, default=Path("shift"), help="output folder (shift)")
    shift.add_argument("--seed", type=int, default=1, help="picks the lot's serials (1)")
    shift.add_argument("--time-factor", type=float, default=0.02, help="wall s per simulated s")
    shift.add_argument("--golden-every", type=int, default=4, help="units between golden checks")


def run_shift_command(args: argparse.Namespace, console: Console) -> int:
    plan = ShiftPlan(
        out=args.out, units=args.units, stations=args.stations, sites=args.sites,
        line_db=args.line_db, seed=args.seed, time_factor=args.time_factor,
        golden_every=args.golden_every,
    )  # fmt: skip
    result = run_shift(plan, console)
    print_report(result.summary, console)
    for problem in result.problems:
        console.print(f"PROBLEM: {problem}", style="magenta", markup=False)
    console.print(f"summary in {result.summary_path}", markup=False)
    return 1 if result.problems else 0


def _insert(bench: SimBenchProcess, serial: str, site: int) -> None:
    """The study's hands: put `serial` in site `site`'s cage."""
    bench.control(f"insert {serial} {PRODUCT} @{site}")
