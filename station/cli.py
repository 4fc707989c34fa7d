"""The `station` command line: run a sequence, serve a simulated bench, look at stored results.

Exit codes of `station run`: 0 the DUT passed, 1 it failed, 2 the station could not test it
(bad input, instrument fault, expired calibration, abort).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence as Seq
from typing import Any

import pandas as pd
from rich.console import Console

from station import __version__
from station.bench import InstrumentSetupError, check_calibration, open_sites
from station.config import load_station_config
from station.console import (
    ProgressPrinter,
    format_value,
    result_tables,
    terminal_prompter,
    verdict,
)
from station.engine import Arbiter, RunEngine, RunParameters, abort_on_signals
from station.errors import InputError, StationError
from station.events import EventBus, MeasurementRecorded
from station.limits import LimitsFile, limits_path, load_limits, shipped_products
from station.multisite import MultiSiteRunner
from station.outcome import Outcome, worst
from station.results.commands import add_report_commands, add_result_commands, run_result_command
from station.results.store import DEFAULT_DB, ResultsStore
from station.sequence import Sequence, load_sequence
from station.simbench import SimBenchProcess

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

    sim = sub.add_parser("sim", help="simulated bench")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve a simulated bench until interrupted")
    serve.add_argument("--bench", default="module", help="bench kind (module)")
    serve.add_argument("--time-factor", type=float, default=1.0)
    serve.add_argument("--dut", metavar="SERIAL", default="SIM0001", help="module in the cage")
    serve.add_argument("--product", default="800G-DR8")

    add_result_commands(sub)
    add_report_commands(sub)
    return parser


def main(argv: Seq[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=180)  # logs and pipes: room for 8 lanes
    errors = Console(stderr=True, highlight=False)
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "sim":
            return _sim_serve(args)
        return run_result_command(args, console)
    except StationError as err:  # bad input and refusals: one line, exit 2, nothing written
        errors.print(f"error: {err}", markup=False)
        return EXIT_CANNOT_TEST
    except KeyboardInterrupt:  # before a run started or after it ended: nothing to make safe
        errors.print("aborted", markup=False)
        return EXIT_CANNOT_TEST


def _run(args: argparse.Namespace, console: Console) -> int:
    # Everything that can be wrong with the input is checked before anything is opened or written.
    sequence = load_sequence(args.sequence)
    if args.limits is None and args.product not in shipped_products():
        raise InputError(
            "--product",
            "product",
            args.product,
            f"no limits file; known products: {', '.join(shipped_products())}",
        )
    limits = load_limits(args.limits or limits_path(args.product))
    if limits.product.name != args.product:
        raise InputError(
            limits.path,
            "product.name",
            limits.product.name,
            f"is not the requested product {args.product!r}",
        )
    if args.product not in sequence.products:
        raise InputError(
            "--product",
            "product",
            args.product,
            f"sequence {sequence.name!r} tests {', '.join(sequence.products)}",
        )
    serials: list[str] = args.serial
    sites = args.sites or len(serials)
    if len(serials) != sites:
        raise InputError("--serial", "serial", serials, f"--sites {sites} needs {sites} serials")
    if len(set(serials)) != len(serials):
        raise InputError("--serial", "serial", serials, "the same serial is on two sites")
    for serial in serials:
        limits.check_serial(serial)
    limits.check_against(sequence.measurements)
    config = load_station_config(args.station, sequence.bench)
    if args.sim and config.site_count == 1 and sites > 1:
        config = config.replicated(sites)  # the simulated bench builds every site like site 1
    if config.site_count != sites:
        raise InputError(
            config.path,
            "sites",
            config.site_count,
            f"the station has {config.site_count} sites, --sites asks for {sites}",
        )
    check_calibration(config, sequence.roles, dt.date.today(), args.calibration_override)
    if args.time_factor <= 0:
        raise InputError("--time-factor", "time_factor", args.time_factor, "must be > 0")
    run_options = _run_options(args, sequence, limits, serials)

    sim = (
        SimBenchProcess(
            bench=sequence.bench,
            duts=serials,
            sites=sites,
            product=args.product,
            time_factor=args.time_factor,
        )
        if args.sim
        else None
    )
    try:
        if sim:
            sim.start()
        try:
            bench, site_instruments, site_records = open_sites(
                config, sequence.roles, sim.site_resources if sim else None
            )
        except InstrumentSetupError as err:
            Console(stderr=True).print(f"error: station cannot test: {err}", markup=False)
            return EXIT_CANNOT_TEST
        with bench:
            store = ResultsStore(args.db)
            bus = EventBus()
            bus.subscribe(store)
            bus.subscribe(ProgressPrinter(console, sites > 1))
            prompter = terminal_prompter(console)

            def make_engine(site: int, shared: frozenset[str], arbiter: Arbiter) -> RunEngine:
                return RunEngine(
                    sequence=sequence,
                    limits=limits,
                    station=config.for_site(site),
                    instruments=site_instruments[site - 1],
                    instrument_records=site_records[site - 1],
                    bus=bus,
                    operator=args.operator,
                    mode=args.mode,
                    site=site,
                    calibration_override=args.calibration_override,
                    prompter=prompter,
                    shared_roles=shared,
                    arbiter=arbiter,
                    parameters=RunParameters(corners_c=args.corners),
                )

            runner = MultiSiteRunner(make_engine, site_instruments)
            started = time.monotonic()
            with abort_on_signals(runner):
                site_results = runner.run(serials, **run_options)
            elapsed = time.monotonic() - started
            store.close()  # waits for the last commit; a write failure surfaces here
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
    for error in runner.shared_safe_errors:
        console.print(f"station error: {error}", style="magenta", markup=False)
        outcomes.append(Outcome.ERROR)
    console.print(
        f"results in {store.url}" + (f"; {sites} sites in {elapsed:.1f} s" if sites > 1 else "")
    )
    return worst(outcomes).exit_code


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
