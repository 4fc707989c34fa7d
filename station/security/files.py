"""Where a station's audit log and users file live, so that `station run`, `station ui`,
`station grr`, `station limits` and `station audit` all read and write the same ones: the station
config's `[security]` paths, else beside the results database (a SQLite file's folder; the
working folder for a database URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from station.config import StationConfig
from station.results.store import database_url
from station.security.audit import DEFAULT_AUDIT, AuditLog
from station.security.users import DEFAULT_USERS


@dataclass(frozen=True)
class SecurityFiles:
    log: AuditLog
    users: Path


def beside_database(target: str | Path) -> Path:
    """The folder the station's files default to for the results database at `target`."""
    url = database_url(target)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent
    return Path()


def security_files(
    config: StationConfig,
    target: str | Path,
    *,
    log: Path | None = None,
    users: Path | None = None,
) -> SecurityFiles:
    """The audit log and users file of `config`'s station with its results at `target`;
    `log` / `users` given on the command line win over both."""
    folder = beside_database(target)
    chosen_log = log or config.security.audit_log or folder / DEFAULT_AUDIT
    chosen_users = users or config.security.users or folder / DEFAULT_USERS
    return SecurityFiles(AuditLog(chosen_log), chosen_users)
