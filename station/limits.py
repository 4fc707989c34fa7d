"""Product limits files: versioned TOML keyed by measurement name, validated on load, and the
judgement of each measurement against them. Steps record; only this module decides PASS or FAIL.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from station.analysis.errors import AnalysisError
from station.analysis.yields import BinRule
from station.errors import InputError
from station.outcome import Outcome

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LIMIT_KEYS = {
    "low",
    "high",
    "expected",
    "allowed",
    "unit",
    "description",
    "spec",
    "per_lane",
    "marginal",
}
_PRODUCT_KEYS = {
    "name",
    "revision",
    "description",
    "serial_pattern",
    "part_number",
    "lanes",
    "wavelength_nm",
    "baud_rate_gbd",
    "provisional",
}
DUT_SERIAL = "${dut_serial}"
_PASS, _FAIL = (Outcome.PASS, False), (Outcome.FAIL, False)


@dataclass(frozen=True)
class Limit:
    name: str
    unit: str
    low: float | None = None
    high: float | None = None
    expected: str | int | None = None  # exact value; "${dut_serial}" is the scanned serial
    allowed: tuple[str | int, ...] | None = None
    per_lane: bool = False
    marginal: float | None = None  # a PASS this close to a limit is flagged as marginal
    description: str = ""
    spec: str = ""

    def judge(self, value: Any, dut_serial: str) -> tuple[Outcome, bool]:
        """(outcome, marginal) of `value`. ERROR when the value is not a usable measurement."""
        if self.expected is not None or self.allowed is not None:
            if isinstance(value, float) and math.isnan(value):
                return Outcome.ERROR, False
            expected = dut_serial if self.expected == DUT_SERIAL else self.expected
            ok = value == expected if self.expected is not None else value in (self.allowed or ())
            return (Outcome.PASS if ok else Outcome.FAIL), False
        kind = type(value)
        if kind is not float and (kind is bool or not isinstance(value, int | float)):
            return Outcome.ERROR, False
        if not math.isfinite(value):
            return Outcome.ERROR, False
        low, high = self.low, self.high
        if (low is not None and value < low) or (high is not None and value > high):
            return _FAIL
        band = self.marginal
        if band is None:
            return _PASS
        marginal = (low is not None and value - low < band) or (
            high is not None and high - value < band
        )
        return Outcome.PASS, marginal

    def describe(self) -> str:
        if self.expected is not None:
            return f"= {self.expected}"
        if self.allowed is not None:
            return "in {" + ", ".join(str(a) for a in self.allowed) + "}"
        if self.low is not None and self.high is not None:
            return f"{self.low:g} .. {self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        return f"<= {self.high:g}"


@dataclass(frozen=True)
class Product:
    name: str
    revision: str
    serial_pattern: re.Pattern[str]
    part_number: str
    lanes: int
    wavelength_nm: float
    baud_rate_gbd: float
    provisional: bool
    description: str


@dataclass(frozen=True)
class LimitsFile:
    path: Path
    sha256: str
    product: Product
    limits: dict[str, Limit]
    #: the ordered bin table (`[[bins]]`, optional): the first rule that matches bins a part
    bins: tuple[BinRule, ...] = ()

    def check_serial(self, serial: str) -> None:
        if not self.product.serial_pattern.fullmatch(serial):
            raise InputError(
                "--serial",
                "serial",
                serial,
                f"does not match {self.product.name}'s pattern "
                f"{self.product.serial_pattern.pattern!r} ({self.path.name})",
            )

    def check_against(self, declared: set[str]) -> None:
        """Every declared measurement has a limit and every limit is measured by some step."""
        missing = sorted(declared - set(self.limits))
        if missing:
            raise InputError(
                self.path,
                f"limits.{missing[0]}",
                None,
                "a step records this measurement but the file gives it no limit",
            )
        unused = sorted(set(self.limits) - declared)
        if unused:
            raise InputError(
                self.path,
                f"limits.{unused[0]}",
                None,
                "no step of the sequence records this measurement",
            )


def limits_path(product: str) -> Path:
    """The limits file shipped for `product`."""
    return Path(str(resources.files("sequences") / "limits" / f"{product}.toml"))


def shipped_products() -> list[str]:
    folder = resources.files("sequences") / "limits"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_limits(path: str | Path) -> LimitsFile:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file", str(path), "does not exist") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, "file", str(path), f"is not valid TOML ({err})") from None
    unknown = set(data) - {"product", "limits", "bins"}
    if unknown:
        raise InputError(path, sorted(unknown)[0], None, "unknown section")
    product = _product(path, data.get("product"))
    table = data.get("limits")
    if not isinstance(table, dict) or not table:
        raise InputError(path, "limits", table, "missing or empty table")
    limits = {name: _limit(path, name, spec) for name, spec in table.items()}
    bins = _bins(path, data.get("bins", []), limits)
    return LimitsFile(path, hashlib.sha256(raw).hexdigest(), product, limits, bins)


def _bins(path: Path, spec: Any, limits: dict[str, Limit]) -> tuple[BinRule, ...]:
    """The ordered bin table: `[[bins]]` tables of hard_bin, soft_bin, name, when, measurements."""
    if not isinstance(spec, list):
        raise InputError(path, "bins", spec, "must be an array of tables ([[bins]])")
    rules = []
    for index, rule in enumerate(spec):
        where = f"bins[{index}]"
        if not isinstance(rule, dict):
            raise InputError(path, where, rule, "must be a table")
        try:
            rules.append(BinRule(**rule))
        except (AnalysisError, TypeError) as err:
            raise InputError(path, where, rule, str(err)) from None
        unknown = [name for name in rules[-1].measurements if name not in limits]
        if unknown:
            raise InputError(path, f"{where}.measurements", unknown[0], "has no limit")
    return tuple(rules)


def _product(path: Path, spec: Any) -> Product:
    if not isinstance(spec, dict):
        raise InputError(path, "product", spec, "missing table")
    unknown = set(spec) - _PRODUCT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"product.{key}", spec[key], "unknown key")

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = spec.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(path, f"product.{key}", value, f"must be {_kind_name(kind)}")
        return value

    pattern_text = need("serial_pattern", str)
    try:
        pattern = re.compile(pattern_text)
    except re.error as err:
        raise InputError(
            path, "product.serial_pattern", pattern_text, f"bad regex ({err})"
        ) from None
    lanes = need("lanes", int)
    if not 1 <= lanes <= 16:
        raise InputError(path, "product.lanes", lanes, "must be 1..16")
    return Product(
        name=need("name", str),
        revision=need("revision", str),
        serial_pattern=pattern,
        part_number=need("part_number", str),
        lanes=lanes,
        wavelength_nm=float(need("wavelength_nm", (int, float))),
        baud_rate_gbd=float(need("baud_rate_gbd", (int, float))),
        provisional=bool(spec.get("provisional", False)),
        description=str(spec.get("description", "")),
    )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "int": "an integer", "float": "a number"}[k.__name__] for k in kinds
    )


def _limit(path: Path, name: str, spec: Any) -> Limit:
    where = f"limits.{name}"
    if not NAME.match(name):
        raise InputError(path, where, name, "measurement names are lower_snake_case")
    if not isinstance(spec, dict):
        raise InputError(path, where, spec, "must be a table")
    unknown = set(spec) - _LIMIT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"{where}.{key}", spec[key], "unknown key")
    if "unit" not in spec or not isinstance(spec["unit"], str):
        raise InputError(
            path,
            f"{where}.unit",
            spec.get("unit"),
            'missing unit (use "" for a dimensionless value)',
        )
    low, high = spec.get("low"), spec.get("high")
    for key, value in (("low", low), ("high", high), ("marginal", spec.get("marginal"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(path, f"{where}.{key}", value, "must be a number")
    expected, allowed = spec.get("expected"), spec.get("allowed")
    kinds = sum(x is not None for x in ((low if low is not None else high), expected, allowed))
    if kinds != 1:
        raise InputError(
            path,
            where,
            sorted(k for k in ("low", "high", "expected", "allowed") if k in spec),
            "give low and/or high, or expected, or allowed",
        )
    if low is not None and high is not None and low > high:
        raise InputError(path, f"{where}.low", low, f"is above high = {high}")
    if allowed is not None and (not isinstance(allowed, list) or not allowed):
        raise InputError(path, f"{where}.allowed", allowed, "must be a non-empty list")
    per_lane = spec.get("per_lane", False)
    if not isinstance(per_lane, bool):
        raise InputError(path, f"{where}.per_lane", per_lane, "must be true or false")
    marginal = spec.get("marginal")
    if marginal is not None and ((low is None and high is None) or marginal <= 0):
        raise InputError(path, f"{where}.marginal", marginal, "needs low/high and must be > 0")
    return Limit(
        name=name,
        unit=spec["unit"],
        low=float(low) if low is not None else None,
        high=float(high) if high is not None else None,
        expected=expected,
        allowed=tuple(allowed) if allowed is not None else None,
        per_lane=per_lane,
        marginal=float(marginal) if marginal is not None else None,
        description=str(spec.get("description", "")),
        spec=str(spec.get("spec", "")),
    )
