"""Audited changes: a limits change, an override, a calibration. Each checks the user's role,
then appends an entry detailed enough to reconstruct the change from the log alone (a limits
change carries every changed field's old and new value, and both files' hashes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from station.limits import LimitsFile
from station.security.audit import AuditLog
from station.security.users import SYSTEM_ROLE, User, require

#: the limit fields of a file, as limit_fields gives them (and audit entries keep them)
FieldTable = Mapping[str, Mapping[str, Any]]

_LIMIT_FIELDS = ("low", "high", "expected", "allowed", "unit", "per_lane", "marginal")


def limit_fields(limits: LimitsFile) -> dict[str, dict[str, Any]]:
    """name -> the judged fields of each limit, as JSON values."""
    table = {}
    for name, limit in limits.limits.items():
        values = dataclasses.asdict(limit)
        table[name] = {
            k: list(values[k]) if isinstance(values[k], tuple) else values[k] for k in _LIMIT_FIELDS
        }
    return table


def limits_diff(old: LimitsFile | FieldTable, new: LimitsFile | FieldTable) -> dict[str, Any]:
    """What changed from `old` to `new`: a limits file, or its field table as an approval entry
    in the audit log keeps it (so the previous version need not be on disk)."""
    before = limit_fields(old) if isinstance(old, LimitsFile) else old
    after = limit_fields(new) if isinstance(new, LimitsFile) else new
    changed = {
        name: {k: [before[name][k], v] for k, v in fields.items() if before[name][k] != v}
        for name, fields in after.items()
        if name in before and fields != before[name]
    }
    return {
        "changed": changed,
        "added": {name: after[name] for name in after.keys() - before.keys()},
        "removed": sorted(before.keys() - after.keys()),
    }


def record_limits_change(
    log: AuditLog, user: User, old: LimitsFile, new: LimitsFile, reason: str
) -> dict[str, Any]:
    require(user, "change_limits")
    if old.product.name != new.product.name:
        raise ValueError(f"limits of {old.product.name} replaced by {new.product.name}'s")
    return log.append(
        actor=user.login,
        role=user.role,
        action="limits_change",
        subject=f"limits:{new.product.name}",
        details={
            "reason": reason,
            "old_sha256": old.sha256,
            "new_sha256": new.sha256,
            "old_revision": old.product.revision,
            "new_revision": new.product.revision,
            **limits_diff(old, new),
        },
    )


def reconstruct_limits(
    base: dict[str, dict[str, Any]], entries: Iterable[dict[str, Any]], product: str
) -> dict[str, dict[str, Any]]:
    """The limit fields after every limits change of `product` in `entries`, starting from
    `base` (limit_fields of the file first released)."""
    table = {name: dict(fields) for name, fields in base.items()}
    for entry in entries:
        if entry["action"] != "limits_change" or entry["subject"] != f"limits:{product}":
            continue
        details = entry["details"]
        for name, fields in details["changed"].items():
            for key, (_old, new) in fields.items():
                table[name][key] = new
        table.update({name: dict(fields) for name, fields in details["added"].items()})
        for name in details["removed"]:
            table.pop(name, None)
    return table


def record_override(
    log: AuditLog, user: User, subject: str, reason: str, **details: Any
) -> dict[str, Any]:
    """An engineering override (e.g. running on an expired calibration), with its reason."""
    require(user, "override")
    return log.append(
        actor=user.login,
        role=user.role,
        action="override",
        subject=subject,
        details={"reason": reason, **details},
    )


def record_calibration(
    log: AuditLog, user: User | None, instrument: str, **details: Any
) -> dict[str, Any]:
    """A calibration or path-loss re-measurement done on the station: by `user`, or (None) by
    the station itself in a calibration run, whose operator and run the details name."""
    if user is not None:
        require(user, "recalibrate")
    return log.append(
        actor=user.login if user is not None else "station",
        role=user.role if user is not None else SYSTEM_ROLE,
        action="calibration",
        subject=f"instrument:{instrument}",
        details=details,
    )
