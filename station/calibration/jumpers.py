"""A technician replaces a DUT-side jumper (worn out at its mating limit, or suspect after a
golden-unit drift): the station config names the new jumper, counted from its own matings, and
the audit log records who fitted which serial in place of which, and why.

The config is edited in place, line by line inside the jumper's table, so that its comments and
layout stay as the engineer wrote them; the edited text must load as a station config, and the
swap be in the audit log, before it replaces the file (written whole, then renamed). Until
`path-cal` has measured the paths through the new jumper, production refuses them
(station.calibration.resolve).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from station.calibration.resolve import load_matings
from station.config import Jumper, StationConfig, load_station_config
from station.errors import InputError, StationError
from station.security.audit import AuditLog
from station.security.users import User, require

JUMPER_SWAP = "jumper_swap"  # the audit action
SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_HEADER = re.compile(r"^\s*\[")


@dataclass(frozen=True)
class Replaced:
    old: Jumper  # as it was, with the store's mating count
    new: Jumper
    site: int | None
    audit_seq: int


def replace_jumper(
    config: StationConfig,
    name: str,
    serial: str,
    *,
    user: User,
    log: AuditLog,
    db: str,
    reason: str,
    site: int | None = None,
    matings: int = 0,
) -> Replaced:
    """Fit jumper `serial` (with `matings` already on it: 0 when new) as `name` of `config`'s
    station (of `site` where the site has its own), edit the config file and record the swap.
    Bad input (InputError naming field and value) leaves the file and the log untouched."""
    require(user, "replace_jumper")
    if not SERIAL.fullmatch(serial):
        why = "letters, digits and . _ / - only, 1 to 64 characters"
        raise InputError("--serial", "serial", serial, why)
    if matings < 0:
        raise InputError("--matings", "matings", matings, "must be an integer >= 0")
    if not reason.strip():
        raise InputError("--reason", "reason", reason, "say why the jumper is replaced")
    table = _table_name(config, name, site)
    own = config.site_jumpers.get(site, {}) if site is not None else {}
    old = own.get(name) or config.jumpers[name]
    if serial == old.serial:
        raise InputError("--serial", "serial", serial, f"is the {name} jumper fitted now")
    counted = load_matings(db, config.station_id).get(old.serial, old.mating_count)
    text = config.path.read_text(encoding="utf-8")
    edited = _edit_table(text, table, {"serial": f'"{serial}"', "mating_count": str(matings)})
    draft = _checked_draft(config.path, edited)
    try:
        entry = log.append(
            actor=user.login,
            role=user.role,
            action=JUMPER_SWAP,
            subject=f"station:{config.station_id}",
            details={
                "jumper": name,
                "site": site,
                "old_serial": old.serial,
                "old_matings": counted,
                "new_serial": serial,
                "new_matings": matings,
                "reason": reason,
                "config": str(config.path),
            },
        )
    except BaseException:
        draft.unlink()
        raise
    os.replace(draft, config.path)  # recorded first: the config never names an unrecorded swap
    return Replaced(
        old=Jumper(name, old.serial, counted, old.mating_limit, old.paths),
        new=Jumper(name, serial, matings, old.mating_limit, old.paths),
        site=site,
        audit_seq=int(entry["seq"]),
    )


def _table_name(config: StationConfig, name: str, site: int | None) -> str:
    if site is not None and name in config.site_jumpers.get(site, {}):
        return f"sites.{site}.jumpers.{name}"
    if name in config.jumpers:
        return f"jumpers.{name}"
    where = f"site {site}" if site is not None else f"station {config.station_id}"
    known = sorted({*config.jumpers, *config.site_jumpers.get(site or 0, {})})
    raise InputError(config.path, "jumper", name, f"{where} has no such jumper ({known})")


def _edit_table(text: str, table: str, values: dict[str, str]) -> str:
    """`text` with `key = value` set for each of `values` inside TOML table `[table]`: the
    key's line replaced where the table has it, else added after the header."""
    lines = text.splitlines(keepends=True)
    header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        raise InputError("station config", table, None, "no such table to edit")
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    missing = dict(values)
    for i in range(start + 1, end):
        key = lines[i].split("=", 1)[0].strip()
        if key in missing:
            newline = "\n" if lines[i].endswith("\n") else ""
            lines[i] = f"{key} = {missing.pop(key)}{newline}"
    lines[start + 1 : start + 1] = [f"{key} = {value}\n" for key, value in missing.items()]
    return "".join(lines)


def _checked_draft(path: Path, text: str) -> Path:
    """`text` written beside `path` once it loads as a station config; the caller renames it."""
    draft = path.with_name(f".{path.name}.new")
    draft.write_text(text, encoding="utf-8")
    try:
        load_station_config(draft)
    except BaseException as err:
        draft.unlink()
        if isinstance(err, InputError):
            raise StationError(f"{path}: the edited config would not load ({err})") from err
        raise
    return draft
