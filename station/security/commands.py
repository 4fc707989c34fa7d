"""`station users add|list`, `station audit verify|show|status|unlock` and `station limits
approve|status`, registered on the `station` command line by station.cli. Every command finds
the audit log and users file as runs do (station.security.files: the station config's
`[security]`, else beside the results database); `--log` / `--users` name others.

Exit codes: 0 done (the log verifies, the limits are approved), 1 the log does not verify or the
limits are not approved, 2 bad input or a refusal (wrong secret, a role that may not).
A command that authenticates reads the secret from standard input (`--secret-stdin`), else
$STATION_SECRET, else a prompt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from station.config import load_station_config
from station.errors import InputError
from station.limits import load_limits
from station.results.store import DEFAULT_DB
from station.security.approvals import approval_problem, approve_limits
from station.security.audit import AuditLog, AuditTampered, verify_log
from station.security.files import SecurityFiles, security_files
from station.security.lock import lock_state, unlock
from station.security.users import (
    ROLES,
    add_user,
    authenticate,
    load_users,
    login,
    read_secret,
    require,
)

EXIT_TAMPERED = 1
EXIT_UNAPPROVED = 1


def add_security_commands(sub: Any) -> None:
    _add_users_commands(sub)
    audit = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    _files(audit_sub.add_parser("verify", help="check every entry's chain and hash"))
    show = audit_sub.add_parser("show", help="entries, oldest first")
    show.add_argument("--subject", help="only entries about this subject, e.g. station:ST1")
    show.add_argument("--action", help="only this action, e.g. limits_change")
    _files(show)
    status = audit_sub.add_parser("status", help="whether the station is locked for production")
    _station_id(status)
    _files(status)
    unlocking = audit_sub.add_parser("unlock", help="an engineer lifts the production lock")
    _station_id(unlocking)
    unlocking.add_argument("--user", required=True, help="engineer's login or badge")
    unlocking.add_argument("--reason", required=True, help="the cause found and what was done")
    _secret_stdin(unlocking)
    _files(unlocking)
    _add_limits_commands(sub)


def _add_users_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="station users and their roles")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user with a role and a secret")
    add.add_argument("login")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--badge", help="badge id the user may scan instead of the login")
    add.add_argument(
        "--by", metavar="LOGIN", help="engineer approving the addition (needed once users exist)"
    )
    add.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the new secret (then, with --by, the approver's) from standard input lines",
    )
    _files(add)
    _files(users_sub.add_parser("list", help="logins, roles and badges"))


def _add_limits_commands(sub: Any) -> None:
    limits = sub.add_parser("limits", help="approve a limits file (its exact content)")
    limits_sub = limits.add_subparsers(dest="limits_command", required=True)
    approve = limits_sub.add_parser("approve", help="an engineer approves a limits file")
    approve.add_argument("file", type=Path, help="the limits file")
    approve.add_argument("--user", required=True, help="engineer's login or badge")
    approve.add_argument("--reason", required=True, help="why this version (recorded)")
    approve.add_argument(
        "--effective",
        type=dt.date.fromisoformat,
        help="YYYY-MM-DD from when it holds (default: its [release] date, else today)",
    )
    _secret_stdin(approve)
    _files(approve)
    status = limits_sub.add_parser("status", help="whether a limits file is approved")
    status.add_argument("file", type=Path, help="the limits file")
    _files(status)


def _station_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--station-id", help="station id (default: the station config's)")


def _secret_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-stdin", action="store_true", help="read the secret from standard input"
    )


def _files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--station", metavar="CONFIG", help="station config TOML (default: the simulated bench's)"
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"results database ({DEFAULT_DB})")
    parser.add_argument("--users", type=Path, help="users file (default: as runs find it)")
    parser.add_argument("--log", type=Path, help="audit log (default: as runs find it)")


def _located(args: argparse.Namespace) -> tuple[SecurityFiles, str]:
    """The audit log and users file the command works on, and the station id."""
    config = load_station_config(args.station)
    files = security_files(config, args.db, log=args.log, users=args.users)
    return files, getattr(args, "station_id", None) or config.station_id


def run_security_command(args: argparse.Namespace, console: Console) -> int:
    files, station_id = _located(args)
    if args.command == "users":
        if args.users_command == "add":
            return _users_add(args, files, console)
        return _users_list(files)
    if args.command == "limits":
        if args.limits_command == "approve":
            return _approve(args, files)
        return _limits_status(args, files)
    if args.audit_command == "verify":
        return _verify(files.log.path)
    if args.audit_command == "status":
        return _status(files, station_id)
    if args.audit_command == "unlock":
        return _unlock(args, files, station_id)
    return _show(args, files.log.path)


def _new_secret(args: argparse.Namespace, prompt: str) -> str:
    """A new user's secret: never from the environment, which holds the approver's."""
    if args.secret_stdin:
        return read_secret(prompt, stdin=True)
    return getpass.getpass(prompt)


def _users_add(args: argparse.Namespace, files: SecurityFiles, console: Console) -> int:
    users = load_users(files.users)
    secret = _new_secret(args, f"secret for {args.login}: ")
    if users:  # the first user bootstraps the file; every later one is approved by an engineer
        if args.by is None:
            raise InputError("--by", "by", None, f"{files.users} has users: an engineer approves")
        prompt = f"secret of {args.by}: "
        approver = authenticate(users, args.by, read_secret(prompt, stdin=args.secret_stdin))
        require(approver, "add_user")
        actor, role = approver.login, approver.role
    else:
        actor, role = args.login, args.role
    user = add_user(files.users, args.login, args.role, secret, args.badge)
    files.log.append(
        actor=actor,
        role=role,
        action="user_add",
        subject=f"user:{user.login}",
        details={"role": user.role, "badge": user.badge, "users_file": str(files.users)},
    )
    console.print(f"added {user.login} ({user.role}) to {files.users}", markup=False)
    return 0


def _users_list(files: SecurityFiles) -> int:
    for user in load_users(files.users).values():
        print(f"{user.login}\t{user.role}\t{user.badge or ''}")
    return 0


def _verify(log: Path) -> int:
    try:
        verified = verify_log(log)
    except AuditTampered as err:
        print(f"audit log {log}: FAILS at {err}", file=sys.stderr)  # one line, unwrapped
        return EXIT_TAMPERED
    print(f"audit log {log}: {verified.count} entries verify; head {verified.head}")
    return 0


def _show(args: argparse.Namespace, log: Path) -> int:
    for entry in AuditLog(log).entries() if log.exists() else _missing(log):
        if args.subject and entry["subject"] != args.subject:
            continue
        if args.action and entry["action"] != args.action:
            continue
        details = json.dumps(entry["details"], sort_keys=True)
        print(
            f"{entry['seq']}\t{entry['at']}\t{entry['actor']} ({entry['role']})\t"
            f"{entry['action']}\t{entry['subject']}\t{details}"
        )
    return 0


def _status(files: SecurityFiles, station_id: str) -> int:
    state = lock_state(files.log, station_id)
    if state.locked:
        print(f"{station_id} locked (audit entry {state.seq}): {state.reason}")
    else:
        print(f"{station_id} unlocked")
    return 0


def _unlock(args: argparse.Namespace, files: SecurityFiles, station_id: str) -> int:
    user = login(files.users, args.user, stdin=args.secret_stdin)
    entry = unlock(files.log, station_id, user, args.reason)
    print(f"{station_id} unlocked by {user.login} (audit entry {entry['seq']})")
    return 0


def _approve(args: argparse.Namespace, files: SecurityFiles) -> int:
    limits = load_limits(args.file)
    user = login(files.users, args.user, stdin=args.secret_stdin)
    entry = approve_limits(files.log, limits, user, args.reason, args.effective)
    details = entry["details"]
    diff = details["diff"]
    changed = (
        "first approved version of the product"
        if diff is None
        else f"{len(diff['changed'])} changed, {len(diff['added'])} added, "
        f"{len(diff['removed'])} removed against {details['previous_version']}"
    )
    print(
        f"{limits.path.name} version {limits.version} (sha256 {limits.sha256[:12]}) approved by "
        f"{user.login}, effective {details['effective']} (audit entry {entry['seq']}; {changed})"
    )
    return 0


def _limits_status(args: argparse.Namespace, files: SecurityFiles) -> int:
    limits = load_limits(args.file)
    problem = approval_problem(files.log, limits)
    if problem is not None:
        print(f"not approved: {problem}")
        return EXIT_UNAPPROVED
    print(f"{limits.path.name} (sha256 {limits.sha256[:12]}) approved in {files.log.path}")
    return 0


def _missing(path: Path) -> list[dict[str, Any]]:
    raise InputError(path, "log", str(path), "no such audit log")
