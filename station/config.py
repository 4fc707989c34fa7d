"""Station configuration: which driver and resource plays each instrument role, calibration dates,
and the station's measured optical path losses. Loaded from TOML, validated, passed in explicitly.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
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
    """Measured loss of a group of optical paths, one value per index (e.g. per lane)."""

    name: str
    loss_db: tuple[float, ...]
    uncertainty_db: float
    measured_on: dt.date


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

    @property
    def site_count(self) -> int:
        return max(self.sites, default=1)

    def replicated(self, sites: int) -> StationConfig:
        """This single-site station copied to `sites` identical sites (a simulated bench builds
        every site like the first: same instruments, serial numbers and path losses)."""
        copies = {site: (dict(self.instruments), dict(self.paths)) for site in range(2, sites + 1)}
        return StationConfig(self.path, self.station_id, self.instruments, self.paths, copies)

    def for_site(self, site: int) -> StationConfig:
        """The view one site has: its own instruments and paths over the shared ones."""
        if not 1 <= site <= self.site_count:
            raise InputError(self.path, "sites", site, f"this station has {self.site_count} sites")
        instruments, paths = self.sites.get(site, ({}, {}))
        return StationConfig(
            self.path, self.station_id, {**self.instruments, **instruments}, {**self.paths, **paths}
        )

    def path_loss_db(self, name: str, index: int) -> float:
        """Loss of path `name` at `index` (0-based)."""
        if name not in self.paths:
            raise InputError(self.path, f"paths.{name}", None, "no such optical path is calibrated")
        losses = self.paths[name].loss_db
        if not 0 <= index < len(losses):
            raise InputError(
                self.path, f"paths.{name}.loss_db[{index}]", None, f"only {len(losses)} entries"
            )
        return losses[index]


_INSTRUMENT_KEYS = {"driver", "resource", "serial_number", "calibration_due", "timeout_s"}
_PATH_KEYS = {"loss_db", "uncertainty_db", "measured_on"}


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
    unknown = set(data) - {"station", "instruments", "paths", "sites"}
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
    for key, spec in data.get("sites", {}).items():
        if not key.isdigit() or not 1 <= int(key) <= 64 or not isinstance(spec, dict):
            raise InputError(path, f"sites.{key}", spec, "sites are tables numbered 1..64")
        unknown = set(spec) - {"instruments", "paths"}
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
    # Site 1 may live entirely in the top-level tables; sites 2..n must each be described.
    missing = sorted(set(range(2, max(sites, default=1) + 1)) - set(sites))
    if missing:
        raise InputError(path, f"sites.{missing[0]}", None, "sites must be numbered 1..n")
    return StationConfig(path, station_id, instruments, paths, sites)


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
    return PathLoss(name, tuple(float(v) for v in losses), float(uncertainty), measured)
