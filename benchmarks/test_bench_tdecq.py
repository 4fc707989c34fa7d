"""Benchmark of station.analysis.tdecq against a plain reference on the same PRBS13Q capture.

The reference is the obvious implementation: full-length DFT filtering, exact per-sample SER with
scipy brentq for sigma, and a brute-force grid over the four free taps. It runs once (slow).
Run: pytest benchmarks/test_bench_tdecq.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import optimize, special

from station.analysis.patterns import pam4_levels, prbs13q, symbol_waveform
from station.analysis.tdecq import reference_receiver_response, tdecq

pytestmark = pytest.mark.benchmark

BAUD_HZ = 53.125e9
SPUI = 32
SCOPE_NOISE_MW = 0.002
GROUP = "tdecq PRBS13Q 8191 UI x 32 samples, receiver + 5-tap FFE"
# Brute-force grid for the reference: 3 x 5 x 3 x 3 = 135 tap sets around the channel inverse,
# then two finer 3^4 grids.
GRID = ([-0.05, 0.0, 0.05], [-0.35, -0.3, -0.25, -0.2, -0.15], [0.0, 0.05, 0.1], [-0.05, 0.0, 0.05])


@pytest.fixture(scope="module")
def capture() -> tuple[np.ndarray, np.ndarray]:
    """PRBS13Q, OMA 1 mW, ER 5 dB, post-cursor ISI, 0.3 UI edges, 10 uW rms noise."""
    symbols = prbs13q()
    levels = pam4_levels(symbols, 0.4625, 1.4625)
    channel = 0.85 * levels + 0.15 * np.roll(levels, 1)
    wave = symbol_waveform(channel, SPUI, transition_ui=0.3, delay_samples=11)
    return wave + np.random.default_rng(7).normal(0.0, 0.01, wave.size), symbols


def crossing_centre(y: np.ndarray, level: float) -> float:
    """Eye centre: 0.5 UI after the circular mean of the crossing phases of ``level``."""
    s = y - level
    nxt = np.roll(s, -1)
    i = np.nonzero(np.sign(s) != np.sign(nxt))[0]
    t = i + s[i] / (s[i] - nxt[i])
    return (np.angle(np.mean(np.exp(2j * np.pi * t / SPUI))) / (2 * np.pi) + 0.5) % 1.0


def reference_tdecq(samples: np.ndarray, symbols: np.ndarray) -> tuple[float, np.ndarray]:
    """TDECQ written the obvious way; returns (tdecq_db, taps)."""
    n = samples.size
    n_ui = n // SPUI
    freq = np.fft.rfftfreq(n, d=1 / (SPUI * BAUD_HZ))
    response = reference_receiver_response(freq, BAUD_HZ / 2)
    y = np.fft.irfft(np.fft.rfft(samples) * response, n=n)
    p_ave = y.mean()
    centre = crossing_centre(y, p_ave)

    centre_idx = (np.arange(n_ui) * SPUI + round(centre * SPUI)) % n
    values = y[centre_idx]
    scores = [np.dot(values, np.roll(symbols, k)) for k in range(n_ui)]
    aligned = np.roll(symbols, int(np.argmax(scores)))
    sums = {0: [], 3: []}
    k = 0
    while k < n_ui:  # runs of >= 6 outer symbols, central 2 UI
        run = 1
        while k + run < n_ui and aligned[k + run] == aligned[k]:
            run += 1
        if aligned[k] in sums and run >= 6:
            start = round((k + run / 2 - 1 + centre - 0.5) * SPUI)
            sums[int(aligned[k])].append(y[np.arange(start, start + 2 * SPUI) % n].mean())
        k += run
    oma = np.mean(sums[3]) - np.mean(sums[0])
    thresholds = p_ave + np.array([-1.0, 0.0, 1.0]) * oma / 3
    bounds = np.concatenate([[-np.inf], thresholds, [np.inf]])
    phase = (np.arange(n) % SPUI) / SPUI

    def sigma_for(hist: np.ndarray, weight: np.ndarray) -> float:
        region = np.searchsorted(thresholds, hist)
        d_lo, d_hi = hist - bounds[region], bounds[region + 1] - hist

        def excess(sigma: float) -> float:
            ser = special.ndtr(-d_lo / sigma) + special.ndtr(-d_hi / sigma)
            return np.average(ser, weights=weight) - 4.8e-4

        if excess(1e-6 * oma) > 0:
            return 0.0
        return optimize.brentq(excess, 1e-6 * oma, oma, xtol=1e-9 * oma)

    def evaluate(free: tuple[float, ...]) -> float:
        pre, post1, post2, post3 = free
        taps = np.array([pre, 1 - pre - post1 - post2 - post3, post1, post2, post3])
        eq = sum(c * np.roll(y, (k - 1) * SPUI) for k, c in enumerate(taps))
        c = crossing_centre(eq, p_ave)  # the centre of the equalised eye
        sigmas = []
        for side in (-1, 1):
            # each sample spans -+ half a sample; weight = overlap with the 0.04 UI window
            lag = ((phase - (c + side * 0.05) + 0.5) % 1.0 - 0.5) * SPUI
            overlap = np.minimum(lag + 0.5, 0.02 * SPUI) - np.maximum(lag - 0.5, -0.02 * SPUI)
            inside = overlap > 0
            sigmas.append(sigma_for(eq[inside], overlap[inside]))
        sigma_g = min(sigmas) / np.sqrt(np.sum(taps**2))
        return 10 * math.log10(oma / (6 * 3.414 * math.hypot(sigma_g, SCOPE_NOISE_MW)))

    best = min(itertools.product(*GRID), key=evaluate)
    for step in (0.05 / 3, 0.05 / 9):  # coarse-to-fine: 3^4 grids around the best point
        axes = [[b - step, b, b + step] for b in best]
        best = min(itertools.product(*axes), key=evaluate)
    pre, post1, post2, post3 = best
    return evaluate(best), np.array([pre, 1 - sum(best), post1, post2, post3])


def test_bench_tdecq(benchmark, capture) -> None:
    benchmark.group = GROUP
    wave, _ = capture
    result = benchmark(tdecq, wave, SPUI, BAUD_HZ, SCOPE_NOISE_MW)
    assert 1.0 < result.tdecq_db < 1.6


def test_bench_tdecq_reference(benchmark, capture) -> None:
    benchmark.group = GROUP
    wave, symbols = capture
    value, taps = benchmark.pedantic(reference_tdecq, (wave, symbols), rounds=1, iterations=1)
    ours = tdecq(wave, SPUI, BAUD_HZ, SCOPE_NOISE_MW)
    assert ours.tdecq_db <= value + 0.01  # the optimiser does at least as well as the grid
    assert abs(ours.tdecq_db - value) < 0.03
    np.testing.assert_allclose(ours.taps, taps, atol=0.03)
