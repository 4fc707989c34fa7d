"""Approval of a limits file for production, tied to its content: an audit entry by an engineer
who is not the file's `[release].author`, naming the file's exact sha256. Editing one byte of an
approved file makes it a different file, which no entry approves.

An approval entry keeps the approved file's limit fields, so the next approval of the product can
carry its diff against this one from the log alone (station.security.changes.limits_diff).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from station.errors import InputError, StationError
from station.limits import LimitsFile
from station.security.audit import AuditLog
from station.security.changes import limit_fields, limits_diff
from station.security.users import PermissionDenied, User, require

APPROVE = "limits_approve"
APPROVER_ROLE = "engineer"


class LimitsNotApproved(StationError, PermissionError):
    """Limits a run may not use: not approved for their content, or not GR&R-released."""


def subject(limits: LimitsFile) -> str:
    return f"limits:{limits.product.name}"


def approvals(log: AuditLog, product: str) -> list[dict[str, Any]]:
    """The approval entries of `product`'s limits files, oldest first."""
    if not log.path.exists():
        return []
    return [
        e for e in log.entries() if e["action"] == APPROVE and e["subject"] == f"limits:{product}"
    ]


def approve_limits(
    log: AuditLog,
    limits: LimitsFile,
    user: User,
    reason: str,
    effective: dt.date | None = None,
) -> dict[str, Any]:
    """Approve `limits` (its exact content) for production as `user`, an engineer who did not
    author it; returns the audit entry. `effective` defaults to the file's `[release].effective`,
    else today."""
    require(user, "approve_limits")
    release = limits.release
    if release is None:
        raise InputError(limits.path, "release", None, "no [release] table: nothing to approve")
    if user.login == release.author:
        raise PermissionDenied(user.login, user.role, f"approve {limits.path.name}: the author")
    if not reason.strip():
        raise InputError("--reason", "reason", reason, "an approval needs a reason")
    when = effective or release.effective or dt.date.today()
    previous = _previous(log, limits)
    fields = limit_fields(limits)
    return log.append(
        actor=user.login,
        role=user.role,
        action=APPROVE,
        subject=subject(limits),
        details={
            "reason": reason.strip(),
            "file": limits.path.name,
            "product": limits.product.name,
            "version": limits.version,
            "sha256": limits.sha256,
            "author": release.author,
            "effective": when.isoformat(),
            "previous_sha256": previous["details"]["sha256"] if previous else None,
            "previous_version": previous["details"]["version"] if previous else None,
            "diff": limits_diff(previous["details"]["fields"], fields) if previous else None,
            "fields": fields,
        },
    )


def _previous(log: AuditLog, limits: LimitsFile) -> dict[str, Any] | None:
    """The newest approval of another content of the same product."""
    others = [
        e for e in approvals(log, limits.product.name) if e["details"]["sha256"] != limits.sha256
    ]
    return others[-1] if others else None


def approval_problem(log: AuditLog, limits: LimitsFile, today: dt.date | None = None) -> str | None:
    """Why `limits` is not approved for production by the audit log at `log`, in one line naming
    the file and its sha256 prefix; None when an engineer other than its author approved this
    exact content and the approval is in effect."""
    today = today or dt.date.today()
    named = f"{limits.path.name} (sha256 {limits.sha256[:12]})"
    author = limits.release.author if limits.release else None
    entries = approvals(log, limits.product.name)
    mine = [e for e in entries if e["details"].get("sha256") == limits.sha256]
    valid = [e for e in mine if e["role"] == APPROVER_ROLE and e["actor"] != author]
    if valid:
        effective = dt.date.fromisoformat(valid[-1]["details"]["effective"])
        if effective > today:
            return f"{named}: approval (audit entry {valid[-1]['seq']}) is effective {effective}"
        return None
    if mine:
        return f"{named}: approved only by its author {author} (audit entry {mine[-1]['seq']})"
    same_file = [e for e in entries if e["details"].get("file") == limits.path.name]
    if same_file:
        last = same_file[-1]["details"]
        return (
            f"{named}: content differs from the approved version {last['version']} "
            f"(sha256 {last['sha256'][:12]}): an engineer approves it (`station limits approve`)"
        )
    return (
        f"{named}: no engineer's approval in {log.path}: an engineer approves it "
        "(`station limits approve`)"
    )
