"""Gauge R&R studies on the station: n parts x k appraisers x r repeats of a sequence, analysed by
the crossed ANOVA (station.analysis.grr) and stored; a study whose key measurements pass releases
the limits version it studied (station.release). The `station grr` command is station.grr_command.

Appraisers are the station's sites (on the simulated bench, identical simulated stations); a
repeat is a re-insertion of the part. Runs go one at a time in the order repeat, part, appraiser,
so that no part is in two sites at once. Only the sequence's steps up to the last one recording a
studied measurement run (a TX study skips the RX tests), in characterisation mode so that a part
outside its limits still gives every value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from station.analysis.grr import GrrResult, crossed_grr
from station.engine import PlannedSequence, Prompter
from station.errors import InputError, StationError
from station.events import EventBus, MeasurementRecorded
from station.launch import OpenStation, RunSetup, run_sites
from station.limits import LimitsFile
from station.outcome import Outcome
from station.release import (
    GRR_ACTOR,
    RELEASE,
    limits_facts,
    record_release,
    spec_tolerance,
    worst_of_keys,
)
from station.results.schema import grr_results, grr_runs, grr_studies
from station.security.audit import AuditLog
from station.security.users import SYSTEM_ROLE

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
    tolerance = np.array([spec_tolerance(limits, name) for name, _ in keys])
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
        released = study.released and record_release(conn, limits, study.study_id, now)
    if released and log is not None:
        log.append(
            actor=GRR_ACTOR,
            role=SYSTEM_ROLE,
            action=RELEASE,
            subject=f"limits:{limits.product.name}",
            details={
                **limits_facts(limits),
                "study_id": study.study_id,
                "operator": operator,
                "rejudged": False,
                "key": worst_of_keys(study.frame()),
            },
        )
