"""The `station` command line: run a sequence, serve a simulated bench, look at stored results.

Exit codes of `station run`: 0 the DUT passed, 1 it failed, 2 the station could not test it
(bad input, instrument fault, expired calibration, abort).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
from collections import Counter
from collections.abc import Sequence as Seq
from typing import Any

import pandas as pd
from rich.console import Console

from station import __version__
from station.admission import admit_measurement_system
from station.bench import InstrumentSetupError
from station.calibration.jumpers import replace_jumper
from station.calibration.offsets import GoldenOffsetsWriter
from station.calibration.paths import PATH_CAL_SEQUENCE
from station.calibration.resolve import jumper_table, load_matings
from station.calibration.writer import PathCalWriter
from station.config import load_station_config
from station.console import (
    format_value,
    live_progress,
    result_tables,
    summary_table,
    terminal_prompter,
    verdict,
)
from station.engine import RunParameters, abort_on_signals
from station.errors import InputError, StationError
from station.events import EventBus, MeasurementRecorded
from station.grr_command import add_grr_command, run_grr_command
from station.launch import RunSetup, SitesRun, open_station, prepare_run, run_sites
from station.limits import LimitsFile
from station.outcome import Outcome, worst
from station.release import production_problems
from station.results.commands import (
    add_report_commands,
    add_result_commands,
    print_frame,
    run_result_command,
)
from station.results.store import DEFAULT_DB, ResultsStore
from station.security.approvals import LimitsNotApproved
from station.security.audit import AuditLog
from station.security.changes import record_calibration
from station.security.commands import add_security_commands, run_security_command
from station.security.files import SecurityFiles, security_files
from station.security.overrides import LimitsOverrideRecorder, record_limits_override
from station.security.simulated import seed_demo_release
from station.security.users import login
from station.sequence import Sequence
from station.shift import add_shift_command, run_shift_command
from station.simbench import SimulatedHands

EXIT_CANNOT_TEST = 2


def _corners_c(text: str) -> tuple[float, ...]:
    """`--corners 0,25,70` as a tuple of distinct temperatures in degC."""
    try:
        corners = tuple(float(word) for word in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0,25,70") from None
    if len(set(corners)) != len(corners):
        raise argparse.ArgumentTypeError(f"{text!r} names a corner twice")
    return corners


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="station", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"station {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a test sequence on one DUT")
    run.add_argument("sequence", help="sequence name, e.g. pluggable")
    run.add_argument("--product", required=True, help="product, e.g. 800G-DR8")
    run.add_argument(
        "--serial",
        required=True,
        action="append",
        help="DUT serial number as scanned; once per site",
    )
    run.add_argument(
        "--sites", type=int, help="test this many DUTs at once (default: one per serial)"
    )
    run.add_argument(
        "--sim",
        action="store_true",
        help="start a simulated bench for this run and use its instruments",
    )
    run.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"results database: a SQLite file path or a database URL (default {DEFAULT_DB})",
    )
    run.add_argument(
        "--station", metavar="CONFIG", help="station config TOML (default: the simulated bench's)"
    )
    run.add_argument(
        "--limits", metavar="FILE", help="limits file (default: the product's shipped file)"
    )
    run.add_argument("--operator", default=os.environ.get("USER", "unknown"))
    run.add_argument(
        "--mode",
        choices=("production", "characterisation"),
        default="production",
        help="production stops at the first failing step; characterisation runs all",
    )
    run.add_argument(
        "--time-factor",
        type=float,
        default=1.0,
        help="with --sim: wall seconds per simulated second (default 1, real time)",
    )
    run.add_argument(
        "--calibration-override",
        metavar="REASON",
        help="engineering override to run with an expired calibration (recorded)",
    )
    run.add_argument(
        "--corners",
        type=_corners_c,
        metavar="DEGC,...",
        help="case temperatures to test at, e.g. 0,25,70 (default: the sequence's; 25 degC)",
    )
    run.add_argument("--lot", help="lot / work order the DUT belongs to (recorded on the run)")
    run.add_argument(
        "--wafer", help="wafer id (wafer sequences: default the serial, the wafer's scribe)"
    )
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue run RUN_ID after a crash: only what it has not completed is tested",
    )
    run.add_argument(
        "--limits-override",
        metavar="REASON",
        help="characterisation only: use limits not approved or not GR&R-released (recorded)",
    )
    run.add_argument(
        "--user",
        metavar="LOGIN",
        help="the engineer granting --limits-override (secret: $STATION_SECRET or a prompt)",
    )

    sim = sub.add_parser("sim", help="simulated bench")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve a simulated bench until interrupted")
    serve.add_argument("--bench", default="module", help="bench kind (module)")
    serve.add_argument("--time-factor", type=float, default=1.0)
    serve.add_argument("--dut", metavar="SERIAL", default="SIM0001", help="module in the cage")
    serve.add_argument("--product", default="800G-DR8")

    add_result_commands(sub)
    add_report_commands(sub)
    add_grr_command(sub)
    add_security_commands(sub)
    _add_ui_command(sub)
    add_shift_command(sub)
    _add_jumpers_command(sub)
    return parser


def _add_jumpers_command(sub: Any) -> None:
    jumpers = sub.add_parser(
        "jumpers", help="the station's DUT-side jumpers: matings and limits; `swap` fits a new one"
    )
    where = {"metavar": "CONFIG", "help": "station config TOML"}
    jumpers.add_argument("--station", **where)
    jumpers.add_argument("--db", default=DEFAULT_DB, help=f"results database ({DEFAULT_DB})")
    jumpers.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    actions = jumpers.add_subparsers(dest="jumpers_command")
    swap = actions.add_parser(
        "swap", help="a technician fits a new jumper: the config names it, the audit log records it"
    )
    swap.add_argument("name", help="the jumper's name in the station config, e.g. tx_breakout")
    swap.add_argument("--serial", help="serial number of the jumper fitted")
    swap.add_argument("--matings", type=int, default=0, help="matings already on it (0: new)")
    swap.add_argument("--site", type=int, help="the site, where the site has jumpers of its own")
    swap.add_argument("--reason", help="why it is replaced (worn out, golden-unit drift, ...)")
    swap.add_argument("--user", metavar="LOGIN", help="the technician (secret: $STATION_SECRET)")
    swap.add_argument("--station", default=argparse.SUPPRESS, **where)
    swap.add_argument("--db", default=argparse.SUPPRESS, help="results database")


def _add_ui_command(sub: Any) -> None:
    ui = sub.add_parser("ui", help="the operator page: a local web server running the station")
    ui.add_argument(
        "--station", metavar="CONFIG", help="station config TOML (default: the simulated bench's)"
    )
    ui.add_argument("--sim", action="store_true", help="run on a simulated bench")
    ui.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    ui.add_argument(
        "--token",
        default=os.environ.get("STATION_UI_TOKEN"),
        help="required to serve beyond this machine (default $STATION_UI_TOKEN)",
    )
    ui.add_argument("--sequence", default="pluggable", help="the station's sequence")
    ui.add_argument("--product", default="800G-DR8", help="the station's product")
    ui.add_argument("--limits", metavar="FILE", help="limits file (default: the product's)")
    ui.add_argument("--sites", type=int, help="test sites (default: the station config's)")
    ui.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    ui.add_argument("--reports", default="reports", help="folder for HTML reports")
    ui.add_argument("--operator", default=os.environ.get("USER", "unknown"))
    ui.add_argument("--mode", choices=("production", "characterisation"), default="production")
    ui.add_argument(
        "--time-factor", type=float, default=1.0, help="with --sim: wall s per simulated s"
    )


def main(argv: Seq[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=180)  # logs and pipes: room for 8 lanes
    # an error is one line however long: a log or a pipe must not get it wrapped at 80 columns
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "sim":
            return _sim_serve(args)
        if args.command == "grr":
            return run_grr_command(args, console)
        if args.command in ("users", "audit", "limits"):
            return run_security_command(args, console)
        if args.command == "ui":
            return _ui(args, console)
        if args.command == "shift":
            return run_shift_command(args, console)
        if args.command == "jumpers":
            return _jumpers(args, console)
        return run_result_command(args, console)
    except StationError as err:  # bad input and refusals: one line, exit 2, nothing written
        errors.print(f"error: {err}", markup=False)
        return EXIT_CANNOT_TEST
    except KeyboardInterrupt:  # before a run started or after it ended: nothing to make safe
        errors.print("aborted", markup=False)
        return EXIT_CANNOT_TEST


def _run(args: argparse.Namespace, console: Console) -> int:
    # Everything that can be wrong with the input is checked before anything is opened or written.
    serials: list[str] = args.serial
    sites = args.sites or len(serials)
    setup = prepare_run(
        sequence=args.sequence,
        product=args.product,
        limits=args.limits,
        station=args.station,
        sites=sites,
        sim=args.sim,
        time_factor=args.time_factor,
        mode=args.mode,
        operator=args.operator,
        calibration_override=args.calibration_override,
        parameters=RunParameters(corners_c=args.corners),
    )
    if len(serials) != sites:
        raise InputError("--serial", "serial", serials, f"--sites {sites} needs {sites} serials")
    setup.check_serials(serials)
    setup, unapproved, files = _admitted(setup, args.db, args.limits_override, args.user)
    sequence, limits = setup.sequence, setup.limits
    run_options = _run_options(args, sequence, limits, serials)

    sim = setup.simulated_bench(serials) if args.sim else None
    try:
        if sim:
            sim.start()
        try:
            station = open_station(setup, sim.site_resources if sim else None)
        except InstrumentSetupError as err:
            Console(stderr=True, soft_wrap=True).print(
                f"error: station cannot test: {err}", markup=False
            )
            return EXIT_CANNOT_TEST
        with station:
            store = ResultsStore(args.db)
            bus = EventBus()
            bus.subscribe(store)
            if unapproved:
                bus.subscribe(
                    LimitsOverrideRecorder(
                        store.engine, setup.limits, args.limits_override, unapproved
                    )
                )
            golden = (
                GoldenOffsetsWriter(store.engine, setup.limits, files.log)
                if setup.limits.offsets
                else None
            )
            if golden:
                bus.subscribe(golden)
            path_cal = None
            if sequence.name == PATH_CAL_SEQUENCE:  # a passing path-cal publishes its records
                path_cal = PathCalWriter(store.engine, setup.config)
                bus.subscribe(path_cal)
            prompter = terminal_prompter(console)
            if sim:  # the simulated bench seats the probe and cleans as the operator confirms
                hands = SimulatedHands(sim.control)
                bus.subscribe(hands)
                prompter = hands.wrap(prompter)
            progress = live_progress(console, setup.step_names, sites)
            bus.subscribe(progress)
            with progress:
                done = run_sites(
                    setup,
                    station,
                    dict(enumerate(serials, start=1)),
                    bus=bus,
                    prompter=prompter,
                    guard=abort_on_signals,
                    run_options=run_options,
                )
            site_results, elapsed = done.results, done.elapsed_s
            store.close()  # waits for the last commit; a write failure surfaces here
            if path_cal is not None:
                _record_path_cal(files.log, path_cal, done, setup)
    finally:
        if sim:
            sim.stop()

    outcomes = []
    for site in site_results:
        result = site.result
        if result is None:
            console.print(
                f"site {site.site} {site.serial}: station error: {site.error}",
                style="magenta",
                markup=False,
            )
            outcomes.append(Outcome.ERROR)
            continue
        if sites == 1 and any(m.die_x is not None for m in result.measurements):
            console.print(_die_summary(result.measurements), markup=False)
        elif sites == 1:
            for table in result_tables(result.measurements):
                console.print(table)
        else:
            failed = [m for m in result.measurements if m.outcome != Outcome.PASS]
            for m in failed:
                lane = f" lane {m.lane}" if m.lane is not None else ""
                value = f"{format_value(m.value)} {m.unit}".strip()
                console.print(
                    f"  site {site.site} {m.name}{lane} = {value}: {m.outcome}", markup=False
                )
        if result.error:
            console.print(f"station error: {result.error}", style="magenta", markup=False)
        prefix = f"site {site.site} " if sites > 1 else ""
        console.print(
            verdict(result.outcome),
            f" {prefix}{site.serial}  run {result.run_id}  ({result.duration_s:.1f} s)",
        )
        outcomes.append(result.outcome)
    for error in done.shared_safe_errors:
        console.print(f"station error: {error}", style="magenta", markup=False)
        outcomes.append(Outcome.ERROR)
    if sites > 1:
        console.print(summary_table(site_results))
    if golden:
        _golden_outcome(golden, console)
    console.print(
        f"results in {store.url}" + (f"; {sites} sites in {elapsed:.1f} s" if sites > 1 else "")
    )
    return worst(outcomes).exit_code


def _ui(args: argparse.Namespace, console: Console) -> int:
    try:  # the web stack is an optional extra: only the page needs it
        from station.ui.server import check_binding, serve_station
    except ImportError as err:
        raise StationError(
            f"the operator page needs the web extra ({err.name} is missing): "
            "pip install 'optical-test-station[ui]'"
        ) from None

    check_binding(args.host, args.token)
    setup = prepare_run(
        sequence=args.sequence,
        product=args.product,
        limits=args.limits,
        station=args.station,
        sites=args.sites,
        sim=args.sim,
        time_factor=args.time_factor,
        mode=args.mode,
        operator=args.operator,
    )

    def check_paths(setup: RunSetup) -> RunSetup:  # as `station run` does, before every batch
        # the page has no limits override: unapproved limits are refused in every mode
        return _admitted(setup, args.db, None, None)[0]

    check_paths(setup)  # a station that cannot test refuses to start
    return serve_station(
        setup,
        check=check_paths,
        host=args.host,
        port=args.port,
        token=args.token,
        db=args.db,
        reports=args.reports,
        announce=lambda line: print(line, flush=True),  # plain: a log or a launcher reads it
    )


def _admitted(
    setup: RunSetup, db: str, limits_override: str | None, engineer: str | None
) -> tuple[RunSetup, str | None, SecurityFiles]:
    """What a run must pass before anything is opened: the limits' [release] table in effect,
    the measurement system admitted (`admit_measurement_system`: jumpers, paths, lock), the
    limits' exact content approved by an engineer (audit log) and GR&R-released (results
    store); a characterisation run may go ahead on unapproved limits under an engineer's
    override, which is recorded. A simulated bench first seeds its shipped demo limits'
    approval and release. Returns the set-up with the calibrated losses and golden-unit offsets
    in force, why the limits are unapproved (None when they are), and the station's audit log
    and users file."""
    limits, mode = setup.limits, setup.mode
    not_released = limits.check_release(mode, limits_override, dt.date.today())
    files = security_files(setup.config, db)
    config, override = admit_measurement_system(
        setup.config,
        setup.sequence,
        limits.product.wavelength_nm,
        mode,
        db=db,
        log=files.log,
        calibration_override=setup.calibration_override,
    )
    if setup.sim:
        seed_demo_release(files, db, limits, setup.sequence.name, config.station_id)
    found = production_problems(files.log, db, limits, setup.sequence.name)
    if found and mode == "production":
        raise LimitsNotApproved(f"{found[0]}; production runs refuse it")
    if found and not (limits_override or "").strip():
        raise LimitsNotApproved(
            f"{found[0]}; a characterisation run needs --limits-override REASON and --user "
            "ENGINEER (recorded)"
        )
    unapproved = "; ".join(p for p in (not_released, *found) if p) or None
    if unapproved is not None:
        _record_limits_override(files, limits, limits_override or "", unapproved, engineer)
    setup = dataclasses.replace(setup, config=config, calibration_override=override)
    return setup, unapproved, files


def _record_limits_override(
    files: SecurityFiles, limits: LimitsFile, reason: str, unapproved: str, engineer: str | None
) -> None:
    """An engineer authenticates and grants the override; the audit log records it."""
    if engineer is None:
        raise InputError("--user", "user", None, "--limits-override needs the engineer granting it")
    user = login(files.users, engineer)
    record_limits_override(files.log, user, limits, reason, unapproved)


def _record_path_cal(log: AuditLog, writer: PathCalWriter, done: SitesRun, setup: RunSetup) -> None:
    """A calibration entry for every path-cal site run that finished: its outcome and how many
    path records it published (none unless it passed)."""
    station_id = setup.config.station_id
    for site in done.results:
        if site.result is None:
            continue
        run_id = site.result.run_id
        record_calibration(
            log,
            None,
            f"paths@{station_id}",
            run_id=run_id,
            site=site.site,
            fixture=site.serial,
            outcome=str(site.result.outcome),
            records=sum(1 for r in writer.published if r.run_id == run_id),
            failure=writer.failure,
            operator=setup.operator,
        )


def _golden_outcome(golden: GoldenOffsetsWriter, console: Console) -> None:
    for station_id, site, version in golden.versions:
        console.print(f"station {station_id} site {site}: offsets version {version} in force")
    for station_id, site, reason in golden.locked:
        console.print(
            f"station {station_id} site {site} LOCKED: {reason}; runs are refused until an "
            "engineer runs `station audit unlock --user <login> --reason <text>`",
            style="magenta",
            markup=False,
        )
    if golden.failure:
        console.print(f"station error: offsets not written: {golden.failure}", style="magenta")


def _jumpers(args: argparse.Namespace, console: Console) -> int:
    """`station jumpers`: every DUT-side jumper's matings (as the store counts them) and limit."""
    if args.jumpers_command == "swap":
        return _swap_jumper(args, console)
    config = load_station_config(args.station)
    rows = pd.DataFrame(jumper_table(config, load_matings(args.db, config.station_id)))
    if rows.empty:
        console.print(f"{config.path.name}: station {config.station_id} names no jumpers")
        return 0
    print_frame(console, rows, f"Jumpers of station {config.station_id}", csv=args.csv)
    return 0


def _swap_jumper(args: argparse.Namespace, console: Console) -> int:
    """`station jumpers swap NAME --serial S --reason R --user TECHNICIAN`."""
    for name in ("serial", "reason", "user"):
        if getattr(args, name) is None:
            raise InputError(f"--{name}", name, None, "a jumper swap needs it")
    config = load_station_config(args.station)
    files = security_files(config, args.db)
    done = replace_jumper(
        config, args.name, args.serial, user=login(files.users, args.user), log=files.log,
        db=args.db, reason=args.reason, site=args.site, matings=args.matings,
    )  # fmt: skip
    site = f" (site {done.site})" if done.site is not None else ""
    console.print(
        f"{config.station_id}: jumper {args.name}{site} {done.old.serial} "
        f"({done.old.mating_count} matings) replaced by {done.new.serial} "
        f"({done.new.mating_count} matings), audit entry {done.audit_seq}; production refuses "
        f"paths {', '.join(done.new.paths)} until path-cal has measured them",
        markup=False,
    )
    return 0


def _run_options(
    args: argparse.Namespace, sequence: Sequence, limits: LimitsFile, serials: list[str]
) -> dict[str, Any]:
    """Lot, wafer and, with --resume, the run to continue and what it has completed (checked
    against the stored run: the same sequence, product, DUT and limits)."""
    wafer = args.wafer or (serials[0] if sequence.bench == "wafer" and len(serials) == 1 else None)
    options: dict[str, Any] = {"lot_id": args.lot, "wafer_id": wafer}
    if args.resume is None:
        return options
    if len(serials) != 1:
        raise InputError("--resume", "resume", args.resume, "resumes one site's run")
    with ResultsStore(args.db) as store:
        found = store.runs(run_id=args.resume)
        if found.empty:
            raise InputError("--resume", "resume", args.resume, f"no such run in {store.url}")
        run = found.iloc[0]
        expected = {
            "sequence": sequence.name,
            "product": limits.product.name,
            "dut_serial": serials[0],
            "limits_sha256": limits.sha256,
        }
        for column, value in expected.items():
            if run[column] != value:
                raise InputError(
                    "--resume", column, run[column], f"the run differs from this one ({value})"
                )
        if bool(run["complete"]) and run["outcome"] in (Outcome.PASS, Outcome.FAIL):
            raise InputError("--resume", "resume", args.resume, "the run is complete")
        completed = store.completed_units(args.resume)
    return {
        "run_id": args.resume,
        "lot_id": run["lot_id"] if pd.notna(run["lot_id"]) else args.lot,
        "wafer_id": run["wafer_id"] if pd.notna(run["wafer_id"]) else wafer,
        "completed_units": completed,
    }


def _die_summary(measurements: tuple[MeasurementRecorded, ...]) -> str:
    """Wafer runs: dies by outcome (the worst of each die's measurements)."""
    worst_of: dict[tuple[int | None, int | None], Outcome] = {}
    for m in measurements:
        die = (m.die_x, m.die_y)
        worst_of[die] = worst([worst_of.get(die, Outcome.PASS), m.outcome])
    counts = Counter(worst_of.values())
    parts = ", ".join(f"{counts[o]} {o}" for o in Outcome if counts[o])
    return f"{len(worst_of)} dies tested in this session: {parts}"


def _sim_serve(args: argparse.Namespace) -> int:
    command = [
        sys.executable,
        "-m",
        "sim_instruments",
        "serve",
        "--bench",
        args.bench,
        "--time-factor",
        str(args.time_factor),
        "--dut",
        args.dut,
        "--product",
        args.product,
    ]
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
