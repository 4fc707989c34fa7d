"""Swept-wavelength spectra of PIC test structures: grating couplers and all-pass ring resonators.

Owns coupler peak and bandwidths, and ring resonance finding and Lorentzian fits, over stacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import savgol_filter

from station.analysis.errors import AnalysisError

_MIN_POINTS = 16
# Points per FWHM below which a loaded Q is not trusted (see find_resonances).
DEFAULT_MIN_POINTS_PER_FWHM = 5.0
# The baseline is fitted on at most this many points (evenly decimated) to keep it cheap.
_BASELINE_MAX_POINTS = 512
# Noise floor for the baseline exclusion rule, dB: noise-free data must not exclude everything.
_BASELINE_NOISE_FLOOR_DB = 0.01
_BASELINE_EXCLUSION_SIGMA = 3.0


@dataclass(frozen=True, slots=True)
class CouplerPeak:
    """Peak and bandwidths of grating coupler spectra.

    Every field has the stack's leading shape (a numpy scalar for a single spectrum). NaN marks a
    bandwidth whose crossing lies outside the sweep.

    Attributes:
        peak_wavelength_nm: Wavelength of the transmission maximum in nm.
        peak_il_db: Insertion loss at the peak in dB, positive for loss (= -peak transmission).
        bandwidth_1db_nm: Width in nm between the interpolated crossings 1 dB below the peak.
        bandwidth_3db_nm: Width in nm between the interpolated crossings 3 dB below the peak.
    """

    peak_wavelength_nm: np.ndarray
    peak_il_db: np.ndarray
    bandwidth_1db_nm: np.ndarray
    bandwidth_3db_nm: np.ndarray


def coupler_peak(
    wavelength_nm: np.ndarray,
    transmission_db: np.ndarray,
    *,
    peak_fit_db: float = 0.5,
    smoothing_points: int = 21,
) -> CouplerPeak:
    """Peak insertion loss, peak wavelength and 1 dB / 3 dB bandwidths of coupler spectra.

    The peak is the vertex of a least-squares parabola (in dB) through the contiguous points
    within ``peak_fit_db`` of the highest sample (at least that sample and its two neighbours),
    which is exact for a Gaussian (in linear power) coupler response and averages noise; when the
    vertex falls outside those points the highest sample is used. Bandwidths are measured between
    the crossings of peak - 1 dB and peak - 3 dB nearest the highest sample on either side,
    linearly interpolated between samples. All of this runs on the spectra lightly smoothed by a
    Savitzky-Golay filter of order 2 over ``smoothing_points`` samples (exact for a parabola in
    dB): without it, noise makes the crossing nearest the peak come early and the bandwidth read
    narrow by about 2 noise sigma / slope per side.

    Args:
        wavelength_nm: (points,) wavelength axis in nm shared by every spectrum, strictly
            increasing.
        transmission_db: (..., points) transmission in dB, negative for loss (e.g. -4.2 for 4.2 dB
            insertion loss), any leading shape (e.g. dies x devices).
        peak_fit_db: Depth below the highest sample of the points the peak parabola is fitted to.
        smoothing_points: Odd Savitzky-Golay window (order 2); 1 turns smoothing off.

    Returns:
        A CouplerPeak whose fields have the leading shape of ``transmission_db``.

    Raises:
        AnalysisError: On bad shapes, non-finite values or a non-increasing wavelength axis.
    """
    wavelength, flat, lead_shape = _validate_stack(wavelength_nm, transmission_db)
    if not peak_fit_db > 0.0:
        raise AnalysisError(f"peak_fit_db must be > 0, got {peak_fit_db!r}")
    if smoothing_points < 1 or smoothing_points % 2 == 0 or smoothing_points > wavelength.size:
        raise AnalysisError(
            f"smoothing_points must be odd, >= 1 and <= the points, got {smoothing_points!r}"
        )
    if smoothing_points >= 5:
        flat = savgol_filter(flat, smoothing_points, 2, axis=-1)
    n = wavelength.size
    index = np.arange(n)
    top = np.argmax(flat, axis=1)
    top_value = flat[np.arange(flat.shape[0]), top]

    left, right = _crossings(flat, top_value - peak_fit_db, top)
    lo = np.where(np.isnan(left), 0, np.floor(left) + 1)
    hi = np.where(np.isnan(right), n - 1, np.ceil(right) - 1)
    lo = np.minimum(lo, np.maximum(top - 1, 0))
    hi = np.maximum(hi, np.minimum(top + 1, n - 1))
    inside = (index >= lo[:, None]) & (index <= hi[:, None])

    # Quadratic least squares per spectrum in a coordinate u in [-1, 1] centred on the top sample.
    lo_i, hi_i = lo.astype(np.intp), hi.astype(np.intp)
    scale = np.maximum(wavelength[hi_i] - wavelength[top], wavelength[top] - wavelength[lo_i])
    u = (wavelength[None, :] - wavelength[top][:, None]) / scale[:, None]
    weights = inside.astype(float)
    moments = np.stack([np.sum(weights * u**k, axis=1) for k in range(5)], axis=1)
    rhs = np.stack([np.sum(weights * flat * u**k, axis=1) for k in range(3)], axis=1)
    normal = moments[:, [[0, 1, 2], [1, 2, 3], [2, 3, 4]]]
    coef = _batched_solve(normal, rhs)
    c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex_u = -c1 / (2.0 * c2)
    u_lo = (wavelength[lo_i] - wavelength[top]) / scale
    u_hi = (wavelength[hi_i] - wavelength[top]) / scale
    use_fit = (c2 < 0.0) & (vertex_u >= u_lo) & (vertex_u <= u_hi)
    peak_wavelength = np.where(use_fit, wavelength[top] + vertex_u * scale, wavelength[top])
    peak_value = np.where(use_fit, c0 + c1 * vertex_u + c2 * vertex_u**2, top_value)

    widths = []
    for drop_db in (1.0, 3.0):
        left, right = _crossings(flat, peak_value - drop_db, top)
        widths.append(np.interp(right, index, wavelength) - np.interp(left, index, wavelength))

    def shaped(values: np.ndarray) -> np.ndarray:
        return values.reshape(lead_shape)[()]

    return CouplerPeak(
        peak_wavelength_nm=shaped(peak_wavelength),
        peak_il_db=shaped(-peak_value),
        bandwidth_1db_nm=shaped(widths[0]),
        bandwidth_3db_nm=shaped(widths[1]),
    )


def find_resonances(
    wavelength_nm: np.ndarray,
    transmission_db: np.ndarray,
    *,
    min_extinction_db: float = 3.0,
    baseline_order: int = 4,
    baseline_iterations: int = 10,
    fit_half_width_fwhm: float = 2.0,
    fit_points: int = 101,
    fit_iterations: int = 25,
    min_points_per_fwhm: float = DEFAULT_MIN_POINTS_PER_FWHM,
) -> pd.DataFrame:
    """Find and fit the through-port dips of all-pass rings in a stack of spectra.

    Steps, each one batched over the whole stack:

    1. Baseline: a polynomial of ``baseline_order`` in dB (the coupler envelope) fitted by least
       squares, repeatedly excluding points more than 3 sigma (at least 0.03 dB) below the fit,
       where sigma is the RMS residual of the kept points. Fitted on at most 512 evenly decimated
       points, evaluated on all. The spectrum divided by it is the normalised transmission.
    2. Detection: a dip is a contiguous run of points more than ``min_extinction_db / 2`` below
       the baseline whose deepest point is at least ``min_extinction_db`` below it (a prominence
       over the envelope). One resonance per run; split doublets closer than that merge. Dips cut
       by either end of the sweep are not reported.
    3. Fit: T(lambda) = B (1 - D / (1 + ((lambda - lambda0) / gamma)^2)) in linear normalised
       transmission, by Levenberg-Marquardt over every dip at once, on up to ``fit_points``
       evenly strided samples within ``fit_half_width_fwhm`` FWHM of the dip (and within half the
       distance to the neighbouring dips). The start is taken from the run width at the detection
       level; a second pass re-centres the window on the fitted FWHM.

    Sampling: the loaded Q is only meaningful with enough points across the resonance. A 4-
    parameter Lorentzian fit needs at least ``min_points_per_fwhm`` (default 5) samples per FWHM;
    rows below that are flagged ``undersampled`` (their Q, FWHM and extinction are still the fit's
    numbers but are not to be trusted: e.g. Q = 5e4 at 1310 nm is 26 pm wide, so a 10 pm step
    gives 2.6 points per FWHM; sweep at <= 5 pm, better <= 2 pm, for such rings).

    Args:
        wavelength_nm: (points,) wavelength axis in nm shared by every spectrum, strictly
            increasing.
        transmission_db: (..., points) through-port transmission in dB (negative for loss), any
            leading shape (e.g. dies x devices).
        min_extinction_db: Smallest dip depth below the baseline, dB, that counts as a resonance.
        baseline_order: Polynomial order of the envelope in dB.
        baseline_iterations: Most exclusion passes for the baseline.
        fit_half_width_fwhm: Half-width of the fit window in FWHMs.
        fit_points: Most samples used per dip fit (windows wider than this are strided).
        fit_iterations: Levenberg-Marquardt iterations per pass.
        min_points_per_fwhm: Samples per FWHM below which a row is flagged ``undersampled``.

    Returns:
        DataFrame, one row per resonance sorted by spectrum then wavelength, columns:
        ``spectrum`` (flat C-order index into the leading shape), ``index_0`` ... (position in
        the leading shape, one column per leading axis), ``wavelength_nm`` (fitted centre),
        ``q_loaded`` (wavelength / FWHM), ``fwhm_nm``, ``extinction_db`` (fitted depth below the
        local baseline, positive; ill-conditioned for deep dips that are under-sampled or whose
        samples carry wavelength jitter, since 1 - D then tends to 0),
        ``extinction_sample_db`` (deepest sample below the baseline: robust, but reads low when
        no sample falls on the centre), ``fsr_nm`` (distance to the next resonance in the same
        spectrum, NaN for the last; with several rings or mode families in one spectrum this is
        the spacing to the next dip, not a single ring's FSR), ``points_per_fwhm``,
        ``undersampled`` (bool), ``fit_rms`` (RMS fit residual in normalised linear
        transmission) and ``fit_ok`` (bool: finite, 0 < D <= 1, centre inside the window).

    Raises:
        AnalysisError: On bad shapes, non-finite values, a non-increasing wavelength axis or
            parameters out of range.
    """
    wavelength, flat, lead_shape = _validate_stack(wavelength_nm, transmission_db)
    if not min_extinction_db > 0.0:
        raise AnalysisError(f"min_extinction_db must be > 0, got {min_extinction_db!r}")
    if not 0 <= baseline_order <= 8:
        raise AnalysisError(f"baseline_order must be in 0..8, got {baseline_order!r}")
    if fit_points < 9:
        raise AnalysisError(f"fit_points must be >= 9, got {fit_points!r}")
    if not fit_half_width_fwhm > 0.5:
        raise AnalysisError(f"fit_half_width_fwhm must be > 0.5, got {fit_half_width_fwhm!r}")

    relative_db = _relative_to_baseline_db(wavelength, flat, baseline_order, baseline_iterations)
    spectrum, centre, half_width_pts, deepest_db = _detect_dips(relative_db, min_extinction_db)

    n = wavelength.size
    # Half of the distance to the neighbouring dips of the same spectrum caps every window.
    same_next = np.zeros(centre.size, dtype=bool)  # next row is a dip of the same spectrum
    same_next[:-1] = spectrum[1:] == spectrum[:-1]
    same_prev = np.roll(same_next, 1)
    gap_next = np.where(same_next, np.roll(centre, -1) - centre, n)
    gap_prev = np.where(same_prev, centre - np.roll(centre, 1), n)
    neighbour_cap = np.maximum(np.minimum(gap_next, gap_prev) / 2.0, 2.0)

    step_nm = _local_step(wavelength, centre)

    def fit_pass(start: _DipFit | None, gamma_pts: np.ndarray, tolerance: float) -> _DipFit:
        gamma_pts = np.where(np.isfinite(gamma_pts) & (gamma_pts > 0.0), gamma_pts, 1.0)
        reach = np.minimum(np.maximum(fit_half_width_fwhm * 2.0 * gamma_pts, 3.0), neighbour_cap)
        return _fit_dips(
            wavelength,
            relative_db,
            spectrum,
            centre,
            reach,
            fit_points,
            fit_iterations,
            tolerance,
            start=start,
            start_gamma_pts=gamma_pts,
        )

    # A rough pass sizes every window from the fitted width, then the real fit runs on it.
    rough = fit_pass(None, half_width_pts, 1e-3)
    fit = fit_pass(rough, rough.gamma_nm / step_nm, 1e-8)

    centre_nm = fit.centre_nm
    fwhm_nm = 2.0 * fit.gamma_nm
    depth = fit.depth
    fit_ok = (
        np.isfinite(centre_nm) & np.isfinite(fwhm_nm) & fit.inside & (depth > 0.0) & (depth <= 1.0)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        q_loaded = centre_nm / fwhm_nm
        extinction_db = -10.0 * np.log10(np.clip(1.0 - depth, 1e-12, None))
        points_per_fwhm = fwhm_nm / step_nm
    fsr_nm = np.where(same_next, np.roll(centre_nm, -1) - centre_nm, np.nan)

    columns: dict[str, np.ndarray] = {"spectrum": spectrum}
    if lead_shape:
        for axis, position in enumerate(np.unravel_index(spectrum, lead_shape)):
            columns[f"index_{axis}"] = position
    columns |= {
        "wavelength_nm": centre_nm,
        "q_loaded": q_loaded,
        "fwhm_nm": fwhm_nm,
        "extinction_db": extinction_db,
        "extinction_sample_db": -deepest_db,
        "fsr_nm": fsr_nm,
        "points_per_fwhm": points_per_fwhm,
        "undersampled": ~(points_per_fwhm >= min_points_per_fwhm),
        "fit_rms": fit.rms,
        "fit_ok": fit_ok,
    }
    return pd.DataFrame(columns)


def _validate_stack(
    wavelength_nm: np.ndarray, transmission_db: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Check the shared axis and the stack; return (wavelength, (spectra, points), lead shape)."""
    wavelength = np.asarray(wavelength_nm, dtype=float)
    stack = np.asarray(transmission_db, dtype=float)
    if wavelength.ndim != 1:
        raise AnalysisError(f"wavelength_nm must be 1-D, got shape {wavelength.shape}")
    if wavelength.size < _MIN_POINTS:
        raise AnalysisError(
            f"wavelength_nm has {wavelength.size} points; need at least {_MIN_POINTS}"
        )
    if stack.ndim < 1 or stack.shape[-1] != wavelength.size:
        raise AnalysisError(
            f"transmission_db has shape {stack.shape}; its last axis must match "
            f"wavelength_nm ({wavelength.size} points)"
        )
    if not np.all(np.isfinite(wavelength)) or not np.all(np.diff(wavelength) > 0.0):
        raise AnalysisError("wavelength_nm must be finite and strictly increasing")
    if stack.size == 0:
        raise AnalysisError(f"transmission_db has no spectra (shape {stack.shape})")
    if not np.all(np.isfinite(stack)):
        raise AnalysisError("transmission_db contains NaN or infinite values")
    lead_shape = stack.shape[:-1]
    return wavelength, stack.reshape(-1, wavelength.size), lead_shape


def _batched_solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve (k, m, m) x = (k, m) with a tiny ridge so singular systems give finite numbers."""
    size = matrix.shape[-1]
    ridge = 1e-12 * np.trace(matrix, axis1=1, axis2=2)[:, None, None] + 1e-300
    return np.linalg.solve(matrix + ridge * np.eye(size), rhs[..., None])[..., 0]


def _crossings(
    values: np.ndarray, level: np.ndarray, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional indices where each row falls below ``level`` nearest ``centre`` on either side.

    Args:
        values: (rows, points).
        level: (rows,) level to cross, below ``values[row, centre]``.
        centre: (rows,) integer index to search outwards from.

    Returns:
        (left, right) fractional indices (rows,), NaN where the row never falls below the level.
    """
    rows, n = values.shape
    index = np.arange(n, dtype=np.int32)
    below = values < level[:, None]
    before = below & (index < centre[:, None])
    after = below & (index > centre[:, None])
    left_i = np.where(before, index, -1).max(axis=1)
    right_i = np.where(after, index, n).min(axis=1)
    row = np.arange(rows)
    li = np.clip(left_i, 0, n - 2)
    ri = np.clip(right_i, 1, n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = li + (level - values[row, li]) / (values[row, li + 1] - values[row, li])
        right = ri - 1 + (values[row, ri - 1] - level) / (values[row, ri - 1] - values[row, ri])
    return np.where(left_i >= 0, left, np.nan), np.where(right_i < n, right, np.nan)


def _relative_to_baseline_db(
    wavelength: np.ndarray, flat: np.ndarray, order: int, iterations: int
) -> np.ndarray:
    """``flat`` (spectra, points) in dB minus its polynomial envelope fitted with dips excluded."""
    n = wavelength.size
    stride = max(1, -(-n // _BASELINE_MAX_POINTS))
    span = wavelength[-1] - wavelength[0]
    u_all = 2.0 * (wavelength - wavelength[0]) / span - 1.0
    u = u_all[::stride]
    y = flat[:, ::stride]
    powers = u[:, None] ** np.arange(2 * order + 1)
    basis = powers[:, : order + 1]
    hankel = np.add.outer(np.arange(order + 1), np.arange(order + 1))
    keep = np.ones(y.shape, dtype=bool)
    for _ in range(iterations):
        weights = keep.astype(float)
        coef = _batched_solve((weights @ powers)[:, hankel], (weights * y) @ basis)
        residual = y - coef @ basis.T
        sigma = np.sqrt(np.sum(weights * residual**2, axis=1) / np.sum(weights, axis=1))
        limit = _BASELINE_EXCLUSION_SIGMA * np.maximum(sigma, _BASELINE_NOISE_FLOOR_DB)
        new_keep = residual > -limit[:, None]
        # Never exclude so much that the polynomial is underdetermined.
        new_keep |= np.sum(new_keep, axis=1, keepdims=True) < 2 * (order + 1)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    baseline = coef @ (u_all[:, None] ** np.arange(order + 1)).T
    return np.subtract(flat, baseline, out=baseline)


def _detect_dips(
    relative_db: np.ndarray, min_extinction_db: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dips of every row, (dips,) each: spectrum, centre index, half width (points), deepest dB.

    A run of points below -min_extinction_db / 2 whose minimum is below -min_extinction_db is a
    dip. The half width gamma follows from the run width w at that level for a Lorentzian of
    depth D: w = 2 gamma sqrt(D / d - 1), with d the linear depth of the level.
    """
    n = relative_db.shape[1]
    level_db = -0.5 * min_extinction_db
    values = relative_db.ravel()
    below = relative_db < level_db
    # With the first and last column above the level, no run crosses from one row to the next.
    below[:, 0] = False
    below[:, -1] = False
    flat_below = below.ravel()
    starts = np.flatnonzero(flat_below[1:] & ~flat_below[:-1]) + 1
    stops = np.flatnonzero(flat_below[:-1] & ~flat_below[1:]) + 1  # first point back above
    if starts.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0), np.empty(0)
    run_min = np.minimum.reduceat(values, np.column_stack([starts, stops]).ravel())[::2]
    lengths = stops - starts
    run_id = np.repeat(np.arange(starts.size), lengths)
    members = np.arange(lengths.sum()) + np.repeat(
        starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths
    )
    at_min = np.flatnonzero(values[members] == run_min[run_id])
    _, first = np.unique(run_id[at_min], return_index=True)
    centre_flat = members[at_min[first]]

    touches_edge = ((starts % n == 1) & (values[starts - 1] < level_db)) | (
        (stops % n == n - 1) & (values[stops] < level_db)
    )
    keep = (run_min <= -min_extinction_db) & ~touches_edge
    starts, stops, run_min, centre_flat = (
        starts[keep],
        stops[keep],
        run_min[keep],
        centre_flat[keep],
    )
    left = starts - 1 + (values[starts - 1] - level_db) / (values[starts - 1] - values[starts])
    right = stops - 1 + (level_db - values[stops - 1]) / (values[stops] - values[stops - 1])
    depth = 1.0 - 10.0 ** (run_min / 10.0)
    level_depth = 1.0 - 10.0 ** (level_db / 10.0)
    half_width = (right - left) / (2.0 * np.sqrt(np.maximum(depth / level_depth - 1.0, 1e-3)))
    return centre_flat // n, centre_flat % n, np.maximum(half_width, 0.5), run_min


def _local_step(wavelength: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sample spacing in nm at each index (forward difference, backward at the last point)."""
    i = np.clip(index, 0, wavelength.size - 2)
    return wavelength[i + 1] - wavelength[i]


@dataclass(frozen=True, slots=True)
class _DipFit:
    """Lorentzian fit of every dip, (dips,) each: centre, half width, depth, baseline factor."""

    centre_nm: np.ndarray
    gamma_nm: np.ndarray
    depth: np.ndarray
    base: np.ndarray
    rms: np.ndarray
    inside: np.ndarray


def _fit_dips(
    wavelength: np.ndarray,
    relative_db: np.ndarray,
    spectrum: np.ndarray,
    centre: np.ndarray,
    reach_pts: np.ndarray,
    fit_points: int,
    iterations: int,
    tolerance: float,
    *,
    start: _DipFit | None,
    start_gamma_pts: np.ndarray,
) -> _DipFit:
    """Batched Levenberg-Marquardt fit of T = B (1 - D / (1 + ((x - x0) / gamma)^2)).

    Each dip is fitted on up to ``fit_points`` samples strided evenly over +-``reach_pts`` around
    its centre sample, in a scaled coordinate u = (lambda - lambda_centre) / gamma_start so the
    parameters (u0, g, D, B) are of order one. Dips stop iterating once every parameter step is
    below ``tolerance``; the solver works on the shrinking set of dips still moving.
    """
    n = wavelength.size
    half = (fit_points - 1) // 2
    stride = np.maximum(1, np.ceil(reach_pts / half)).astype(np.int64)
    offsets = np.arange(-half, half + 1)[None, :] * stride[:, None]
    column = centre[:, None] + offsets
    valid = (np.abs(offsets) <= reach_pts[:, None]) & (column >= 0) & (column < n)
    column = np.clip(column, 0, n - 1)
    weights = valid.astype(float)
    y = np.exp(relative_db[spectrum[:, None], column] * (np.log(10.0) / 10.0))

    x0 = wavelength[centre]
    gamma0 = start_gamma_pts * _local_step(wavelength, centre)
    u = (wavelength[column] - x0[:, None]) / gamma0[:, None]
    if start is None:
        params = np.column_stack(
            [np.zeros(centre.size), np.ones(centre.size), 1.0 - y[:, half], np.ones(centre.size)]
        )
    else:
        params = np.column_stack(
            [(start.centre_nm - x0) / gamma0, start.gamma_nm / gamma0, start.depth, start.base]
        )
    params = np.where(np.isfinite(params), params, [0.0, 1.0, 0.5, 1.0])
    damping = np.full(centre.size, 1e-3 if start is None else 1e-5)
    active = np.arange(centre.size)
    for _ in range(iterations):
        if active.size == 0:
            break
        p, uu, yy, ww = params[active], u[active], y[active], weights[active]
        residual, jac = _lorentz(p, uu, yy, with_jacobian=True)
        cost = np.sum(ww * residual**2, axis=1)
        jw = [j * ww for j in jac]
        normal = np.empty((active.size, 4, 4))
        for i in range(4):
            for k in range(i, 4):
                normal[:, i, k] = normal[:, k, i] = np.sum(jw[i] * jac[k], axis=1)
        gradient = np.column_stack([np.sum(j * residual, axis=1) for j in jw])
        diagonal = np.einsum("kii->ki", normal)
        used = damping[active]
        lm = normal + used[:, None, None] * (diagonal[:, :, None] * np.eye(4))
        step = _batched_solve(lm, gradient)
        trial = p + step
        trial_residual, _ = _lorentz(trial, uu, yy, with_jacobian=False)
        trial_cost = np.sum(ww * trial_residual**2, axis=1)
        better = np.isfinite(trial_cost) & (trial_cost <= cost) & (trial[:, 1] > 0.0)
        params[active] = np.where(better[:, None], trial, p)
        damping[active] = np.where(better, used / 10.0, used * 10.0)
        small = np.all(np.abs(step) <= tolerance, axis=1)
        # A Gauss-Newton-sized step (light damping) below tolerance is convergence, even when
        # rounding keeps it from lowering the cost; heavy damping only shrinks the step.
        done = (small & (used <= 1.0)) | (damping[active] > 1e8)
        active = active[~done]

    residual, _ = _lorentz(params, u, y, with_jacobian=False)
    rms = np.sqrt(np.sum(weights * residual**2, axis=1) / np.maximum(weights.sum(axis=1), 1.0))
    u_reach = np.max(np.where(valid, np.abs(u), 0.0), axis=1)
    return _DipFit(
        centre_nm=x0 + params[:, 0] * gamma0,
        gamma_nm=np.abs(params[:, 1]) * gamma0,
        depth=params[:, 2],
        base=params[:, 3],
        rms=rms,
        inside=np.abs(params[:, 0]) <= u_reach,
    )


def _lorentz(
    params: np.ndarray, u: np.ndarray, y: np.ndarray, *, with_jacobian: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Residual y - f of f = B (1 - D / (1 + ((u - u0) / g)^2)) and, if asked, df/d(u0, g, D, B)."""
    u0, g, depth, base = (params[:, i : i + 1] for i in range(4))
    z = (u - u0) / g
    lorentz = 1.0 / (1.0 + z * z)
    shape = 1.0 - depth * lorentz
    residual = y - base * shape
    if not with_jacobian:
        return residual, []
    common = (2.0 / g) * base * depth * lorentz * lorentz
    return residual, [-common * z, -common * z * z, -base * lorentz, shape]
