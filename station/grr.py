"""Gauge R&R studies on the station: n parts x k appraisers x r repeats of a sequence, analysed by
the crossed ANOVA (station.analysis.grr), stored, and releasing the limits version they studied.
A production run needs its limits version (product, sha256) released (`grr_release_problem`); a
new limits version is released from the product's latest study by re-judging its %GRR against
the new tolerances, without measuring again (`release_limits`).

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from station.admission import admit_measurement_system
from station.analysis.grr import STUDY_SIGMAS, GrrResult, crossed_grr
from station.calibration.offsets import read_only
from station.calibration.paths import PATH_CAL_SEQUENCE
from station.config import load_station_config
from station.console import terminal_prompter
from station.engine import PlannedSequence, Prompter, abort_on_signals
from station.errors import InputError, StationError
from station.events import EventBus, MeasurementRecorded, PromptRequested
from station.launch import OpenStation, RunSetup, open_station, prepare_run, run_sites
from station.limits import LimitsFile, load_limits
from station.outcome import Outcome
from station.results.schema import grr_results, grr_runs, grr_studies, limits_releases
from station.results.store import DEFAULT_DB, ResultsStore, database_url
from station.security.approvals import approval_problem
from station.security.audit import AuditLog
from station.security.files import security_files
from station.security.lock import require_unlocked
from station.security.users import SYSTEM_ROLE, User, login, require
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
    engine: sa.Engine,
    study: GrrStudy,
    setup: RunSetup,
    station_id: str,
    operator: str,
    log: AuditLog | None = None,
) -> None:
    """The study, its per-measurement results and runs, and (when it passed) the release of
    the limits version, in one transaction; a new release is also entered in the audit `log`."""
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
        released = study.released and _record_release(conn, limits, study.study_id, now)
    if released and log is not None:
        log.append(
            actor=GRR_ACTOR,
            role=SYSTEM_ROLE,
            action=RELEASE,
            subject=f"limits:{limits.product.name}",
            details={
                **_limits_facts(limits),
                "study_id": study.study_id,
                "operator": operator,
                "rejudged": False,
                "key": _worst_of_keys(study.frame()),
            },
        )


def _record_release(
    conn: sa.Connection, limits: LimitsFile, study_id: str, now: dt.datetime
) -> bool:
    """Release `limits` (product, sha256) by `study_id` unless it is already; True if new."""
    already = conn.execute(
        sa.select(limits_releases.c.study_id).where(
            limits_releases.c.product == limits.product.name,
            limits_releases.c.limits_sha256 == limits.sha256,
        )
    ).first()
    if already is not None:
        return False
    conn.execute(
        limits_releases.insert().values(
            product=limits.product.name,
            limits_sha256=limits.sha256,
            limits_version=limits.version,
            study_id=study_id,
            released_at=now,
        )
    )
    return True


def released_by(engine: sa.Engine, limits: LimitsFile) -> str | None:
    """The study that released this limits file (by its hash), or None."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(limits_releases.c.study_id).where(
                limits_releases.c.product == limits.product.name,
                limits_releases.c.limits_sha256 == limits.sha256,
            )
        ).scalar()


RELEASE = "grr_release"  # the audit action of a limits release
GRR_ACTOR = "grr"  # the station releasing on a study it ran
#: appraiser_kind of a study row that stands for no measurement: the release a simulated bench
#: seeds for its shipped demo limits (station.security.simulated); never re-judged
SEEDED = "simulated-seed"


def _limits_facts(limits: LimitsFile) -> dict[str, Any]:
    return {
        "file": limits.path.name,
        "product": limits.product.name,
        "version": limits.version,
        "sha256": limits.sha256,
    }


def _worst_of_keys(frame: pd.DataFrame) -> dict[str, float | None]:
    """Key measurement -> its worst %GRR of tolerance over the lanes (None: not a number)."""
    keys = frame[frame["key"].astype(bool)]
    worst = keys.groupby("measurement")["pct_grr_tolerance"].max()
    return {str(name): (float(v) if np.isfinite(v) else None) for name, v in worst.items()}


def needs_grr_release(sequence: str, limits: LimitsFile) -> bool:
    """Whether a production run of `sequence` on `limits` needs a GR&R release: every product
    file does; the station's self-checks (path-cal, a golden-unit file) are no gauge to study."""
    return sequence != PATH_CAL_SEQUENCE and not limits.offsets


def production_problems(
    log: AuditLog, target: str | Path, limits: LimitsFile, sequence: str
) -> list[str]:
    """Why `limits` may not be used in production, beyond its [release] table: its exact content
    is not approved by an engineer (audit log `log`), or, for a file that needs one, its
    version has no GR&R release in the results database `target`. Empty: it may."""
    problems = [approval_problem(log, limits)]
    if needs_grr_release(sequence, limits):
        problems.append(grr_release_problem(target, limits))
    return [p for p in problems if p is not None]


def grr_release_problem(target: str | Path, limits: LimitsFile) -> str | None:
    """Why `limits` (product, sha256) is not GR&R-released in the results database at
    `target`, in one line naming product, version and sha256; None when it is."""
    named = (
        f"{limits.product.name} limits version {limits.version} "
        f"(sha256 {limits.sha256[:12]}, {limits.path.name})"
    )
    engine = read_only(target)
    study = None
    if engine is not None:
        try:
            with engine.connect() as conn:
                if sa.inspect(conn).has_table(limits_releases.name):
                    study = released_by(engine, limits)
        except sa.exc.SQLAlchemyError as err:
            raise StationError(f"{engine.url}: cannot read limits releases: {err}") from err
        finally:
            engine.dispose()
    if study is not None:
        return None
    return (
        f"{named} has no gauge R&R release in {database_url(target)}: run `station grr` or "
        "`station grr release --limits FILE`"
    )


@dataclass(frozen=True)
class Rejudged:
    """A stored study's key measurements judged against a new limits file's tolerances."""

    study_id: str
    studied_sha256: str  # the limits the study ran on
    rows: pd.DataFrame  # measurement, lane, unit, grr, tolerance, pct_grr_tolerance, verdict
    missing: tuple[str, ...]  # key measurements the study did not record
    released: bool
    entry: dict[str, Any] | None  # the audit entry of the release


def rejudge(rows: pd.DataFrame, limits: LimitsFile) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The key measurements of `limits`' [grr] plan among a study's result `rows` (one per
    measurement and lane, with its GRR sigma), with %GRR of the new tolerance and its verdict;
    and the key measurements the rows lack."""
    plan = limits.grr
    if plan is None:
        raise InputError(limits.path, "grr", None, "no [grr] key measurements to judge")
    keys = rows[rows["measurement"].isin(plan.key_measurements)].copy()
    keys["tolerance"] = [_tolerance(limits, name) for name in keys["measurement"]]
    keys["pct_grr_tolerance"] = 100.0 * STUDY_SIGMAS * keys["grr"] / keys["tolerance"]
    keys["verdict"] = [plan.verdict(float(p)) for p in keys["pct_grr_tolerance"]]
    missing = tuple(n for n in plan.key_measurements if n not in set(keys["measurement"]))
    columns = ["measurement", "lane", "unit", "grr", "tolerance", "pct_grr_tolerance", "verdict"]
    return keys[columns].reset_index(drop=True), missing


def latest_study(engine: sa.Engine, product: str) -> tuple[str, str] | None:
    """(study id, limits sha256 studied) of the newest measured study of `product`."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(grr_studies.c.study_id, grr_studies.c.limits_sha256)
            .where(grr_studies.c.product == product, grr_studies.c.appraiser_kind != SEEDED)
            .order_by(grr_studies.c.started_at.desc())
            .limit(1)
        ).first()
    return None if row is None else (row[0], row[1])


def release_limits(target: str | Path, limits: LimitsFile, log: AuditLog, user: User) -> Rejudged:
    """Release `limits` from the latest gauge R&R study of its product, without measuring
    again: the study's GRR sigmas are judged against the new file's tolerances and [grr]
    thresholds; only when every key measurement is accepted is the version released (a
    limits_releases row and an audit entry by `user`, an engineer)."""
    require(user, "release_limits")
    plan = limits.grr
    if plan is None:
        raise InputError(limits.path, "grr", None, "no [grr] key measurements to judge")
    engine = read_only(target)
    if engine is None:
        raise InputError("--db", "db", str(target), "no results database: no study to re-judge")
    try:
        found = latest_study(engine, limits.product.name)
        if found is None:
            raise InputError(
                "--db", "product", limits.product.name,
                f"no gauge R&R study of it in {database_url(target)}: run `station grr`",
            )  # fmt: skip
        study_id, studied = found
        with engine.connect() as conn:
            stored = pd.DataFrame(
                conn.execute(sa.select(grr_results).where(grr_results.c.study_id == study_id))
                .mappings()
                .all()
            )
        rows, missing = rejudge(stored, limits)
        released = not missing and not rows.empty and bool((rows["verdict"] == "accept").all())
        entry = None
        if released:
            with engine.begin() as conn:
                new = _record_release(conn, limits, study_id, dt.datetime.now(dt.UTC))
            if new:
                entry = log.append(
                    actor=user.login,
                    role=user.role,
                    action=RELEASE,
                    subject=f"limits:{limits.product.name}",
                    details={
                        **_limits_facts(limits),
                        "study_id": study_id,
                        "studied_sha256": studied,
                        "rejudged": True,
                        "key": _worst_of_keys(rows.assign(key=True)),
                    },
                )
    except sa.exc.SQLAlchemyError as err:
        raise StationError(f"{engine.url}: cannot re-judge the study: {err}") from err
    finally:
        engine.dispose()
    return Rejudged(study_id, studied, rows, missing, released, entry)


def record_seeded_release(
    engine: sa.Engine, limits: LimitsFile, sequence: str, station_id: str, note: str
) -> str | None:
    """Release `limits` by a study row that says it measured nothing (`SEEDED`, no parts),
    for the demo limits a simulated bench ships; returns its id, or None when the version was
    already released. Only station.security.simulated calls this."""
    study_id = f"seed-{limits.sha256[:11]}"
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        if conn.execute(
            sa.select(limits_releases.c.study_id).where(
                limits_releases.c.product == limits.product.name,
                limits_releases.c.limits_sha256 == limits.sha256,
            )
        ).first():
            return None
        if not conn.execute(
            sa.select(grr_studies.c.study_id).where(grr_studies.c.study_id == study_id)
        ).first():
            conn.execute(
                grr_studies.insert().values(
                    study_id=study_id,
                    product=limits.product.name,
                    limits_version=limits.version,
                    limits_sha256=limits.sha256,
                    sequence=sequence,
                    station_id=station_id,
                    appraiser_kind=SEEDED,
                    parts=0,
                    appraisers=0,
                    repeats=0,
                    operator=note,
                    started_at=now,
                    released=True,
                )
            )
        _record_release(conn, limits, study_id, now)
    return study_id


# --- command line: `station grr` ------------------------------------------------------------------
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
