"""Limits approval tied to the file's content, GR&R release of a limits version, and the station
lock, all through the `station` command line: each refusal is one line and exit 2 before anything
is opened; an engineer's approval, a re-judged release and an engineer's unlock let runs go."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from station.cli import main
from station.config import load_station_config
from station.limits import limits_path, load_limits
from station.release import SEEDED, grr_release_problem, rejudge, release_limits
from station.results.schema import grr_results, grr_studies, limits_releases
from station.results.store import ResultsStore
from station.security.approvals import approval_problem, approve_limits
from station.security.audit import DEFAULT_AUDIT, AuditLog, verify_log
from station.security.lock import lock, lock_state
from station.security.simulated import is_shipped
from station.security.users import DEFAULT_USERS, PermissionDenied, add_user, load_users

STATION_ID = "sim-module-bench-1"
SECRETS = {"ada": "ada-secret", "eve": "eve-secret", "olga": "olga-secret"}
PLUGGABLE = ["run", "pluggable", "--product", "800G-DR8", "--serial", "SIM0001", "--sim"]
PATH_CAL = ["run", "path-cal", "--product", "PATH-CAL-DR8", "--serial", "REF-LB8-0001", "--sim"]
FAST = ["--time-factor", "0.01"]


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line is one line, however long


def make_users(path: Path) -> None:
    add_user(path, "ada", "engineer", SECRETS["ada"])
    add_user(path, "eve", "engineer", SECRETS["eve"])
    add_user(path, "olga", "operator", SECRETS["olga"])


def as_user(monkeypatch: pytest.MonkeyPatch, login: str) -> list[str]:
    monkeypatch.setenv("STATION_SECRET", SECRETS[login])
    return ["--user", login]


def refused(code: int, capsys: pytest.CaptureFixture[str], pattern: str) -> str:
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def draft(tmp_path: Path, author: str = "ada") -> Path:
    """The shipped 800G-DR8 limits as a new file of one's own, authored by `author`."""
    path = tmp_path / "800G-DR8-next.toml"
    text = limits_path("800G-DR8").read_text(encoding="utf-8")
    path.write_text(text.replace('author = "product engineering"', f'author = "{author}"'))
    return path


def test_approval_is_of_the_exact_content_by_an_engineer_who_did_not_author_it(
    tmp_path: Path,
    calibrated_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_users(tmp_path / DEFAULT_USERS)  # beside the database: where runs look
    log = AuditLog(tmp_path / DEFAULT_AUDIT)
    path = draft(tmp_path)
    sha = load_limits(path).sha256
    run = [*PLUGGABLE, "--limits", str(path), "--db", str(calibrated_db)]
    refused(main(run), capsys, rf"800G-DR8-next.toml \(sha256 {sha[:12]}\): no engineer's approval")

    approve = ["limits", "approve", str(path), "--db", str(calibrated_db), "--reason", "ER +0.1"]
    refused(
        main([*approve, *as_user(monkeypatch, "ada")]),
        capsys,
        r"^error: ada \(engineer\) may not approve 800G-DR8-next.toml: the author$",
    )
    refused(
        main([*approve, *as_user(monkeypatch, "olga")]),
        capsys,
        r"olga \(operator\) may not approve_limits",
    )
    log.append(  # an entry by the author, however it got there, approves nothing
        actor="ada",
        role="engineer",
        action="limits_approve",
        subject="limits:800G-DR8",
        details={
            "sha256": sha,
            "file": path.name,
            "version": "2026-11-C",
            "effective": "2026-01-01",
        },
    )
    refused(main(run), capsys, r"approved only by its author ada \(audit entry 1\)")

    assert main([*approve, *as_user(monkeypatch, "eve")]) == 0
    assert "approved by eve, effective 2026-11-27" in capsys.readouterr().out
    refused(
        main(run),
        capsys,
        rf"800G-DR8 limits version 2026-11-C \(sha256 {sha[:12]}, 800G-DR8-next.toml\) has no "
        r"gauge R&R release in sqlite:///.*results.sqlite: run `station grr`.*production runs",
    )

    path.write_text(path.read_text().replace("average launch power", "average launch powe"))
    edited = load_limits(path).sha256
    refused(
        main(run),
        capsys,
        rf"800G-DR8-next.toml \(sha256 {edited[:12]}\): content differs from the approved "
        rf"version 2026-11-C \(sha256 {sha[:12]}\)",
    )
    assert main(["limits", "status", str(path), "--db", str(calibrated_db)]) == 1
    with ResultsStore(calibrated_db) as store:
        assert store.runs().empty  # every refusal came before anything was run
    assert verify_log(log.path).count == 2


def test_an_approval_carries_the_diff_against_the_previously_approved_version(
    tmp_path: Path,
) -> None:
    users = tmp_path / DEFAULT_USERS
    make_users(users)
    eve = load_users(users)["eve"]
    log = AuditLog(tmp_path / DEFAULT_AUDIT)
    path = draft(tmp_path)
    first = approve_limits(log, load_limits(path), eve, "first release")
    assert first["details"]["diff"] is None and first["details"]["previous_sha256"] is None
    text = path.read_text().replace('version = "2026-11-C"', 'version = "2026-12-A"')
    path.write_text(text.replace("low = -2.9\nhigh = 4.0", "low = -2.5\nhigh = 4.0", 1))
    second_file = load_limits(path)
    assert approval_problem(log, second_file) is not None  # a new content: not yet approved
    second = approve_limits(log, second_file, eve, "tighter TX power", dt.date(2026, 12, 1))
    details = second["details"]
    assert details["previous_sha256"] == first["details"]["sha256"]
    assert (details["previous_version"], details["version"]) == ("2026-11-C", "2026-12-A")
    changed = details["diff"]["changed"]
    assert list(changed) == ["tx_average_power"] and list(changed["tx_average_power"]) == ["low"]
    assert changed["tx_average_power"]["low"] == pytest.approx([-2.9 + 0.104, -2.5 + 0.104])
    assert details["effective"] == "2026-12-01" and details["author"] == "ada"
    assert approval_problem(log, second_file, today=dt.date(2026, 11, 30)) == (
        f"800G-DR8-next.toml (sha256 {second_file.sha256[:12]}): approval (audit entry 2) is "
        "effective 2026-12-01"
    )
    assert approval_problem(log, second_file, today=dt.date(2026, 12, 1)) is None
    with pytest.raises(PermissionDenied, match="the author"):
        approve_limits(log, second_file, load_users(users)["ada"], "my own")


def store_study(db: Path, grr_sigma: dict[str, float], *, product: str = "800G-DR8") -> str:
    """A stored gauge R&R study of `product`: GRR sigma per measurement, the same on 8 lanes."""
    study_id = "s1-" + "".join(f"{v:.3f}" for v in grr_sigma.values())[:12]
    now = dt.datetime.now(dt.UTC)
    with ResultsStore(db) as store, store.engine.begin() as conn:
        conn.execute(
            grr_studies.insert().values(
                study_id=study_id, product=product, limits_version="2026-11-C",
                limits_sha256="a" * 64, sequence="pluggable", station_id=STATION_ID,
                appraiser_kind="site", parts=10, appraisers=3, repeats=3, operator="tom",
                started_at=now, released=True,
            )
        )  # fmt: skip
        conn.execute(
            grr_results.insert(),
            [
                {"study_id": study_id, "measurement": name, "lane": lane, "unit": "dBm",
                 "ev": sigma, "av": 0.0, "interaction": 0.0, "grr": sigma, "pv": 0.5,
                 "tv": 0.5, "interaction_pooled": True, "tolerance": None,
                 "pct_grr_tolerance": None, "pct_grr_study": None, "ndc": None, "key": True,
                 "verdict": ""}
                for name, sigma in grr_sigma.items()
                for lane in range(1, 9)
            ],
        )  # fmt: skip
    return study_id


def test_rejudging_uses_the_new_tolerances_and_the_plans_thresholds(tmp_path: Path) -> None:
    path = draft(tmp_path)
    shipped = load_limits(path)
    rows = pd.DataFrame(
        {"measurement": ["tx_average_power", "tx_oma_outer", "tdecq"], "lane": [1, 1, 1],
         "unit": ["dBm", "dBm", "dB"], "grr": [0.1, 0.1, 0.5]}
    )  # fmt: skip
    judged, missing = rejudge(rows, shipped)
    assert missing == () and list(judged["measurement"]) == ["tx_average_power", "tx_oma_outer"]
    assert judged["pct_grr_tolerance"].tolist() == pytest.approx([60 / 6.9, 60 / 5.0])
    assert judged["verdict"].tolist() == ["accept", "conditional"]
    judged, missing = rejudge(rows.iloc[:1], shipped)
    assert missing == ("tx_oma_outer",)


def test_grr_release_rejudges_the_latest_study_and_production_then_runs(
    tmp_path: Path,
    calibrated_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_users(tmp_path / DEFAULT_USERS)
    log = AuditLog(tmp_path / DEFAULT_AUDIT)
    path = draft(tmp_path)
    limits = load_limits(path)
    release = ["grr", "release", "--limits", str(path), "--db", str(calibrated_db)]
    refused(
        main([*release, *as_user(monkeypatch, "eve")]),
        capsys,
        r"--db: product = '800G-DR8': no gauge R&R study of it in sqlite:///",
    )
    wide = store_study(calibrated_db, {"tx_average_power": 0.1, "tx_oma_outer": 0.1})
    assert main([*release, *as_user(monkeypatch, "eve")]) == 1  # OMA: 12 % of 5.0 dB
    assert "NOT released: key measurements need %GRR of tolerance < 10 %" in capsys.readouterr().out
    refused(
        main([*release, *as_user(monkeypatch, "olga")]),
        capsys,
        r"olga \(operator\) may not release_limits",
    )
    narrow = store_study(calibrated_db, {"tx_average_power": 0.04, "tx_oma_outer": 0.05})
    assert main([*release, *as_user(monkeypatch, "eve")]) == 0
    assert f"RELEASED by study {narrow}" in capsys.readouterr().out
    assert wide != narrow and grr_release_problem(calibrated_db, limits) is None
    with ResultsStore(calibrated_db) as store, store.engine.connect() as conn:
        (row,) = conn.execute(sa.select(limits_releases)).all()
    assert (row.product, row.limits_sha256, row.study_id) == ("800G-DR8", limits.sha256, narrow)
    (entry,) = [e for e in log.entries() if e["action"] == "grr_release"]
    assert (entry["actor"], entry["details"]["rejudged"], entry["details"]["study_id"]) == (
        "eve", True, narrow,
    )  # fmt: skip
    assert entry["details"]["key"] == pytest.approx(
        {"tx_average_power": 24 / 6.9, "tx_oma_outer": 30 / 5.0}
    )

    assert main(["limits", "approve", str(path), "--db", str(calibrated_db), "--reason", "ok",
                 *as_user(monkeypatch, "eve")]) == 0  # fmt: skip
    assert main([*PLUGGABLE, "--limits", str(path), "--db", str(calibrated_db), *FAST]) == 0
    assert "PASS" in capsys.readouterr().out
    assert verify_log(log.path).count == 2  # the release and the approval: nothing seeded


def test_a_release_is_by_an_engineer_and_skips_studies_that_measured_nothing(
    tmp_path: Path,
) -> None:
    users = tmp_path / DEFAULT_USERS
    make_users(users)
    db, log = tmp_path / "results.sqlite", AuditLog(tmp_path / DEFAULT_AUDIT)
    limits = load_limits(draft(tmp_path))
    store_study(db, {"tx_average_power": 0.01, "tx_oma_outer": 0.01})
    with ResultsStore(db) as store, store.engine.begin() as conn:
        conn.execute(
            grr_studies.update().where(grr_studies.c.study_id.like("s1-%"))
            .values(appraiser_kind=SEEDED)
        )  # fmt: skip
    with pytest.raises(PermissionDenied):
        release_limits(db, limits, log, load_users(users)["olga"])
    with pytest.raises(Exception, match="no gauge R&R study"):
        release_limits(db, limits, log, load_users(users)["eve"])
    assert not log.path.exists()


def test_a_locked_station_refuses_production_and_studies_until_an_engineer_unlocks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = load_station_config(bench="module").path.read_text(encoding="utf-8")
    config = tmp_path / "station.toml"
    config.write_text(
        shipped + '\n[security]\naudit_log = "logs/audit.jsonl"\nusers = "users.toml"\n',
        encoding="utf-8",
    )
    make_users(tmp_path / "users.toml")
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    lock(log, STATION_ID, "golden unit SIM0003: drift", actor="golden", role="system", run_id="r1")
    db = tmp_path / "db" / "results.sqlite"
    db.parent.mkdir()
    on = ["--station", str(config), "--db", str(db)]
    pattern = rf"station {STATION_ID} is locked \(audit entry 1: golden unit SIM0003: drift\)"
    assert main([*PATH_CAL, *on, *FAST]) == 0  # the remedy goes ahead: it fixes the paths
    capsys.readouterr()
    with ResultsStore(db) as store:
        runs = store.runs()
    refused(main([*PLUGGABLE, *on, *FAST]), capsys, pattern)
    grr = ["grr", "--product", "800G-DR8", "--parts", "2", "--appraisers", "2", "--repeats", "2"]
    refused(main([*grr, "--sim", *on]), capsys, pattern)
    with ResultsStore(db) as store:
        assert len(store.runs()) == len(runs) == 1  # nothing of the refused ones written
    assert main(["audit", "status", *on]) == 0
    assert capsys.readouterr().out.startswith(f"{STATION_ID} locked (audit entry 1)")
    unlock = ["audit", "unlock", *on, "--reason", "cleaned the TX MPO jumper"]
    refused(
        main([*unlock, *as_user(monkeypatch, "olga")]), capsys, r"olga \(operator\) may not unlock"
    )
    assert main([*unlock, *as_user(monkeypatch, "eve")]) == 0
    assert main([*PLUGGABLE, *on, *FAST]) == 0  # the shipped demo limits seed themselves
    capsys.readouterr()
    assert not lock_state(log, STATION_ID).locked
    actions = [(e["actor"], e["action"]) for e in log.entries()]
    assert actions[0] == ("golden", "lock")
    order = [action for _, action in actions]
    assert order.index("calibration") < order.index("unlock")  # fixed first, then unlocked
    assert actions[order.index("unlock")] == ("eve", "unlock")
    assert ("sim-demo-engineer", "limits_approve") in actions
    (calibration,) = [e for e in log.entries() if e["action"] == "calibration"]
    assert calibration["subject"] == f"instrument:paths@{STATION_ID}"
    assert (calibration["role"], calibration["details"]["records"]) == ("system", 3 * 8 + 9 + 1)
    assert main(["audit", "verify", *on]) == 0
    assert f"{len(actions)} entries verify" in capsys.readouterr().out
    assert not (tmp_path / "db" / DEFAULT_AUDIT).exists()  # the config's log, not the default


def test_grr_checks_the_path_calibration_like_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "results.sqlite"
    grr = ["grr", "--product", "800G-DR8", "--parts", "2", "--appraisers", "2", "--repeats", "2"]
    refused(
        main([*grr, "--sim", "--db", str(db)]),
        capsys,
        r"path tx_to_power_meter lane 1 \(site 1\): not calibrated .*--calibration-override",
    )
    assert not db.exists()


def test_a_characterisation_override_of_unapproved_limits_needs_an_engineer(
    tmp_path: Path,
    calibrated_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_users(tmp_path / DEFAULT_USERS)
    path = draft(tmp_path)
    run = [*PLUGGABLE, "--limits", str(path), "--db", str(calibrated_db)]
    characterise = [*run, "--mode", "characterisation"]
    refused(main(characterise), capsys, r"no engineer's approval.*needs --limits-override REASON")
    override = [*characterise, "--limits-override", "ER study"]
    refused(main(override), capsys, r"--user: user = None: --limits-override needs the engineer")
    refused(
        main([*override, *as_user(monkeypatch, "olga")]),
        capsys,
        r"olga \(operator\) may not override",
    )
    assert not (tmp_path / DEFAULT_AUDIT).exists()


def test_the_security_table_is_validated_like_the_rest_of_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = load_station_config(bench="module").path.read_text(encoding="utf-8")
    config = tmp_path / "station.toml"
    config.write_text(shipped + '\n[security]\naudit_log = "a.jsonl"\nuser = "u.toml"\n')
    refused(
        main(["audit", "status", "--station", str(config)]),
        capsys,
        r"station.toml: security.user = 'u.toml': unknown key$",
    )
    config.write_text(shipped + "\n[security]\naudit_log = 3\n")
    refused(
        main(["audit", "verify", "--station", str(config)]),
        capsys,
        r"station.toml: security.audit_log = 3: must be a file path$",
    )
    config.write_text(shipped + '\n[security]\nusers = "../people.toml"\n')
    security = load_station_config(config).security
    assert security.users == tmp_path / "../people.toml" and security.audit_log is None


def test_shipped_limits_seed_only_themselves_on_a_simulated_bench(
    tmp_path: Path, calibrated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An edited copy of a shipped file is a file of one's own: the simulated bench seeds nothing
    (one byte is enough)."""
    copy = tmp_path / "800G-DR8.toml"
    shutil.copy(limits_path("800G-DR8"), copy)
    copy.write_text(copy.read_text(encoding="utf-8") + "# tightened on this station\n")
    refused(
        main([*PLUGGABLE, "--limits", str(copy), "--db", str(calibrated_db)]),
        capsys,
        r"800G-DR8.toml \(sha256 \w{12}\): no engineer's approval",
    )
    assert not (tmp_path / DEFAULT_AUDIT).exists() and not (tmp_path / DEFAULT_USERS).exists()


def test_a_shipped_file_is_known_by_its_bytes_wherever_it_lies(tmp_path: Path) -> None:
    """A source checkout's limits files are the installed package's, byte for byte: the same
    file lying elsewhere is still the shipped one; one byte more and it is not."""
    copy = tmp_path / "800G-DR8.toml"
    shutil.copy(limits_path("800G-DR8"), copy)
    assert is_shipped(load_limits(copy)) and is_shipped(load_limits(limits_path("800G-DR8")))
    copy.write_text(copy.read_text(encoding="utf-8") + "\n")
    assert not is_shipped(load_limits(copy))
    renamed = tmp_path / "mine.toml"
    shutil.copy(limits_path("800G-DR8"), renamed)
    assert not is_shipped(load_limits(renamed))  # the name is part of what ships
