"""`station users add|list` and `station audit verify|show|status|unlock`, registered on the
`station` command line by station.cli. Exit codes: 0 done (the log verifies), 1 the log does not
verify, 2 bad input or a refusal (wrong secret, a role that may not).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from station.errors import InputError
from station.security.audit import DEFAULT_AUDIT, AuditLog, AuditTampered, verify_log
from station.security.lock import lock_state, unlock
from station.security.users import (
    DEFAULT_USERS,
    ROLES,
    add_user,
    authenticate,
    load_users,
    require,
)

EXIT_TAMPERED = 1


def add_security_commands(sub: Any) -> None:
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
    listing = users_sub.add_parser("list", help="logins, roles and badges")
    _files(listing)

    audit = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check every entry's chain and hash")
    verify.add_argument("--log", type=Path, default=Path(DEFAULT_AUDIT))
    show = audit_sub.add_parser("show", help="entries, oldest first")
    show.add_argument("--log", type=Path, default=Path(DEFAULT_AUDIT))
    show.add_argument("--subject", help="only entries about this subject, e.g. station:ST1")
    show.add_argument("--action", help="only this action, e.g. limits_change")
    status = audit_sub.add_parser("status", help="whether a station is locked for production")
    status.add_argument("--station", required=True, help="station id")
    status.add_argument("--log", type=Path, default=Path(DEFAULT_AUDIT))
    unlock = audit_sub.add_parser("unlock", help="an engineer lifts a station's production lock")
    unlock.add_argument("--station", required=True, help="station id")
    unlock.add_argument("--user", required=True, help="engineer's login or badge")
    unlock.add_argument("--reason", required=True, help="the cause found and what was done")
    unlock.add_argument(
        "--secret-stdin", action="store_true", help="read the secret from standard input"
    )
    _files(unlock)


def _files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=Path, default=Path(DEFAULT_USERS), help="users file")
    parser.add_argument("--log", type=Path, default=Path(DEFAULT_AUDIT), help="audit log")


def run_security_command(args: argparse.Namespace, console: Console) -> int:
    if args.command == "users":
        return _users_add(args, console) if args.users_command == "add" else _users_list(args)
    if args.audit_command == "verify":
        return _verify(args)
    if args.audit_command == "status":
        return _status(args)
    if args.audit_command == "unlock":
        return _unlock(args)
    return _show(args)


def _secret(args: argparse.Namespace, prompt: str) -> str:
    if args.secret_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("stdin", "secret", "", "no line to read the secret from")
        return line.rstrip("\n")
    return getpass.getpass(prompt)


def _users_add(args: argparse.Namespace, console: Console) -> int:
    users = load_users(args.users)
    secret = _secret(args, f"secret for {args.login}: ")
    if users:  # the first user bootstraps the file; every later one is approved by an engineer
        if args.by is None:
            raise InputError("--by", "by", None, f"{args.users} has users: an engineer approves")
        approver = authenticate(users, args.by, _secret(args, f"secret of {args.by}: "))
        require(approver, "add_user")
        actor, role = approver.login, approver.role
    else:
        actor, role = args.login, args.role
    user = add_user(args.users, args.login, args.role, secret, args.badge)
    AuditLog(args.log).append(
        actor=actor,
        role=role,
        action="user_add",
        subject=f"user:{user.login}",
        details={"role": user.role, "badge": user.badge, "users_file": str(args.users)},
    )
    console.print(f"added {user.login} ({user.role}) to {args.users}", markup=False)
    return 0


def _users_list(args: argparse.Namespace) -> int:
    for user in load_users(args.users).values():
        print(f"{user.login}\t{user.role}\t{user.badge or ''}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        verified = verify_log(args.log)
    except AuditTampered as err:
        print(f"audit log {args.log}: FAILS at {err}", file=sys.stderr)  # one line, unwrapped
        return EXIT_TAMPERED
    print(f"audit log {args.log}: {verified.count} entries verify; head {verified.head}")
    return 0


def _show(args: argparse.Namespace) -> int:
    for entry in AuditLog(args.log).entries() if args.log.exists() else _missing(args.log):
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


def _status(args: argparse.Namespace) -> int:
    state = lock_state(AuditLog(args.log), args.station)
    if state.locked:
        print(f"{args.station} locked (audit entry {state.seq}): {state.reason}")
    else:
        print(f"{args.station} unlocked")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    user = authenticate(
        load_users(args.users), args.user, _secret(args, f"secret of {args.user}: ")
    )
    entry = unlock(AuditLog(args.log), args.station, user, args.reason)
    print(f"{args.station} unlocked by {user.login} (audit entry {entry['seq']})")
    return 0


def _missing(path: Path) -> list[dict[str, Any]]:
    raise InputError(path, "log", str(path), "no such audit log")
