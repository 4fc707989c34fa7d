"""Limits releases: a limits version (product, sha256) is released for production only on a GR&R
study whose key measurements pass the [grr] thresholds of that very file.

A study stored by station.grr releases the version it studied (`record_release`); a new limits
version is released from the product's latest study by re-judging its GRR sigmas against the new
tolerances, without measuring again (`release_limits`); a simulated bench seeds the release of the
demo limits it ships (`record_seeded_release`). A production run asks `production_problems`, which
also wants the file's exact content approved by an engineer (station.security.approvals).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from station.analysis.grr import STUDY_SIGMAS
from station.calibration.paths import PATH_CAL_SEQUENCE
from station.errors import InputError, StationError
from station.limits import LimitsFile
from station.results.schema import grr_results, grr_studies, limits_releases
from station.results.store import database_url, read_only
from station.security.approvals import approval_problem
from station.security.audit import AuditLog
from station.security.users import User, require

RELEASE = "grr_release"  # the audit action of a limits release
GRR_ACTOR = "grr"  # the station releasing on a study it ran
#: appraiser_kind of a study row that stands for no measurement: the release a simulated bench
#: seeds for its shipped demo limits (station.security.simulated); never re-judged
SEEDED = "simulated-seed"


def spec_tolerance(limits: LimitsFile, name: str) -> float:
    """USL - LSL of the spec limits (what %GRR of tolerance is of); NaN when one-sided.
    A study's analysis and the re-judging of it both use this, so that they judge alike."""
    limit = limits.limits[name]
    if limit.spec_low is None or limit.spec_high is None:
        return float("nan")
    return limit.spec_high - limit.spec_low


def record_release(
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


def limits_facts(limits: LimitsFile) -> dict[str, Any]:
    """What an audit entry of a release names of the limits file."""
    return {
        "file": limits.path.name,
        "product": limits.product.name,
        "version": limits.version,
        "sha256": limits.sha256,
    }


def worst_of_keys(frame: pd.DataFrame) -> dict[str, float | None]:
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
    keys["tolerance"] = [spec_tolerance(limits, name) for name in keys["measurement"]]
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
                new = record_release(conn, limits, study_id, dt.datetime.now(dt.UTC))
            if new:
                entry = log.append(
                    actor=user.login,
                    role=user.role,
                    action=RELEASE,
                    subject=f"limits:{limits.product.name}",
                    details={
                        **limits_facts(limits),
                        "study_id": study_id,
                        "studied_sha256": studied,
                        "rejudged": True,
                        "key": worst_of_keys(rows.assign(key=True)),
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
        record_release(conn, limits, study_id, now)
    return study_id
