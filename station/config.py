"""Station configuration: which driver and resource plays each instrument role, calibration dates,
optical paths and the jumpers they run through. Loaded from TOML, validated, passed in explicitly.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from station.errors import InputError

ROLE = re.compile(r"^[a-z][a-z0-9_]*$")
DRIVER = re.compile(r"^[a-z][a-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class InstrumentConfig:
    role: str
    driver: str  # "<module under drivers>:<class>", e.g. "keysight.n7744c:N7744C"
    resource: str
    serial_number: str
    calibration_due: dt.date | None  # None: the instrument needs no calibration (e.g. a switch)
    timeout_s: float | None = None


@dataclass(frozen=True)
class PathLoss:
    """Loss of a group of optical paths, one value per index (e.g. per lane), as configured.

    A `bootstrap` loss is a nominal value for a path that `path-cal` measures: only a
    characterisation run with a recorded override uses it; production needs a calibration record.
    `roles` are the instruments at the path's ends: a sequence using all of them uses the path.
    """

    name: str
    loss_db: tuple[float, ...]
    uncertainty_db: float
    measured_on: dt.date
    bootstrap: bool = False
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Jumper:
    """A station jumper (patch cord, MPO breakout) that optical paths run through. Swapping it
    (another serial) invalidates the calibration of its paths; past its mating limit it must be
    replaced."""

    name: str
    serial: str
    mating_count: int
    mating_limit: int
    paths: tuple[str, ...]


@dataclass(frozen=True)
class PathCalSettings:
    """How this station calibrates its paths: how long a calibration holds, and the certified
    losses of its reference loopback fixtures (one stands in the DUT's place during path-cal;
    its serial is the run's DUT serial)."""

    validity_days: float
    fixture_tap_db: float  # fixture RX leg -> its tap output on the power meter's tap channel
    fixture_loopback_db: float  # fixture RX leg -> the TX leg it loops back into
    fixture_uncertainty_db: float
    tap_channel: int  # the power meter channel the fixture's tap output is wired to
    #: the power meter channel the RX reference transmitter's monitor output is wired to, and
    #: how far (dB) below the transmitter's certified average power that output is (its
    #: certificate): the known power path-cal checks the meter's wavelength correction with
    monitor_channel: int | None = None
    monitor_db: float | None = None


class PathLossDb(float):
    """A path loss (dB) resolved from a calibration record; carries the record's id so that a
    measurement corrected by it can name it."""

    calibration_id: int

    def __new__(cls, loss_db: float, calibration_id: int) -> PathLossDb:
        value = super().__new__(cls, loss_db)
        value.calibration_id = calibration_id
        return value

    def __reduce__(self) -> tuple[type[PathLossDb], tuple[float, int]]:
        return PathLossDb, (float(self), self.calibration_id)


@dataclass(frozen=True)
class SecuritySettings:
    """Where the station's audit log and users file are (`[security]`, paths relative to the
    config file); None: beside the results database (station.security.files)."""

    audit_log: Path | None = None
    users: Path | None = None


@dataclass(frozen=True)
class StationConfig:
    """A station's instruments and calibrated paths.

    A multi-site station adds `[sites.<n>.instruments.<role>]` and `[sites.<n>.paths.<name>]`
    tables: a site uses the top-level instruments and paths except where its own table names the
    same role or path. An instrument that no site overrides is shared by all of them.
    """

    path: Path
    station_id: str
    instruments: dict[str, InstrumentConfig]
    paths: dict[str, PathLoss] = field(default_factory=dict)
    sites: dict[int, tuple[dict[str, InstrumentConfig], dict[str, PathLoss]]] = field(
        default_factory=dict
    )
    jumpers: dict[str, Jumper] = field(default_factory=dict)
    #: `[sites.<n>.jumpers.<name>]`: a site's own jumpers over the top-level ones
    site_jumpers: dict[int, dict[str, Jumper]] = field(default_factory=dict)
    path_cal: PathCalSettings | None = None
    #: site -> (path, index) -> the loss in force from the results store's calibration records
    calibrations: Mapping[int, Mapping[tuple[str, int], PathLossDb]] = field(default_factory=dict)
    #: site -> (measurement, lane) -> the golden-unit offset in force (station.calibration.offsets)
    offsets: Mapping[int, Mapping[tuple[str, int | None], float]] = field(default_factory=dict)
    #: the site a `for_site` view belongs to (None: the whole station)
    site: int | None = None
    security: SecuritySettings = field(default_factory=SecuritySettings)

    @property
    def site_count(self) -> int:
        return max(self.sites, default=1)

    def replicated(self, sites: int) -> StationConfig:
        """This single-site station copied to `sites` identical sites (a simulated bench builds
        every site like the first: same instruments, serial numbers and path losses)."""
        copies = {site: (dict(self.instruments), dict(self.paths)) for site in range(2, sites + 1)}
        return replace(self, sites=copies)

    def for_site(self, site: int) -> StationConfig:
        """The view one site has: its own instruments and paths over the shared ones."""
        if not 1 <= site <= self.site_count:
            raise InputError(self.path, "sites", site, f"this station has {self.site_count} sites")
        instruments, paths = self.sites.get(site, ({}, {}))
        return replace(
            self,
            instruments={**self.instruments, **instruments},
            paths={**self.paths, **paths},
            sites={},
            jumpers={**self.jumpers, **self.site_jumpers.get(site, {})},
            site_jumpers={},
            site=site,
        )

    def with_calibrations(
        self, calibrations: Mapping[int, Mapping[tuple[str, int], PathLossDb]]
    ) -> StationConfig:
        """This station with the path losses in force per site (see station.calibration)."""
        return replace(self, calibrations=calibrations)

    def with_offsets(
        self, offsets: Mapping[int, Mapping[tuple[str, int | None], float]]
    ) -> StationConfig:
        """This station with its golden-unit offsets in force per site: a run records
        `value - offset` (see station.calibration.offsets)."""
        return replace(self, offsets=offsets)

    def with_matings(self, matings: Mapping[str, int]) -> StationConfig:
        """This station with the mating counts the results store keeps per jumper serial
        (`matings`: serial -> count) in place of the configured ones; a serial the store has
        not seen yet keeps its configured count."""

        def counted(table: dict[str, Jumper]) -> dict[str, Jumper]:
            return {
                name: replace(j, mating_count=matings.get(j.serial, j.mating_count))
                for name, j in table.items()
            }

        return replace(
            self,
            jumpers=counted(self.jumpers),
            site_jumpers={site: counted(table) for site, table in self.site_jumpers.items()},
        )

    def jumper_of(self, path: str) -> Jumper | None:
        """The jumper path `path` runs through, if the config names one."""
        return next((j for j in self.jumpers.values() if path in j.paths), None)

    def path_loss_db(self, name: str, index: int) -> float:
        """Loss of path `name` at `index` (0-based): the calibration record in force for this
        site where there is one (a PathLossDb naming it), else the configured value."""
        calibrated = self.calibrations.get(self.site or 1, {}).get((name, index))
        if calibrated is not None:
            return calibrated
        if name not in self.paths:
            raise InputError(self.path, f"paths.{name}", None, "no such optical path is calibrated")
        losses = self.paths[name].loss_db
        if not 0 <= index < len(losses):
            raise InputError(
                self.path, f"paths.{name}.loss_db[{index}]", None, f"only {len(losses)} entries"
            )
        return losses[index]


_INSTRUMENT_KEYS = {"driver", "resource", "serial_number", "calibration_due", "timeout_s"}
_PATH_KEYS = {"loss_db", "uncertainty_db", "measured_on", "bootstrap", "roles"}
_JUMPER_KEYS = {"serial", "mating_count", "mating_limit", "paths"}
_PATH_CAL_KEYS = {
    "validity_days",
    "fixture_tap_db",
    "fixture_loopback_db",
    "fixture_uncertainty_db",
    "tap_channel",
    "monitor_channel",
    "monitor_db",
}


def default_config_path(bench: str = "module") -> Path:
    """The station config shipped for the simulated bench of kind `bench`."""
    return Path(str(resources.files("station") / "configs" / f"sim-{bench}-bench.toml"))


def load_station_config(path: str | Path | None = None, bench: str = "module") -> StationConfig:
    """Load `path`, or without one the shipped config of the simulated `bench`."""
    path = Path(path) if path is not None else default_config_path(bench)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "file", str(path), "does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, "file", str(path), f"is not valid TOML ({err})") from None
    sections = {"station", "instruments", "paths", "sites", "jumpers", "path_cal", "security"}
    unknown = set(data) - sections
    if unknown:
        raise InputError(path, sorted(unknown)[0], None, "unknown section")
    station = _table(path, data, "station")
    station_id = station.get("id")
    if not isinstance(station_id, str) or not station_id:
        raise InputError(path, "station.id", station_id, "must be a non-empty string")
    instruments = {}
    for role, spec in _table(path, data, "instruments").items():
        instruments[role] = _instrument(path, role, spec)
    paths = {name: _path(path, name, spec) for name, spec in data.get("paths", {}).items()}
    sites = {}
    site_jumpers: dict[int, dict[str, Jumper]] = {}
    for key, spec in data.get("sites", {}).items():
        if not key.isdigit() or not 1 <= int(key) <= 64 or not isinstance(spec, dict):
            raise InputError(path, f"sites.{key}", spec, "sites are tables numbered 1..64")
        unknown = set(spec) - {"instruments", "paths", "jumpers"}
        if unknown:
            raise InputError(path, f"sites.{key}.{sorted(unknown)[0]}", None, "unknown key")
        site_instruments = {
            role: _instrument(path, role, item, f"sites.{key}.instruments")
            for role, item in spec.get("instruments", {}).items()
        }
        site_paths = {
            name: _path(path, name, item, f"sites.{key}.paths")
            for name, item in spec.get("paths", {}).items()
        }
        sites[int(key)] = (site_instruments, site_paths)
        known = {**paths, **site_paths}
        site_jumpers[int(key)] = {
            name: _jumper(path, name, item, known, f"sites.{key}.jumpers")
            for name, item in _optional_table(path, spec, "jumpers", f"sites.{key}").items()
        }
    # Site 1 may live entirely in the top-level tables; sites 2..n must each be described.
    missing = sorted(set(range(2, max(sites, default=1) + 1)) - set(sites))
    if missing:
        raise InputError(path, f"sites.{missing[0]}", None, "sites must be numbered 1..n")
    jumpers = {
        name: _jumper(path, name, spec, paths)
        for name, spec in _optional_table(path, data, "jumpers").items()
    }
    path_cal = _path_cal(path, data["path_cal"]) if "path_cal" in data else None
    return StationConfig(
        path,
        station_id,
        instruments,
        paths,
        sites,
        jumpers,
        {site: table for site, table in site_jumpers.items() if table},
        path_cal,
        security=_security(path, data.get("security", {})),
    )


def _optional_table(path: Path, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise InputError(path, f"{where}.{key}" if where else key, value, "must be a table")
    return value


def _table(path: Path, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise InputError(path, key, value, "missing table")
    return value


def _instrument(path: Path, role: str, spec: Any, table: str = "instruments") -> InstrumentConfig:
    where = f"{table}.{role}"
    if not ROLE.match(role):
        raise InputError(path, where, role, "role names are lower_snake_case")
    if not isinstance(spec, dict):
        raise InputError(path, where, spec, "must be a table")
    unknown = set(spec) - _INSTRUMENT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"{where}.{key}", spec[key], "unknown key")
    driver = spec.get("driver")
    if not isinstance(driver, str) or not DRIVER.match(driver):
        raise InputError(path, f"{where}.driver", driver, "must look like 'vendor.model:Class'")
    resource = spec.get("resource")
    if not isinstance(resource, str) or not resource:
        raise InputError(path, f"{where}.resource", resource, "must be a VISA resource string")
    serial = spec.get("serial_number")
    if not isinstance(serial, str) or not serial:
        raise InputError(path, f"{where}.serial_number", serial, "must be a non-empty string")
    due = spec.get("calibration_due")
    if due is not None and not isinstance(due, dt.date):
        raise InputError(path, f"{where}.calibration_due", due, "must be a TOML date (YYYY-MM-DD)")
    timeout = spec.get("timeout_s")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise InputError(path, f"{where}.timeout_s", timeout, "must be a positive number")
    return InstrumentConfig(
        role, driver, resource, serial, due, float(timeout) if timeout is not None else None
    )


def _path(path: Path, name: str, spec: Any, table: str = "paths") -> PathLoss:
    where = f"{table}.{name}"
    if not isinstance(spec, dict):
        raise InputError(path, where, spec, "must be a table")
    unknown = set(spec) - _PATH_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"{where}.{key}", spec[key], "unknown key")
    losses = spec.get("loss_db")
    if (
        not isinstance(losses, list)
        or not losses
        or not all(isinstance(v, int | float) for v in losses)
    ):
        raise InputError(path, f"{where}.loss_db", losses, "must be a list of numbers (dB)")
    if any(not 0.0 <= v < 30.0 for v in losses):
        raise InputError(path, f"{where}.loss_db", losses, "losses must be within 0 to 30 dB")
    uncertainty = spec.get("uncertainty_db")
    if not isinstance(uncertainty, int | float) or uncertainty < 0:
        raise InputError(path, f"{where}.uncertainty_db", uncertainty, "must be a number >= 0")
    measured = spec.get("measured_on")
    if not isinstance(measured, dt.date):
        raise InputError(path, f"{where}.measured_on", measured, "must be a TOML date")
    bootstrap = spec.get("bootstrap", False)
    if not isinstance(bootstrap, bool):
        raise InputError(path, f"{where}.bootstrap", bootstrap, "must be true or false")
    roles = spec.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) and ROLE.match(r) for r in roles):
        raise InputError(path, f"{where}.roles", roles, "must be a list of role names")
    return PathLoss(
        name, tuple(float(v) for v in losses), float(uncertainty), measured, bootstrap, tuple(roles)
    )


def _jumper(
    path: Path, name: str, spec: Any, paths: dict[str, PathLoss], table: str = "jumpers"
) -> Jumper:
    where = f"{table}.{name}"
    if not isinstance(spec, dict):
        raise InputError(path, where, spec, "must be a table")
    unknown = set(spec) - _JUMPER_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"{where}.{key}", spec[key], "unknown key")
    serial = spec.get("serial")
    if not isinstance(serial, str) or not serial:
        raise InputError(path, f"{where}.serial", serial, "must be a non-empty string")
    count = spec.get("mating_count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise InputError(path, f"{where}.mating_count", count, "must be an integer >= 0")
    limit = spec.get("mating_limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InputError(path, f"{where}.mating_limit", limit, "must be an integer >= 1")
    served = spec.get("paths")
    if not isinstance(served, list) or not served or not all(isinstance(p, str) for p in served):
        raise InputError(path, f"{where}.paths", served, "must be a list of path names")
    for name_of_path in served:
        if name_of_path not in paths:
            raise InputError(path, f"{where}.paths", name_of_path, "no such path in [paths]")
    return Jumper(name, serial, count, limit, tuple(served))


def _path_cal(path: Path, spec: Any) -> PathCalSettings:
    if not isinstance(spec, dict):
        raise InputError(path, "path_cal", spec, "must be a table")
    unknown = set(spec) - _PATH_CAL_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"path_cal.{key}", spec[key], "unknown key")
    numbers = {}
    for key, low, high in (
        ("validity_days", 0.0, 366.0),
        ("fixture_tap_db", 0.0, 30.0),
        ("fixture_loopback_db", 0.0, 30.0),
        ("fixture_uncertainty_db", 0.0, 1.0),
    ):
        value = spec.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not low < value < high:
            raise InputError(
                path, f"path_cal.{key}", value, f"must be a number in ({low:g}, {high:g})"
            )
        numbers[key] = float(value)
    channel = spec.get("tap_channel")
    if not isinstance(channel, int) or isinstance(channel, bool) or not 1 <= channel <= 8:
        raise InputError(path, "path_cal.tap_channel", channel, "must be a channel number 1..8")
    monitor_channel, monitor_db = _monitor(path, spec, channel)
    return PathCalSettings(
        numbers["validity_days"],
        numbers["fixture_tap_db"],
        numbers["fixture_loopback_db"],
        numbers["fixture_uncertainty_db"],
        channel,
        monitor_channel,
        monitor_db,
    )


def _monitor(path: Path, spec: dict[str, Any], tap_channel: int) -> tuple[int | None, float | None]:
    """`[path_cal]` `monitor_channel` and `monitor_db`: both or neither."""
    channel, loss = spec.get("monitor_channel"), spec.get("monitor_db")
    if (channel is None) != (loss is None):
        key = "monitor_db" if loss is None else "monitor_channel"
        raise InputError(path, f"path_cal.{key}", None, "needs monitor_channel and monitor_db")
    if channel is None:
        return None, None
    if not isinstance(channel, int) or isinstance(channel, bool) or not 1 <= channel <= 8:
        raise InputError(path, "path_cal.monitor_channel", channel, "must be a channel 1..8")
    if channel == tap_channel:
        raise InputError(path, "path_cal.monitor_channel", channel, "is the tap channel")
    if not isinstance(loss, int | float) or isinstance(loss, bool) or not 0.0 < loss < 60.0:
        raise InputError(path, "path_cal.monitor_db", loss, "must be a number in (0, 60)")
    return channel, float(loss)


def _security(path: Path, spec: Any) -> SecuritySettings:
    """`[security]`: `audit_log` and `users` file paths, each relative to the config file."""
    if not isinstance(spec, dict):
        raise InputError(path, "security", spec, "must be a table")
    unknown = set(spec) - {"audit_log", "users"}
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"security.{key}", spec[key], "unknown key")
    found: dict[str, Path | None] = {}
    for key in ("audit_log", "users"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InputError(path, f"security.{key}", value, "must be a file path")
        found[key] = None if value is None else path.parent / value
    return SecuritySettings(found["audit_log"], found["users"])
