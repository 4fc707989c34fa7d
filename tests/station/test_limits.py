"""Limits files are validated on load with errors that name file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.errors import InputError
from station.limits import limits_path, load_limits
from station.outcome import Outcome

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
    assert (power.low, power.high, power.unit, power.per_lane) == (-2.9, 4.0, "dBm", True)
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
