"""Die maps of PIC wafer products: one TOML file per mask revision under sequences/wafer_maps/,
loaded and validated here (wafer, die grid, home die, edge exclusion, test order, test cell).

A map names the wafer (diameter, edge exclusion in mm), the die grid (pitch, columns, rows, where
the wafer centre falls, which way rows count), the home (reference) die, the dies to test (a rule
or an explicit list, in test order), and the test cell every die carries: its devices with their
type, their position relative to the die's reference coupler (um) and how the station reaches
them (power meter channel, SMU terminals). It also holds the optical test settings of the mask
(sweep, alignment) and how many spectra to keep, since they follow from the devices' design.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from station.analysis.yields import edge_exclusion_mask
from station.errors import InputError

DEVICE_TYPES = ("grating_coupler_loopback", "ring_resonator", "photodetector", "heater")
OPTICAL_TYPES = ("grating_coupler_loopback", "ring_resonator")
RULES = ("inside_edge_exclusion",)
ORDERS = ("serpentine_rows", "as_listed")
_SECTIONS = {"map", "wafer", "grid", "home_die", "dies", "sweep", "alignment", "storage", "devices"}

Die = tuple[int, int]  # (column, row) as the prober numbers them


@dataclass(frozen=True)
class Device:
    """One device of the test cell.

    x_um, y_um: its input coupler relative to the die's reference coupler (the fibre array's
    home over every die); devices at the same position share one alignment and one sweep.
    """

    name: str
    type: str
    x_um: float = 0.0
    y_um: float = 0.0
    meter_channel: int | None = None  # optical devices: the output fibre's power meter channel
    terminals: str | None = None  # electrical devices: "front" or "rear" SMU terminals
    #: design loss on the chip between the input coupler and this device's output (dB): the
    #: splitters of the test cell, de-embedded to give the device's own figures
    on_chip_loss_db: float = 0.0
    bias_v: float = 0.0  # photodetector reverse bias (negative) / heater test voltage
    compliance_a: float = 1e-3
    design_wavelength_nm: float | None = None  # ring: the design resonance to report
    min_extinction_db: float = 1.0  # ring: shallowest dip counted as a resonance


@dataclass(frozen=True)
class Sweep:
    start_nm: float
    stop_nm: float
    step_nm: float
    speed_nm_per_s: float
    power_dbm: float
    averaging_time_s: float

    @property
    def points(self) -> int:
        return int((self.stop_nm - self.start_nm) / self.step_nm + 1e-9) + 1


@dataclass(frozen=True)
class Alignment:
    """Spiral search for first light, then gradient (pattern) ascent on the coupled power."""

    wavelength_nm: float
    meter_channel: int
    averaging_time_s: float
    first_light_dbm: float  # a spiral point at least this bright ends the spiral
    spiral_step_um: float
    spiral_radius_um: float
    gradient_step_um: float
    gradient_min_step_um: float
    max_moves: int


@dataclass(frozen=True)
class Storage:
    """Which spectra are kept: every `every_dies`-th die in test order, and every die that does
    not pass; couplers (smooth) decimated by `coupler_decimation`, rings at full resolution."""

    every_dies: int
    failing_dies: bool
    coupler_decimation: int


@dataclass(frozen=True)
class DieMap:
    path: Path
    sha256: str
    product: str
    revision: str
    diameter_mm: float
    edge_exclusion_mm: float
    pitch_x_mm: float
    pitch_y_mm: float
    columns: int
    rows: int
    centre_column: float  # die coordinates of the wafer centre (fractional between dies)
    centre_row: float
    home_die: Die
    dies: tuple[Die, ...]  # in test order
    devices: tuple[Device, ...]
    sweep: Sweep
    alignment: Alignment
    storage: Storage
    max_consecutive_errors: int

    def device(self, type_: str) -> Device | None:
        return next((d for d in self.devices if d.type == type_), None)

    def die_offsets_mm(self, dies: Iterable[Die]) -> tuple[np.ndarray, np.ndarray]:
        """Die centres from the wafer centre in mm (x right, y up; rows count downwards)."""
        grid = np.array(list(dies), dtype=float).reshape(-1, 2)
        return (
            (grid[:, 0] - self.centre_column) * self.pitch_x_mm,
            (self.centre_row - grid[:, 1]) * self.pitch_y_mm,
        )

    def restricted(self, dies: Iterable[Die]) -> DieMap:
        """The same map testing only `dies` (kept in this map's test order): a region, a
        retest list."""
        wanted = {(int(c), int(r)) for c, r in dies}
        unknown = wanted - set(self.dies)
        if unknown:
            raise InputError(self.path, "dies", sorted(unknown)[0], "is not a die of this map")
        return replace(self, dies=tuple(d for d in self.dies if d in wanted))


def die_key(die: Die) -> str:
    """The unit key of a die in the results (`ctx.checkpoint`, `completed_units`)."""
    return f"{die[0]},{die[1]}"


def die_map_path(product: str) -> Path:
    return Path(str(resources.files("sequences") / "wafer_maps" / f"{product}.toml"))


def load_die_map(source: str | Path) -> DieMap:
    """The die map of a product (by name) or from a file."""
    path = Path(source) if str(source).endswith(".toml") else die_map_path(str(source))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file", str(path), "no die map for this product") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, "file", str(path), f"is not valid TOML ({err})") from None
    unknown = set(data) - _SECTIONS
    if unknown:
        raise InputError(path, sorted(unknown)[0], None, "unknown section")
    get = _Reader(path, data)
    grid: dict[str, Any] = {
        "pitch_x_mm": get.number("grid.pitch_x_mm", positive=True),
        "pitch_y_mm": get.number("grid.pitch_y_mm", positive=True),
        "columns": get.integer("grid.columns", low=1),
        "rows": get.integer("grid.rows", low=1),
        "centre_column": get.number("grid.centre_column"),
        "centre_row": get.number("grid.centre_row"),
    }
    diameter = get.number("wafer.diameter_mm", positive=True)
    edge = get.number("wafer.edge_exclusion_mm", low=0.0)
    dies = _dies(get, grid, diameter, edge)
    home = _die(get, "home_die", get.table("home_die"))
    if not (0 <= home[0] < grid["columns"] and 0 <= home[1] < grid["rows"]):
        raise InputError(path, "home_die", home, "is outside the die grid")
    devices = tuple(_device(get, i, spec) for i, spec in enumerate(get.array("devices")))
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise InputError(path, "devices", names, "device names must be unique")
    channels = [d.meter_channel for d in devices if d.meter_channel is not None]
    if len(set(channels)) != len(channels):
        raise InputError(path, "devices", channels, "two devices on one power meter channel")
    sweep = Sweep(
        start_nm=get.number("sweep.start_nm", positive=True),
        stop_nm=get.number("sweep.stop_nm", positive=True),
        step_nm=get.number("sweep.step_nm", positive=True),
        speed_nm_per_s=get.number("sweep.speed_nm_per_s", positive=True),
        power_dbm=get.number("sweep.power_dbm"),
        averaging_time_s=get.number("sweep.averaging_time_s", positive=True),
    )
    if sweep.stop_nm <= sweep.start_nm:
        raise InputError(path, "sweep.stop_nm", sweep.stop_nm, "must be above sweep.start_nm")
    if sweep.averaging_time_s >= sweep.step_nm / sweep.speed_nm_per_s:
        raise InputError(
            path, "sweep.averaging_time_s", sweep.averaging_time_s,
            "must be shorter than one step of the sweep (step_nm / speed_nm_per_s)",
        )  # fmt: skip
    alignment = Alignment(
        wavelength_nm=get.number("alignment.wavelength_nm", positive=True),
        meter_channel=get.integer("alignment.meter_channel", low=1),
        averaging_time_s=get.number("alignment.averaging_time_s", positive=True),
        first_light_dbm=get.number("alignment.first_light_dbm"),
        spiral_step_um=get.number("alignment.spiral_step_um", positive=True),
        spiral_radius_um=get.number("alignment.spiral_radius_um", positive=True),
        gradient_step_um=get.number("alignment.gradient_step_um", positive=True),
        gradient_min_step_um=get.number("alignment.gradient_min_step_um", positive=True),
        max_moves=get.integer("alignment.max_moves", low=1),
    )
    if alignment.meter_channel not in channels:
        raise InputError(
            path, "alignment.meter_channel", alignment.meter_channel, "no device on it"
        )
    storage = Storage(
        every_dies=get.integer("storage.every_dies", low=1),
        failing_dies=get.boolean("storage.failing_dies"),
        coupler_decimation=get.integer("storage.coupler_decimation", low=1),
    )
    return DieMap(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        product=get.text("map.product"),
        revision=get.text("map.revision"),
        diameter_mm=diameter,
        edge_exclusion_mm=edge,
        home_die=home,
        dies=dies,
        devices=devices,
        sweep=sweep,
        alignment=alignment,
        storage=storage,
        max_consecutive_errors=get.integer("dies.max_consecutive_errors", low=1),
        **grid,
    )


def serpentine(dies: Iterable[Die]) -> tuple[Die, ...]:
    """Rows in prober order (row 0 first), every other populated row run backwards, as a prober
    steps to save travel."""
    by_row: dict[int, list[int]] = {}
    for column, row in dies:
        by_row.setdefault(row, []).append(column)
    order: list[Die] = []
    for k, row in enumerate(sorted(by_row)):
        columns = sorted(by_row[row], reverse=k % 2 == 1)
        order += [(c, row) for c in columns]
    return tuple(order)


def _dies(get: _Reader, grid: dict[str, Any], diameter: float, edge: float) -> tuple[Die, ...]:
    spec = get.table("dies")
    rule, listed = spec.get("rule"), spec.get("list")
    if (rule is None) == (listed is None):
        raise InputError(get.path, "dies", sorted(spec), "give either dies.rule or dies.list")
    order = spec.get("order", "serpentine_rows" if rule is not None else "as_listed")
    if order not in ORDERS:
        raise InputError(get.path, "dies.order", order, f"must be one of {ORDERS}")
    if rule is not None:
        if rule not in RULES:
            raise InputError(get.path, "dies.rule", rule, f"must be one of {RULES}")
        columns, rows = np.meshgrid(np.arange(grid["columns"]), np.arange(grid["rows"]))
        x, y = columns.ravel(), rows.ravel()
        excluded = edge_exclusion_mask(
            x, y, grid["pitch_x_mm"], grid["pitch_y_mm"], diameter, edge,
            centre_die_x=grid["centre_column"], centre_die_y=grid["centre_row"],
        )  # fmt: skip
        dies = [(int(c), int(r)) for c, r in zip(x[~excluded], y[~excluded], strict=True)]
    else:
        if not isinstance(listed, list) or not listed:
            raise InputError(get.path, "dies.list", listed, "must be a non-empty list")
        dies = [_die(get, f"dies.list[{i}]", item) for i, item in enumerate(listed)]
        if len(set(dies)) != len(dies):
            raise InputError(get.path, "dies.list", listed, "names a die twice")
    if not dies:
        raise InputError(get.path, "dies", None, "no die is left inside the edge exclusion")
    return serpentine(dies) if order == "serpentine_rows" else tuple(dies)


def _die(get: _Reader, where: str, item: Any) -> Die:
    if isinstance(item, dict):
        item = [item.get("column"), item.get("row")]
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
    ):
        raise InputError(get.path, where, item, "must be [column, row] (integers)")
    return int(item[0]), int(item[1])


def _device(get: _Reader, index: int, spec: Any) -> Device:
    where = f"devices[{index}]"
    if not isinstance(spec, dict):
        raise InputError(get.path, where, spec, "must be a table")
    kind = spec.get("type")
    if kind not in DEVICE_TYPES:
        raise InputError(get.path, f"{where}.type", kind, f"must be one of {DEVICE_TYPES}")
    known = {field for field in Device.__dataclass_fields__}
    unknown = set(spec) - known
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(get.path, f"{where}.{key}", spec[key], "unknown key")
    device = Device(**spec)
    if kind in OPTICAL_TYPES and not isinstance(device.meter_channel, int):
        raise InputError(get.path, f"{where}.meter_channel", device.meter_channel, "is required")
    if kind not in OPTICAL_TYPES and device.terminals not in ("front", "rear"):
        raise InputError(get.path, f"{where}.terminals", device.terminals, "front or rear")
    if kind == "ring_resonator" and device.design_wavelength_nm is None:
        raise InputError(get.path, f"{where}.design_wavelength_nm", None, "is required")
    return device


class _Reader:
    """Typed access to `section.key` values of the map, with errors naming file and field."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, dict):
            raise InputError(self.path, name, value, "missing table")
        return value

    def array(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list) or not value:
            raise InputError(self.path, name, value, "missing array of tables")
        return value

    def _value(self, where: str) -> Any:
        section, key = where.split(".")
        return self.table(section).get(key)

    def number(self, where: str, *, positive: bool = False, low: float | None = None) -> float:
        value = self._value(where)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(self.path, where, value, "must be a number")
        if (positive and not value > 0) or (low is not None and value < low):
            raise InputError(self.path, where, value, "is out of range")
        return float(value)

    def integer(self, where: str, *, low: int) -> int:
        value = self._value(where)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(self.path, where, value, f"must be an integer >= {low}")
        return value

    def text(self, where: str) -> str:
        value = self._value(where)
        if not isinstance(value, str) or not value:
            raise InputError(self.path, where, value, "must be a non-empty string")
        return value

    def boolean(self, where: str) -> bool:
        value = self._value(where)
        if not isinstance(value, bool):
            raise InputError(self.path, where, value, "must be true or false")
        return value
