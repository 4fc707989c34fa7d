"""Retest policy per product and route operation, and the pure decision of what a unit may do next.

The MES enforces it at check-in and the station enforces it again locally from its own store, so
a unit never exceeds its attempts even while one side is unreachable. No I/O beyond loading files.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from station.errors import InputError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]*$")
_OPERATION_KEYS = {"max_attempts", "error_auto_retest", "fail_retest_actions"}
#: outcomes a finished attempt can have (station.outcome.Outcome values)
DISPOSITIONS = ("PASS", "FAIL", "ERROR", "ABORTED")


class Next(StrEnum):
    """What the unit may do at this operation now."""

    TEST = "test"  # first attempt
    RETEST = "retest"  # another attempt is allowed (with the action given, where one is needed)
    NEEDS_ACTION = "needs_action"  # FAIL: retest only after an action with a reason code
    DONE = "done"  # the operation passed: the unit moves on along its route
    EXHAUSTED = "exhausted"  # no attempts left: the last disposition is final


@dataclass(frozen=True)
class RetestRule:
    product: str
    operation: str
    max_attempts: int
    error_auto_retest: bool
    fail_retest_actions: frozenset[str]
    reason_codes: frozenset[str]


@dataclass(frozen=True)
class RetestDecision:
    next: Next
    attempt: int  # the number the next attempt would have (attempts so far + 1)
    reasons: tuple[str, ...]  # why it is refused; empty when allowed

    @property
    def allowed(self) -> bool:
        return self.next in (Next.TEST, Next.RETEST)


def decide(
    rule: RetestRule,
    history: Sequence[str],
    *,
    action: str | None = None,
    reason_code: str | None = None,
) -> RetestDecision:
    """The next allowed step of a unit at `rule`'s operation.

    `history` holds the dispositions of the unit's finished attempts at this operation on every
    station, oldest first. ABORTED counts as an attempt and retests like ERROR: the station, not
    the unit, ended it.
    """
    attempts = len(history)
    attempt = attempts + 1
    if not history:
        return RetestDecision(Next.TEST, attempt, ())
    last = history[-1]
    if last == "PASS":
        return RetestDecision(Next.DONE, attempt, (f"{rule.operation} already passed",))
    if attempts >= rule.max_attempts:
        return RetestDecision(
            Next.EXHAUSTED,
            attempt,
            (f"{attempts} of {rule.max_attempts} attempts used; last {last} is final",),
        )
    needs_action = last == "FAIL" or not rule.error_auto_retest
    if not needs_action:
        return RetestDecision(Next.RETEST, attempt, ())
    reasons = []
    if action not in rule.fail_retest_actions:
        allowed = ", ".join(sorted(rule.fail_retest_actions))
        reasons.append(f"retest after {last} needs an action ({allowed}), got {action!r}")
    if reason_code not in rule.reason_codes:
        reasons.append(f"retest after {last} needs a known reason code, got {reason_code!r}")
    if reasons:
        return RetestDecision(Next.NEEDS_ACTION, attempt, tuple(reasons))
    return RetestDecision(Next.RETEST, attempt, ())


@dataclass(frozen=True)
class RetestPolicy:
    """Every rule loaded, by (product, operation)."""

    rules: dict[tuple[str, str], RetestRule]

    def rule(self, product: str, operation: str) -> RetestRule:
        try:
            return self.rules[(product, operation)]
        except KeyError:
            known = ", ".join(f"{p}/{o}" for p, o in sorted(self.rules)) or "none"
            raise InputError(
                "retest policy", "operation", f"{product}/{operation}", f"no rule; rules: {known}"
            ) from None


def shipped_retest_dir() -> Path:
    """The folder of the retest policies shipped with the sequences."""
    return Path(str(resources.files("sequences") / "retest"))


def load_retest_policy(paths: Path | str | Iterable[Path | str] | None = None) -> RetestPolicy:
    """Rules of one file, every `*.toml` of a folder, or several of either (default: shipped)."""
    if paths is None:
        paths = shipped_retest_dir()
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files += sorted(entry.glob("*.toml"))
        elif entry.is_file():
            files.append(entry)
        else:
            raise InputError(entry, "path", str(entry), "no such retest policy file or folder")
    rules: dict[tuple[str, str], RetestRule] = {}
    for path in files:
        for rule in _load_file(path):
            key = (rule.product, rule.operation)
            if key in rules:
                raise InputError(path, "operations", rule.operation, "defined twice")
            rules[key] = rule
    return RetestPolicy(rules)


def _load_file(path: Path) -> list[RetestRule]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(path, "file", str(path), f"cannot be read as TOML ({err})") from None
    product = data.get("product", {}).get("name")
    if not isinstance(product, str) or not product:
        raise InputError(path, "product.name", product, "must be a product name")
    codes = data.get("reason_codes", {})
    if not isinstance(codes, dict) or not codes:
        raise InputError(path, "reason_codes", codes, "must be a table of code = description")
    for code, text in codes.items():
        if not _CODE.match(code) or not isinstance(text, str):
            raise InputError(path, f"reason_codes.{code}", text, "needs an UPPER_CASE code = text")
    operations = data.get("operations")
    if not isinstance(operations, dict) or not operations:
        raise InputError(path, "operations", operations, "must define at least one operation")
    return [
        _rule(path, product, name, table, frozenset(codes)) for name, table in operations.items()
    ]


def _rule(path: Path, product: str, name: str, table: Any, codes: frozenset[str]) -> RetestRule:
    where = f"operations.{name}"
    if not _NAME.match(name) or not isinstance(table, dict):
        raise InputError(path, where, name, "needs a snake_case name and a table")
    unknown = set(table) - _OPERATION_KEYS
    if unknown:
        raise InputError(path, f"{where}.{sorted(unknown)[0]}", "", "unknown key")
    attempts = table.get("max_attempts")
    if type(attempts) is not int or attempts < 1:
        raise InputError(path, f"{where}.max_attempts", attempts, "must be an integer >= 1")
    auto = table.get("error_auto_retest", True)
    if not isinstance(auto, bool):
        raise InputError(path, f"{where}.error_auto_retest", auto, "must be true or false")
    actions = table.get("fail_retest_actions")
    if (
        not isinstance(actions, list)
        or not actions
        or not all(isinstance(a, str) and _NAME.match(a) for a in actions)
    ):
        raise InputError(
            path, f"{where}.fail_retest_actions", actions, 'must list actions like "reseat"'
        )
    return RetestRule(product, name, attempts, auto, frozenset(actions), codes)
