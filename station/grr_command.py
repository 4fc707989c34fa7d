"""The `station grr` command line: `station grr` measures a gauge R&R study (station.grr) on the
station or a simulated bench and stores it; `station grr release` re-judges the product's latest
study against a new limits file to release it (station.release).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading
import uuid
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from station.admission import admit_measurement_system
from station.config import load_station_config
from station.console import terminal_prompter
from station.engine import abort_on_signals
from station.errors import InputError, StationError
from station.events import EventBus, PromptRequested
from station.grr import GrrStudy, StudyDesign, run_study, store_study
from station.launch import RunSetup, open_station, prepare_run
from station.limits import load_limits
from station.release import release_limits
from station.results.store import DEFAULT_DB, ResultsStore
from station.security.audit import AuditLog
from station.security.files import security_files
from station.security.lock import require_unlocked
from station.security.users import login
from station.simbench import SimulatedHands


def add_grr_command(sub: Any) -> None:
    grr = sub.add_parser(
        "grr",
        help="gauge R&R study: parts x appraisers (sites) x repeats (re-insertions); "
        "`grr release --limits FILE` releases a new limits version from the latest study",
    )
    grr.add_argument(
        "action",
        nargs="?",
        choices=("study", "release"),
        default="study",
        help="study (default): measure and analyse; release: re-judge the latest study",
    )
    grr.add_argument("--product", help="product, e.g. 800G-DR8 (study)")
    grr.add_argument("--sequence", default="pluggable", help="sequence to study (pluggable)")
    grr.add_argument("--parts", type=int, help="number of parts (n)")
    grr.add_argument("--appraisers", type=int, help="sites of the station (k)")
    grr.add_argument("--repeats", type=int, help="insertions of each part (r)")
    grr.add_argument(
        "--serials", help="the parts' serials, comma separated (default with --sim: SIM0001...)"
    )
    grr.add_argument(
        "--measurements",
        help="measurements to study, comma separated (default: the limits file's [grr] keys)",
    )
    grr.add_argument("--sim", action="store_true", help="study on a simulated bench")
    grr.add_argument("--time-factor", type=float, default=1.0)
    grr.add_argument(
        "--limits", metavar="FILE", help="limits file (study: default the product's; release)"
    )
    grr.add_argument("--station", metavar="CONFIG", help="station config TOML")
    grr.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    grr.add_argument("--operator", default=os.environ.get("USER", "unknown"))
    grr.add_argument(
        "--calibration-override",
        metavar="REASON",
        help="study through paths without a calibration in force (recorded with every run)",
    )
    grr.add_argument(
        "--user", metavar="LOGIN", help="release: the engineer releasing (secret: $STATION_SECRET)"
    )


def run_grr_command(args: argparse.Namespace, console: Console) -> int:
    """`station grr`: 0 when the study (or re-judging) released the limits version, 1 when not."""
    if args.action == "release":
        return _release_command(args, console)
    for name in ("product", "parts", "appraisers", "repeats"):
        if getattr(args, name) is None:
            raise InputError(f"--{name}", name, None, "a gauge R&R study needs it")
    if args.parts < 2 or args.parts > 9999:
        raise InputError("--parts", "parts", args.parts, "must be 2..9999")
    setup = prepare_run(
        sequence=args.sequence,
        product=args.product,
        limits=args.limits,
        station=args.station,
        sites=args.appraisers,
        sim=args.sim,
        time_factor=args.time_factor,
        mode="characterisation",
        operator=args.operator,
        calibration_override=args.calibration_override,
    )
    if args.serials:
        serials = tuple(s.strip() for s in args.serials.split(","))
    elif args.sim:
        serials = tuple(f"SIM{index:04d}" for index in range(1, args.parts + 1))
    else:
        raise InputError("--serials", "serials", None, "name the parts (or study with --sim)")
    if len(serials) != args.parts:
        raise InputError("--serials", "serials", serials, f"--parts {args.parts} needs as many")
    design = StudyDesign(serials, args.appraisers, args.repeats)
    design.check()
    for serial in serials:
        setup.limits.check_serial(serial)
    wanted = [m.strip() for m in args.measurements.split(",")] if args.measurements else None
    for name in wanted or ():
        if name not in setup.limits.limits:
            raise InputError("--measurements", "measurements", name, "has no limit")
    setup, log = _admitted_study(setup, args.db)
    station_id = setup.config.station_id

    sim = setup.simulated_bench() if args.sim else None
    prompter = terminal_prompter(console)
    try:
        if sim:
            sim.start()
        with open_station(setup, sim.site_resources if sim else None) as station:
            store = ResultsStore(args.db)
            bus = EventBus()
            bus.subscribe(store)
            if sim:
                hands = SimulatedHands(sim.control)
                bus.subscribe(hands)
                prompter = hands.wrap(prompter)
                product = setup.limits.product.name

                def insert(serial: str, site: int) -> None:
                    sim.control(f"insert {serial} {product} @{site}")
            else:

                def insert(serial: str, site: int) -> None:
                    request = PromptRequested(
                        "grr", "insert", uuid.uuid4().hex[:8],
                        f"Insert {serial} in site {site}", ("Inserted",), 600.0,
                    )  # fmt: skip
                    if prompter(request, threading.Event()) is None:
                        raise StationError(f"gauge R&R stopped: {serial} was not inserted")

            try:
                study = run_study(
                    setup,
                    station,
                    design,
                    insert=insert,
                    bus=bus,
                    prompter=prompter,
                    measurements=wanted,
                    progress=lambda line: console.print(line, markup=False),
                    guard=abort_on_signals,
                )
                store.flush()
                store_study(store.engine, study, setup, station_id, args.operator, log)
            finally:
                store.close()
    finally:
        if sim:
            sim.stop()
    console.print(study_table(study))
    limits = setup.limits
    if study.released:
        console.print(
            f"limits {limits.path.name} version {limits.version} RELEASED by study "
            f"{study.study_id} ({store.url})",
            markup=False,
        )
        return 0
    plan = limits.grr
    why = (
        "the limits file has no [grr] key measurements"
        if plan is None
        else f"key measurements need %GRR of tolerance < {plan.accept_pct:g} %"
    )
    console.print(
        f"limits {limits.path.name} version {limits.version} NOT released: {why} "
        f"(study {study.study_id}, {store.url})",
        markup=False,
    )
    return 1


def _admitted_study(setup: RunSetup, db: str) -> tuple[RunSetup, AuditLog]:
    """What a study must pass before anything is opened, as a run must (no worn jumper, its
    paths calibrated or the override given, the station not locked); with the losses and
    offsets in force."""
    log = security_files(setup.config, db).log
    require_unlocked(log, setup.config.station_id)  # a study releases limits for production
    config, override = admit_measurement_system(
        setup.config,
        setup.sequence,
        setup.limits.product.wavelength_nm,
        setup.mode,
        db=db,
        log=log,
        calibration_override=setup.calibration_override,
    )
    return dataclasses.replace(setup, config=config, calibration_override=override), log


def _release_command(args: argparse.Namespace, console: Console) -> int:
    """`station grr release --limits FILE --user LOGIN`."""
    if args.limits is None:
        raise InputError("--limits", "limits", None, "name the limits file to release")
    if args.user is None:
        raise InputError("--user", "user", None, "an engineer releases limits")
    limits = load_limits(args.limits)
    files = security_files(load_station_config(args.station), args.db)
    user = login(files.users, args.user)
    done = release_limits(args.db, limits, files.log, user)
    table = Table(title=f"{limits.path.name} judged on study {done.study_id}", title_justify="left")
    for column in ("measurement", "lane", "unit", "GRR", "tolerance", "%GRR tol", "verdict"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for row in done.rows.itertuples():
        lane = "-" if pd.isna(row.lane) else str(int(row.lane))
        table.add_row(
            row.measurement, lane, row.unit, f"{row.grr:.4g}", f"{row.tolerance:.4g}",
            f"{row.pct_grr_tolerance:.1f}", row.verdict,
        )  # fmt: skip
    console.print(table)
    named = f"limits {limits.path.name} version {limits.version} (sha256 {limits.sha256[:12]})"
    if done.released:
        console.print(f"{named} RELEASED by study {done.study_id}", markup=False)
        return 0
    why = (
        f"study {done.study_id} lacks {', '.join(done.missing)}"
        if done.missing
        else (
            f"key measurements need %GRR of tolerance < {limits.grr.accept_pct:g} %"  # type: ignore[union-attr]
        )
    )
    console.print(f"{named} NOT released: {why}", markup=False)
    return 1


def study_table(study: GrrStudy) -> Table:
    """One row per measurement (its lanes pooled: RMS sigmas, worst %GRR, lowest ndc)."""
    d = study.design
    table = Table(
        title=f"gauge R&R {study.study_id}: {len(d.parts)} parts x {d.appraisers} sites x "
        f"{d.repeats} repeats (ANOVA, sigmas)",
        title_justify="left",
    )
    for column in ("measurement", "unit", "lanes", "EV", "AV", "GRR", "PV", "%GRR tol",
                   "%GRR study", "ndc", "verdict"):  # fmt: skip
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for row in study.summary().itertuples():
        table.add_row(
            row.measurement + (" *" if row.key else ""),
            row.unit,
            str(row.lanes or 1),
            *(f"{value:.4g}" for value in (row.ev, row.av, row.grr, row.pv)),
            "-" if np.isnan(row.pct_grr_tolerance) else f"{row.pct_grr_tolerance:.1f}",
            f"{row.pct_grr_study:.1f}",
            f"{row.ndc:.1f}",
            row.verdict,
        )
    return table
