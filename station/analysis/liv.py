"""Laser L-I(-V) sweep analysis for external laser sources and laser chips.

Owns threshold (two methods), slope efficiency, kinks, rollover and series resistance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.signal import savgol_filter

from station.analysis.errors import AnalysisError

ThresholdMethod = Literal["linear_fit", "second_derivative"]

_MIN_POINTS = 10
_MIN_FIT_POINTS = 3
_STEP_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class LivResult:
    """Figures of merit of one L-I(-V) sweep.

    Attributes:
        threshold_a: Threshold current in A by ``threshold_method``.
        threshold_method: "linear_fit" or "second_derivative": which method gave ``threshold_a``.
        threshold_linear_fit_a: Current where the line fitted over the fit window reaches zero
            power.
        threshold_second_derivative_a: Current of the maximum of the smoothed d2L/dI2 on the rising
            part of the curve, refined to sub-step by a parabola through the three top samples.
        slope_w_per_a: Slope efficiency in W/A of the line fitted over the fit window.
        fit_window_a: (first, last) current in A of the points used by the linear fits.
        fit_rms_residual_w: RMS residual of the L-I line fit in W.
        series_resistance_ohm: dV/dI in ohm from a line fitted to V(I) over the fit window (above
            threshold), or None without ``voltage_v``.
        kink_currents_a: (kinks,) currents in A where the smoothed dL/dI deviates from the fitted
            slope by more than ``kink_relative_threshold``; one current (largest deviation) per
            contiguous run of deviating points (runs less than ``smoothing_points`` apart count
            as one). Empty when there is no kink.
        rollover_current_a: Current in A of the maximum of the smoothed power when the curve rolls
            over inside the sweep, else None.
        max_power_w: Largest measured power in W.
        operating_current_a: The operating current asked for, or None.
        power_at_operating_w: Measured power linearly interpolated at ``operating_current_a``, or
            None.
    """

    threshold_a: float
    threshold_method: ThresholdMethod
    threshold_linear_fit_a: float
    threshold_second_derivative_a: float
    slope_w_per_a: float
    fit_window_a: tuple[float, float]
    fit_rms_residual_w: float
    series_resistance_ohm: float | None
    kink_currents_a: np.ndarray
    rollover_current_a: float | None
    max_power_w: float
    operating_current_a: float | None
    power_at_operating_w: float | None


def analyze_liv(
    current_a: np.ndarray,
    power_w: np.ndarray,
    voltage_v: np.ndarray | None = None,
    *,
    operating_current_a: float | None = None,
    threshold_method: ThresholdMethod = "linear_fit",
    fit_window_power_fraction: tuple[float, float] = (0.2, 0.8),
    fit_window_current_a: tuple[float, float] | None = None,
    smoothing_points: int = 11,
    kink_relative_threshold: float = 0.15,
    rollover_min_drop: float = 0.02,
) -> LivResult:
    """Analyse one L-I(-V) sweep.

    Threshold by linear fit: a least-squares line P = slope (I - I_th) over the fit window (points
    on the rising part with power between the two fractions of the maximum power), extrapolated to
    zero power. Threshold by second derivative: the current where the smoothed d2P/dI2 peaks,
    searched over the rising part of the curve (up to the power maximum). Both are computed and
    both are returned; the two differ by 10-30 % on real lasers (spontaneous emission below
    threshold lowers the linear-fit value), so record ``threshold_method`` with the number.

    Kinks: the smoothed dL/dI is compared with the fitted slope from the start of the fit window
    to the end of the sweep, leaving out ``smoothing_points // 2`` points at either end of the
    sweep, where the smoothed derivative is an extrapolation. When the curve rolls over, the search
    stops at the power maximum and the run of deviating points that leads into it is thermal
    roll-off (reported as ``rollover_current_a``), not a kink. A kink inside the fit window also
    biases the fitted slope and threshold (by the power it removes); use ``fit_window_current_a``
    to fit below it.

    Rollover: the smoothed power has its maximum before the last point and the last point lies more
    than ``rollover_min_drop`` (relative) below that maximum.

    Light smoothing (for dL/dI, d2L/dI2 and the rollover) is a Savitzky-Golay filter of order 2
    over ``smoothing_points`` samples; the fits use the measured points. The current step must be
    uniform within 5 % (the mean step is used for the derivatives).

    Args:
        current_a: (points,) drive current in A, strictly increasing, uniform step.
        power_w: (points,) optical power in W.
        voltage_v: (points,) forward voltage in V, or None.
        operating_current_a: Current in A at which to report the power, inside the sweep.
        threshold_method: Which threshold goes into ``threshold_a``.
        fit_window_power_fraction: (low, high) fractions of the maximum power bounding the fit
            window, 0 <= low < high <= 1. Used unless ``fit_window_current_a`` is given.
        fit_window_current_a: (first, last) current in A of the fit window, overriding the power
            fractions (e.g. a fixed range above threshold from the part's specification).
        smoothing_points: Odd Savitzky-Golay window length (order 2) for the derivatives.
        kink_relative_threshold: Relative deviation |dL/dI - slope| / slope that marks a kink.
        rollover_min_drop: Relative drop of the last point below the maximum that marks rollover.

    Returns:
        The figures of merit as a LivResult.

    Raises:
        AnalysisError: On bad shapes, non-finite values, a non-uniform or non-increasing current
            axis, too few points, no light, or parameters out of range.
    """
    current, power, voltage = _validate(current_a, power_w, voltage_v, smoothing_points)
    if threshold_method not in ("linear_fit", "second_derivative"):
        raise AnalysisError(
            "threshold_method must be 'linear_fit' or 'second_derivative', "
            f"got {threshold_method!r}"
        )
    low_frac, high_frac = fit_window_power_fraction
    if not 0.0 <= low_frac < high_frac <= 1.0:
        raise AnalysisError(
            f"fit_window_power_fraction must satisfy 0 <= low < high <= 1, "
            f"got {fit_window_power_fraction!r}"
        )
    if not kink_relative_threshold > 0.0:
        raise AnalysisError(f"kink_relative_threshold must be > 0, got {kink_relative_threshold!r}")

    step_a = (current[-1] - current[0]) / (current.size - 1)
    smooth_power = savgol_filter(power, smoothing_points, 2)
    d1 = savgol_filter(power, smoothing_points, 2, deriv=1, delta=step_a)
    d2 = savgol_filter(power, smoothing_points, 2, deriv=2, delta=step_a)

    max_power_w = float(power.max())
    if max_power_w <= 0.0:
        raise AnalysisError(f"power_w has no positive value (max {max_power_w!r}): no light")
    peak_index = int(np.argmax(smooth_power))
    rolls_over = (
        peak_index < current.size - 1
        and smooth_power[-1] < (1.0 - rollover_min_drop) * smooth_power[peak_index]
    )
    rollover_current_a = (
        _parabolic_peak(current, smooth_power, peak_index, step_a) if rolls_over else None
    )

    rising = np.arange(current.size) <= int(np.argmax(power))
    if fit_window_current_a is None:
        window = rising & (power >= low_frac * max_power_w) & (power <= high_frac * max_power_w)
        window_text = f"fit_window_power_fraction {fit_window_power_fraction!r}"
    else:
        window = (current >= fit_window_current_a[0]) & (current <= fit_window_current_a[1])
        window_text = f"fit_window_current_a {fit_window_current_a!r}"
    if np.count_nonzero(window) < _MIN_FIT_POINTS:
        raise AnalysisError(
            f"only {np.count_nonzero(window)} points lie in the fit window ({window_text}); "
            f"need {_MIN_FIT_POINTS}"
        )
    window_index = np.flatnonzero(window)
    slope, intercept = np.polyfit(current[window], power[window], 1)
    if not slope > 0.0:
        raise AnalysisError(f"fitted slope above threshold is {slope!r} W/A, not positive")
    residual = power[window] - (slope * current[window] + intercept)
    threshold_linear_fit_a = float(-intercept / slope)

    d2_rising = np.where(rising, d2, -np.inf)
    threshold_second_derivative_a = _parabolic_peak(
        current, d2_rising, int(np.argmax(d2_rising)), step_a
    )

    half = smoothing_points // 2
    search_stop = peak_index if rolls_over else current.size - 1 - half
    kink_currents_a = _kinks(
        current,
        np.abs(d1 - slope) / slope,
        max(int(window_index[0]), half),
        search_stop,
        kink_relative_threshold,
        drop_last_run=rolls_over,
        merge_gap=smoothing_points,
    )

    series_resistance_ohm = None
    if voltage is not None:
        series_resistance_ohm = float(np.polyfit(current[window], voltage[window], 1)[0])

    power_at_operating_w = None
    if operating_current_a is not None:
        if not current[0] <= operating_current_a <= current[-1]:
            raise AnalysisError(
                f"operating_current_a {operating_current_a!r} A is outside the sweep "
                f"[{current[0]!r}, {current[-1]!r}] A"
            )
        power_at_operating_w = float(np.interp(operating_current_a, current, power))

    threshold_a = (
        threshold_linear_fit_a
        if threshold_method == "linear_fit"
        else threshold_second_derivative_a
    )
    return LivResult(
        threshold_a=threshold_a,
        threshold_method=threshold_method,
        threshold_linear_fit_a=threshold_linear_fit_a,
        threshold_second_derivative_a=threshold_second_derivative_a,
        slope_w_per_a=float(slope),
        fit_window_a=(float(current[window_index[0]]), float(current[window_index[-1]])),
        fit_rms_residual_w=float(np.sqrt(np.mean(residual**2))),
        series_resistance_ohm=series_resistance_ohm,
        kink_currents_a=kink_currents_a,
        rollover_current_a=rollover_current_a,
        max_power_w=max_power_w,
        operating_current_a=None if operating_current_a is None else float(operating_current_a),
        power_at_operating_w=power_at_operating_w,
    )


def _validate(
    current_a: np.ndarray,
    power_w: np.ndarray,
    voltage_v: np.ndarray | None,
    smoothing_points: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check shapes, finiteness and the current axis; return float arrays."""
    current = np.asarray(current_a, dtype=float)
    power = np.asarray(power_w, dtype=float)
    named = [("current_a", current), ("power_w", power)]
    voltage = None
    if voltage_v is not None:
        voltage = np.asarray(voltage_v, dtype=float)
        named.append(("voltage_v", voltage))
    for name, array in named:
        if array.ndim != 1:
            raise AnalysisError(f"{name} must be 1-D, got shape {array.shape}")
        if array.shape != current.shape:
            raise AnalysisError(
                f"{name} has shape {array.shape}, current_a has shape {current.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise AnalysisError(f"{name} contains NaN or infinite values")
    if current.size < max(_MIN_POINTS, smoothing_points):
        raise AnalysisError(
            f"current_a has {current.size} points; need at least "
            f"{max(_MIN_POINTS, smoothing_points)}"
        )
    if smoothing_points < 5 or smoothing_points % 2 == 0:
        raise AnalysisError(f"smoothing_points must be odd and >= 5, got {smoothing_points!r}")
    steps = np.diff(current)
    if not np.all(steps > 0.0):
        raise AnalysisError("current_a must be strictly increasing")
    mean_step = (current[-1] - current[0]) / (current.size - 1)
    worst = float(np.max(np.abs(steps - mean_step)) / mean_step)
    if worst > _STEP_TOLERANCE:
        raise AnalysisError(
            f"current_a step is not uniform: deviates by {worst:.1%} of the mean step "
            f"(tolerance {_STEP_TOLERANCE:.0%})"
        )
    return current, power, voltage


def _parabolic_peak(x: np.ndarray, y: np.ndarray, index: int, step: float) -> float:
    """x of the vertex of the parabola through the samples around ``index`` (uniform x)."""
    if index == 0 or index == x.size - 1 or not np.all(np.isfinite(y[index - 1 : index + 2])):
        return float(x[index])
    left, centre, right = y[index - 1], y[index], y[index + 1]
    curvature = left - 2.0 * centre + right
    if curvature >= 0.0:
        return float(x[index])
    return float(x[index] + 0.5 * step * (left - right) / curvature)


def _close_gaps(flagged: np.ndarray, max_gap: int) -> np.ndarray:
    """``flagged`` with every gap of at most ``max_gap`` points between two runs filled in."""
    index = np.flatnonzero(flagged)
    if index.size < 2:
        return flagged
    closed = flagged.copy()
    gap_after = np.flatnonzero((np.diff(index) > 1) & (np.diff(index) <= max_gap + 1))
    fill = np.zeros(flagged.size + 1, dtype=np.int64)
    np.add.at(fill, index[gap_after] + 1, 1)
    np.add.at(fill, index[gap_after + 1], -1)
    closed |= np.cumsum(fill[:-1]) > 0
    return closed


def _run_maxima(x: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """x at the largest ``score`` of every contiguous run of ``flagged`` points, (runs,)."""
    edges = np.diff(np.concatenate(([0], flagged.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    if starts.size == 0:
        return np.empty(0)
    lengths = np.flatnonzero(edges == -1) - starts
    members = np.flatnonzero(flagged)
    run_id = np.repeat(np.arange(starts.size), lengths)
    run_max = np.maximum.reduceat(score[members], np.r_[0, np.cumsum(lengths)[:-1]])
    at_max = np.flatnonzero(score[members] == run_max[run_id])
    _, first = np.unique(run_id[at_max], return_index=True)
    return x[members[at_max[first]]]


def _kinks(
    current: np.ndarray,
    deviation: np.ndarray,
    start: int,
    stop: int,
    threshold: float,
    *,
    drop_last_run: bool,
    merge_gap: int,
) -> np.ndarray:
    """Kink currents: runs of ``deviation > threshold`` inside index range [start, stop]."""
    index = np.arange(current.size)
    flagged = (index >= start) & (index <= stop) & (deviation > threshold)
    if drop_last_run and flagged[stop]:
        # The run that reaches the power maximum is the thermal roll-off, not a kink.
        calm = np.flatnonzero(~flagged[: stop + 1])
        flagged[(calm[-1] + 1 if calm.size else 0) : stop + 1] = False
    # Runs closer than the smoothing window are one feature split by noise: close the gaps.
    return _run_maxima(current, deviation, _close_gaps(flagged, merge_gap))
