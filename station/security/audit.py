"""The append-only audit log: one JSON object a line, each entry hash-chained to the one before,
so that changing, inserting or removing an entry is found by `verify_log`.

hash = sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of the entry without its
`hash` field; that content includes `prev_hash`, the previous entry's hash (64 zeros for the
first). Appends are serialised across processes by an exclusive lock on the file and fsync'd.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.errors import InputError, StationError

DEFAULT_AUDIT = "station-audit.jsonl"
GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "role", "action", "subject", "details", "prev_hash", "hash")
ACTION = re.compile(r"^[a-z][a-z0-9_]*$")
_TAIL_BYTES = 64 * 1024  # an entry is far smaller: the last line is within this


class AuditTampered(StationError):
    """The log does not verify: `seq` (or line) names the first bad entry."""

    def __init__(self, line: int, seq: object, problem: str) -> None:
        super().__init__(f"entry {seq} (line {line}): {problem}")
        self.line = line
        self.seq = seq
        self.problem = problem


def canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class Verified:
    count: int
    head: str  # the last entry's hash: keep it elsewhere to detect a truncated tail


class AuditLog:
    def __init__(self, path: Path | str = DEFAULT_AUDIT) -> None:
        self.path = Path(path)

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        subject: str,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one entry and return it (with its seq and hash)."""
        if not ACTION.match(action):
            raise ValueError(f"audit action {action!r} is not snake_case")
        if not actor or not subject:
            raise ValueError("an audit entry needs an actor and a subject")
        details = details or {}
        canonical(details)  # refuse what cannot be stored before anything is written
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as log:
            fcntl.flock(log.fileno(), fcntl.LOCK_EX)
            try:
                last = _last_entry(log, self.path)
                entry = {
                    "seq": 1 if last is None else int(last["seq"]) + 1,
                    "at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                    "actor": actor,
                    "role": role,
                    "action": action,
                    "subject": subject,
                    "details": details,
                    "prev_hash": GENESIS if last is None else last["hash"],
                }
                entry["hash"] = entry_hash(entry)
                log.write(canonical(entry) + b"\n")
                log.flush()
                os.fsync(log.fileno())
            finally:
                fcntl.flock(log.fileno(), fcntl.LOCK_UN)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (not verified: call verify_log for that)."""
        return [entry for _, entry in _lines(self.path)]


def _last_entry(log: Any, path: Path) -> dict[str, Any] | None:
    log.seek(0, os.SEEK_END)
    size = log.tell()
    if size == 0:
        return None
    log.seek(max(0, size - _TAIL_BYTES))
    tail = log.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        entry = json.loads(tail)
        if not isinstance(entry.get("seq"), int) or not isinstance(entry.get("hash"), str):
            raise ValueError("no seq and hash")
    except (ValueError, KeyError, TypeError) as err:
        raise AuditTampered(
            -1, "last", f"cannot append after a damaged last line ({err})"
        ) from None
    return entry  # type: ignore[no-any-return]


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise InputError(path, "log", str(path), "no such audit log")
    with open(path, "rb") as log:
        for number, raw in enumerate(log, start=1):
            try:
                entry = json.loads(raw)
            except ValueError:
                raise AuditTampered(number, "?", "not a JSON line") from None
            if not isinstance(entry, dict):
                raise AuditTampered(number, "?", "not a JSON object")
            yield number, entry


def verify_log(path: Path | str) -> Verified:
    """Check every entry's fields, sequence, link and hash; raise AuditTampered at the first bad."""
    previous_hash, expected_seq, count = GENESIS, 1, 0
    for line, entry in _lines(Path(path)):
        seq = entry.get("seq", "?")
        missing = [f for f in FIELDS if f not in entry]
        extra = sorted(set(entry) - set(FIELDS))
        if missing or extra:
            what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise AuditTampered(line, seq, f"fields: {what}")
        if seq != expected_seq:
            raise AuditTampered(line, seq, f"out of sequence: expected {expected_seq}")
        if entry["prev_hash"] != previous_hash:
            raise AuditTampered(
                line, seq, "prev_hash does not match the previous entry (inserted or removed)"
            )
        if entry_hash(entry) != entry["hash"]:
            raise AuditTampered(line, seq, "content does not match its hash (edited)")
        previous_hash, expected_seq, count = entry["hash"], expected_seq + 1, count + 1
    return Verified(count, previous_hash)
