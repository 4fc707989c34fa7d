"""PAM4 patterns and sampled optical waveforms for the simulated instruments.

Owns PRBS13Q generation, the band-limited periodic waveform of a pattern, its equivalent-time
sampling (phase, jitter, noise) and the eye algorithms the simulated scope's firmware runs on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

PRBS13_PERIOD = 8191
#: samples per UI of the internal, noise-free waveform that captures are interpolated from
FINE_SAMPLES_PER_UI = 32
#: 802.3 clause 120.5.7 Gray code: bit pair {A, B} (A first) -> symbol; indexed by 2A + B
_GRAY = np.array([0, 1, 3, 2], dtype=np.int8)
_PRBS13_TAPS = (1, 2, 12, 13)  # G(x) = 1 + x + x^2 + x^12 + x^13: b[n] = xor of these delays
_Q_T = 3.414  # Q of the 4.8e-4 SER target in the TDECQ formula (802.3 clause 121.8.5)
_SER_TARGET = 4.8e-4

Response = Callable[[np.ndarray], np.ndarray]


# --- patterns -------------------------------------------------------------------------------------
def _prbs13_bits(count: int) -> np.ndarray:
    """PRBS13 bits from the all-ones state, shape (count,).

    The 13-bit window advances by a companion matrix over GF(2); windows for the first 2^k
    positions give the next 2^k with one matrix product, so there is no loop over bits.
    """
    order = 13
    step = np.zeros((order, order), dtype=np.int64)
    step[np.arange(order - 1), np.arange(1, order)] = 1  # window shifts by one bit
    for delay in _PRBS13_TAPS:
        step[order - 1, order - delay] = 1  # newest bit from the tapped ones
    windows = np.ones((order, 1), dtype=np.int64)
    leap = step
    while windows.shape[1] < count:
        windows = np.concatenate([windows, (leap @ windows) & 1], axis=1)
        leap = (leap @ leap) & 1
    return windows[0, :count].astype(np.int8)


@functools.cache
def prbs13q() -> np.ndarray:
    """One period of PRBS13Q (802.3 clause 120.5.11.2.1): two periods of PRBS13 taken as bit
    pairs and Gray coded, shape (8191,), symbols 0..3 (0 the lowest optical level)."""
    bits = _prbs13_bits(2 * PRBS13_PERIOD).reshape(PRBS13_PERIOD, 2)
    symbols = _GRAY[2 * bits[:, 0] + bits[:, 1]]
    symbols.setflags(write=False)
    return symbols


def pattern_symbols(pattern: str) -> np.ndarray:
    """Symbols of one period of the named test pattern."""
    if pattern.upper() != "PRBS13Q":
        raise ValueError(f"pattern {pattern!r} is not simulated; only PRBS13Q is")
    return prbs13q()


def symbol_counts(pattern: str = "PRBS13Q") -> np.ndarray:
    """How often each symbol 0..3 occurs in one period, shape (4,)."""
    return np.bincount(pattern_symbols(pattern), minlength=4)


def longest_run(symbols: np.ndarray, symbol: int) -> tuple[int, int]:
    """(start, length) of the longest run of `symbol` in the periodic sequence."""
    hits = np.concatenate([symbols, symbols]) == symbol
    edges = np.diff(np.concatenate([[0], hits.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = np.minimum(stops - starts, len(symbols))
    best = int(np.argmax(lengths))
    return int(starts[best]) % len(symbols), int(lengths[best])


# --- responses ------------------------------------------------------------------------------------
def two_pole_response(frequency_hz: np.ndarray, bandwidth_hz: float) -> np.ndarray:
    """A critically damped two-pole low-pass (laser/driver): 3 dB at `bandwidth_hz`, with the
    post-cursor tail a real transmitter has."""
    pole_hz = bandwidth_hz / np.sqrt(np.sqrt(2.0) - 1.0)
    return 1.0 / (1.0 + 1j * frequency_hz / pole_hz) ** 2


def gaussian_response(frequency_hz: np.ndarray, bandwidth_hz: float) -> np.ndarray:
    """A Gaussian low-pass, 3 dB at `bandwidth_hz`, no delay (a sampling head's O/E)."""
    return np.exp(-0.5 * np.log(2.0) * (frequency_hz / bandwidth_hz) ** 2).astype(complex)


def bessel_thomson_response(frequency_hz: np.ndarray, bandwidth_hz: float) -> np.ndarray:
    """4th-order Bessel-Thomson low-pass (the TDECQ reference receiver), 3 dB at
    `bandwidth_hz`: H(s) = 105 / (s^4 + 10 s^3 + 45 s^2 + 105 s + 105), s scaled so that the
    3 dB point (2.11391767 rad/s for the delay-normalised polynomial) lands on the bandwidth."""
    s = 1j * frequency_hz / bandwidth_hz * 2.11391767
    return 105.0 / (s**4 + 10.0 * s**3 + 45.0 * s**2 + 105.0 * s + 105.0)


# --- waveforms ------------------------------------------------------------------------------------
def periodic_waveform(
    symbol_levels_w: np.ndarray, baud_rate_hz: float, response: Response
) -> np.ndarray:
    """The noise-free waveform of one pattern period through `response`, on a grid of
    FINE_SAMPLES_PER_UI per UI, shape (symbols * FINE_SAMPLES_PER_UI,).

    NRZ symbols are filtered in the frequency domain over the periodic pattern (a circular
    convolution, exact for a repeating pattern); the response has unity DC gain, so the mean and
    the levels of long runs are kept. Sample k sits at time k / FINE_SAMPLES_PER_UI UI, symbol n
    occupying [n, n + 1) UI before filtering.
    """
    rect = np.repeat(np.asarray(symbol_levels_w, dtype=np.float64), FINE_SAMPLES_PER_UI)
    frequency = np.fft.rfftfreq(rect.size, d=1.0 / (baud_rate_hz * FINE_SAMPLES_PER_UI))
    return np.fft.irfft(np.fft.rfft(rect) * response(frequency), n=rect.size)


def sample_times_ui(
    count: int, samples_per_ui: int, start_ui: float, rj_ui: float, pj_ui: float, rng
) -> np.ndarray:
    """Equivalent-time sampling instants in UI: `samples_per_ui` per UI from `start_ui`, each
    displaced by random jitter (Gaussian, rms `rj_ui`) and periodic jitter (peak-to-peak
    `pj_ui`, at a random phase for each sample since every sample comes from its own trigger)."""
    times = start_ui + np.arange(count, dtype=np.float64) / samples_per_ui
    times += rng.normal(0.0, rj_ui, count)
    times += 0.5 * pj_ui * np.sin(rng.uniform(0.0, 2.0 * np.pi, count))
    return times


def interpolate_periodic(fine: np.ndarray, times_ui: np.ndarray) -> np.ndarray:
    """Values of the fine periodic waveform at `times_ui` (linear interpolation)."""
    grid = np.arange(fine.size, dtype=np.float64)
    return np.interp(times_ui * FINE_SAMPLES_PER_UI, grid, fine, period=fine.size)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, fractional error below 1.2e-7 (Chebyshev fit of
    Press et al., Numerical Recipes, section 6.2), vectorised."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t
                            * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    result = t * np.exp(poly)
    return np.where(x >= 0, result, 2.0 - result)


def q_function(x: np.ndarray) -> np.ndarray:
    return 0.5 * erfc(x / np.sqrt(2.0))


# --- the simulated scope's firmware ---------------------------------------------------------------
def outer_levels(
    samples: np.ndarray, samples_per_ui: int, start_ui: float, pattern: str
) -> tuple[float, float]:
    """Firmware OOMA levels (P0, P3) of a pattern-locked capture: the mean of the samples in
    the central 3 UI of the longest run of 0s and of 3s. (802.3 takes the central 2 UI; this
    firmware version uses 3, so it reads a slow transmitter's OMA slightly lower.)"""
    symbols = pattern_symbols(pattern)
    phase = (np.arange(samples.size) / samples_per_ui + start_ui) % symbols.size
    out = []
    for symbol in (0, 3):
        start, length = longest_run(symbols, symbol)
        middle = start + length / 2.0
        distance = (phase - middle + symbols.size / 2.0) % symbols.size - symbols.size / 2.0
        out.append(float(samples[np.abs(distance) <= 1.5].mean()))
    return out[0], out[1]


def _ffe_taps(rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares FFE taps with sum 1 (Lagrange multiplier), shape (taps,)."""
    gram = rows.T @ rows
    n = gram.shape[0]
    system = np.zeros((n + 1, n + 1))
    system[:n, :n] = 2.0 * gram
    system[:n, n] = 1.0
    system[n, :n] = 1.0
    rhs = np.concatenate([2.0 * rows.T @ targets, [1.0]])
    return np.linalg.solve(system, rhs)[:n]


def firmware_tdecq_db(
    symbol_levels_w: np.ndarray,
    symbols: np.ndarray,
    baud_rate_hz: float,
    tx_response: Response,
    level_sigma_w: np.ndarray,
    rj_ui: float,
) -> float:
    """The simulated scope's TDECQ estimate, from the lane's noise-free waveform and its known
    noise (the firmware's method, documented so that it can differ from an open one):

    1. The transmitter waveform passes the reference receiver (4th-order Bessel-Thomson, baud/2).
    2. At each of 64 phases over 2 UI a 5-tap T-spaced FFE (1 precursor) is fitted by least
       squares (taps sum to 1; not TDECQ-optimised); the phase with the least residual is the
       eye centre.
    3. Two sample sets at centre -+ 0.05 UI (one value per symbol, no histogram width) get
       per-level noise `level_sigma_w` (RIN in the receiver bandwidth) times C_eq, and slope x RJ.
    4. sigma_G is the largest added Gaussian noise (before the FFE) keeping both SERs at 4.8e-4;
       TDECQ = 10 log10(OMA / (6 Q_t sigma_G)), OMA from the central 2 UI of the longest runs of
       the same waveform. Scope noise is absent from this waveform, so sigma_S does not enter.
    """
    fine = periodic_waveform(
        symbol_levels_w,
        baud_rate_hz,
        lambda f: tx_response(f) * bessel_thomson_response(f, baud_rate_hz / 2.0),
    )
    n_sym, spu = symbols.size, FINE_SAMPLES_PER_UI
    by_phase = fine.reshape(n_sym, spu)  # row n: UI n, column p: phase p / spu
    ideal = np.asarray(symbol_levels_w, dtype=np.float64)
    precursors, taps_n = 1, 5

    def taps_rows(values: np.ndarray) -> np.ndarray:
        # column k holds the sample k - precursors UI earlier (k = 0 is one UI later)
        return np.stack([np.roll(values, k - precursors) for k in range(taps_n)], axis=1)

    best = (np.inf, 0, np.zeros(taps_n))
    for phase in range(2 * spu):  # the filters delay the eye by up to about a UI
        rows = taps_rows(np.roll(by_phase[:, phase % spu], -(phase // spu)))
        taps = _ffe_taps(rows, ideal)
        residual = float(np.mean((rows @ taps - ideal) ** 2))
        if residual < best[0]:
            best = (residual, phase, taps)
    _, centre, taps = best
    c_eq = float(np.sqrt(np.sum(taps**2)))
    start, length = longest_run(symbols, 3)
    top = fine[(start + length // 2 - 1) * spu : (start + length // 2 + 1) * spu].mean()
    start, length = longest_run(symbols, 0)
    bottom = fine[(start + length // 2 - 1) * spu : (start + length // 2 + 1) * spu].mean()
    oma = float(top - bottom)
    if oma <= 0:
        return float("inf")
    p_ave = float(fine.mean())
    thresholds = p_ave + oma * np.array([-1.0, 0.0, 1.0]) / 3.0
    slope = np.gradient(fine) * spu  # W per UI
    sigma_g = np.inf
    for offset in (-0.05, 0.05):
        times = np.arange(n_sym) + (centre + offset * spu) / spu
        values = taps_rows(interpolate_periodic(fine, times)) @ taps
        jitter = rj_ui * np.abs(interpolate_periodic(slope, times))
        intrinsic = np.sqrt((c_eq * level_sigma_w[symbols]) ** 2 + jitter**2)
        sigma_g = min(sigma_g, _largest_sigma(values, symbols, thresholds, intrinsic, c_eq, oma))
    if not sigma_g > 0:
        return float("inf")
    return float(10.0 * np.log10(oma / (6.0 * _Q_T * sigma_g)))


def _largest_sigma(
    values: np.ndarray,
    symbols: np.ndarray,
    thresholds: np.ndarray,
    intrinsic: np.ndarray,
    c_eq: float,
    oma: float,
) -> float:
    """Largest sigma_G (before the FFE) for which the SER of `values` stays at the target;
    0 when even no added noise misses it. Bisection in log sigma."""
    below = np.concatenate([[-np.inf], thresholds])[symbols]  # lower decision boundary
    above = np.concatenate([thresholds, [np.inf]])[symbols]

    def ser(sigma_g: float) -> float:
        sigma = np.sqrt((c_eq * sigma_g) ** 2 + intrinsic**2)
        return float(
            np.mean(q_function((values - below) / sigma) + q_function((above - values) / sigma))
        )

    low, high = oma * 1e-6, oma / 3.0
    if ser(low) > _SER_TARGET:
        return 0.0
    for _ in range(50):
        middle = np.sqrt(low * high)
        if ser(middle) > _SER_TARGET:
            high = middle
        else:
            low = middle
    return float(low)
