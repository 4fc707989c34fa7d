"""External laser source (ELS) qualification on the ELS bench: per laser, an LIV sweep under a
current limit no higher than the part's maximum, threshold, slope, kinks, power at the operating
current, wavelength and SMSR, and the laser's bins; every laser off on every exit path.

`station run els --product ELS8-DR --serial ELS0001`. The laser diode controller drives one laser
at a time through the fixture relay, which follows the optical switch: a laser is switched only
with the output off. Its light reaches the power meter through the switch and a 90/10 tap (the
station's calibrated `els_to_power_meter` loss per laser) and the OSA through the tap's 10 % leg.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from drivers.interfaces import (
    LaserDiodeController,
    OpticalSpectrumAnalyzer,
    OpticalSwitch,
    PowerMeter,
)
from station.analysis.errors import AnalysisError
from station.analysis.liv import LivResult, analyze_liv
from station.analysis.yields import assign_bins
from station.engine import StepContext
from station.errors import InputError
from station.sequence import Sequence, step

_CWDM4_NM = (1271.0, 1291.0, 1311.0, 1331.0)
METER_CHANNEL = 1
METER_PATH = "els_to_power_meter"  # station config: loss from laser k's fibre (index k - 1)
#: the part's absolute maximum drive current: the limit of this measurement in the limits file
RATING = "drive_current_limit"
LASER_MEASURES = (
    "liv_threshold_current",
    "liv_slope_efficiency",
    "liv_kink_count",
    "liv_series_resistance",
    "power_at_operating",
    "peak_wavelength",
    "wavelength_offset",
    "smsr",
)


@dataclass(frozen=True)
class Conditions:
    """How an ELS product is tested (test conditions, not limits: those judge the results)."""

    grid_nm: tuple[float, ...]  # each laser's nominal wavelength; the count is the laser count
    tec_c: float = 25.0
    tec_tolerance_c: float = 0.1
    sweep_stop_a: float = 0.25  # the operating current plus 25 %, below thermal roll-over
    sweep_step_a: float = 0.002  # narrow enough to see a mode-hop kink 1-3 mA wide
    operating_current_a: float = 0.2
    #: the linear fit for threshold and slope: just above threshold, where self-heating is small
    threshold_fit_a: tuple[float, float] = (0.03, 0.08)
    #: differential resistance over the operating range (the diode's n kT/qI is small there)
    resistance_fit_a: tuple[float, float] = (0.15, 0.25)
    #: kinks: dL/dI against the local slope of overlapping segments (self-heating bends the
    #: whole curve by 40 % or more; within 30 mA it bends by a few percent, a mode hop by 100 %)
    kink_segment_a: float = 0.03
    kink_hop_a: float = 0.01
    kink_from_a: float = 0.04
    kink_relative_threshold: float = 0.4
    kink_smoothing_points: int = 5
    meter_averaging_s: float = 0.01
    #: the OSA window: the grid wavelength plus the junction's warming at the operating current
    #: (about 25 K x 0.09 nm/K), +-6 nm for the spread of parts; DFB side modes sit ~1 nm away
    osa_offset_nm: float = 2.0
    osa_span_nm: float = 12.0
    osa_resolution_nm: float = 0.02
    osa_points: int = 2401


CONDITIONS = {
    "ELS8-DR": Conditions(grid_nm=(1311.0,) * 8),
    "ELS8-FR4": Conditions(grid_nm=_CWDM4_NM * 2),
}


def conditions_for(ctx: StepContext) -> Conditions:
    conditions = CONDITIONS.get(ctx.product.name)
    if conditions is None:
        raise InputError("--product", "product", ctx.product.name, "no ELS test conditions")
    return conditions


def current_limit_a(ctx: StepContext, conditions: Conditions) -> float:
    """The controller's current limit: just above the sweep, never above the part's maximum."""
    rating = ctx.limits.limits[RATING].high
    if rating is None:
        raise InputError(ctx.limits.path, f"limits.{RATING}.high", None, "the part's maximum")
    wanted = max(conditions.sweep_stop_a, conditions.operating_current_a) + 0.01
    return min(wanted, rating)


@step(roles=("laser_driver",), measures=("tec_temperature", RATING), timeout_s=300.0)
def prepare_fixture(ctx: StepContext) -> None:
    """Laser output off, current limit from the part's rating, TEC on and settled."""
    conditions = conditions_for(ctx)
    driver = ctx.instrument("laser_driver", LaserDiodeController)
    driver.set_output(False)
    limit_a = current_limit_a(ctx, conditions)
    driver.set_current_a(0.0)
    driver.set_current_limit_a(limit_a)
    if conditions.sweep_stop_a > limit_a:
        raise InputError(
            ctx.limits.path, f"limits.{RATING}.high", limit_a, "is below the LIV sweep's stop"
        )
    ctx.measure(RATING, limit_a, unit="A")
    driver.set_tec_temperature_c(conditions.tec_c)
    driver.set_tec_output(True)
    settled_s = driver.wait_tec_settled(conditions.tec_tolerance_c, timeout_s=120.0)
    ctx.attribute("tec_settle_s", f"{settled_s:.1f}")
    ctx.measure("tec_temperature", driver.tec_temperature_c(), unit="degC")


@step(
    roles=("laser_driver", "optical_switch", "power_meter", "osa"),
    measures=LASER_MEASURES,
    timeout_s=900.0,
)
def characterise_lasers(ctx: StepContext) -> None:
    """Every laser in turn: LIV, then the spectrum at the operating current; each laser is
    committed with its bins as it completes (a resumed run skips it)."""
    conditions = conditions_for(ctx)
    driver = ctx.instrument("laser_driver", LaserDiodeController)
    switch = ctx.instrument("optical_switch", OpticalSwitch)
    meter = ctx.instrument("power_meter", PowerMeter)
    osa = ctx.instrument("osa", OpticalSpectrumAnalyzer)
    meter.set_averaging_time_s(METER_CHANNEL, conditions.meter_averaging_s)
    currents = np.round(
        np.arange(
            0.0, conditions.sweep_stop_a + conditions.sweep_step_a / 2, conditions.sweep_step_a
        ),
        6,
    )
    for lane, grid_nm in enumerate(conditions.grid_nm, start=1):
        unit = f"laser {lane}"
        if unit in ctx.completed_units:
            continue
        driver.set_output(False)  # the relay follows the switch: never switch a lit laser
        switch.route(lane)
        meter.set_wavelength_nm(METER_CHANNEL, grid_nm)
        driver.set_current_a(0.0)
        driver.set_output(True)
        try:
            power_w, voltage_v = _liv(ctx, driver, meter, currents)
            driver.set_current_a(conditions.operating_current_a)
            osa.configure(
                grid_nm + conditions.osa_offset_nm,
                conditions.osa_span_nm,
                conditions.osa_resolution_nm,
                conditions.osa_points,
            )
            spectrum = osa.sweep()
            peak_nm, smsr_db = osa.peak_wavelength_nm(), osa.smsr_db()
        except BaseException:
            with contextlib.suppress(Exception):  # the engine's safe state tries again
                driver.set_output(False)
            raise
        driver.set_output(False)
        driver.set_current_a(0.0)
        loss_db = ctx.path_loss_db(METER_PATH, lane - 1)
        outcomes = _record_laser(
            ctx, conditions, lane, currents, power_w, voltage_v, loss_db, peak_nm, grid_nm, smsr_db
        )
        ctx.artefact(
            "osa_spectrum",
            {"wavelength_nm": spectrum.wavelength_nm, "power_dbm": spectrum.power_dbm},
            lane=lane,
            kind="osa",
            resolution_nm=f"{spectrum.resolution_nm:g}",
            measurements="peak_wavelength,wavelength_offset,smsr",
        )
        wide = {name: [outcomes.get(name)] for name in LASER_MEASURES}
        binned = assign_bins(wide, ctx.limits.bins).iloc[0] if ctx.limits.bins else None
        ctx.checkpoint(
            unit,
            hard_bin=None if binned is None else _int(binned["hard_bin"]),
            soft_bin=None if binned is None else _int(binned["soft_bin"]),
            bin_name=None if binned is None else str(binned["bin_name"]),
        )


def _liv(
    ctx: StepContext, driver: LaserDiodeController, meter: PowerMeter, currents: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Power at the meter and 4-wire voltage at every current (the driver waits until each
    current has settled)."""
    power = np.empty(currents.size)
    voltage = np.empty(currents.size)
    for i, current in enumerate(currents):
        ctx.check_cancelled()
        driver.set_current_a(float(current))
        power[i] = meter.read_power_w(METER_CHANNEL)
        voltage[i] = driver.laser_voltage_v()
    return power, voltage


def _record_laser(
    ctx: StepContext,
    conditions: Conditions,
    lane: int,
    currents: np.ndarray,
    meter_w: np.ndarray,
    voltage_v: np.ndarray,
    loss_db: float,
    peak_nm: float,
    grid_nm: float,
    smsr_db: float,
) -> dict[str, str]:
    """Analyse one laser's LIV (station.analysis.liv) and record everything; returns each
    measurement's outcome."""
    fibre_w = meter_w * 10 ** (loss_db / 10)
    recorded: dict[str, str] = {}

    def measure(
        name: str,
        value: float,
        unit: str,
        raw_value: float | None = None,
        correction_db: float | None = None,
    ) -> None:
        outcome = ctx.measure(
            name, value, unit=unit, lane=lane, raw_value=raw_value, correction_db=correction_db
        )
        recorded[name] = outcome.value

    try:
        liv = analyze_liv(
            currents, fibre_w, voltage_v,
            operating_current_a=conditions.operating_current_a,
            fit_window_current_a=conditions.threshold_fit_a,
        )  # fmt: skip
        resistance = analyze_liv(
            currents, fibre_w, voltage_v, fit_window_current_a=conditions.resistance_fit_a
        ).series_resistance_ohm
        kinks = kink_currents_a(currents, fibre_w, conditions)
    except AnalysisError as err:  # no light at all, a dead laser: the LIV says nothing more
        ctx.attribute(f"laser_{lane}_liv", str(err))
        liv, resistance, kinks = None, None, np.zeros(0)
    if liv is not None:
        measure("liv_threshold_current", liv.threshold_a, "A")
        measure("liv_slope_efficiency", liv.slope_w_per_a, "W/A")
        measure("liv_kink_count", len(kinks), "")
        measure("liv_series_resistance", math.nan if resistance is None else resistance, "ohm")
    operating_w = float(np.interp(conditions.operating_current_a, currents, fibre_w))
    measure(
        "power_at_operating",
        _dbm(operating_w),
        "dBm",
        raw_value=_dbm(operating_w * 10 ** (-loss_db / 10)),
        correction_db=loss_db,
    )
    measure("peak_wavelength", peak_nm, "nm")
    measure("wavelength_offset", peak_nm - grid_nm, "nm")
    measure("smsr", smsr_db, "dB")
    ctx.artefact(
        "liv",
        _liv_arrays(currents, fibre_w, voltage_v, liv),
        lane=lane,
        kind="liv",
        reference_plane="laser output fibre (the station's path loss removed)",
        threshold_a="" if liv is None else f"{liv.threshold_a:.6g}",
        threshold_method="linear_fit",
        kink_currents_a=",".join(f"{k:.4f}" for k in kinks),
        measurements="liv_threshold_current,liv_slope_efficiency,liv_kink_count,"
        "liv_series_resistance,power_at_operating",
    )
    return recorded


def kink_currents_a(
    current_a: np.ndarray, power_w: np.ndarray, conditions: Conditions
) -> np.ndarray:
    """Kinks: analyze_liv on overlapping segments, each against its own fitted slope (a drop
    steeper than a segment's rise is a kink at its steepest fall); one current per kink."""
    found: list[float] = []
    tolerance = 0.25 * conditions.sweep_step_a
    last_start = current_a[-1] - conditions.kink_segment_a + tolerance
    for start in np.arange(conditions.kink_from_a, last_start, conditions.kink_hop_a):
        stop = start + conditions.kink_segment_a
        inside = (current_a >= start - tolerance) & (current_a <= stop + tolerance)
        try:
            local = analyze_liv(
                current_a[inside], power_w[inside],
                fit_window_current_a=(start, stop),
                smoothing_points=conditions.kink_smoothing_points,
                kink_relative_threshold=conditions.kink_relative_threshold,
            )  # fmt: skip
        except AnalysisError:
            segment = current_a[inside]
            found.append(float(segment[np.argmin(np.diff(power_w[inside]))]))
            continue
        found += [float(k) for k in local.kink_currents_a]
    merged: list[float] = []
    for kink in sorted(found):  # segments overlap: one kink is seen by two or three of them
        if not merged or kink - merged[-1] > conditions.kink_segment_a / 2:
            merged.append(kink)
    return np.array(merged)


def _liv_arrays(
    current_a: np.ndarray, power_w: np.ndarray, voltage_v: np.ndarray, liv: LivResult | None
) -> dict[str, np.ndarray]:
    arrays = {"current_a": current_a, "power_w": power_w, "voltage_v": voltage_v}
    if liv is not None:
        fit_current = np.array([liv.threshold_a, liv.fit_window_a[1]])
        arrays["fit_current_a"] = fit_current
        arrays["fit_power_w"] = liv.slope_w_per_a * (fit_current - liv.threshold_a)
    return arrays


def _dbm(power_w: float) -> float:
    return 10.0 * math.log10(max(power_w, 1e-12) / 1e-3)


def _int(value: object) -> int | None:
    """A bin number from assign_bins (nullable: NA when no rule matched)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


SEQUENCE = Sequence(
    name="els",
    description="External laser source: per-laser LIV, power, wavelength, SMSR and bins",
    products=tuple(CONDITIONS),
    steps=(prepare_fixture, characterise_lasers),
    bench="els",
)
