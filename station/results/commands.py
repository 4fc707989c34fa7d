"""`station results ...` (runs, show, export), `station report <run id>` and `station yield --lot`.

Registered on the `station` command line by station.cli; each returns an exit code. Bad input and
refusals raise StationError subclasses, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from station.errors import InputError, StationError
from station.results.store import DEFAULT_DB, ResultsStore, database_url

EXIT_NOT_FOUND = 2
DEFAULT_REPORTS = "reports"


class NotFound(StationError, LookupError):
    """Nothing matches: no such run, lot or selection."""


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"results database: file path or URL (default {DEFAULT_DB})",
    )


def add_result_commands(sub: Any) -> None:
    """Add the `results` command group to the `station` subcommands."""
    results = sub.add_parser("results", help="stored results")
    res_sub = results.add_subparsers(dest="results_command", required=True)
    runs = res_sub.add_parser("runs", help="list runs")
    _db(runs)
    runs.add_argument("--serial")
    show = res_sub.add_parser("show", help="measurements of one run")
    show.add_argument("run_id")
    _db(show)
    export = res_sub.add_parser("export", help="export runs as CSV, Parquet, JSON or STDF V4")
    _db(export)
    export.add_argument("--format", required=True, choices=("csv", "parquet", "json", "stdf"))
    export.add_argument(
        "--out", required=True, type=Path, help="file (Parquet: a folder, partitioned)"
    )
    export.add_argument("--product")
    export.add_argument("--lot")
    export.add_argument("--wafer")
    export.add_argument("--since", metavar="DATE", help="runs started on or after (UTC)")
    export.add_argument("--until", metavar="DATE", help="runs started on or before (UTC)")
    export.add_argument("--run", action="append", metavar="RUN_ID", help="repeatable")


def add_report_commands(sub: Any) -> None:
    """Add `report` (one run) and `yield` (one lot) to the `station` subcommands."""
    report = sub.add_parser("report", help="HTML report of one run, with plots")
    report.add_argument("run_id")
    _db(report)
    report.add_argument("--out", type=Path, default=Path(DEFAULT_REPORTS), help="folder")
    report.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="MEASUREMENT",
        help="wafer runs: map this measurement (repeatable)",
    )
    lot = sub.add_parser("yield", help="HTML yield report of one lot, with wafer maps")
    lot.add_argument("--lot", required=True)
    _db(lot)
    lot.add_argument("--out", type=Path, default=Path(DEFAULT_REPORTS), help="folder")
    lot.add_argument("--map", action="append", default=[], metavar="MEASUREMENT")


def run_result_command(args: argparse.Namespace, console: Console) -> int:
    """Run `station results ...`, `station report` or `station yield`."""
    url = database_url(args.db)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise InputError("--db", "db", args.db, "no such results database")  # do not create one
    store = ResultsStore(url)
    try:
        if args.command == "report" or args.command == "yield":
            return _report(store, args, console)
        if args.results_command == "export":
            return _export(store, args, console)
        if args.results_command == "runs":
            return _runs(store, args, console)
        return _show(store, args, console)
    finally:
        store.close()


def _runs(store: ResultsStore, args: argparse.Namespace, console: Console) -> int:
    frame = store.runs(**({"dut_serial": args.serial} if args.serial else {}))
    columns = ["run_id", "started_at", "sequence", "product", "dut_serial", "outcome", "complete"]
    console.print(frame[columns].to_string(index=False) if len(frame) else "no runs")
    return 0


def _show(store: ResultsStore, args: argparse.Namespace, console: Console) -> int:
    frame = store.measurements(run_id=args.run_id)
    if not len(frame):
        console.print(f"no measurements for run {args.run_id}")
        return EXIT_NOT_FOUND
    columns = [
        "step",
        "measurement",
        "lane",
        "value",
        "text_value",
        "unit",
        "low_limit",
        "high_limit",
        "outcome",
    ]
    console.print(frame[columns].to_string(index=False))
    return 0


def _export(store: ResultsStore, args: argparse.Namespace, console: Console) -> int:
    from station.results.export import NothingToExport, export
    from station.results.stdf import StdfExportError

    filters = {
        key: value
        for key, value in (
            ("product", args.product),
            ("lot_id", args.lot),
            ("wafer_id", args.wafer),
            ("since", args.since),
            ("until", args.until),
            ("run_id", args.run),
        )
        if value
    }
    parent = args.out.resolve().parent
    if not parent.is_dir():
        raise InputError("--out", "out", str(args.out), f"folder {parent} does not exist")
    try:
        summary = export(store, args.format, args.out, **filters)
    except NothingToExport as err:
        raise NotFound(f"{store.url}: {err}") from None
    except StdfExportError as err:
        raise InputError("--format", "format", "stdf", str(err)) from None
    except OSError as err:
        raise InputError("--out", "out", str(args.out), err.strerror or str(err)) from None
    console.print(
        f"{summary.format}: {summary.runs} runs, {summary.rows} results -> {summary.path}",
        markup=False,
    )
    return 0


def _report(store: ResultsStore, args: argparse.Namespace, console: Console) -> int:
    from station.results.report import ReportError, lot_report, run_report

    try:
        if args.command == "report":
            report = run_report(store, args.run_id, args.out, args.map)
        else:
            report = lot_report(store, args.lot, args.out, args.map)
    except ReportError as err:
        raise NotFound(f"{store.url}: {err}") from None
    except OSError as err:
        raise InputError("--out", "out", str(args.out), err.strerror or str(err)) from None
    console.print(
        f"{report.path} ({len(report.images)} plots, {report.seconds:.2f} s)", markup=False
    )
    return 0
