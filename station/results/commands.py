"""`station results ...` commands: list runs, show a run's measurements.

Registered on the `station` command line by station.cli; each returns an exit code.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from station.results.store import DEFAULT_DB, ResultsStore

EXIT_NOT_FOUND = 2


def add_result_commands(sub: Any) -> None:
    """Add the `results` command group to the `station` subcommands."""
    results = sub.add_parser("results", help="stored results")
    res_sub = results.add_subparsers(dest="results_command", required=True)
    runs = res_sub.add_parser("runs", help="list runs")
    runs.add_argument("--db", default=DEFAULT_DB)
    runs.add_argument("--serial")
    show = res_sub.add_parser("show", help="measurements of one run")
    show.add_argument("run_id")
    show.add_argument("--db", default=DEFAULT_DB)


def run_result_command(args: argparse.Namespace, console: Console) -> int:
    store = ResultsStore(args.db)
    try:
        if args.results_command == "runs":
            frame = store.runs(**({"dut_serial": args.serial} if args.serial else {}))
            columns = [
                "run_id",
                "started_at",
                "sequence",
                "product",
                "dut_serial",
                "outcome",
                "complete",
            ]
            console.print(frame[columns].to_string(index=False) if len(frame) else "no runs")
            return 0
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
    finally:
        store.close()
