"""Product limits files: versioned TOML keyed by measurement name, validated on load, and the
judgement of each measurement against them. Steps record; only this module decides PASS or FAIL.

Three limit sets per measurement: the SPEC limits (`low`/`high`, the standard's or datasheet's),
optional CUSTOMER limits (`customer_low`/`customer_high`), and the PRODUCTION limits the engine
judges with, derived from the other two by a guard band (ISO 14253-1 simple acceptance; ASME
B89.7.3.1 guard banding):

    production_low  = max(spec_low,  customer_low)  + g
    production_high = min(spec_high, customer_high) - g,      g = k * u

where u is the measurement's standard uncertainty (`uncertainty`, in the limit's unit: from the
uncertainty budget or a gauge R&R study's repeatability) and k the coverage factor
(`[release] guard_band_k`, default 2, so that g is the expanded uncertainty U at about 95 %).
A part measured inside the production limits is then inside the spec with at least that
confidence. A measurement without an uncertainty has no guard band (production = spec).

Every file carries a `[release]` table (version, author, approver, reason, effective date): a file
without an approver, approved by its own author, or not yet effective is unapproved, and only a
characterisation run with a recorded override may use it (`LimitsFile.unapproved_reason`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
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
    "uncertainty",
    "customer_low",
    "customer_high",
}
_RELEASE_KEYS = {"version", "author", "approver", "reason", "effective", "guard_band_k"}
_GRR_KEYS = {"key_measurements", "accept_pct", "reject_pct"}
DEFAULT_GUARD_BAND_K = 2.0
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
    #: the sets the production limits (`low`, `high`) derive from; see the module docstring
    spec_low: float | None = None
    spec_high: float | None = None
    customer_low: float | None = None
    customer_high: float | None = None
    uncertainty: float | None = None  # standard uncertainty u of the measurement, in `unit`
    guard_band: float = 0.0  # g = k * u, taken off each side

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
class Release:
    """Who changed the limits, who approved them, why, and from when they hold (`[release]`)."""

    version: str
    author: str
    approver: str
    reason: str
    effective: dt.date | None
    guard_band_k: float = DEFAULT_GUARD_BAND_K


@dataclass(frozen=True)
class GrrPlan:
    """The gauge R&R acceptance of this limits version (`[grr]`): the key measurements must
    have %GRR of tolerance below `accept_pct` for the version to be released; at or above
    `reject_pct` the measurement system is unacceptable (AIAG MSA: 10 % and 30 %)."""

    key_measurements: tuple[str, ...]
    accept_pct: float = 10.0
    reject_pct: float = 30.0

    def verdict(self, pct_of_tolerance: float) -> str:
        """accept, conditional or reject; "unknown" when the figure is not a number."""
        if not math.isfinite(pct_of_tolerance):
            return "unknown"
        if pct_of_tolerance < self.accept_pct:
            return "accept"
        return "conditional" if pct_of_tolerance < self.reject_pct else "reject"


@dataclass(frozen=True)
class LimitsFile:
    path: Path
    sha256: str
    product: Product
    limits: dict[str, Limit]
    #: the ordered bin table (`[[bins]]`, optional): the first rule that matches bins a part
    bins: tuple[BinRule, ...] = ()
    release: Release | None = None
    grr: GrrPlan | None = None
    #: golden-unit files (`[offsets]`): this file's measurement -> the product measurement a
    #: station offset taken from it corrects (station_tx_power_offset -> tx_average_power)
    offsets: dict[str, str] = field(default_factory=dict)

    def release_problem(self, today: dt.date) -> tuple[str, object, str] | None:
        """(field, value, problem) that keeps these limits from judging production, or None."""
        release = self.release
        if release is None:
            return "release", None, "no [release] table (version, author, approver, effective)"
        where = f"release {release.version}"
        if not release.approver:
            return "release.approver", "", f"{where} is not approved"
        if release.approver == release.author:
            return "release.approver", release.approver, f"{where} is approved by its own author"
        if release.effective is None:
            return "release.effective", None, f"{where} has no effective date"
        if release.effective > today:
            return "release.effective", release.effective, f"{where} is not yet in effect"
        return None

    def unapproved_reason(self, today: dt.date) -> str | None:
        """Why these limits may not judge production, in one line, or None when they may."""
        problem = self.release_problem(today)
        return None if problem is None else f"{self.path.name}: {problem[2]}"

    def check_release(self, mode: str, override: str | None, today: dt.date) -> str | None:
        """Refuse unapproved limits (InputError naming file, field and value): a production run
        never uses them, a characterisation run only with an override reason, which the caller
        records with the run. Returns why the limits are unapproved, or None when they are not."""
        problem = self.release_problem(today)
        if problem is None:
            return None
        field_name, value, text = problem
        if mode == "production":
            raise InputError(self.path, field_name, value, f"{text}: production runs refuse it")
        if override is None or not override.strip():
            raise InputError(
                self.path,
                field_name,
                value,
                f"{text}: a characterisation run needs --limits-override REASON (recorded)",
            )
        return f"{self.path.name}: {text}"

    @property
    def version(self) -> str:
        """The release version, or the product revision of a file without a release table."""
        return self.release.version if self.release else self.product.revision

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
    unknown = set(data) - {"product", "limits", "bins", "release", "grr", "offsets"}
    if unknown:
        raise InputError(path, sorted(unknown)[0], None, "unknown section")
    product = _product(path, data.get("product"))
    release = _release(path, data["release"]) if "release" in data else None
    k = release.guard_band_k if release else DEFAULT_GUARD_BAND_K
    table = data.get("limits")
    if not isinstance(table, dict) or not table:
        raise InputError(path, "limits", table, "missing or empty table")
    limits = {name: _limit(path, name, spec, k) for name, spec in table.items()}
    bins = _bins(path, data.get("bins", []), limits)
    grr = _grr(path, data["grr"], limits) if "grr" in data else None
    offsets = _offsets(path, data.get("offsets", {}), limits)
    return LimitsFile(
        path, hashlib.sha256(raw).hexdigest(), product, limits, bins, release, grr, offsets
    )


def _text(path: Path, table: str, spec: dict[str, Any], key: str, *, empty: bool = False) -> str:
    value = spec.get(key, "" if empty else None)
    if not isinstance(value, str) or not (value.strip() or empty):
        raise InputError(path, f"{table}.{key}", value, "must be a non-empty string")
    return value.strip()


def _release(path: Path, spec: Any) -> Release:
    """`[release]`: the approver may be empty (a draft awaiting approval), nothing else."""
    if not isinstance(spec, dict):
        raise InputError(path, "release", spec, "must be a table")
    unknown = set(spec) - _RELEASE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"release.{key}", spec[key], "unknown key")
    effective = spec.get("effective")
    if effective is not None and (
        not isinstance(effective, dt.date) or isinstance(effective, dt.datetime)
    ):
        raise InputError(path, "release.effective", effective, "must be a TOML date (YYYY-MM-DD)")
    k = spec.get("guard_band_k", DEFAULT_GUARD_BAND_K)
    if isinstance(k, bool) or not isinstance(k, int | float) or not 0 <= k <= 6:
        raise InputError(path, "release.guard_band_k", k, "must be a number from 0 to 6")
    return Release(
        version=_text(path, "release", spec, "version"),
        author=_text(path, "release", spec, "author"),
        approver=_text(path, "release", spec, "approver", empty=True),
        reason=_text(path, "release", spec, "reason"),
        effective=effective,
        guard_band_k=float(k),
    )


def _grr(path: Path, spec: Any, limits: dict[str, Limit]) -> GrrPlan:
    if not isinstance(spec, dict):
        raise InputError(path, "grr", spec, "must be a table")
    unknown = set(spec) - _GRR_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(path, f"grr.{key}", spec[key], "unknown key")
    keys = spec.get("key_measurements")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise InputError(path, "grr.key_measurements", keys, "must be a list of measurements")
    for name in keys:
        limit = limits.get(name)
        if limit is None or limit.spec_low is None or limit.spec_high is None:
            raise InputError(
                path, "grr.key_measurements", name, "needs a limit with low and high (a tolerance)"
            )
    accept, reject = spec.get("accept_pct", 10.0), spec.get("reject_pct", 30.0)
    for key, value in (("accept_pct", accept), ("reject_pct", reject)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
            raise InputError(path, f"grr.{key}", value, "must be a percentage in (0, 100]")
    if accept > reject:
        raise InputError(path, "grr.accept_pct", accept, f"is above reject_pct = {reject}")
    return GrrPlan(tuple(keys), float(accept), float(reject))


def _offsets(path: Path, spec: Any, limits: dict[str, Limit]) -> dict[str, str]:
    if not isinstance(spec, dict):
        raise InputError(path, "offsets", spec, "must be a table")
    for name, target in spec.items():
        limit = limits.get(name)
        if limit is None or limit.unit != "dB" or not limit.per_lane:
            raise InputError(path, f"offsets.{name}", target, "needs a per-lane limit in dB")
        if not isinstance(target, str) or not NAME.match(target):
            raise InputError(path, f"offsets.{name}", target, "must name a measurement")
    return dict(spec)


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


def _limit(path: Path, name: str, spec: Any, k: float = DEFAULT_GUARD_BAND_K) -> Limit:
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
    numbers = ("low", "high", "marginal", "uncertainty", "customer_low", "customer_high")
    for key in numbers:
        value = spec.get(key)
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
    production_low, production_high, guard_band = _production(path, where, spec, k)
    return Limit(
        name=name,
        unit=spec["unit"],
        low=production_low,
        high=production_high,
        expected=expected,
        allowed=tuple(allowed) if allowed is not None else None,
        per_lane=per_lane,
        marginal=float(marginal) if marginal is not None else None,
        description=str(spec.get("description", "")),
        spec=str(spec.get("spec", "")),
        spec_low=float(low) if low is not None else None,
        spec_high=float(high) if high is not None else None,
        customer_low=_number(spec.get("customer_low")),
        customer_high=_number(spec.get("customer_high")),
        uncertainty=_number(spec.get("uncertainty")),
        guard_band=guard_band,
    )


def _number(value: int | float | None) -> float | None:
    return float(value) if value is not None else None


def _production(
    path: Path, where: str, spec: dict[str, Any], k: float
) -> tuple[float | None, float | None, float]:
    """(low, high, guard band) of the production set: the spec and customer limits
    intersected, then tightened by g = k * u on each side (see the module docstring)."""
    low, high = _number(spec.get("low")), _number(spec.get("high"))
    customer_low, customer_high = (
        _number(spec.get("customer_low")),
        _number(spec.get("customer_high")),
    )
    u = _number(spec.get("uncertainty"))
    if (customer_low is not None or customer_high is not None or u is not None) and (
        low is None and high is None
    ):
        raise InputError(path, where, sorted(spec), "customer limits and uncertainty need low/high")
    if customer_low is not None:
        if low is None:
            raise InputError(path, f"{where}.customer_low", customer_low, "needs a spec low")
        low = max(low, customer_low)
    if customer_high is not None:
        if high is None:
            raise InputError(path, f"{where}.customer_high", customer_high, "needs a spec high")
        high = min(high, customer_high)
    if u is not None and u < 0:
        raise InputError(path, f"{where}.uncertainty", u, "must be >= 0")
    guard_band = k * u if u is not None else 0.0
    low = low + guard_band if low is not None else None
    high = high - guard_band if high is not None else None
    if low is not None and high is not None and low > high:
        raise InputError(
            path,
            f"{where}.uncertainty",
            u,
            f"a guard band of {guard_band:g} leaves no production window ({low:g} > {high:g})",
        )
    return low, high, guard_band
