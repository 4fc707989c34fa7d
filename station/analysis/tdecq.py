"""TDECQ and TECQ of PAM4 optical captures (IEEE 802.3 clause 121.8.5, DOMAIN.md section 2).

Owns the reference receiver, eye centre, OMA outer, histogram SER, sigma_G and the reference FFE.

Method; every choice is also named in :class:`TdecqSettings` for reports.

1. The capture holds whole pattern repeats and is periodic. The reference receiver, a 4th-order
   Bessel-Thomson low-pass (``scipy.signal.bessel(4, wn, norm='mag')``, so the 3 dB point is at
   ``receiver_bandwidth_hz``, default baud/2), is applied in the frequency domain with its exact
   analog response, phase (group delay) included: as a circular convolution with the inverse DFT of
   H on a power-of-two grid, cut where below 1e-7 of its peak (equal to the capture-length DFT
   product to about 1e-7 of the signal, and much faster when the length is 8191 x 2^k).
2. Pave is the waveform mean. The eye centre is 0.5 UI after the circular mean of the phases of
   the Pave crossings of the equalised waveform.
3. OMA outer = P3 - P0, each the mean of the receiver output over the central 2 UI of the runs of
   >= 6 equal outer symbols (PRBS13Q and SSPRQ: a run of 7 threes and of 6 zeros). Symbols are the
   given ``symbols`` (aligned by circular correlation) or blind decisions at the eye centre.
   Fallbacks, named in ``settings.oma_method``: the longest runs >= 3 UI, else the means of the
   outer-level eye-centre samples. Thresholds: Pave - OMA/3, Pave, Pave + OMA/3.
4. Each histogram takes the samples near [c - w/2, c + w/2), c = centre -+ 0.05 UI, w = 0.04 UI,
   each weighted by the overlap of its own span (-+ half a sample) with the window, so that the
   histograms move smoothly with the centre; captures with fewer than 1/w samples per UI are
   first interpolated (DFT zero padding) by an integer factor.
5. With Gaussian noise sigma added, a histogram's SER is the mean over its samples of the
   probability of leaving their decision region, Q(d_lo/sigma) + Q(d_hi/sigma) (one term in the
   outer regions). It is monotone in sigma; the largest sigma meeting ``ser_target`` comes from a
   safeguarded Newton iteration over the distances binned in 1024 bins over [0, OMA/3), each bin
   at its mean distance. sigma_G = min(sigma_left, sigma_right) / C_eq, C_eq = sqrt(sum taps^2).
6. The T-spaced FFE taps (sum 1, main tap at ``n_precursors``) maximise sigma_G: the better of
   identity and a least-squares equaliser starts Nelder-Mead over the free taps; centre, OMA and
   windows are re-taken from the equalised eye and the taps refined until the centre moves less
   than 0.002 UI (a self-consistent optimum; at most 4 searches).
7. TDECQ = 10 log10(OMA / (6 Q_t sqrt(sigma_G^2 + sigma_S^2))), sigma_S the scope noise.

TECQ is the same measurement on the transmitter output without the fibre (:func:`tecq`). Blind
decisions need an eye open enough before equalisation; otherwise pass ``symbols`` (pattern lock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft as sp_fft
from scipy import optimize, signal, special

from station.analysis.errors import AnalysisError
from station.analysis.patterns import (
    align_pattern,
    decide_pam4,
    outer_levels_from_runs,
    ui_samples,
)

_RECEIVER_ORDER = 4
_N_BINS = 1024  # distance bins over one threshold spacing (OMA/3)
_SIGMA_MIN, _SIGMA_MAX = 1e-6, 1.0 / 3.0  # bracket for sigma at the histogram, units of OMA
_MAX_PASSES = 5
_CENTRE_TOL_UI = 2e-3  # re-centring stops when the eye centre moves less than this
_KERNEL_TAIL = 1e-7
_LEVELS = np.array([-0.5, -1.0 / 6.0, 1.0 / 6.0, 0.5])  # ideal levels, units of OMA from Pave
_CENTRE_METHOD = "0.5 UI after the circular mean of the Pave crossing phases of the equalised eye"
_RECEIVER_FILTER = (
    "4th-order Bessel-Thomson, scipy bessel(norm='mag'), exact analog response applied to the "
    "periodic capture in the frequency domain"
)
_OPTIMISER = (
    "better of identity and least squares, then Nelder-Mead on the free taps "
    "(xatol 1e-3, fatol 1e-4 in ln sigma_G), repeated after re-centring"
)


@dataclass(frozen=True, slots=True)
class TdecqSettings:
    """Every setting a TDECQ result depends on, for reports.

    Attributes:
        reference_receiver: Whether the reference receiver filter was applied.
        receiver_bandwidth_hz: Its 3 dB bandwidth in Hz (None when off).
        receiver_filter: Filter type and how it was applied ("none" when off).
        receiver_order: Filter order.
        baud_rate_hz: Symbol rate in Hz.
        samples_per_ui: Samples per UI of the capture.
        analysis_samples_per_ui: Samples per UI after any interpolation.
        n_taps: FFE length.
        n_precursors: Taps before the main tap.
        tap_spacing_ui: FFE tap spacing in UI (T-spaced).
        taps_optimised: False when fixed taps were given.
        optimiser: How the taps were found.
        ser_target: Target symbol error ratio.
        q_t: Q_t of the TDECQ formula.
        histogram_width_ui: Width of each histogram window.
        histogram_offset_ui: Offset of each window centre from the eye centre.
        histogram_bins: Bins of the sample-to-threshold distance.
        scope_noise_rms: sigma_S, unit of the samples.
        capture_length_ui: Unit intervals in the capture.
        pattern_name: Pattern label given by the caller (e.g. "PRBS13Q", "SSPRQ").
        pattern_length_symbols: Length of the ``symbols`` given (None when blind).
        oma_method: How OMA outer was measured.
        centre_method: How the eye centre was found.
    """

    reference_receiver: bool
    receiver_bandwidth_hz: float | None
    receiver_filter: str
    receiver_order: int
    baud_rate_hz: float
    samples_per_ui: int
    analysis_samples_per_ui: int
    n_taps: int
    n_precursors: int
    tap_spacing_ui: float
    taps_optimised: bool
    optimiser: str
    ser_target: float
    q_t: float
    histogram_width_ui: float
    histogram_offset_ui: float
    histogram_bins: int
    scope_noise_rms: float
    capture_length_ui: int
    pattern_name: str | None
    pattern_length_symbols: int | None
    oma_method: str
    centre_method: str


@dataclass(frozen=True, slots=True)
class TdecqResult:
    """TDECQ of one capture.

    Attributes:
        tdecq_db: TDECQ in dB (inf for a closed eye with sigma_S = 0).
        taps: FFE taps, shape (n_taps,), summing to 1; tap k multiplies the sample
            ``k - n_precursors`` UI earlier, so ``taps[n_precursors]`` is the main tap.
        c_eq: Noise enhancement sqrt(sum taps^2).
        ceq_db: 10 log10(c_eq).
        tdecq_minus_ceq_db: tdecq_db - ceq_db.
        oma_outer: P3 - P0, unit of the samples.
        er_outer_db: Outer extinction ratio 10 log10(P3 / P0) in dB (nan when P0 <= 0).
        p_ave: Mean of the waveform, unit of the samples.
        sigma_g: Largest Gaussian noise, added before the FFE, meeting the SER target.
        thresholds: Decision thresholds, shape (3,), unit of the samples.
        centre_phase_ui: Eye centre in [0, 1) UI, phase 0 at the first sample of the capture.
        settings: Every setting used.
    """

    tdecq_db: float
    taps: NDArray[np.float64]
    c_eq: float
    ceq_db: float
    tdecq_minus_ceq_db: float
    oma_outer: float
    er_outer_db: float
    p_ave: float
    sigma_g: float
    thresholds: NDArray[np.float64]
    centre_phase_ui: float
    settings: TdecqSettings


def reference_receiver_response(
    frequency_hz: ArrayLike, bandwidth_hz: float
) -> NDArray[np.complex128]:
    """Complex response H(j 2 pi f) of the 4th-order Bessel-Thomson reference receiver.

    Args:
        frequency_hz: Frequencies in Hz, any shape.
        bandwidth_hz: 3 dB bandwidth in Hz; |H| = 1/sqrt(2) there exactly (``norm='mag'``).

    Returns:
        Response, same shape as ``frequency_hz``, 1 at DC.
    """
    _check_positive("bandwidth_hz", bandwidth_hz)
    b, a = signal.bessel(_RECEIVER_ORDER, 2 * np.pi * bandwidth_hz, analog=True, norm="mag")
    s = 2j * np.pi * np.asarray(frequency_hz, dtype=np.float64)
    return np.polyval(b, s) / np.polyval(a, s)


def tdecq(
    samples: ArrayLike,
    samples_per_ui: int,
    baud_rate_hz: float,
    scope_noise_rms: float = 0.0,
    *,
    reference_receiver: bool = True,
    receiver_bandwidth_hz: float | None = None,
    n_taps: int = 5,
    n_precursors: int = 1,
    taps: ArrayLike | None = None,
    ser_target: float = 4.8e-4,
    q_t: float = 3.414,
    histogram_width_ui: float = 0.04,
    histogram_offset_ui: float = 0.05,
    symbols: ArrayLike | None = None,
    pattern_name: str | None = None,
    max_evaluations: int = 600,
) -> TdecqResult:
    """TDECQ (transmitter and dispersion eye closure quaternary) of a PAM4 optical capture.

    Args:
        samples: Optical power over whole pattern repeats, shape (n_ui * samples_per_ui,), any
            linear unit (W or mW); need not be aligned to the UI.
        samples_per_ui: Samples per unit interval (integer >= 4).
        baud_rate_hz: Symbol rate in Hz (53.125e9 for 100 Gb/s lanes).
        scope_noise_rms: sigma_S, the scope's own noise rms measured on the station, same unit.
        reference_receiver: Apply the Bessel-Thomson reference receiver.
        receiver_bandwidth_hz: Its 3 dB bandwidth in Hz; default ``baud_rate_hz / 2``.
        n_taps: FFE length (T-spaced).
        n_precursors: Taps before the main tap.
        taps: Fixed taps, shape (n_taps,), summing to 1; None optimises them.
        ser_target: Target SER.
        q_t: Q_t of the TDECQ formula.
        histogram_width_ui: Width of each vertical histogram in UI.
        histogram_offset_ui: Offset of each histogram centre from the eye centre in UI.
        symbols: Transmitted pattern, shape (pattern_length,), values 0..3, whose length divides
            n_ui; None decides symbols blind.
        pattern_name: Label recorded in the settings (e.g. "PRBS13Q").
        max_evaluations: Cap on objective evaluations per Nelder-Mead search.

    Returns:
        TdecqResult.

    Raises:
        AnalysisError: Bad arguments, or a capture without a PAM4 eye (no Pave crossings,
            OMA <= 0, or not matching ``symbols``).
    """
    x = _check_samples(samples, samples_per_ui)
    n_ui = x.size // samples_per_ui
    _check_positive("baud_rate_hz", baud_rate_hz)
    _check_positive("q_t", q_t)
    noise_ok = math.isfinite(scope_noise_rms) and scope_noise_rms >= 0
    _require(noise_ok, "scope_noise_rms", ">= 0 and finite", scope_noise_rms)
    _require(int(n_taps) == n_taps and n_taps >= 1, "n_taps", "a positive integer", n_taps)
    pre_ok = int(n_precursors) == n_precursors and 0 <= n_precursors < n_taps
    _require(pre_ok, "n_precursors", "an integer in [0, n_taps)", n_precursors)
    _require(0 < ser_target < 0.75, "ser_target", "in (0, 0.75)", ser_target)
    _require(0 < histogram_width_ui <= 0.5, "histogram_width_ui", "in (0, 0.5]", histogram_width_ui)
    offset_ok = 0 <= histogram_offset_ui < 0.5
    _require(offset_ok, "histogram_offset_ui", "in [0, 0.5)", histogram_offset_ui)
    pattern = None if symbols is None else _check_symbols(symbols, n_ui)
    fixed_taps = None if taps is None else _check_taps(taps, n_taps)
    bandwidth_hz = None
    if reference_receiver:
        bandwidth_hz = baud_rate_hz / 2 if receiver_bandwidth_hz is None else receiver_bandwidth_hz
        _check_positive("receiver_bandwidth_hz", bandwidth_hz)

    y = x if bandwidth_hz is None else _receiver(x, samples_per_ui * baud_rate_hz, bandwidth_hz)
    upsample = max(1, math.ceil(1.0 / (histogram_width_ui * samples_per_ui) - 1e-12))
    if upsample > 1:
        y = _interpolate(y, upsample)
    spui = samples_per_ui * upsample
    wave = y.reshape(n_ui, spui)  # row k: unit interval k
    p_ave = float(y.mean())

    coeffs = fixed_taps if fixed_taps is not None else np.eye(n_taps)[n_precursors]
    levels: tuple[float, float] | None = None
    used_centre, n_searches = math.nan, 0
    for n_pass in range(_MAX_PASSES):
        # Centre, symbols, OMA and windows follow the equalised eye, which follows the taps.
        wave_eq = _equalise(wave, coeffs, n_precursors)
        centre = _eye_centre_ui(wave_eq.ravel(), spui, p_ave)
        centre_values = ui_samples(wave_eq, [round(centre * spui)])[:, 0]
        decided = (
            decide_pam4(centre_values) if pattern is None else align_pattern(centre_values, pattern)
        )
        p0, p3, oma_method = outer_levels_from_runs(wave, decided, centre)
        windows = [  # sample offsets from the start of each UI's row (may leave it), weights
            _window(spui, centre + side * histogram_offset_ui, histogram_width_ui)
            for side in (-1, 1)
        ]
        moved = abs((centre - used_centre + 0.5) % 1.0 - 0.5) >= _CENTRE_TOL_UI
        if levels != (p0, p3) or moved:
            levels, used_centre, oma = (p0, p3), centre, p3 - p0
            if not oma > 0:
                raise AnalysisError(f"samples: OMA outer is {oma!r}, not a PAM4 eye")
            thresholds = p_ave + np.array([-1.0, 0.0, 1.0]) * oma / 3.0
            problem = _Problem(
                wave, p_ave, oma, n_taps, n_precursors, ser_target, windows, pattern, decided
            )
        elif n_searches:
            break
        if fixed_taps is not None:
            break
        if n_pass == 0:  # a cheap first equaliser so that the next centre is nearly final
            coeffs = problem.start_taps(coeffs)
        else:
            coeffs = problem.optimise(coeffs, max_evaluations, refine=n_searches > 0)
            n_searches += 1

    c_eq = float(np.sqrt(np.sum(coeffs**2)))
    sigma_g = problem.sigma_eq(coeffs) * oma / c_eq
    noise = math.hypot(sigma_g, scope_noise_rms)
    tdecq_db = 10 * math.log10(oma / (6 * q_t * noise)) if noise > 0 else math.inf
    ceq_db = 10 * math.log10(c_eq)
    settings = TdecqSettings(
        reference_receiver=bool(reference_receiver),
        receiver_bandwidth_hz=None if bandwidth_hz is None else float(bandwidth_hz),
        receiver_filter=_RECEIVER_FILTER if reference_receiver else "none",
        receiver_order=_RECEIVER_ORDER,
        baud_rate_hz=float(baud_rate_hz),
        samples_per_ui=int(samples_per_ui),
        analysis_samples_per_ui=int(spui),
        n_taps=int(n_taps),
        n_precursors=int(n_precursors),
        tap_spacing_ui=1.0,
        taps_optimised=fixed_taps is None,
        optimiser=_OPTIMISER if fixed_taps is None else "fixed taps",
        ser_target=float(ser_target),
        q_t=float(q_t),
        histogram_width_ui=float(histogram_width_ui),
        histogram_offset_ui=float(histogram_offset_ui),
        histogram_bins=_N_BINS,
        scope_noise_rms=float(scope_noise_rms),
        capture_length_ui=int(n_ui),
        pattern_name=pattern_name,
        pattern_length_symbols=None if symbols is None else int(np.size(symbols)),
        oma_method=oma_method,
        centre_method=_CENTRE_METHOD,
    )
    return TdecqResult(
        tdecq_db=tdecq_db,
        taps=np.array(coeffs, dtype=np.float64),
        c_eq=c_eq,
        ceq_db=ceq_db,
        tdecq_minus_ceq_db=tdecq_db - ceq_db,
        oma_outer=float(oma),
        er_outer_db=10 * math.log10(p3 / p0) if p0 > 0 else math.nan,
        p_ave=p_ave,
        sigma_g=float(sigma_g),
        thresholds=thresholds,
        centre_phase_ui=float(used_centre),  # the centre the histograms were placed on
        settings=settings,
    )


def tecq(
    samples: ArrayLike,
    samples_per_ui: int,
    baud_rate_hz: float,
    scope_noise_rms: float = 0.0,
    **options: object,
) -> TdecqResult:
    """TECQ: the TDECQ measurement made on the transmitter's output without the fibre.

    Same arguments and result as :func:`tdecq`; ``options`` are its keyword-only arguments.
    """
    return tdecq(samples, samples_per_ui, baud_rate_hz, scope_noise_rms, **options)  # type: ignore[arg-type]


class _Problem:
    """The two histograms of one capture and sigma_G as a function of the FFE taps.

    Samples are held in units of OMA relative to Pave, so thresholds sit at -1/3, 0 and 1/3 and
    the result does not depend on the power unit or scale.
    """

    def __init__(
        self,
        wave: NDArray[np.float64],
        p_ave: float,
        oma: float,
        n_taps: int,
        n_precursors: int,
        ser_target: float,
        windows: list[tuple[NDArray[np.intp], NDArray[np.float64]]],
        pattern: NDArray[np.intp] | None,
        decided: NDArray[np.intp],
    ) -> None:
        self._target = ser_target
        self._main = n_precursors
        self._known = pattern is not None
        self._sigma_start = [0.05, 0.05]
        rel = (wave - p_ave) / oma
        self._main_in, self._free_in, self._weights, symbols = [], [], [], []
        for ph, weight in windows:  # tap inputs: rows (ui, offset) flattened, a column per tap
            delays = np.arange(n_taps) - n_precursors
            at = ui_samples(rel, ph)  # (n_ui, n_offsets): each row the samples of its own UI
            per_sample = np.tile(weight / (weight.sum() * at.shape[0]), at.shape[0])
            self._weights.append(np.concatenate([per_sample, per_sample]))
            taps_in = np.stack([np.roll(at, int(k), axis=0) for k in delays], axis=-1)
            taps_in = taps_in.reshape(-1, delays.size)
            main = taps_in[:, n_precursors]
            self._main_in.append(main)
            self._free_in.append(np.delete(taps_in, n_precursors, axis=1) - main[:, None])
            symbols.append(np.repeat(decided, ph.size))
        self._symbols = np.concatenate(symbols)

    def taps_from_free(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """Full taps from the free ones (main tap = 1 - sum of the others)."""
        return np.insert(z, self._main, 1.0 - np.sum(z))

    def _sigmas(self, z: NDArray[np.float64]) -> list[float]:
        sigmas = []
        for h in range(2):
            d, w = _binned_distances(self._main_in[h] + self._free_in[h] @ z, self._weights[h])
            sigma = _sigma_at_target(d, w, self._target, self._sigma_start[h])
            if sigma > 0:
                self._sigma_start[h] = sigma
            sigmas.append(sigma)
        return sigmas

    def sigma_eq(self, coeffs: NDArray[np.float64]) -> float:
        """Largest noise at the histograms (units of OMA) meeting the SER target in both."""
        return min(self._sigmas(np.delete(coeffs, self._main)))

    def _objective(self, z: NDArray[np.float64]) -> float:
        """-ln(sigma_G / OMA); a large value when no noise at all meets the target."""
        worst = min(self._sigmas(z))
        if worst <= 0:
            return 50.0
        c_main = 1.0 - float(np.sum(z))
        return -math.log(worst) + 0.5 * math.log(float(z @ z) + c_main * c_main)

    def _least_squares(self, coeffs: NDArray[np.float64]) -> NDArray[np.float64]:
        """Free taps (sum 1) fitting the ideal levels of the known or decided symbols."""
        a, m = np.concatenate(self._free_in), np.concatenate(self._main_in)
        z, region = np.delete(coeffs, self._main), self._symbols
        for _ in range(10):  # decision-directed rounds until the decisions settle
            z = np.asarray(np.linalg.lstsq(a, _LEVELS[region] - m, rcond=None)[0], dtype=float)
            if self._known:
                break
            new = np.searchsorted(np.array([-1.0, 0.0, 1.0]) / 3.0, m + a @ z)
            if np.array_equal(new, region):
                break
            region = new
        return z

    def start_taps(self, start: NDArray[np.float64]) -> NDArray[np.float64]:
        """The better of ``start`` and the least-squares equaliser."""
        candidates = [np.delete(start, self._main), self._least_squares(start)]
        values = [self._objective(z) for z in candidates]
        return self.taps_from_free(candidates[int(np.argmin(values))])

    def optimise(
        self, start: NDArray[np.float64], max_evaluations: int, *, refine: bool
    ) -> NDArray[np.float64]:
        """Taps maximising sigma_G; ``refine`` starts with a smaller simplex."""
        if start.size == 1:
            return start
        z0 = np.delete(self.start_taps(start), self._main)
        f0 = self._objective(z0)
        simplex = np.vstack([z0, z0 + (0.005 if refine else 0.02) * np.eye(z0.size)])
        options = {"initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-4}
        options["maxfev"] = int(max_evaluations)
        res = optimize.minimize(self._objective, z0, method="Nelder-Mead", options=options)
        return self.taps_from_free(res.x if res.fun <= f0 else z0)


def _binned_distances(
    y: NDArray[np.float64], weight2: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distances to the thresholds as (mean distance, weight) of the non-empty bins.

    ``y`` is in units of OMA from Pave (thresholds -1/3, 0, 1/3), shape (n,); ``weight2`` holds
    the samples' weights (summing to 1) twice, shape (2n,). Only distances below one threshold
    spacing are kept, and those are exactly the distances from each sample to the thresholds
    bounding its region. The histogram SER is then ``sum(w * Q(d / sigma))``.
    """
    # Thresholds at the integers -1, 0, 1 (spacing 1). Clipping keeps a far sample's distances at
    # or beyond one spacing, where they fall in the overflow bin (or, just under 2, contribute
    # Q(spacing / sigma) < 1e-10 as they should).
    u = np.clip(3.0 * y, -2.0, 2.0 - 1e-9)
    below = np.floor(u)
    frac = u - below
    d = np.concatenate([frac + (below == -2.0), (1.0 - frac) + (below == 1.0)])
    idx = (d * _N_BINS).astype(np.intp)
    mass = np.bincount(idx, weights=weight2, minlength=_N_BINS + 2)[:_N_BINS]
    sums = np.bincount(idx, weights=weight2 * d, minlength=_N_BINS + 2)[:_N_BINS]
    used = mass > 0
    return np.asarray(sums[used] / (3.0 * mass[used]), dtype=np.float64), mass[used].astype(float)


def _sigma_at_target(
    d: NDArray[np.float64], w: NDArray[np.float64], target: float, start: float
) -> float:
    """Largest sigma with sum(w Q(d / sigma)) <= target; 0 if none in the bracket.

    Safeguarded Newton iteration on ln SER against ln sigma, kept inside a shrinking bracket.
    """
    if float(w @ special.ndtr(-d / _SIGMA_MIN)) > target:
        return 0.0
    if float(w @ special.ndtr(-d / _SIGMA_MAX)) <= target:
        return _SIGMA_MAX
    lo, hi = math.log(_SIGMA_MIN), math.log(_SIGMA_MAX)
    x = min(max(math.log(start), lo), hi)
    for _ in range(100):
        sigma = math.exp(x)
        z = d / sigma
        ser = float(w @ special.ndtr(-z))
        if ser <= 0:
            lo, x = x, 0.5 * (x + hi)
            continue
        g = math.log(ser / target)
        if abs(g) < 1e-12:
            return sigma
        lo, hi = (lo, x) if g > 0 else (x, hi)
        slope = float(w @ (np.exp(-0.5 * z * z) * z)) / (math.sqrt(2 * math.pi) * ser)
        step = g / slope if slope > 0 else math.inf
        if abs(step) < 1e-10:
            return math.exp(x - step)
        x = x - step if lo < x - step < hi else 0.5 * (lo + hi)
    return math.exp(x)


def _equalise(
    wave: NDArray[np.float64], coeffs: NDArray[np.float64], n_precursors: int
) -> NDArray[np.float64]:
    """T-spaced FFE on the periodic waveform, shape (n_ui, samples_per_ui) in and out."""
    out = np.zeros_like(wave)
    for k, c in enumerate(coeffs):
        out += c * np.roll(wave, k - n_precursors, axis=0)
    return out


def _eye_centre_ui(y: NDArray[np.float64], spui: int, level: float) -> float:
    """Eye centre phase in [0, 1) UI: 0.5 UI after the circular mean of the ``level`` crossings."""
    s = y - level
    nxt = np.roll(s, -1)
    idx = np.nonzero((s < 0) != (nxt < 0))[0]
    if idx.size == 0:
        raise AnalysisError("samples never cross their mean: no eye to analyse")
    phase = 2 * np.pi * (idx + s[idx] / (s[idx] - nxt[idx])) / spui
    mean = np.mean(np.exp(1j * phase))
    if abs(mean) < 1e-3:
        raise AnalysisError("samples: crossings are spread over the whole UI, no eye found")
    return float((np.angle(mean) / (2 * np.pi) + 0.5) % 1.0)


def _window(
    spui: int, centre_ui: float, width_ui: float
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Sample offsets from a row's start inside a histogram window, and their weights.

    Sample j stands for the time span [j - 1/2, j + 1/2) samples; its weight is the overlap of
    that span with [centre - width/2, centre + width/2) in samples, so the histogram moves
    smoothly with the centre instead of jumping whole sample columns.
    """
    lo, hi = (centre_ui - width_ui / 2) * spui, (centre_ui + width_ui / 2) * spui
    offsets = np.arange(math.floor(lo + 0.5), math.ceil(hi - 0.5) + 1)
    weights = np.minimum(offsets + 0.5, hi) - np.maximum(offsets - 0.5, lo)
    keep = weights > 1e-9
    return offsets[keep], weights[keep]


def _receiver(x: NDArray[np.float64], sample_rate_hz: float, bandwidth_hz: float) -> NDArray:
    """Reference receiver on a periodic capture, as a circular convolution (module docstring)."""
    n, m = x.size, 512
    while True:
        m *= 2
        freq = sp_fft.rfftfreq(m, d=1.0 / sample_rate_hz)
        h = sp_fft.irfft(reference_receiver_response(freq, bandwidth_hz), n=m)
        if m >= n:  # no room to truncate: multiply the capture's own DFT
            freq = sp_fft.rfftfreq(n, d=1.0 / sample_rate_hz)
            spectrum = sp_fft.rfft(x) * reference_receiver_response(freq, bandwidth_hz)
            return sp_fft.irfft(spectrum, n=n)
        if np.abs(h[m // 4 : 3 * m // 4]).max() < _KERNEL_TAIL * np.abs(h).max():
            break
    half = m // 4
    kernel = np.concatenate([h[-half:], h[:half]])  # taps for delays -half .. half - 1
    extended = x[(np.arange(n + 2 * half - 1) - half + 1) % n]
    return signal.oaconvolve(extended, kernel, mode="valid")


def _interpolate(y: NDArray[np.float64], factor: int) -> NDArray[np.float64]:
    """Band-limited interpolation of a periodic capture by an integer factor (DFT zero padding)."""
    n = y.size
    spectrum = sp_fft.rfft(y)
    padded = np.zeros(n * factor // 2 + 1, dtype=np.complex128)
    padded[: spectrum.size] = spectrum
    if n % 2 == 0:  # the Nyquist bin splits between +f and -f in the longer DFT
        padded[n // 2] *= 0.5
    return sp_fft.irfft(padded, n=n * factor) * factor


def _check_samples(samples: ArrayLike, samples_per_ui: int) -> NDArray[np.float64]:
    spui = samples_per_ui
    _require(int(spui) == spui and spui >= 4, "samples_per_ui", "an integer >= 4", spui)
    x = np.asarray(samples, dtype=np.float64)
    _require(x.ndim == 1, "samples", "1-D", f"shape {x.shape}")
    ok = x.size % spui == 0 and x.size >= 16 * spui
    _require(ok, "samples", f"whole UIs of {spui} samples, at least 16", f"{x.size} samples")
    _require(bool(np.all(np.isfinite(x))), "samples", "finite", "NaN or inf")
    return x


def _check_symbols(symbols: ArrayLike, n_ui: int) -> NDArray[np.intp]:
    pattern = np.asarray(symbols)
    ok = pattern.ndim == 1 and pattern.size >= 2 and n_ui % pattern.size == 0
    _require(ok, "symbols", f"1-D with a length dividing the {n_ui} UI captured", pattern.shape)
    _require(bool(np.all(np.isin(pattern, (0, 1, 2, 3)))), "symbols", "0..3", "other values")
    return np.tile(pattern.astype(np.intp), n_ui // pattern.size)


def _check_taps(taps: ArrayLike, n_taps: int) -> NDArray[np.float64]:
    fixed = np.asarray(taps, dtype=np.float64)
    ok = fixed.shape == (n_taps,) and bool(np.all(np.isfinite(fixed)))
    _require(ok, "taps", f"{n_taps} finite values", taps)
    _require(abs(fixed.sum() - 1.0) <= 1e-6, "taps", "summing to 1", f"sum {fixed.sum()!r}")
    return fixed


def _check_positive(name: str, value: float) -> None:
    number = isinstance(value, int | float | np.integer | np.floating)
    _require(number and math.isfinite(value) and value > 0, name, "positive and finite", value)


def _require(ok: bool, name: str, what: str, value: object) -> None:
    if not ok:
        got = value if isinstance(value, str) else repr(value)
        raise AnalysisError(f"{name} must be {what}, got {got}")
