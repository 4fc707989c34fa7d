"""`station results ...` (runs, show, export, times, uph), `station report <run id>` and
`station yield --lot`.

Registered on the `station` command line by station.cli; each returns an exit code. Bad input and
refusals raise StationError subclasses, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

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
    times = res_sub.add_parser(
        "times", help="test time per run: load, waiting for shared instruments, steps, retries"
    )
    _db(times)
    _run_filters(times)
    _csv(times)
    uph = res_sub.add_parser("uph", help="units per hour, downtime and availability")
    _db(uph)
    uph.add_argument(
        "--by", choices=tuple(UPH_GROUPS), default="station", help="group by (default station)"
    )
    _run_filters(uph)
    _csv(uph)


#: `station results uph --by` -> the run columns grouped by
UPH_GROUPS = {"station": ("station_id",), "site": ("station_id", "site"), "lot": ("lot_id",)}
#: option -> run filter of `station results times` and `uph`
_FILTER_OPTIONS = {
    "station": "station_id",
    "lot": "lot_id",
    "serial": "dut_serial",
    "product": "product",
    "operation": "route_operation",
    "since": "since",
    "until": "until",
    "run": "run_id",
}


def _run_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--station", metavar="STATION_ID")
    parser.add_argument("--lot")
    parser.add_argument("--serial")
    parser.add_argument("--product")
    parser.add_argument("--operation", help="route operation")
    parser.add_argument("--since", metavar="DATE", help="runs started on or after (UTC)")
    parser.add_argument("--until", metavar="DATE", help="runs started on or before (UTC)")
    parser.add_argument("--run", action="append", metavar="RUN_ID", help="repeatable")


def _csv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", action="store_true", help="print CSV instead of a table")


def print_frame(
    console: Console,
    rows: pd.DataFrame,
    title: str,
    *,
    csv: bool = False,
    decimals: Mapping[str, int] | None = None,
) -> None:
    """Print `rows` as a rich table (numbers right-aligned, floats to `decimals` places, 2 by
    default) or, with `csv`, as CSV for a spreadsheet or a pipe."""
    if csv:
        console.file.write(rows.to_csv(index=False))
        return
    table = Table(title=title, title_justify="left")
    numeric = [pd.api.types.is_numeric_dtype(rows[c]) for c in rows.columns]
    for column, is_number in zip(rows.columns, numeric, strict=True):
        table.add_column(str(column), justify="right" if is_number else "left", no_wrap=True)
    places = decimals or {}
    for record in rows.itertuples(index=False):
        table.add_row(
            *(_cell(v, places.get(c, 2)) for c, v in zip(rows.columns, record, strict=True))
        )
    console.print(table)


def _cell(value: Any, places: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.{places}f}"
    return str(value)


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
        if args.results_command in ("times", "uph"):
            return _utilisation(store, args, console)
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


def _chosen_filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        column: getattr(args, option)
        for option, column in _FILTER_OPTIONS.items()
        if getattr(args, option) is not None
    }


def _described(filters: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in filters.items()) or "any run"


def _utilisation(store: ResultsStore, args: argparse.Namespace, console: Console) -> int:
    """`station results times` and `station results uph`."""
    filters = _chosen_filters(args)
    if args.results_command == "times":
        rows = store.test_time_split(**filters)
        title = "Test time per run (seconds)"
    else:
        rows = store.uph(UPH_GROUPS[args.by], **filters)
        title = f"Units per hour per {args.by}"
    if not len(rows):
        raise NotFound(f"{store.url}: no finished runs match ({_described(filters)})")
    print_frame(console, rows, title, csv=args.csv, decimals=_DECIMALS)
    return 0


_DECIMALS: dict[str, int] = {"hours": 3, "uph": 1, "downtime_s": 0, "availability": 3}
