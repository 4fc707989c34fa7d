"""PAM4 test patterns: PRBS13/PRBS13Q generation, ideal waveforms, symbol decisions and alignment.

Owns pattern generation for known-answer captures and the pattern bookkeeping TDECQ needs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from station.analysis.errors import AnalysisError

PRBS13_LENGTH = 8191
"""Period of PRBS13 in bits (2**13 - 1); PRBS13Q has the same period in symbols."""

# IEEE 802.3 clause 94.2.9.1: G(x) = 1 + x + x^2 + x^12 + x^13, i.e. each new bit is the XOR of the
# bits 1, 2, 12 and 13 positions earlier.
_PRBS13_DELAYS = (1, 2, 12, 13)
_PRBS13_ORDER = 13

# IEEE 802.3 clause 120.5.7 Gray coding of a bit pair {A, B} (A the first bit): 00->0, 01->1,
# 11->2, 10->3. Indexed by 2*A + B.
_GRAY_TO_SYMBOL = np.array([0, 1, 3, 2], dtype=np.int8)
_OMA_RUN_UI = 6  # SSPRQ has a run of 7 threes and one of 6 zeros for OMA outer; so has PRBS13Q
_MIN_RUN_UI = 3


def prbs13(n_bits: int = PRBS13_LENGTH, seed: int = 0x1FFF) -> NDArray[np.uint8]:
    """PRBS13 bit sequence (IEEE 802.3 clause 94.2.9.1, G(x) = 1 + x + x^2 + x^12 + x^13).

    The bits are generated without a per-bit Python loop: the 13-bit state window obeys
    ``w[n + m] = A^m w[n]`` over GF(2), so the windows for ``n < 2**k`` are doubled to ``2**(k+1)``
    with one matrix product per step.

    Args:
        n_bits: Number of bits to return (any positive length; the sequence repeats every 8191).
        seed: Initial 13-bit state, bit ``i`` is the bit ``i`` positions into the sequence; must be
            non-zero. Any non-zero seed gives the same cyclic sequence, started elsewhere.

    Returns:
        Bits, shape (n_bits,), dtype uint8, values 0 or 1.

    Raises:
        AnalysisError: ``n_bits`` not positive or ``seed`` zero or wider than 13 bits.
    """
    if int(n_bits) != n_bits or n_bits < 1:
        raise AnalysisError(f"n_bits must be a positive integer, got {n_bits!r}")
    if int(seed) != seed or not 0 < seed < 2**_PRBS13_ORDER:
        raise AnalysisError(f"seed must be a non-zero 13-bit integer, got {seed!r}")
    order = _PRBS13_ORDER
    # Companion matrix: w[n+1] = A w[n], w[n] = (b[n], ..., b[n+12]).
    step = np.zeros((order, order), dtype=np.int64)
    step[np.arange(order - 1), np.arange(1, order)] = 1
    for delay in _PRBS13_DELAYS:
        step[order - 1, order - delay] = 1
    windows = ((seed >> np.arange(order)) & 1).astype(np.int64)[:, None]  # (13, 1)
    power = step
    while windows.shape[1] < n_bits:  # log2(n_bits) doublings
        windows = np.concatenate([windows, (power @ windows) % 2], axis=1)
        power = (power @ power) % 2
    return windows[0, :n_bits].astype(np.uint8)


def prbs13q(n_symbols: int = PRBS13_LENGTH, seed: int = 0x1FFF) -> NDArray[np.int8]:
    """PRBS13Q PAM4 symbols (IEEE 802.3 clause 120.5.11.2.1).

    Two periods of PRBS13 are taken as consecutive bit pairs {A, B} (A first) and Gray coded:
    00 -> 0, 01 -> 1, 11 -> 2, 10 -> 3. One period is 8191 symbols, in which symbol 0 occurs 2047
    times and symbols 1, 2 and 3 occur 2048 times each.

    Args:
        n_symbols: Number of symbols (the pattern repeats every 8191).
        seed: PRBS13 seed, see :func:`prbs13`.

    Returns:
        Symbols, shape (n_symbols,), dtype int8, values 0..3 (0 is the lowest optical level).
    """
    if int(n_symbols) != n_symbols or n_symbols < 1:
        raise AnalysisError(f"n_symbols must be a positive integer, got {n_symbols!r}")
    bits = prbs13(2 * n_symbols, seed).reshape(n_symbols, 2).astype(np.int64)
    return _GRAY_TO_SYMBOL[2 * bits[:, 0] + bits[:, 1]]


def pam4_levels(symbols: ArrayLike, p0: float, p3: float) -> NDArray[np.float64]:
    """Map PAM4 symbols to four equally spaced optical levels.

    Args:
        symbols: Symbols 0..3, any shape.
        p0: Power of symbol 0 (any linear unit, e.g. mW).
        p3: Power of symbol 3, same unit.

    Returns:
        Powers, same shape as ``symbols``: ``p0 + symbol * (p3 - p0) / 3``.
    """
    sym = np.asarray(symbols)
    if sym.size and (sym.min() < 0 or sym.max() > 3):
        raise AnalysisError("symbols must be integers 0..3")
    return p0 + sym.astype(np.float64) * (p3 - p0) / 3.0


def symbol_waveform(
    values: ArrayLike,
    samples_per_ui: int,
    *,
    transition_ui: float = 0.0,
    delay_samples: int = 0,
) -> NDArray[np.float64]:
    """Periodic sampled waveform holding each symbol-rate value for one unit interval.

    Args:
        values: Symbol-rate values (e.g. optical power per symbol), shape (n_ui,); treated as one
            period of a repeating pattern.
        samples_per_ui: Samples per unit interval (integer >= 1).
        transition_ui: Width of each edge in UI. 0 gives instantaneous steps between samples;
            otherwise the held waveform is circularly convolved with a Hann pulse of this width, so
            edges are smooth and settle within ``transition_ui / 2`` of the UI boundary.
        delay_samples: Circular delay of the whole waveform in samples (captures are not aligned
            to the UI); symbol k then starts at sample ``k * samples_per_ui + delay_samples``.

    Returns:
        Waveform, shape (n_ui * samples_per_ui,), same unit as ``values``.
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 1 or vals.size < 2:
        raise AnalysisError(f"values must be 1-D with at least 2 symbols, got shape {vals.shape}")
    if int(samples_per_ui) != samples_per_ui or samples_per_ui < 1:
        raise AnalysisError(f"samples_per_ui must be a positive integer, got {samples_per_ui!r}")
    if not 0.0 <= transition_ui < 1.0:
        raise AnalysisError(f"transition_ui must be in [0, 1), got {transition_ui!r}")
    wave = np.repeat(vals, int(samples_per_ui))
    width = round(transition_ui * samples_per_ui)
    if width >= 2:
        pulse = np.hanning(width + 2)[1:-1]
        kernel = np.zeros(wave.size)
        kernel[:width] = pulse / pulse.sum()
        kernel = np.roll(kernel, -(width // 2))  # centre the pulse on the edge
        wave = np.fft.irfft(np.fft.rfft(wave) * np.fft.rfft(kernel), n=wave.size)
    return np.roll(wave, int(delay_samples))


def decide_pam4(values: ArrayLike) -> NDArray[np.intp]:
    """Blind PAM4 decisions by 1-D k-means with four clusters.

    Args:
        values: One sample per unit interval at the eye centre, shape (n_ui,), any unit.

    Returns:
        Symbols 0..3 (0 the lowest cluster), shape (n_ui,).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 4 or not np.all(np.isfinite(v)):
        raise AnalysisError(f"values must be 1-D, finite, at least 4 long, got shape {v.shape}")
    centres = np.quantile(v, [0.125, 0.375, 0.625, 0.875])
    for _ in range(20):  # k-means iterations
        labels = np.searchsorted(0.5 * (centres[1:] + centres[:-1]), v)
        counts = np.bincount(labels, minlength=4)
        sums = np.bincount(labels, weights=v, minlength=4)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.array_equal(new, centres):
            break
        centres = new
    return np.searchsorted(0.5 * (centres[1:] + centres[:-1]), v)


def align_pattern(values: ArrayLike, pattern: ArrayLike) -> NDArray[np.intp]:
    """Rotate a known symbol pattern onto measured symbol-rate values by circular correlation.

    Args:
        values: One sample per unit interval, shape (n,), any unit.
        pattern: Symbols 0..3, shape (n,) (tile a shorter period first).

    Returns:
        The pattern rotated so that element k is the symbol of ``values[k]``, shape (n,).

    Raises:
        AnalysisError: Shapes differ, or the best normalised correlation is below 0.5.
    """
    v = np.asarray(values, dtype=np.float64)
    pat = np.asarray(pattern)
    if v.ndim != 1 or v.shape != pat.shape:
        raise AnalysisError(f"values {v.shape} and pattern {pat.shape} must be 1-D, same length")
    ref = pat - pat.mean()
    centred = v - v.mean()
    corr = np.fft.irfft(np.fft.rfft(centred) * np.conj(np.fft.rfft(ref)), n=ref.size)
    shift = int(np.argmax(corr))
    score = corr[shift] / (np.linalg.norm(centred) * np.linalg.norm(ref) + 1e-300)
    if score < 0.5:
        raise AnalysisError(f"values do not match the pattern (correlation {score:.2f})")
    return np.roll(pat.astype(np.intp), shift)


def symbol_runs(
    symbols: ArrayLike,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Runs of equal symbols in a periodic sequence.

    Args:
        symbols: Symbols, shape (n,), treated as one period.

    Returns:
        (starts, lengths, values), each shape (n_runs,): index of each run's first symbol, its
        length (a run may wrap past the end), and its symbol.

    Raises:
        AnalysisError: The sequence holds a single symbol value.
    """
    sym = np.asarray(symbols)
    starts = np.nonzero(sym != np.roll(sym, 1))[0]
    if starts.size == 0:
        raise AnalysisError("symbols hold a single value: no runs to find")
    lengths = np.diff(np.append(starts, starts[0] + sym.size))
    return starts, lengths, sym[starts]


def outer_levels_from_runs(
    wave: ArrayLike, symbols: ArrayLike, centre_ui: float
) -> tuple[float, float, str]:
    """P0 and P3 of a periodic PAM4 waveform from the central 2 UI of long outer-symbol runs.

    Runs of at least 6 equal outer symbols are used (PRBS13Q and SSPRQ: a run of 7 threes and one
    of 6 zeros), else the longest outer runs of at least 3 UI; failing that, the means of the
    eye-centre samples of symbols 0 and 3.

    Args:
        wave: Waveform, shape (n_ui, samples_per_ui), row k holding unit interval k.
        symbols: Symbol of each unit interval, shape (n_ui,), values 0..3.
        centre_ui: Eye-centre phase in UI: unit interval k is centred ``centre_ui`` UI after the
            start of row k and spans -+ 0.5 UI about it.

    Returns:
        (P0, P3, description of the method used), levels in the unit of ``wave``.

    Raises:
        AnalysisError: No symbol 0 or 3 in ``symbols``.
    """
    w = np.asarray(wave, dtype=np.float64)
    sym = np.asarray(symbols)
    spui = w.shape[1]
    if not (np.any(sym == 0) and np.any(sym == 3)):
        raise AnalysisError("symbols hold no 0 or no 3: no outer levels")
    starts, lengths, values = symbol_runs(sym)
    flat = w.ravel()
    levels, needs = [], []
    for level in (0, 3):
        mine = values == level
        longest = int(lengths[mine].max())
        if longest < _MIN_RUN_UI:
            break
        need = min(_OMA_RUN_UI, longest)
        sel = mine & (lengths >= need)
        # Unit interval k starts (centre - 0.5) UI into row k: take 2 UI about each run's middle.
        first_ui = starts[sel] + lengths[sel] / 2.0 - 1.0 + centre_ui - 0.5
        first = np.round(first_ui * spui).astype(np.intp)
        levels.append(float(flat[(first[:, None] + np.arange(2 * spui)) % flat.size].mean()))
        needs.append(need)
    if len(levels) == 2:
        method = f"mean of the central 2 UI of runs of >= {needs[0]} zeros and >= {needs[1]} threes"
        return levels[0], levels[1], method
    centre_values = ui_samples(w, [round(centre_ui * spui)])[:, 0]
    p0, p3 = float(centre_values[sym == 0].mean()), float(centre_values[sym == 3].mean())
    return p0, p3, "mean of the eye-centre samples of symbols 0 and 3 (no outer runs >= 3 UI)"


def ui_samples(wave: ArrayLike, offsets: ArrayLike) -> NDArray[np.float64]:
    """Samples at given offsets from the start of each unit interval of a periodic waveform.

    Args:
        wave: Waveform, shape (n_ui, samples_per_ui), row k starting unit interval k.
        offsets: Sample offsets from a row's start, shape (n_offsets,); may be negative or reach
            past the row, so that each row keeps the samples of its own UI when the eye centre
            sits near a row edge. Wraps around the capture.

    Returns:
        Samples, shape (n_ui, n_offsets).
    """
    w = np.asarray(wave, dtype=np.float64)
    n_ui, spui = w.shape
    idx = np.arange(n_ui)[:, None] * spui + np.asarray(offsets, dtype=np.intp)[None, :]
    return w.ravel()[idx % w.size]
