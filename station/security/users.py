"""Station users and what their roles may do: a local TOML file of logins with a badge id and an
scrypt hash of each secret (per-user salt), and the role -> allowed actions table.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from station.errors import InputError, StationError

DEFAULT_USERS = "station-users.toml"
SECRET_ENV = "STATION_SECRET"  # the secret of the user a command authenticates, if set
ROLES = ("operator", "technician", "engineer")
SYSTEM_ROLE = "system"  # audit entries the station makes by itself (a lock, a calibration run)
_OPERATOR = frozenset({"run"})
_TECHNICIAN = _OPERATOR | {
    "clean", "reseat", "recalibrate", "zero_power_meters", "lock", "replace_jumper",
}  # fmt: skip
_ENGINEER = _TECHNICIAN | {
    "change_limits",
    "approve_limits",
    "release_limits",
    "override",
    "calibration_override",
    "unlock",
    "add_user",
}
#: role -> actions it may take; each role may do everything the one before it may
PERMISSIONS: dict[str, frozenset[str]] = {
    "operator": _OPERATOR,
    "technician": _TECHNICIAN,
    "engineer": _ENGINEER,
}
LOGIN = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
BADGE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
MIN_SECRET = 6
#: scrypt cost: 16 MiB and about 50 ms per check on a line PC; stored per user, so it can grow
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class AuthenticationFailed(StationError, PermissionError):
    """Unknown user or wrong secret (deliberately not saying which)."""


class PermissionDenied(StationError, PermissionError):
    def __init__(self, login: str, role: str, action: str) -> None:
        super().__init__(f"{login} ({role}) may not {action}")
        self.login = login
        self.role = role
        self.action = action


@dataclass(frozen=True)
class User:
    login: str
    role: str
    badge: str | None
    salt: bytes
    secret_hash: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    def may(self, action: str) -> bool:
        return action in PERMISSIONS[self.role]


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32
    )


def load_users(path: Path | str) -> dict[str, User]:
    """Users of the file by login; an absent file has none."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(path, "file", str(path), f"cannot be read as TOML ({err})") from None
    users = {}
    for login, table in data.get("users", {}).items():
        where = f"users.{login}"
        if not LOGIN.match(login) or not isinstance(table, dict):
            raise InputError(path, where, login, "needs a lower-case login and a table")
        if table.get("role") not in ROLES:
            raise InputError(path, f"{where}.role", table.get("role"), f"one of {ROLES}")
        try:
            salt, digest = bytes.fromhex(table["salt"]), bytes.fromhex(table["scrypt"])
            n, r, p = (int(table[k]) for k in ("n", "r", "p"))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(path, where, login, f"salt, scrypt, n, r, p needed ({err})") from None
        users[login] = User(login, table["role"], table.get("badge"), salt, digest, n, r, p)
    return users


def add_user(
    path: Path | str, login: str, role: str, secret: str, badge: str | None = None
) -> User:
    """Add a user to the file (created if absent), replacing the file whole: never half-written."""
    path = Path(path)
    users = load_users(path)
    if not LOGIN.match(login):
        raise InputError("--login", "login", login, "lower-case letters, digits, . _ -; 2-32")
    if role not in ROLES:
        raise InputError("--role", "role", role, f"must be one of {', '.join(ROLES)}")
    if login in users:
        raise InputError(path, f"users.{login}", login, "already exists")
    if badge is not None:
        if not BADGE.match(badge):
            raise InputError("--badge", "badge", badge, "letters, digits and -; up to 32")
        if any(u.badge == badge for u in users.values()):
            raise InputError(path, "badge", badge, "already belongs to another user")
    if len(secret) < MIN_SECRET:
        raise InputError("secret", "secret", "***", f"needs at least {MIN_SECRET} characters")
    salt = secrets.token_bytes(16)
    user = User(login, role, badge, salt, _hash(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    users[login] = user
    _write(path, users)
    return user


def _write(path: Path, users: dict[str, User]) -> None:
    lines = ["# Station users: role, badge and an scrypt hash of the secret. Edit with", ""]
    lines[0] += " `station users add`."
    for user in users.values():
        lines.append(f"[users.{user.login}]")
        lines.append(f"role = {json.dumps(user.role)}")
        if user.badge is not None:
            lines.append(f"badge = {json.dumps(user.badge)}")
        lines.append(f'salt = "{user.salt.hex()}"')
        lines.append(f'scrypt = "{user.secret_hash.hex()}"')
        lines += [f"n = {user.n}", f"r = {user.r}", f"p = {user.p}", ""]
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def authenticate(users: dict[str, User], ident: str, secret: str) -> User:
    """The user whose login or badge is `ident` and whose secret is `secret`."""
    user = users.get(ident) or next((u for u in users.values() if u.badge == ident), None)
    if user is None:
        _hash(secret, b"\0" * 16, SCRYPT_N, SCRYPT_R, SCRYPT_P)  # same time as a real check
        raise AuthenticationFailed("unknown user or wrong secret")
    if not hmac.compare_digest(_hash(secret, user.salt, user.n, user.r, user.p), user.secret_hash):
        raise AuthenticationFailed("unknown user or wrong secret")
    return user


def require(user: User, action: str) -> None:
    """Raise PermissionDenied unless `user`'s role may take `action`."""
    if not user.may(action):
        raise PermissionDenied(user.login, user.role, action)


def read_secret(prompt: str, *, stdin: bool = False) -> str:
    """A secret from standard input's next line (`stdin`), else $STATION_SECRET, else a prompt
    that does not echo."""
    if stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("stdin", "secret", "", "no line to read the secret from")
        return line.rstrip("\n")
    from_env = os.environ.get(SECRET_ENV)
    if from_env is not None:
        return from_env
    return getpass.getpass(prompt)


def login(path: Path | str, ident: str, *, stdin: bool = False) -> User:
    """The user of the users file at `path` whose login or badge is `ident`, authenticated by
    the secret read_secret gives."""
    users = load_users(path)
    if not users:
        raise InputError(path, "users", str(path), "no users file (or no users in it)")
    return authenticate(users, ident, read_secret(f"secret of {ident}: ", stdin=stdin))
