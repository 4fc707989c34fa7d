"""Gauge R&R studies on the station: n parts x k appraisers x r repeats of a sequence, analysed by
the crossed ANOVA (station.analysis.grr), stored, and releasing the limits version they studied.

Appraisers are the station's sites (on the simulated bench, identical simulated stations); a
repeat is a re-insertion of the part. Runs go one at a time in the order repeat, part, appraiser,
so that no part is in two sites at once. Only the sequence's steps up to the last one recording a
studied measurement run (a TX study skips the RX tests), in characterisation mode so that a part
outside its limits still gives every value.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from station.analysis.grr import GrrResult, crossed_grr
from station.calibration.locks import check_unlocked
from station.calibration.offsets import load_offsets
from station.console import terminal_prompter
from station.engine import PlannedSequence, Prompter, abort_on_signals
from station.errors import InputError, StationError
from station.events import EventBus, MeasurementRecorded, PromptRequested
from station.launch import OpenStation, RunSetup, open_station, prepare_run, run_sites
from station.limits import LimitsFile
from station.outcome import Outcome
from station.results.schema import grr_results, grr_runs, grr_studies, limits_releases
from station.results.store import DEFAULT_DB, ResultsStore
from station.simbench import SimulatedHands

#: puts a part in an appraiser's site (the simulated bench's `insert`, or the operator)
Inserter = Callable[[str, int], None]
Key = tuple[str, int | None]  # (measurement, lane)


@dataclass(frozen=True)
class StudyDesign:
    parts: tuple[str, ...]  # serials
    appraisers: int  # sites 1..k
    repeats: int

    def check(self) -> None:
        for name, count in (
            ("--parts", len(self.parts)),
            ("--appraisers", self.appraisers),
            ("--repeats", self.repeats),
        ):
            if count < 2:
                raise InputError(name, name.lstrip("-"), count, "a crossed study needs at least 2")
        if len(set(self.parts)) != len(self.parts):
            raise InputError("--parts", "parts", self.parts, "a part is listed twice")


@dataclass(frozen=True)
class GrrStudy:
    """A finished study: the observations, the analysis and what it concludes."""

    study_id: str
    design: StudyDesign
    keys: tuple[Key, ...]  # one per analysed measurement, the first axis of `values`
    units: tuple[str, ...]
    values: np.ndarray  # (m, parts, appraisers, repeats)
    tolerance: np.ndarray  # (m,) spec high - spec low; NaN for one-sided limits
    result: GrrResult
    key_measurement: np.ndarray  # (m,) bool: named in the limits file's [grr] table
    verdicts: tuple[str, ...]  # accept / conditional / reject / unknown ("" when not key)
    released: bool
    runs: tuple[tuple[str, int, int, str], ...]  # (part, appraiser, repeat, run id)

    def frame(self) -> pd.DataFrame:
        """One row per measurement and lane with its variance components (sigmas)."""
        r = self.result
        return pd.DataFrame(
            {
                "measurement": [k[0] for k in self.keys],
                "lane": pd.array([k[1] for k in self.keys], dtype="Int64"),
                "unit": list(self.units),
                "ev": r.ev,
                "av": r.av,
                "interaction": r.interaction,
                "grr": r.grr,
                "pv": r.pv,
                "tv": r.tv,
                "interaction_pooled": r.pooled,
                "tolerance": self.tolerance,
                "pct_grr_tolerance": r.pct_grr_tolerance,
                "pct_grr_study": r.pct_grr_study,
                "ndc": r.ndc,
                "key": self.key_measurement,
                "verdict": list(self.verdicts),
            }
        )

    def summary(self) -> pd.DataFrame:
        """One row per measurement over its lanes: RMS of the sigmas, the worst %GRR and ndc."""
        frame = self.frame()
        rms = lambda s: float(np.sqrt(np.mean(np.square(s))))  # noqa: E731
        grouped = frame.groupby("measurement", sort=False)
        out = grouped.agg(
            unit=("unit", "first"),
            lanes=("lane", "count"),
            ev=("ev", rms),
            av=("av", rms),
            grr=("grr", rms),
            pv=("pv", rms),
            pct_grr_tolerance=("pct_grr_tolerance", "max"),
            pct_grr_study=("pct_grr_study", "max"),
            ndc=("ndc", "min"),
            key=("key", "any"),
        )
        order = ("reject", "conditional", "unknown", "accept", "")
        out["verdict"] = grouped["verdict"].agg(
            lambda v: next((o for o in order if o in set(v)), "")
        )
        return out.reset_index()


def studied_steps(setup: RunSetup, measurements: Sequence[str]) -> RunSetup:
    """The setup with its sequence cut after the last step that records one of `measurements`."""
    sequence = setup.sequence
    steps = (
        sequence.steps_for(setup.parameters)
        if isinstance(sequence, PlannedSequence)
        else sequence.steps
    )
    wanted = set(measurements)
    last = max((i for i, s in enumerate(steps) if wanted & set(s.measures)), default=None)
    if last is None:
        raise InputError(
            "--measurements", "measurements", sorted(wanted), f"{sequence.name} records none"
        )
    kept = {s.name for s in steps[: last + 1]}
    cut = dataclasses.replace(sequence, steps=tuple(s for s in sequence.steps if s.name in kept))
    return dataclasses.replace(setup, sequence=cut, mode="characterisation")


def run_study(
    setup: RunSetup,
    station: OpenStation,
    design: StudyDesign,
    *,
    insert: Inserter,
    bus: EventBus,
    prompter: Prompter,
    measurements: Sequence[str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
    guard: Callable[[Any], contextlib.AbstractContextManager[Any]] | None = None,
) -> GrrStudy:
    """Run the study and analyse it. `measurements` to analyse default to every numeric one the
    studied steps record; the sequence is cut after the last step recording a key one."""
    design.check()
    if design.appraisers > setup.sites:
        raise InputError(
            "--appraisers", "appraisers", design.appraisers, f"the station has {setup.sites} sites"
        )
    limits = setup.limits
    key_names = tuple(limits.grr.key_measurements) if limits.grr else ()
    setup = studied_steps(setup, measurements or key_names or sorted(setup.sequence.measurements))
    observed: dict[tuple[int, int, int], dict[Key, MeasurementRecorded]] = {}
    runs = []
    total = len(design.parts) * design.appraisers * design.repeats
    for repeat in range(design.repeats):
        for part_index, serial in enumerate(design.parts):
            for appraiser in range(1, design.appraisers + 1):
                insert(serial, appraiser)
                done = run_sites(
                    setup,
                    station,
                    {appraiser: serial},
                    bus=bus,
                    prompter=prompter,
                    guard=guard or _no_guard,
                )
                site = done.results[0]
                result = site.result
                if result is None or result.outcome in (Outcome.ERROR, Outcome.ABORTED):
                    why = site.error if result is None else result.error
                    raise StationError(
                        f"gauge R&R stopped: {serial} on site {appraiser}, repeat {repeat + 1}: "
                        f"{why}"
                    )
                observed[(part_index, appraiser - 1, repeat)] = {
                    (m.name, m.lane): m for m in result.measurements
                }  # a retried step's last attempt stands
                runs.append((serial, appraiser, repeat + 1, result.run_id))
                progress(
                    f"{len(runs)}/{total}: {serial} site {appraiser} repeat {repeat + 1} "
                    f"{result.outcome} ({result.duration_s:.1f} s)"
                )
    return analyse(limits, design, observed, tuple(runs), set(measurements or ()), set(key_names))


@contextlib.contextmanager
def _no_guard(_runner: object) -> Iterator[None]:
    yield


def analyse(
    limits: LimitsFile,
    design: StudyDesign,
    observed: dict[tuple[int, int, int], dict[Key, MeasurementRecorded]],
    runs: tuple[tuple[str, int, int, str], ...],
    wanted: set[str],
    key_names: set[str],
) -> GrrStudy:
    """The study's array of observations, its ANOVA, the verdicts of the key measurements."""
    shape = (len(design.parts), design.appraisers, design.repeats)
    cells = list(np.ndindex(*shape))
    common = set.intersection(*(set(observed[c]) for c in cells))
    keys = tuple(
        sorted(
            (
                k
                for k in common
                if (not wanted or k[0] in wanted)
                and all(_numeric(observed[c][k].value) for c in cells)
            ),
            key=lambda k: (k[0], k[1] or 0),
        )
    )
    if not keys:
        raise StationError("gauge R&R: no numeric measurement was recorded by every run")
    values = np.array(
        [[float(observed[c][k].value) for c in cells] for k in keys]  # type: ignore[arg-type]
    ).reshape(len(keys), *shape)
    tolerance = np.array([_tolerance(limits, name) for name, _ in keys])
    result = crossed_grr(values, tolerance)
    is_key = np.array([name in key_names for name, _ in keys])
    plan = limits.grr
    verdicts = tuple(
        plan.verdict(float(pct)) if plan and key else ""
        for pct, key in zip(result.pct_grr_tolerance, is_key, strict=True)
    )
    released = bool(
        plan is not None
        and key_names <= {name for name, _ in keys}
        and all(v == "accept" for v, key in zip(verdicts, is_key, strict=True) if key)
    )
    units = tuple(observed[cells[0]][k].unit for k in keys)
    return GrrStudy(
        uuid.uuid4().hex[:16],
        design,
        keys,
        units,
        values,
        tolerance,
        result,
        is_key,
        verdicts,
        released,
        runs,
    )


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _tolerance(limits: LimitsFile, name: str) -> float:
    """USL - LSL of the spec limits (what %GRR of tolerance is of); NaN when one-sided."""
    limit = limits.limits[name]
    if limit.spec_low is None or limit.spec_high is None:
        return float("nan")
    return limit.spec_high - limit.spec_low


def store_study(
    engine: sa.Engine, study: GrrStudy, setup: RunSetup, station_id: str, operator: str
) -> None:
    """The study, its per-measurement results and runs, and (when it passed) the release of
    the limits version, in one transaction."""
    limits = setup.limits
    frame = study.frame().astype(object)
    frame = frame.where(pd.notna(frame), None)
    frame = frame.replace([np.inf, -np.inf], None)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            grr_studies.insert().values(
                study_id=study.study_id,
                product=limits.product.name,
                limits_version=limits.version,
                limits_sha256=limits.sha256,
                sequence=setup.sequence.name,
                station_id=station_id,
                appraiser_kind="site",
                parts=len(study.design.parts),
                appraisers=study.design.appraisers,
                repeats=study.design.repeats,
                operator=operator,
                started_at=now,
                released=study.released,
            )
        )
        conn.execute(
            grr_results.insert(),
            [{"study_id": study.study_id, **row} for row in frame.to_dict("records")],
        )
        conn.execute(
            grr_runs.insert(),
            [
                {"study_id": study.study_id, "part": p, "appraiser": a, "repeat": r, "run_id": i}
                for p, a, r, i in study.runs
            ],
        )
        if study.released:
            already = conn.execute(
                sa.select(limits_releases.c.study_id).where(
                    limits_releases.c.product == limits.product.name,
                    limits_releases.c.limits_sha256 == limits.sha256,
                )
            ).first()
            if already is None:
                conn.execute(
                    limits_releases.insert().values(
                        product=limits.product.name,
                        limits_sha256=limits.sha256,
                        limits_version=limits.version,
                        study_id=study.study_id,
                        released_at=now,
                    )
                )


def released_by(engine: sa.Engine, limits: LimitsFile) -> str | None:
    """The study that released this limits file (by its hash), or None."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(limits_releases.c.study_id).where(
                limits_releases.c.product == limits.product.name,
                limits_releases.c.limits_sha256 == limits.sha256,
            )
        ).scalar()


# --- command line: `station grr` ------------------------------------------------------------------
def add_grr_command(sub: Any) -> None:
    grr = sub.add_parser(
        "grr", help="gauge R&R study: parts x appraisers (sites) x repeats (re-insertions)"
    )
    grr.add_argument("--product", required=True, help="product, e.g. 800G-DR8")
    grr.add_argument("--sequence", default="pluggable", help="sequence to study (pluggable)")
    grr.add_argument("--parts", type=int, required=True, help="number of parts (n)")
    grr.add_argument("--appraisers", type=int, required=True, help="sites of the station (k)")
    grr.add_argument("--repeats", type=int, required=True, help="insertions of each part (r)")
    grr.add_argument(
        "--serials", help="the parts' serials, comma separated (default with --sim: SIM0001...)"
    )
    grr.add_argument(
        "--measurements",
        help="measurements to study, comma separated (default: the limits file's [grr] keys)",
    )
    grr.add_argument("--sim", action="store_true", help="study on a simulated bench")
    grr.add_argument("--time-factor", type=float, default=1.0)
    grr.add_argument("--limits", metavar="FILE", help="limits file (default: the product's)")
    grr.add_argument("--station", metavar="CONFIG", help="station config TOML")
    grr.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    grr.add_argument("--operator", default=os.environ.get("USER", "unknown"))


def run_grr_command(args: argparse.Namespace, console: Console) -> int:
    """`station grr`: 0 when the study released the limits version, 1 when it did not."""
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
    station_id = setup.config.station_id
    check_unlocked(args.db, station_id)
    offsets = load_offsets(args.db, station_id)
    if offsets:
        setup = dataclasses.replace(setup, config=setup.config.with_offsets(offsets))

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
                store_study(store.engine, study, setup, station_id, args.operator)
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
