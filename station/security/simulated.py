"""What a simulated bench sets up on first use so that the limits files shipped for its demo
products run in production with no setup: a demo engineer in its users file, that engineer's
approval of the shipped file in its audit log, and a gauge R&R release of the file in its results
store. Every piece says what it is (a `demo_seed` audit entry by the bench, a study row that
measured nothing), so nobody mistakes it for a review or a study.

Only `--sim` runs call this, and only for files whose bytes are those of a file shipped in the
package (wherever the copy lies: a source checkout or the installed package); an edited file or
a file of one's own goes through approval and release like on a real station.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from station.limits import LimitsFile
from station.release import grr_release_problem, needs_grr_release, record_seeded_release
from station.results.store import ResultsStore
from station.security.approvals import approval_problem, approve_limits
from station.security.files import SecurityFiles
from station.security.users import SYSTEM_ROLE, User, add_user, load_users

SIM_ACTOR = "sim-bench"
DEMO_ENGINEER = "sim-demo-engineer"
SEEDED_BY = "simulated bench (demo seed)"


@dataclass(frozen=True)
class Seeded:
    approval_seq: int | None  # the audit entry of the approval, when one was seeded
    release_study: str | None  # the seeded study releasing the file, when one was seeded

    @property
    def anything(self) -> bool:
        return self.approval_seq is not None or self.release_study is not None


def is_shipped(limits: LimitsFile) -> bool:
    """Whether `limits` is, byte for byte, a limits file shipped in the package (a demo
    product's): the same name and the same sha256 as a file of the package's limits folder."""
    folder = Path(str(resources.files("sequences") / "limits"))
    return any(
        hashlib.sha256(shipped.read_bytes()).hexdigest() == limits.sha256
        for shipped in folder.rglob(limits.path.name)
    )


def seed_demo_release(
    files: SecurityFiles, db: str | Path, limits: LimitsFile, sequence: str, station_id: str
) -> Seeded:
    """Approve and release the shipped `limits` for the simulated bench where they are not yet
    (nothing when they are, or when the file is not a shipped one)."""
    if not is_shipped(limits):
        return Seeded(None, None)
    approval_seq = None
    if approval_problem(files.log, limits) is not None:
        engineer = _demo_engineer(files)
        _announce(files, limits, "approval")
        entry = approve_limits(
            files.log,
            limits,
            engineer,
            f"{SEEDED_BY}: shipped demo limits approved for simulated runs, not reviewed",
        )
        approval_seq = entry["seq"]
    study = None
    if needs_grr_release(sequence, limits) and grr_release_problem(db, limits) is not None:
        _announce(files, limits, "gauge R&R release")
        with ResultsStore(db) as store:
            study = record_seeded_release(store.engine, limits, sequence, station_id, SEEDED_BY)
    return Seeded(approval_seq, study)


def _announce(files: SecurityFiles, limits: LimitsFile, what: str) -> None:
    files.log.append(
        actor=SIM_ACTOR,
        role=SYSTEM_ROLE,
        action="demo_seed",
        subject=f"limits:{limits.product.name}",
        details={
            "seeded": what,
            "file": limits.path.name,
            "sha256": limits.sha256,
            "why": "a simulated bench runs its shipped demo limits with no setup",
        },
    )


def _demo_engineer(files: SecurityFiles) -> User:
    """The demo engineer of the users file, added on first use with a secret nobody is told
    (so nobody can log in as it: it only signs the bench's seeded approvals)."""
    existing = load_users(files.users).get(DEMO_ENGINEER)
    if existing is not None:
        return existing
    user = add_user(files.users, DEMO_ENGINEER, "engineer", secrets.token_urlsafe(24))
    files.log.append(
        actor=SIM_ACTOR,
        role=SYSTEM_ROLE,
        action="user_add",
        subject=f"user:{user.login}",
        details={"role": user.role, "badge": None, "users_file": str(files.users),
                 "seeded": "demo engineer of the simulated bench; its secret is not kept"},
    )  # fmt: skip
    return user
