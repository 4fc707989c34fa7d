"""The `station` command line: run a sequence, serve a simulated bench, look at stored results.

Exit codes of `station run`: 0 the DUT passed, 1 it failed, 2 the station could not test it
(bad input, instrument fault, expired calibration, abort).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence as Seq

from rich.console import Console

from station import __version__
from station.bench import InstrumentSetupError, check_calibration, open_bench
from station.config import load_station_config
from station.console import ProgressPrinter, result_tables, terminal_prompter, verdict
from station.engine import RunEngine, abort_on_signals
from station.errors import InputError, StationError
from station.events import EventBus
from station.limits import limits_path, load_limits, shipped_products
from station.results.commands import add_result_commands, run_result_command
from station.results.store import DEFAULT_DB, ResultsStore
from station.sequence import load_sequence
from station.simbench import SimBenchProcess

EXIT_CANNOT_TEST = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="station", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"station {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a test sequence on one DUT")
    run.add_argument("sequence", help="sequence name, e.g. pluggable")
    run.add_argument("--product", required=True, help="product, e.g. 800G-DR8")
    run.add_argument("--serial", required=True, help="DUT serial number (as scanned)")
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

    sim = sub.add_parser("sim", help="simulated bench")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve a simulated bench until interrupted")
    serve.add_argument("--bench", default="module", help="bench kind (module)")
    serve.add_argument("--time-factor", type=float, default=1.0)
    serve.add_argument("--dut", metavar="SERIAL", default="SIM0001", help="module in the cage")
    serve.add_argument("--product", default="800G-DR8")

    add_result_commands(sub)
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
    limits.check_serial(args.serial)
    limits.check_against(sequence.measurements)
    config = load_station_config(args.station, sequence.bench)
    check_calibration(config, sequence.roles, dt.date.today(), args.calibration_override)
    if args.time_factor <= 0:
        raise InputError("--time-factor", "time_factor", args.time_factor, "must be > 0")

    sim = (
        SimBenchProcess(
            bench=sequence.bench,
            dut_serial=args.serial,
            product=args.product,
            time_factor=args.time_factor,
        )
        if args.sim
        else None
    )
    try:
        resources = sim.start() if sim else None
        try:
            bench = open_bench(config, sequence.roles, resources)
        except InstrumentSetupError as err:
            Console(stderr=True).print(f"error: station cannot test: {err}", markup=False)
            return EXIT_CANNOT_TEST
        with bench:
            store = ResultsStore(args.db)
            bus = EventBus()
            bus.subscribe(store)
            bus.subscribe(ProgressPrinter(console))
            engine = RunEngine(
                sequence=sequence,
                limits=limits,
                station=config,
                instruments=bench.instruments,
                instrument_records=tuple(bench.records),
                bus=bus,
                operator=args.operator,
                mode=args.mode,
                calibration_override=args.calibration_override,
                prompter=terminal_prompter(console),
            )
            with abort_on_signals(engine):
                result = engine.run(args.serial)
            store.close()  # waits for the last commit; a write failure surfaces here
    finally:
        if sim:
            sim.stop()

    for table in result_tables(result.measurements):
        console.print(table)
    if result.error:
        console.print(f"station error: {result.error}", style="magenta", markup=False)
    console.print(
        verdict(result.outcome),
        f" {args.serial}  run {result.run_id}  ({result.duration_s:.1f} s, results in {store.url})",
    )
    return result.outcome.exit_code


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
