"""Benchmarks of station.analysis.eye.pam4_eye against plain references on the same captures.

2**20 UI x 16 samples (16.8 M, float32 and float64): ours vs a straightforward numpy version;
2**14 UI x 16 float32: ours vs a Python loop over UIs. Each test records M samples/s in
extra_info. Run: pytest benchmarks/test_bench_eye.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from station.analysis.eye import Pam4Eye, pam4_eye

pytestmark = pytest.mark.benchmark

SPU = 16
N_UI = 2**20  # 16.8 M samples
N_UI_LOOP = 2**14  # the Python-loop reference is run on this many UIs only
LEVELS_MW = np.array([0.2, 0.8, 1.5, 2.2])
NOISE_MW = 0.02
WINDOW_UI = 0.2


def _capture(n_ui: int, dtype: type, seed: int = 0) -> NDArray[np.floating]:
    """PAM4 capture: raised-cosine edges over 0.4 UI, Gaussian noise, started mid-UI."""
    rng = np.random.default_rng(seed)
    values = LEVELS_MW[rng.integers(0, 4, n_ui)]
    t = np.arange(SPU) / SPU
    into = 0.5 * (1 + np.sin(np.pi * np.clip(t / 0.4, -0.5, 0.5)))
    out_of = 0.5 * (1 + np.sin(np.pi * np.clip((t - 1) / 0.4, -0.5, 0.5)))
    prev, nxt = np.roll(values, 1), np.roll(values, -1)
    x = (prev[:, None] + (values - prev)[:, None] * into + (nxt - values)[:, None] * out_of).ravel()
    x += rng.normal(0.0, NOISE_MW, x.size)
    return np.roll(x, 5).astype(dtype)


@pytest.fixture(scope="module")
def capture32() -> NDArray[np.float32]:
    return _capture(N_UI, np.float32)


@pytest.fixture(scope="module")
def capture64(capture32: NDArray[np.float32]) -> NDArray[np.float64]:
    return capture32.astype(np.float64)


# --- references ----------------------------------------------------------------------------------


def numpy_reference(x: NDArray[np.floating], spu: int) -> dict[str, object]:
    """The straightforward vectorised version: thresholds from percentiles of the whole capture,
    every sample labelled with np.digitize, per-phase level spread by np.bincount, then the
    window samples at the tightest phase split into levels with boolean masks."""
    n_ui = x.size // spu
    folded = x[: n_ui * spu].reshape(n_ui, spu)
    lo, hi = np.percentile(x, [0.5, 99.5])
    thresholds = lo + (hi - lo) * np.array([1, 2, 3]) / 4
    labels = np.digitize(folded, thresholds)
    keys = (np.arange(spu) * 4 + labels).ravel()
    count = np.bincount(keys, minlength=4 * spu)
    s1 = np.bincount(keys, weights=folded.ravel(), minlength=4 * spu)
    s2 = np.bincount(keys, weights=folded.ravel().astype(np.float64) ** 2, minlength=4 * spu)
    within = (s2 - s1**2 / np.maximum(count, 1)).reshape(spu, 4).sum(axis=1)
    centre = int(np.argmin(within))
    half = int(WINDOW_UI * spu / 2)
    window = folded[:, (centre + np.arange(-half, half + 1)) % spu].ravel()
    for _ in range(2):  # k-means on the window, started from the percentile thresholds
        label = np.digitize(window, thresholds)
        levels = np.array([window[label == k].mean() for k in range(4)])
        thresholds = 0.5 * (levels[1:] + levels[:-1])
    label = np.digitize(window, thresholds)
    levels = np.array([window[label == k].mean(dtype=np.float64) for k in range(4)])
    sigmas = np.array([window[label == k].std(dtype=np.float64) for k in range(4)])
    return _summary(levels, sigmas, float(x.mean(dtype=np.float64)), centre / spu)


def python_loop_reference(x: NDArray[np.floating], spu: int) -> dict[str, object]:
    """The obvious loop: fold UI by UI into per-phase histograms, pick the phase where 4-means
    clusters are tightest, then walk the UIs again and accumulate level sums in the window."""
    n_ui = x.size // spu
    n_bins = 64
    lo, hi = float(x.min()), float(x.max())
    scale = (n_bins - 1) / (hi - lo)
    hist = np.zeros((spu, n_bins))
    phase = np.arange(spu)
    for i in range(n_ui):
        row = x[i * spu : (i + 1) * spu]
        hist[phase, ((row - lo) * scale).astype(int)] += 1
    centres_v = lo + np.arange(n_bins) / scale
    best, best_score, best_means = 0, np.inf, None
    for p in range(spu):
        means = lo + (hi - lo) * (np.arange(4) + 0.5) / 4
        for _ in range(10):
            labels = np.digitize(centres_v, 0.5 * (means[1:] + means[:-1]))
            weight = np.bincount(labels, weights=hist[p], minlength=4)
            total = np.bincount(labels, weights=hist[p] * centres_v, minlength=4)
            means = np.where(weight > 0, total / np.maximum(weight, 1), means)
        score = np.sum(hist[p] * (centres_v - means[labels]) ** 2)
        if score < best_score:
            best, best_score, best_means = p, score, means
    thresholds = 0.5 * (best_means[1:] + best_means[:-1])
    half = int(WINDOW_UI * spu / 2)
    sums, squares, counts = np.zeros(4), np.zeros(4), np.zeros(4)
    total_power = float(x.sum(dtype=np.float64))
    for i in range(1, n_ui - 1):
        start = i * spu + best - half
        w = x[start : start + 2 * half + 1].astype(np.float64)
        level = int(np.sum(w.mean() > thresholds))
        sums[level] += w.sum()
        squares[level] += np.dot(w, w)
        counts[level] += w.size
    levels = sums / counts
    sigmas = np.sqrt(squares / counts - levels**2)
    return _summary(levels, sigmas, total_power / x.size, best / spu)


def _summary(
    levels: NDArray[np.float64], sigmas: NDArray[np.float64], average: float, centre_ui: float
) -> dict[str, object]:
    mid = 0.5 * (levels[0] + levels[3])
    es1 = (levels[1] - mid) / (levels[0] - mid)
    es2 = (levels[2] - mid) / (levels[3] - mid)
    return {
        "levels": levels,
        "sigmas": sigmas,
        "eye_heights": (levels[1:] - 3 * sigmas[1:]) - (levels[:-1] + 3 * sigmas[:-1]),
        "rlm": min(3 * es1, 3 * es2, 2 - 3 * es1, 2 - 3 * es2),
        "oma": levels[3] - levels[0],
        "er_db": 10 * np.log10(levels[3] / levels[0]),
        "average": average,
        "centre_ui": centre_ui,
    }


# --- checks and rates ----------------------------------------------------------------------------


def _check(levels: NDArray[np.float64], sigmas: NDArray[np.float64]) -> None:
    np.testing.assert_allclose(levels, LEVELS_MW, atol=2e-3)
    np.testing.assert_allclose(sigmas, NOISE_MW, rtol=0.05)


def _record_rate(benchmark: Any, n_samples: int, dtype: str) -> None:
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["samples"] = n_samples
    benchmark.extra_info["dtype"] = dtype
    benchmark.extra_info["msamples_per_s_median"] = round(n_samples / seconds / 1e6, 1)
    benchmark.extra_info["msamples_per_s_best"] = round(
        n_samples / benchmark.stats.stats.min / 1e6, 1
    )


# --- 2**20 UI x 16: ours against the straightforward numpy version ------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bench_pam4_eye_full(benchmark, capture32, capture64, dtype: str) -> None:
    x = capture32 if dtype == "float32" else capture64
    benchmark.group = f"pam4_eye 2^20 UI x 16 {dtype}"
    eye: Pam4Eye = benchmark(pam4_eye, x, SPU)
    _check(eye.levels, eye.level_sigmas)
    _record_rate(benchmark, x.size, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bench_numpy_reference_full(benchmark, capture32, capture64, dtype: str) -> None:
    x = capture32 if dtype == "float32" else capture64
    benchmark.group = f"pam4_eye 2^20 UI x 16 {dtype}"
    ref = benchmark.pedantic(numpy_reference, args=(x, SPU), rounds=5, iterations=1)
    _check(ref["levels"], ref["sigmas"])
    _record_rate(benchmark, x.size, dtype)


# --- 2**14 UI x 16: ours against a Python loop over UIs -----------------------------------------


def test_bench_pam4_eye_loop_size(benchmark, capture32) -> None:
    x = capture32[: N_UI_LOOP * SPU]
    benchmark.group = "pam4_eye 2^14 UI x 16 float32"
    eye = benchmark(pam4_eye, x, SPU)
    _check(eye.levels, eye.level_sigmas)
    _record_rate(benchmark, x.size, "float32")


def test_bench_python_loop_reference(benchmark, capture32) -> None:
    x = capture32[: N_UI_LOOP * SPU]
    benchmark.group = "pam4_eye 2^14 UI x 16 float32"
    ref = benchmark.pedantic(python_loop_reference, args=(x, SPU), rounds=3, iterations=1)
    _check(ref["levels"], ref["sigmas"])
    _record_rate(benchmark, x.size, "float32")
