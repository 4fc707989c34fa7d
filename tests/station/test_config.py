"""Station configs are validated with errors naming file, field and value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from station.bench import check_calibration, open_bench
from station.config import load_station_config
from station.errors import CalibrationExpired, InputError

GOOD = """
[station]
id = "s1"
[instruments.power_meter]
driver = "keysight.n7744c:N7744C"
resource = "TCPIP::127.0.0.1::5025::SOCKET"
serial_number = "MY1"
calibration_due = 2026-01-31
"""


def test_shipped_sim_config_loads() -> None:
    config = load_station_config()
    assert set(config.instruments) >= {"module_host", "optical_switch", "power_meter"}
    assert config.path_loss_db("tx_to_power_meter", 7) > 0


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            'driver = "keysight.n7744c:N7744C"',
            'driver = "n7744c"',
            "instruments.power_meter.driver",
        ),
        ('serial_number = "MY1"', "serial_number = 7", "instruments.power_meter.serial_number"),
        (
            "calibration_due = 2026-01-31",
            'calibration_due = "soon"',
            "instruments.power_meter.calibration_due",
        ),
        ('id = "s1"', 'id = ""', "station.id"),
        ('resource = "TCPIP', 'speed = 3\nresource = "TCPIP', "instruments.power_meter.speed"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(InputError) as caught:
        load_station_config(path)
    assert caught.value.field == field
    assert caught.value.source == str(path)


def test_unknown_driver_module_and_missing_role(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace("keysight.n7744c:N7744C", "keysight.n9999z:N9999Z"))
    config = load_station_config(path)
    with pytest.raises(InputError, match="no such driver module"):
        open_bench(config, ["power_meter"])
    with pytest.raises(InputError, match=r"instruments\.module_host"):
        open_bench(config, ["module_host"])


def test_expired_calibration_refuses_unless_overridden(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD)
    config = load_station_config(path)
    with pytest.raises(CalibrationExpired, match="calibration_due = 2026-01-31"):
        check_calibration(config, ["power_meter"], dt.date(2026, 2, 1), None)
    check_calibration(config, ["power_meter"], dt.date(2026, 2, 1), "cal lab backlog, ticket 42")
    check_calibration(config, ["power_meter"], dt.date(2026, 1, 31), None)


MULTI = GOOD + """
[instruments.module_host]
driver = "devantech.usb_iss:UsbIssCmisHost"
resource = "ASRL/dev/ttyACM0::INSTR"
serial_number = "H1"

[paths.tx]
loss_db = [1.0, 1.1]
uncertainty_db = 0.05
measured_on = 2026-11-02

[sites.2.instruments.module_host]
driver = "devantech.usb_iss:UsbIssCmisHost"
resource = "ASRL/dev/ttyACM1::INSTR"
serial_number = "H2"

[sites.2.paths.tx]
loss_db = [2.0, 2.1]
uncertainty_db = 0.05
measured_on = 2026-11-02
"""


def test_sites_override_roles_and_paths_and_share_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(MULTI)
    config = load_station_config(path)
    assert config.site_count == 2
    one, two = config.for_site(1), config.for_site(2)
    assert one.instruments["module_host"].serial_number == "H1"
    assert two.instruments["module_host"].serial_number == "H2"
    assert one.instruments["power_meter"] == two.instruments["power_meter"]  # shared
    assert (one.path_loss_db("tx", 1), two.path_loss_db("tx", 1)) == (1.1, 2.1)
    with pytest.raises(InputError, match=r"has 2 sites"):
        config.for_site(3)


def test_site_numbers_must_be_contiguous(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(MULTI.replace("sites.2.", "sites.3."))
    with pytest.raises(InputError) as caught:
        load_station_config(path)
    assert caught.value.field == "sites.2"
