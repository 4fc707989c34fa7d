"""Limits files are validated on load with errors that name file, field and value."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from station.cli import main
from station.errors import InputError
from station.limits import limits_path, load_limits, shipped_products
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.security.audit import DEFAULT_AUDIT, AuditLog
from station.security.overrides import limits_override
from station.security.users import DEFAULT_USERS, add_user

PRODUCT = """
[product]
name = "X"
revision = "1"
serial_pattern = "X\\\\d{3}"
part_number = "PN"
lanes = 2
wavelength_nm = 1310
baud_rate_gbd = 53.125
"""


def write(tmp_path: Path, limits: str, product: str = PRODUCT) -> Path:
    path = tmp_path / "X.toml"
    path.write_text(product + limits)
    return path


def test_shipped_800g_limits_load_and_carry_the_802_3_values() -> None:
    limits = load_limits(limits_path("800G-DR8"))
    power = limits.limits["tx_average_power"]
    assert (power.spec_low, power.spec_high, power.unit, power.per_lane) == (-2.9, 4.0, "dBm", True)
    # production limits: guard-banded by 2 u = 2 x 0.052 dB on each side
    assert (power.low, power.high) == (pytest.approx(-2.796), pytest.approx(3.896))
    assert len(limits.sha256) == 64
    limits.check_serial("SIM0001")
    with pytest.raises(InputError, match="does not match"):
        limits.check_serial("sim0001")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[limits.a]\nlow = 1\nhigh = 0\nunit = "V"\n', "limits.a.low"),
        ("[limits.a]\nlow = 1\n", "limits.a.unit"),
        ('[limits.a]\nlow = 1\nunit = "V"\ncolour = "red"\n', "limits.a.colour"),
        ('[limits.a]\nunit = "V"\n', "limits.a"),
        ('[limits.a]\nlow = "one"\nunit = "V"\n', "limits.a.low"),
        ('[limits.Bad-Name]\nlow = 1\nunit = "V"\n', "limits.Bad-Name"),
    ],
)
def test_bad_limits_name_the_field(tmp_path: Path, body: str, field: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(InputError) as caught:
        load_limits(path)
    assert caught.value.field == field
    assert str(path) in str(caught.value)


def test_bad_product_table_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"product\.lanes"):
        load_limits(
            write(
                tmp_path,
                '[limits.a]\nlow = 1\nunit = "V"\n',
                PRODUCT.replace("lanes = 2", "lanes = 0"),
            )
        )
    path = tmp_path / "broken.toml"
    path.write_text("[product\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_limits(path)


def test_declared_measurements_must_match_limits(tmp_path: Path) -> None:
    limits = load_limits(write(tmp_path, '[limits.a]\nlow = 1\nunit = "V"\n'))
    limits.check_against({"a"})
    with pytest.raises(InputError, match="no limit"):
        limits.check_against({"a", "b"})
    with pytest.raises(InputError, match="no step"):
        limits.check_against(set())


def test_judging_numbers_text_and_bad_data(tmp_path: Path) -> None:
    limits = load_limits(
        write(
            tmp_path,
            """
[limits.p]
low = -2.9
high = 4.0
marginal = 0.3
unit = "dBm"
[limits.s]
expected = "${dut_serial}"
unit = ""
[limits.k]
allowed = [24, 25]
unit = ""
""",
        )
    )
    p, s, k = limits.limits["p"], limits.limits["s"], limits.limits["k"]
    assert p.judge(1.0, "X001") == (Outcome.PASS, False)
    assert p.judge(-2.8, "X001") == (Outcome.PASS, True)
    assert p.judge(-3.0, "X001") == (Outcome.FAIL, False)
    assert p.judge(4.01, "X001") == (Outcome.FAIL, False)
    assert p.judge(float("nan"), "X001")[0] == Outcome.ERROR
    assert p.judge("1.0", "X001")[0] == Outcome.ERROR
    assert s.judge("X001", "X001")[0] == Outcome.PASS
    assert s.judge("X002", "X001")[0] == Outcome.FAIL
    assert k.judge(25, "X001")[0] == Outcome.PASS
    assert k.judge(17, "X001")[0] == Outcome.FAIL


# --- limit sets and release ---------------------------------------------------------------------
RELEASE = """
[release]
version = "7"
author = "ana"
approver = "ben"
reason = "tighter ER after the 2026 audit"
effective = 2026-11-01
"""
TODAY = dt.date(2026, 11, 29)


def test_production_limits_are_the_spec_and_customer_limits_less_the_guard_band(
    tmp_path: Path,
) -> None:
    """g = k u on each side of the tighter of spec and customer limits (k from [release])."""
    body = """
[limits.p]
low = -2.9
high = 4.0
customer_high = 3.5
uncertainty = 0.05
marginal = 0.3
unit = "dBm"
[limits.er]
low = 3.5
uncertainty = 0.1
unit = "dB"
[limits.plain]
low = 1
high = 2
unit = "V"
"""
    limits = load_limits(
        write(tmp_path, RELEASE.replace("effective", "guard_band_k = 3.0\neffective") + body)
    )
    p, er, plain = limits.limits["p"], limits.limits["er"], limits.limits["plain"]
    assert (p.spec_low, p.spec_high, p.customer_high) == (-2.9, 4.0, 3.5)
    assert (p.low, p.high, p.guard_band) == (
        pytest.approx(-2.75), pytest.approx(3.35), pytest.approx(0.15),
    )  # fmt: skip
    assert (er.low, er.high) == (pytest.approx(3.8), None)
    assert (plain.low, plain.high, plain.guard_band) == (1.0, 2.0, 0.0)
    assert p.judge(3.4, "X001")[0] == Outcome.FAIL  # inside spec and customer, in the guard band
    assert p.judge(3.3, "X001") == (Outcome.PASS, True)
    default_k = load_limits(write(tmp_path, RELEASE + body)).limits["p"]
    assert default_k.high == pytest.approx(3.5 - 2 * 0.05)


A = '[limits.a]\nlow = 1\nunit = "V"\n'
GRR_A = '[grr]\nkey_measurements = ["a"]\n'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            '[limits.a]\nlow = 1\nhigh = 1.1\nuncertainty = 0.1\nunit = "V"\n',
            "limits.a.uncertainty",
        ),
        ('[limits.a]\nlow = 1\nuncertainty = -0.1\nunit = "V"\n', "limits.a.uncertainty"),
        ('[limits.a]\nlow = 1\ncustomer_high = 2\nunit = "V"\n', "limits.a.customer_high"),
        ('[limits.a]\nexpected = 1\nuncertainty = 0.1\nunit = ""\n', "limits.a"),
        (RELEASE.replace('approver = "ben"', "approver = 3") + A, "release.approver"),
        (RELEASE.replace("2026-11-01", '"soon"') + A, "release.effective"),
        (GRR_A + A, "grr.key_measurements"),
        (GRR_A + "accept_pct = 40\n" + A.replace("low = 1", "low = 1\nhigh = 2"), "grr.accept_pct"),
    ],
)
def test_bad_limit_sets_release_and_grr_tables_name_the_field(
    tmp_path: Path, body: str, field: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_limits(write(tmp_path, body))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda r: "", "release", "no [release] table"),
        (lambda r: r.replace('"ben"', '""'), "release.approver", "not approved"),
        (lambda r: r.replace('"ben"', '"ana"'), "release.approver", "own author"),
        (lambda r: r.replace("2026-11-01", "2026-12-01"), "release.effective", "not yet in effect"),
    ],
)  # fmt: skip
def test_unapproved_limits_refuse_production_and_need_an_override_otherwise(
    tmp_path: Path, change: object, field: str, problem: str
) -> None:
    limits = load_limits(write(tmp_path, change(RELEASE) + A))  # type: ignore[operator]
    assert problem in (limits.unapproved_reason(TODAY) or "")
    with pytest.raises(InputError, match="production runs refuse it") as caught:
        limits.check_release("production", "an override does not help", TODAY)
    assert caught.value.field == field and str(limits.path) in str(caught.value)
    with pytest.raises(InputError, match="needs --limits-override"):
        limits.check_release("characterisation", None, TODAY)
    reason = limits.check_release("characterisation", "ER study", TODAY)
    assert reason is not None and problem in reason


def test_approved_limits_in_effect_judge_production() -> None:
    for product in shipped_products():
        limits = load_limits(limits_path(product))
        assert limits.release is not None and limits.release.approver != limits.release.author
        assert limits.check_release("production", None, dt.date.today()) is None, product
    golden = load_limits(limits_path("800G-DR8").parent / "golden" / "800G-DR8.toml")
    assert golden.check_release("production", None, dt.date.today()) is None
    assert golden.offsets["station_tx_power_offset"] == "tx_average_power"
    plan = load_limits(limits_path("800G-DR8")).grr
    assert plan is not None and plan.key_measurements == ("tx_average_power", "tx_oma_outer")
    assert [plan.verdict(x) for x in (9.9, 10.0, 29.9, 30.0, float("nan"))] == [
        "accept", "conditional", "conditional", "reject", "unknown",
    ]  # fmt: skip


def unapproved_copy(tmp_path: Path) -> Path:
    path = tmp_path / "800G-DR8-draft.toml"
    text = limits_path("800G-DR8").read_text()
    path.write_text(text.replace('approver = "quality engineering"', 'approver = ""'))
    return path


def test_a_production_run_on_unapproved_limits_is_one_line_exit_2_before_anything_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line is one line, however long its path
    db = tmp_path / "results.sqlite"
    argv = ["run", "pluggable", "--product", "800G-DR8", "--serial", "SIM0001", "--sim",
            "--limits", str(unapproved_copy(tmp_path)), "--db", str(db)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "800G-DR8-draft.toml: release.approver = '': release 2026-11-C is not approved" in err
    assert not db.exists()  # refused before the bench started or the store opened
    assert main([*argv, "--mode", "characterisation"]) == 2
    assert "--limits-override" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.slow
def test_a_characterisation_run_on_unapproved_limits_proceeds_with_its_override_recorded(
    tmp_path: Path,
) -> None:
    """The whole pluggable sequence on the simulated bench, in its own process (about 30 s);
    the engineer granting the override authenticates, and the audit log records it too."""
    db = tmp_path / "results.sqlite"
    add_user(tmp_path / DEFAULT_USERS, "eve", "engineer", "eng-secret")
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", "run", "pluggable", "--product", "800G-DR8",
         "--serial", "SIM0001", "--sim", "--time-factor", "0.02", "--db", str(db),
         "--limits", str(unapproved_copy(tmp_path)), "--mode", "characterisation",
         "--limits-override", "ER study on the draft", "--user", "eve",
         "--calibration-override", "bootstrap path losses"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "STATION_SECRET": "eng-secret"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with ResultsStore(db) as store:
        run_id = store.runs().iloc[0]["run_id"]
        record = limits_override(store.engine, run_id)
    assert record is not None and record["reason"] == "ER study on the draft"
    unapproved = str(record["unapproved_reason"])
    assert "not approved" in unapproved and "no engineer's approval" in unapproved
    assert "no gauge R&R release" in unapproved
    (entry,) = AuditLog(tmp_path / DEFAULT_AUDIT).entries()
    assert (entry["actor"], entry["action"], entry["details"]["reason"]) == (
        "eve", "override", "ER study on the draft",
    )  # fmt: skip
    assert entry["details"]["unapproved"] == unapproved
