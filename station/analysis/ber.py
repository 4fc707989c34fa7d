"""Bit-error-ratio statistics: Q and BER, PAM4 and histogram SER, confidence, sensitivity, bathtub.

Owns the conversions and counting statistics of DOMAIN.md section 3 and the sensitivity fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from station.analysis.errors import AnalysisError

Modulation = Literal["pam4", "nrz"]

_PAM4_SER_FACTOR = 1.5  # Gray-coded PAM4: 2 * (M - 1) / M symbol errors per Q tail
_PAM4_BITS_PER_SYMBOL = 2  # BER ~ SER / 2 with Gray coding
_FLOOR_TOLERANCE_Q = 0.1  # a point this far (in Q) below the line of the points before it is floor


@dataclass(frozen=True, slots=True)
class BerInterval:
    """Two-sided confidence interval on a measured BER (arrays when the inputs are arrays).

    Attributes:
        ber: Point estimate errors / bits.
        lower: Lower bound (0 when there are no errors).
        upper: Upper bound.
        confidence: Two-sided confidence level, e.g. 0.95.
    """

    ber: NDArray[np.float64] | float
    lower: NDArray[np.float64] | float
    upper: NDArray[np.float64] | float
    confidence: float


@dataclass(frozen=True, slots=True)
class ExcludedPoint:
    """A waterfall point left out of the sensitivity fit.

    Attributes:
        index: Index in the input arrays.
        oma_dbm: Received OMA of the point in dBm.
        ber: Its BER.
        reason: Why it was left out.
    """

    index: int
    oma_dbm: float
    ber: float
    reason: str


@dataclass(frozen=True, slots=True)
class SensitivityResult:
    """Receiver sensitivity interpolated from a BER-vs-OMA waterfall.

    Attributes:
        oma_dbm: Received OMA at the BER target in dBm.
        oma_mw: The same in mW.
        ber_target: BER target used.
        q_target: Q of the target (per ``modulation``).
        slope_per_mw: Fitted dQ/dOMA in 1/mW.
        intercept_q: Fitted Q at zero OMA.
        r_squared: Coefficient of determination of the fit.
        n_points_used: Points in the fit.
        used: Mask of the points used, shape (n_points,).
        excluded: Points left out and why.
        modulation: "pam4" or "nrz".
    """

    oma_dbm: float
    oma_mw: float
    ber_target: float
    q_target: float
    slope_per_mw: float
    intercept_q: float
    r_squared: float
    n_points_used: int
    used: NDArray[np.bool_]
    excluded: tuple[ExcludedPoint, ...]
    modulation: str


def q_to_ber(q: ArrayLike) -> NDArray[np.float64] | float:
    """NRZ BER of a Q factor: BER = 0.5 erfc(Q / sqrt 2) = Q-function of Q.

    Args:
        q: Q factor(s), any shape.

    Returns:
        BER, same shape (a float for a scalar input).
    """
    return _out(special.ndtr(-_finite("q", q)))


def ber_to_q(ber: ArrayLike) -> NDArray[np.float64] | float:
    """Q factor of an NRZ BER, the inverse of :func:`q_to_ber` (e.g. 1e-12 -> 7.0345).

    Args:
        ber: BER value(s) in (0, 1), any shape.

    Returns:
        Q, same shape (a float for a scalar input).
    """
    b = _finite("ber", ber)
    _in_open_interval("ber", b, 0.0, 1.0)
    return _out(-special.ndtri(b))


def pam4_ser(oma: ArrayLike, sigma: ArrayLike) -> NDArray[np.float64] | float:
    """SER of an ideal Gray-coded PAM4 eye with Gaussian noise: 1.5 Q(OMA / (6 sigma)).

    Args:
        oma: Outer OMA, any linear unit, any shape (broadcast with ``sigma``).
        sigma: Noise rms, same unit, > 0.

    Returns:
        Symbol error ratio, broadcast shape.
    """
    o, s = _finite("oma", oma), _finite("sigma", sigma)
    if np.any(s <= 0):
        raise AnalysisError(f"sigma must be positive, got {sigma!r}")
    return _out(_PAM4_SER_FACTOR * special.ndtr(-o / (6.0 * s)))


def pam4_ser_to_q(ser: ArrayLike) -> NDArray[np.float64] | float:
    """Inverse of :func:`pam4_ser`: the Q = OMA / (6 sigma) giving a PAM4 SER.

    Args:
        ser: Symbol error ratio(s) in (0, 0.75), any shape.

    Returns:
        Q, same shape; sigma = OMA / (6 Q).
    """
    s = _finite("ser", ser)
    _in_open_interval("ser", s, 0.0, 0.5 * _PAM4_SER_FACTOR)
    return _out(-special.ndtri(s / _PAM4_SER_FACTOR))


def q_of_ber(ber: ArrayLike, modulation: Modulation = "pam4") -> NDArray[np.float64] | float:
    """Q of a BER: NRZ inverts BER = Q(q); PAM4 inverts SER = 1.5 Q(q) with SER = 2 BER.

    Args:
        ber: BER value(s), any shape; in (0, 1) for NRZ, (0, 0.375) for PAM4.
        modulation: "pam4" (Gray coded) or "nrz".

    Returns:
        Q, same shape.
    """
    if modulation == "nrz":
        return ber_to_q(ber)
    if modulation == "pam4":
        return pam4_ser_to_q(_PAM4_BITS_PER_SYMBOL * _finite("ber", ber))
    raise AnalysisError(f"modulation must be 'pam4' or 'nrz', got {modulation!r}")


def histogram_ser(
    samples: ArrayLike, thresholds: ArrayLike, sigma: float, weights: ArrayLike | None = None
) -> float:
    """SER of one vertical histogram with Gaussian noise ``sigma`` added (exact, unbinned).

    Args:
        samples: Histogram samples, shape (n,), any unit.
        thresholds: Three ascending thresholds, same unit.
        sigma: Noise rms, same unit, > 0.
        weights: Sample weights, shape (n,); None weighs all samples equally.

    Returns:
        Weighted mean over the samples of the probability of leaving their decision region.
    """
    y = _finite("samples", samples)
    t = _finite("thresholds", thresholds)
    if y.ndim != 1 or t.shape != (3,) or np.any(np.diff(t) <= 0):
        raise AnalysisError("samples must be 1-D and thresholds 3 ascending values")
    if not (math.isfinite(sigma) and sigma > 0):
        raise AnalysisError(f"sigma must be positive, got {sigma!r}")
    if weights is not None:
        weights = _same_shape("weights", weights, y.shape)
    bounds = np.concatenate([[-np.inf], t, [np.inf]])
    region = np.searchsorted(t, y, side="right")
    d_lo, d_hi = y - bounds[region], bounds[region + 1] - y
    return float(
        np.average(
            special.ndtr(-d_lo / sigma) + special.ndtr(-d_hi / sigma),
            weights=weights,
        )
    )


def confidence_level(
    bits: ArrayLike, errors: ArrayLike, ber_target: ArrayLike
) -> NDArray[np.float64] | float:
    """Confidence that the true BER is below ``ber_target`` after ``bits`` with ``errors`` errors.

    Poisson model: CL = 1 - sum_{k=0..E} (N BER)^k e^(-N BER) / k!, i.e. the regularised lower
    incomplete gamma function P(E + 1, N BER).

    Args:
        bits: Bits compared N, >= 0, any shape (broadcast with the others).
        errors: Errors counted E, non-negative integers.
        ber_target: Target BER, > 0.

    Returns:
        Confidence level in [0, 1], broadcast shape.
    """
    n, e, b = _finite("bits", bits), _finite("errors", errors), _finite("ber_target", ber_target)
    if np.any(n < 0):
        raise AnalysisError(f"bits must be >= 0, got {bits!r}")
    _check_counts(e)
    if np.any(b <= 0):
        raise AnalysisError(f"ber_target must be positive, got {ber_target!r}")
    return _out(special.gammainc(e + 1.0, n * b))


def bits_for_confidence(
    ber_target: ArrayLike, confidence: float = 0.95, errors: ArrayLike = 0
) -> NDArray[np.float64] | float:
    """Bits needed to claim BER < target at ``confidence`` if ``errors`` errors are seen.

    Inverts :func:`confidence_level`: N x BER = 2.996 (0 errors), 4.744 (1), 6.296 (2) at 95 %.

    Args:
        ber_target: Target BER, > 0, any shape (broadcast with ``errors``).
        confidence: Confidence level in (0, 1).
        errors: Errors allowed, non-negative integers.

    Returns:
        Bits N, broadcast shape.
    """
    b, e = _finite("ber_target", ber_target), _finite("errors", errors)
    if np.any(b <= 0):
        raise AnalysisError(f"ber_target must be positive, got {ber_target!r}")
    _check_counts(e)
    _in_open_interval("confidence", np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return _out(special.gammaincinv(e + 1.0, confidence) / b)


def ber_interval(bits: ArrayLike, errors: ArrayLike, confidence: float = 0.95) -> BerInterval:
    """Exact (Clopper-Pearson) two-sided interval on a measured BER.

    Bit errors are taken as independent (binomial); the bounds come from the beta distribution,
    which for large N equals the exact Poisson (chi-square) interval. Error bursts make the true
    interval wider. For a one-sided upper bound use :func:`bits_for_confidence`.

    Args:
        bits: Bits compared N, > 0, any shape (broadcast with ``errors``).
        errors: Errors counted E, integers in [0, N].
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        BerInterval with arrays of the broadcast shape (floats for scalar inputs).
    """
    n, e = _finite("bits", bits), _finite("errors", errors)
    _check_counts(e)
    if np.any(n <= 0) or np.any(e > n):
        raise AnalysisError(f"need 0 <= errors <= bits and bits > 0, got {bits!r}, {errors!r}")
    _in_open_interval("confidence", np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    n, e = np.broadcast_arrays(n, e)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(e > 0, stats.beta.ppf(alpha / 2, e, n - e + 1), 0.0)
        upper = np.where(e < n, stats.beta.ppf(1 - alpha / 2, e + 1, n - e), 1.0)
    return BerInterval(_out(e / n), _out(lower), _out(upper), float(confidence))


def bathtub(
    offset_ui: ArrayLike,
    rj_rms_ui: float,
    dj_pp_ui: float,
    transition_density: float = 0.5,
) -> NDArray[np.float64] | float:
    """BER against sampling offset from the dual-Dirac jitter model (NRZ bathtub).

    Each crossing (at 0 UI and 1 UI) jitters by two Diracs at -+ DJ/2, each with weight 1/2,
    convolved with Gaussian RJ; an error needs a transition (probability ``transition_density``)
    whose edge lands beyond the sampling instant:

        BER(x) = rho / 2 * [Q((x - DJ/2)/RJ) + Q((x + DJ/2)/RJ)
                            + Q((1 - x - DJ/2)/RJ) + Q((1 - x + DJ/2)/RJ)]

    Far from the other edge the eye opening at a BER is then DJ + 2 RJ Q^-1(2 BER / rho); the
    often quoted TJ = DJ + 14.069 RJ at 1e-12 uses Q^-1(BER) instead, i.e. 2 BER / rho = BER.

    Args:
        offset_ui: Sampling instants in UI from the left crossing, any shape.
        rj_rms_ui: Random jitter rms in UI, > 0.
        dj_pp_ui: Dual-Dirac deterministic jitter in UI, >= 0.
        transition_density: Fraction of bits with a transition, in (0, 1].

    Returns:
        BER, same shape as ``offset_ui``.
    """
    x = _finite("offset_ui", offset_ui)
    if not (math.isfinite(rj_rms_ui) and rj_rms_ui > 0):
        raise AnalysisError(f"rj_rms_ui must be positive, got {rj_rms_ui!r}")
    if not (math.isfinite(dj_pp_ui) and dj_pp_ui >= 0):
        raise AnalysisError(f"dj_pp_ui must be >= 0, got {dj_pp_ui!r}")
    if not 0 < transition_density <= 1:
        raise AnalysisError(f"transition_density must be in (0, 1], got {transition_density!r}")
    half = dj_pp_ui / 2.0
    tails = sum(
        special.ndtr(-(edge_distance + sign * half) / rj_rms_ui)
        for edge_distance in (x, 1.0 - x)
        for sign in (-1.0, 1.0)
    )
    return _out(0.5 * transition_density * tails)


def sensitivity(
    oma_dbm: ArrayLike,
    ber: ArrayLike | None,
    ber_target: float,
    *,
    bits: ArrayLike | None = None,
    errors: ArrayLike | None = None,
    modulation: Modulation = "pam4",
    min_errors: int = 1,
    floor_tolerance_q: float = _FLOOR_TOLERANCE_Q,
) -> SensitivityResult:
    """Receiver sensitivity: the received OMA at which the BER reaches ``ber_target``.

    Each BER is converted to Q (PAM4: SER = 2 BER inverted through SER = 1.5 Q(q); NRZ: BER =
    Q(q)); Q is fitted linearly against OMA in mW, where the noise-limited waterfall is a straight
    line, and the OMA where the line reaches the target's Q is returned. Left out of the fit:
    points with BER <= 0 or fewer than ``min_errors`` errors (no Q to take), points with a BER too
    high to invert, and points on the error floor: walking down from the highest OMA, a point
    whose Q falls more than ``floor_tolerance_q`` below the line through the lower-OMA points (or
    does not rise above the previous point) is floor, until the first point that is not.

    Args:
        oma_dbm: Received OMA outer of each point in dBm, shape (n,).
        ber: Measured BER of each point, shape (n,); None to take errors / bits.
        ber_target: BER target, e.g. 2.4e-4 for KP4 FEC links.
        bits: Bits compared per point, shape (n,); with ``errors`` gives the BER when ``ber`` is
            None.
        errors: Errors counted per point, shape (n,), optional; identifies zero-error points.
        modulation: "pam4" (Gray coded) or "nrz".
        min_errors: Fewest errors a point needs to enter the fit (with ``errors``).
        floor_tolerance_q: Q shortfall that marks a point as error floor.

    Returns:
        SensitivityResult.

    Raises:
        AnalysisError: Bad shapes or values, fewer than 2 usable points, a non-increasing fit,
            or a target Q outside the range of Q the used points span (no extrapolation).
    """
    oma = _finite("oma_dbm", oma_dbm)
    if oma.ndim != 1 or oma.size < 2:
        raise AnalysisError(f"oma_dbm must be 1-D with at least 2 points, got shape {oma.shape}")
    err = None if errors is None else _same_shape("errors", errors, oma.shape)
    if err is not None:
        _check_counts(err)
    if ber is None:
        if bits is None or err is None:
            raise AnalysisError("give ber, or both bits and errors")
        n_bits = _same_shape("bits", bits, oma.shape)
        if np.any(n_bits <= 0):
            raise AnalysisError("bits must be positive")
        b = err / n_bits
    else:
        b = _same_shape("ber", ber, oma.shape)
    if not 0 < ber_target < 0.375:
        raise AnalysisError(f"ber_target must be in (0, 0.375), got {ber_target!r}")
    q_target = float(q_of_ber(ber_target, modulation))
    max_ber = 0.375 if modulation == "pam4" else 0.5

    reasons: dict[int, str] = {}
    for i in np.nonzero(b <= 0)[0]:
        reasons[int(i)] = "zero errors: no Q to take"
    if err is not None:
        for i in np.nonzero((err < min_errors) & (b > 0))[0]:
            reasons[int(i)] = f"fewer than {min_errors} errors"
    for i in np.nonzero(b >= max_ber)[0]:
        reasons[int(i)] = f"BER >= {max_ber}: too high to invert to Q"
    candidates = np.array(sorted(set(range(oma.size)) - set(reasons)), dtype=np.intp)
    oma_mw = 10.0 ** (oma / 10.0)
    q = np.full(oma.size, np.nan)
    if candidates.size:
        q[candidates] = q_of_ber(b[candidates], modulation)
    order = candidates[np.argsort(oma_mw[candidates])]
    while order.size >= 3:  # peel error-floor points off the high-OMA end
        top, rest = order[-1], order[:-1]
        slope, intercept = np.polyfit(oma_mw[rest], q[rest], 1)
        shortfall = slope * oma_mw[top] + intercept - q[top]
        if shortfall <= floor_tolerance_q and q[top] > q[rest[-1]]:
            break
        reasons[int(top)] = f"error floor: Q {shortfall:.2f} below the line of the lower points"
        order = rest
    if order.size < 2:
        raise AnalysisError(f"sensitivity needs at least 2 usable points, got {order.size}")
    slope, intercept = np.polyfit(oma_mw[order], q[order], 1)
    if not slope > 0:
        raise AnalysisError(f"Q does not rise with OMA (slope {slope:.3g} per mW): no waterfall")
    q_lo, q_hi = q[order].min(), q[order].max()
    if not q_lo <= q_target <= q_hi:
        raise AnalysisError(
            f"BER target {ber_target:g} (Q {q_target:.3f}) is outside the Q range "
            f"{q_lo:.3f}..{q_hi:.3f} of the usable points: the data do not support it "
            "without extrapolation; measure points on both sides of the target"
        )
    fitted = slope * oma_mw[order] + intercept
    ss_res = float(np.sum((q[order] - fitted) ** 2))
    ss_tot = float(np.sum((q[order] - q[order].mean()) ** 2))
    sens_mw = (q_target - intercept) / slope
    used = np.zeros(oma.size, dtype=bool)
    used[order] = True
    excluded = tuple(
        ExcludedPoint(i, float(oma[i]), float(b[i]), reasons[i]) for i in sorted(reasons)
    )
    return SensitivityResult(
        oma_dbm=float(10.0 * math.log10(sens_mw)),
        oma_mw=float(sens_mw),
        ber_target=float(ber_target),
        q_target=q_target,
        slope_per_mw=float(slope),
        intercept_q=float(intercept),
        r_squared=1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        n_points_used=int(order.size),
        used=used,
        excluded=excluded,
        modulation=modulation,
    )


def _finite(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} must be finite, got {value!r}")
    return arr


def _same_shape(name: str, value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    arr = _finite(name, value)
    if arr.shape != shape:
        raise AnalysisError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def _check_counts(counts: NDArray[np.float64]) -> None:
    if np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise AnalysisError(f"error counts must be non-negative integers, got {counts!r}")


def _in_open_interval(name: str, arr: NDArray[np.float64], lo: float, hi: float) -> None:
    if np.any(arr <= lo) or np.any(arr >= hi):
        raise AnalysisError(f"{name} must be in ({lo:g}, {hi:g}), got {arr!r}")


def _out(arr: NDArray[np.float64]) -> NDArray[np.float64] | float:
    """A float for 0-d results, else the array."""
    arr = np.asarray(arr, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr
