"""A durable on-disk queue of what must reach another system (MES check-outs, result batches).

One SQLite file in WAL mode with synchronous=FULL: a `put` that returned is on disk. An entry is
marked delivered only after its receiver acknowledged it, so a crash between send and
acknowledgement sends it again; receivers honour the entry's key, which turns this at-least-once
delivery into an exactly-once effect. Entries of one kind are delivered in the order queued. A key
is unique within its kind (each kind has its own receiver): a run's check-out and its results may
both be keyed `station/run_id`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.errors import StationError

Sender = Callable[[dict[str, Any]], object]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_ns INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ns INTEGER NOT NULL,
    delivered_ns INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, kind, id);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_kind_key ON outbox (kind, key);
"""
PENDING, DELIVERED, REJECTED = "pending", "delivered", "rejected"


class OutboxConflict(StationError, ValueError):
    """The same key was queued again with a different payload."""


@dataclass(frozen=True)
class Backoff:
    """Wait before the n-th retry: base * 2**(n-1), at most `max_s`."""

    base_s: float = 0.5
    max_s: float = 60.0

    def delay_s(self, failures: int) -> float:
        return min(self.max_s, self.base_s * 2.0 ** max(0, failures - 1))


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    retry_later: dict[str, str] = field(default_factory=dict)  # key -> error
    rejected: dict[str, str] = field(default_factory=dict)  # key -> error


@dataclass(frozen=True)
class Entry:
    kind: str
    key: str
    payload: dict[str, Any]
    state: str
    attempts: int
    last_error: str | None


class Outbox:
    def __init__(self, path: Path | str, *, backoff: Backoff | None = None) -> None:
        self.path = Path(path)
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # WAL: fsync on every commit
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """Queue `payload` under `key` of `kind`; True when new, False when that key is already
        queued (or delivered) with the same payload."""
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        now = time.time_ns()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO outbox (kind, key, payload, created_ns, next_try_ns)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO NOTHING",
                (kind, key, text, now, now),
            )
            if cursor.rowcount == 1:
                return True
            ((stored,),) = self._db.execute(
                "SELECT payload FROM outbox WHERE kind = ? AND key = ?", (kind, key)
            )
        if stored != text:
            raise OutboxConflict(f"outbox key {key!r} is already queued with another payload")
        return False

    def deliver_due(
        self, senders: Mapping[str, Sender], *, now_ns: int | None = None
    ) -> DeliveryReport:
        """Send every due pending entry through the sender of its kind, oldest first.

        A sender returns on acknowledgement; raises ConnectionError or TimeoutError (e.g.
        MesUnavailable) when the receiver is down, which backs the entry off and holds the rest
        of its kind for later; raises ValueError (e.g. MesRejected) when the receiver refuses it
        for good, which sets it aside as rejected.
        """
        report = DeliveryReport()
        with self._lock:
            for kind, send in senders.items():
                self._deliver_kind(kind, send, report, now_ns)
        return report

    def _deliver_kind(
        self, kind: str, send: Sender, report: DeliveryReport, now_ns: int | None
    ) -> None:
        rows = self._db.execute(
            "SELECT id, key, payload, attempts, next_try_ns FROM outbox"
            " WHERE state = ? AND kind = ? ORDER BY id",
            (PENDING, kind),
        ).fetchall()
        for row_id, key, payload, attempts, next_try_ns in rows:
            now = time.time_ns() if now_ns is None else now_ns
            if next_try_ns > now:
                return  # the oldest is backing off: later ones wait behind it
            try:
                send(json.loads(payload))
            except (ConnectionError, TimeoutError) as err:
                delay_ns = int(self.backoff.delay_s(attempts + 1) * 1e9)
                self._db.execute(
                    "UPDATE outbox SET attempts = ?, next_try_ns = ?, last_error = ? WHERE id = ?",
                    (attempts + 1, now + delay_ns, str(err), row_id),
                )
                report.retry_later[key] = str(err)
                return
            except ValueError as err:
                self._db.execute(
                    "UPDATE outbox SET state = ?, attempts = ?, last_error = ? WHERE id = ?",
                    (REJECTED, attempts + 1, str(err), row_id),
                )
                report.rejected[key] = str(err)
                continue
            self._db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, delivered_ns = ?, last_error = NULL"
                " WHERE id = ?",
                (DELIVERED, attempts + 1, time.time_ns(), row_id),
            )
            report.delivered.append(key)

    def run(
        self, senders: Mapping[str, Sender], stop: threading.Event, poll_s: float = 0.2
    ) -> None:
        """Deliver until `stop` is set (run it on a thread of its own)."""
        while not stop.is_set():
            self.deliver_due(senders)
            stop.wait(poll_s)

    def entries(self, state: str | None = None, kind: str | None = None) -> list[Entry]:
        query = "SELECT kind, key, payload, state, attempts, last_error FROM outbox WHERE 1 = 1"
        params: list[str] = []
        if state is not None:
            query += " AND state = ?"
            params.append(state)
        if kind is not None:
            query += " AND kind = ?"
            params.append(kind)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [Entry(k, key, json.loads(p), s, a, e) for k, key, p, s, a, e in rows]

    def pending_count(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM outbox WHERE state = ?", (PENDING,)
            ).fetchone()
        return int(count)
