"""Users and roles, the hash-chained audit log (tampering is found and named), the production
lock that SPC sets and an engineer lifts, and the `station users` / `station audit` commands."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from station.analysis.spc import imr_limits
from station.cli import main
from station.errors import InputError, StationError
from station.events import MeasurementRecorded, RunEnded, RunStarted
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.security.audit import GENESIS, AuditLog, AuditTampered, entry_hash, verify_log
from station.security.lock import (
    StationLocked,
    golden_series,
    lock,
    lock_state,
    require_unlocked,
    spc_check,
    unlock,
)
from station.security.users import (
    AuthenticationFailed,
    PermissionDenied,
    add_user,
    authenticate,
    load_users,
    require,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000_000_000


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    add_user(path, "olga", "operator", "op-secret", badge="B100")
    add_user(path, "tom", "technician", "tech-secret")
    add_user(path, "eve", "engineer", "eng-secret", badge="B300")
    return path


def test_users_are_stored_hashed_and_authenticate(users: Path) -> None:
    text = users.read_text()
    assert "op-secret" not in text and "scrypt = " in text and "salt = " in text
    loaded = load_users(users)
    assert loaded["olga"].salt != loaded["tom"].salt  # a salt per user
    assert authenticate(loaded, "olga", "op-secret").role == "operator"
    assert authenticate(loaded, "B300", "eng-secret").login == "eve"  # by badge
    for ident, secret in (("olga", "wrong-secret"), ("nobody", "op-secret")):
        with pytest.raises(AuthenticationFailed, match="unknown user or wrong secret"):
            authenticate(loaded, ident, secret)


def test_roles_allow_what_they_should(users: Path) -> None:
    loaded = load_users(users)
    olga, tom, eve = loaded["olga"], loaded["tom"], loaded["eve"]
    require(olga, "run")
    with pytest.raises(PermissionDenied, match=r"olga \(operator\) may not clean"):
        require(olga, "clean")
    require(tom, "recalibrate")
    with pytest.raises(PermissionDenied, match="may not change_limits"):
        require(tom, "change_limits")
    for action in ("change_limits", "approve_limits", "release_limits", "override", "unlock"):
        require(eve, action)
    with pytest.raises(PermissionDenied, match=r"tom \(technician\) may not approve_limits"):
        require(tom, "approve_limits")


@pytest.mark.parametrize(
    ("login", "role", "secret", "badge", "field"),
    [
        ("olga", "operator", "another1", None, "users.olga"),
        ("Bad Name", "operator", "another1", None, "login"),
        ("zed", "boss", "another1", None, "role"),
        ("zed", "operator", "short", None, "secret"),
        ("zed", "operator", "another1", "B100", "badge"),
    ],
)
def test_bad_users_are_refused_and_the_file_is_untouched(
    users: Path, login: str, role: str, secret: str, badge: str | None, field: str
) -> None:
    before = users.read_bytes()
    with pytest.raises(InputError) as caught:
        add_user(users, login, role, secret, badge)
    assert caught.value.field == field
    assert users.read_bytes() == before


def _log(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append(
            actor="eve",
            role="engineer",
            action="limits_change",
            subject="limits:800G-DR8",
            details={"revision": f"r{i}", "tdecq_high_db": 3.4 - i / 10},
        )
    return log


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    log = _log(tmp_path)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert all(entry_hash(e) == e["hash"] for e in entries)
    verified = verify_log(log.path)
    assert (verified.count, verified.head) == (5, entries[-1]["hash"])


def _rewrite(path: Path, edit: object) -> None:
    lines = path.read_text().splitlines()
    edit(lines)  # type: ignore[operator]
    path.write_text("\n".join(lines) + "\n")


def _edit_details(lines: list[str]) -> None:
    entry = json.loads(lines[2])
    entry["details"]["tdecq_high_db"] = 9.9
    lines[2] = json.dumps(entry)


def _edit_and_rehash(lines: list[str]) -> None:
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"
    entry["hash"] = entry_hash(entry)  # a careful forger rehashes: the next link breaks
    lines[2] = json.dumps(entry)


@pytest.mark.parametrize(
    ("edit", "line", "problem"),
    [
        (_edit_details, 3, "entry 3 (line 3): content does not match its hash (edited)"),
        (_edit_and_rehash, 4, "entry 4 (line 4): prev_hash does not match the previous entry"),
        (lambda lines: lines.pop(1), 2, "entry 3 (line 2): out of sequence: expected 2"),
        (lambda lines: lines.__setitem__(4, "{oops"), 5, "entry ? (line 5): not a JSON line"),
    ],
)
def test_tampering_is_found_and_named(
    tmp_path: Path, edit: object, line: int, problem: str
) -> None:
    log = _log(tmp_path)
    _rewrite(log.path, edit)
    with pytest.raises(AuditTampered) as caught:
        verify_log(log.path)
    assert caught.value.line == line
    assert str(caught.value).startswith(problem)


def test_appends_after_a_damaged_tail_are_refused(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with open(log.path, "a") as out:
        out.write("garbage\n")
    with pytest.raises(AuditTampered, match="damaged last line"):
        log.append(actor="eve", role="engineer", action="unlock", subject="station:ST1")


def test_spc_violation_locks_until_an_engineer_unlocks(tmp_path: Path, users: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    loaded = load_users(users)
    rng = np.random.default_rng(2)
    baseline = 1.50 + 0.05 * rng.standard_normal(30)
    limits = imr_limits(baseline)
    series = list(baseline[-5:])
    lock_entry = None
    for n in range(40):
        series.append(1.50 + 0.05 * rng.standard_normal() + 0.03 * n)  # the golden unit drifts
        lock_entry = spc_check(log, "ST1", "golden_tx_power_dbm", np.array(series), limits)
        if lock_entry:
            break
    assert lock_entry is not None and lock_entry["action"] == "lock"
    assert lock_entry["details"]["parameter"] == "golden_tx_power_dbm"
    assert lock_entry["details"]["rules"]
    with pytest.raises(StationLocked, match="station ST1 is locked"):
        require_unlocked(log, "ST1")
    assert spc_check(log, "ST1", "golden_tx_power_dbm", np.array(series), limits) is None
    with pytest.raises(PermissionDenied):
        unlock(log, "ST1", loaded["tom"], "cleaned the jumper")
    entry = unlock(log, "ST1", loaded["eve"], "jumper J3 replaced, path loss re-measured")
    assert entry["details"]["lock_seq"] == lock_entry["seq"]
    require_unlocked(log, "ST1")
    assert not lock_state(log, "ST1").locked
    with pytest.raises(StationError, match="not locked"):
        unlock(log, "ST1", loaded["eve"], "again")
    assert [e["action"] for e in log.entries()] == ["lock", "unlock"]
    assert verify_log(log.path).count == 2


def test_users_and_audit_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users, log = tmp_path / "u.toml", tmp_path / "a.jsonl"
    files = ["--users", str(users), "--log", str(log)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("first-secret\n"))
    assert main(["users", "add", "eve", "--role", "engineer", "--secret-stdin", *files]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("op-secret\n"))
    assert main(["users", "add", "olga", "--role", "operator", "--secret-stdin", *files]) == 2
    assert "an engineer approves" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("op-secret\nfirst-secret\n"))
    add = ["users", "add", "olga", "--role", "operator", "--by", "eve", "--secret-stdin"]
    assert main([*add, *files]) == 0
    assert main(["users", "list", *files]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["eve\tengineer\t", "olga\toperator\t"]
    assert main(["audit", "verify", "--log", str(log)]) == 0
    assert "2 entries verify" in capsys.readouterr().out
    assert main(["audit", "show", "--log", str(log), "--subject", "user:olga"]) == 0
    (shown,) = capsys.readouterr().out.splitlines()
    assert shown.startswith("2\t") and "eve (engineer)\tuser_add\tuser:olga" in shown
    assert main(["audit", "verify", "--log", str(tmp_path / "none.jsonl")]) == 2


def test_station_audit_verify_names_the_tampered_entry(tmp_path: Path) -> None:
    log = _log(tmp_path)
    verify = [sys.executable, "-m", "station.cli", "audit", "verify", "--log", str(log.path)]
    _rewrite(log.path, _edit_details)
    bad = subprocess.run(verify, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 1 and bad.stdout == ""
    problem = "entry 3 (line 3): content does not match its hash (edited)"
    assert bad.stderr.strip() == f"audit log {log.path}: FAILS at {problem}"


def test_an_engineer_unlocks_from_the_command_line(
    tmp_path: Path,
    users: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "audit.jsonl"
    lock(AuditLog(log), "ST1", "SPC tx_power: rule1", actor="spc", role="system")
    files = ["--users", str(users), "--log", str(log)]
    assert main(["audit", "status", "--station-id", "ST1", "--log", str(log)]) == 0
    assert capsys.readouterr().out == "ST1 locked (audit entry 1): SPC tx_power: rule1\n"
    unlock_as = ["audit", "unlock", "--station-id", "ST1", "--secret-stdin", *files]
    monkeypatch.setattr(sys, "stdin", io.StringIO("tech-secret\n"))
    assert main([*unlock_as, "--user", "tom", "--reason", "cleaned"]) == 2
    assert capsys.readouterr().err.strip() == "error: tom (technician) may not unlock"
    monkeypatch.setattr(sys, "stdin", io.StringIO("eng-secret\n"))
    assert main([*unlock_as, "--user", "B300", "--reason", "jumper J3 replaced"]) == 0
    assert capsys.readouterr().out == "ST1 unlocked by eve (audit entry 2)\n"
    assert main(["audit", "status", "--station-id", "ST1", "--log", str(log)]) == 0
    assert capsys.readouterr().out == "ST1 unlocked\n"
    assert [e["actor"] for e in AuditLog(log).entries()] == ["spc", "eve"]


def test_golden_series_comes_from_the_store(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    for n, value in enumerate([1.50, 1.52, 1.49]):
        run_id = f"g{n}"
        store(
            RunStarted(
                run_id=run_id, sequence="golden", product="800G-DR8", dut_serial="SIM0003",
                site=1, station_id="ST1", operator="op", software_version="0",
                limits_path="l.toml", limits_sha256="0" * 64, mode="production",
                instruments=(), at_ns=T0 + n,
            )
        )  # fmt: skip
        for lane, offset in ((1, 0.0), (2, 0.1)):
            store(
                MeasurementRecorded(run_id, "tx", "station_tx_power_offset", value + offset,
                                    "dB", lane, Outcome.PASS, False, None, None, None)
            )  # fmt: skip
        store(RunEnded(run_id, Outcome.PASS, None))
    store.flush()
    values, runs = golden_series(store, "ST1", "station_tx_power_offset", lane=2)
    store.close()
    assert values.tolist() == pytest.approx([1.60, 1.62, 1.59]) and runs == ["g0", "g1", "g2"]
