"""Test conditions the module sequences read from TOML under `sequences/references/`: per-product
set-up values, each station's calibrated reference sources, and the golden units' reference values.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from station.errors import InputError

CONDITIONS_FILE = "conditions.toml"
SOURCES_FILE = "sources.toml"
GOLDEN_FILE = "golden_units.toml"


def reference_path(name: str) -> Path:
    """A file shipped in `sequences/references/`."""
    return Path(str(resources.files("sequences") / "references" / name))


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "file", str(path), "does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, "file", str(path), f"is not valid TOML ({err})") from None


def _table(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(path, where, None, "no such table")
    return value


_KINDS: dict[str, type | tuple[type, ...]] = {"float": (int, float), "str": str, "dt.date": dt.date}


def _build(cls: type, path: Path, where: str, table: dict[str, Any]) -> Any:
    """An instance of dataclass `cls` from `table`, every field present with its type."""
    values: dict[str, Any] = {}
    for spec in fields(cls):
        value = table.get(spec.name)
        kind = _KINDS.get(str(spec.type))
        if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise InputError(path, f"{where}.{spec.name}", value, f"must be a {spec.type}")
        values[spec.name] = float(value) if isinstance(value, int) else value
    unknown = set(table) - set(values)
    if unknown:
        raise InputError(path, f"{where}.{sorted(unknown)[0]}", None, "unknown key")
    return cls(**values)


@dataclass(frozen=True)
class ProductConditions:
    """How the station sets up its tests of one product (see conditions.toml for each value)."""

    tx_pattern: str
    rx_pattern: str
    rx_nominal_oma_dbm: float
    rx_damage_dbm: float
    rx_damage_margin_db: float
    rx_sensitivity_guess_dbm: float
    ddm_rx_power_dbm: float
    oma_minus_tdecq_er_split_db: float


def product_conditions(product: str) -> ProductConditions:
    path = reference_path(CONDITIONS_FILE)
    where = f"products.{product}"
    table = _table(path, where, _load(path).get("products", {}).get(product))
    return _build(ProductConditions, path, where, table)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ReferenceSource:
    """A station's calibrated reference transmitter for the receiver tests."""

    description: str
    oma_outer_dbm: float
    average_power_dbm: float
    extinction_ratio_db: float
    secq_db: float
    wavelength_nm: float
    calibrated_on: dt.date
    calibration_due: dt.date

    def check_calibration(self, today: dt.date) -> None:
        if today > self.calibration_due:
            raise InputError(
                reference_path(SOURCES_FILE),
                "rx_reference.calibration_due",
                str(self.calibration_due),
                "has passed: recalibrate the reference transmitter",
            )


def rx_reference(station_id: str) -> ReferenceSource:
    """The reference transmitter of station `station_id`."""
    path = reference_path(SOURCES_FILE)
    where = f"stations.{station_id}.rx_reference"
    station = _load(path).get("stations", {}).get(station_id, {})
    table = _table(path, where, station.get("rx_reference"))
    return _build(ReferenceSource, path, where, table)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class GoldenReference:
    """What a golden unit measured on its station when that station was known good, per lane."""

    product: str
    station_id: str
    measured_on: dt.date
    tx_average_power_dbm: tuple[float, ...]
    tx_oma_outer_dbm: tuple[float, ...]
    tx_extinction_ratio_db: tuple[float, ...]
    tx_tdecq_db: tuple[float, ...]
    rx_sensitivity_oma_dbm: tuple[float, ...]


def golden_reference(serial: str) -> GoldenReference:
    """The stored reference values of golden unit `serial`."""
    path = reference_path(GOLDEN_FILE)
    where = f"units.{serial}"
    table = dict(_table(path, where, _load(path).get("units", {}).get(serial)))
    values: dict[str, Any] = {}
    for spec in fields(GoldenReference):
        value = table.pop(spec.name, None)
        if spec.name in ("product", "station_id"):
            ok = isinstance(value, str)
        elif spec.name == "measured_on":
            ok = isinstance(value, dt.date)
        else:
            ok = isinstance(value, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            )
            value = tuple(float(v) for v in value) if ok else value
        if not ok:
            raise InputError(path, f"{where}.{spec.name}", value, "missing or of the wrong type")
        values[spec.name] = value
    if table:
        raise InputError(path, f"{where}.{sorted(table)[0]}", None, "unknown key")
    return GoldenReference(**values)
