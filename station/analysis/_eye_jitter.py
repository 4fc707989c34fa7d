"""Edge timing and Gaussian tail fits for NRZ jitter (private to `station.analysis.eye`).

Owns the crossing-time extraction over a whole capture and the dual-Dirac tail fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from station.analysis._eye_fold import Waveform, rows
from station.analysis.errors import AnalysisError

MIN_EDGES = 1000
"""Fewest edges for a jitter estimate: the tails need a few hundred crossings each."""

_TAIL_MIN_BINS = 4
_TAIL_CUTOFF = 0.7
"""A tail fit stops, going inward, at the first bin with this fraction of the tail's peak."""

_BINS_PER_SPAN = 20.0
"""Bin width = (quantile 0.9995 - quantile 0.95 of the tail side) / this (about sigma / 12)."""

_MAX_BINS = 200_000
_IRLS_ITERATIONS = 50


def crossing_times_ui(x: Waveform, spu: int, centre: float, level: float) -> NDArray[np.float64]:
    """Time of every edge of the capture where it crosses ``level``, in UI.

    Rows run from one eye centre to the next (spu + 1 samples); a row whose end samples lie on
    opposite sides of ``level`` holds one edge. Its time is the mean of the first and the last
    crossing inside the row (they coincide without noise chatter), each linearly interpolated
    between the two samples around it.

    Args:
        x: (n,) capture.
        spu: Samples per UI.
        centre: Eye centre phase in samples (0..spu).
        level: Threshold.

    Returns:
        (n_edges,) times in UI relative to the nominal crossing, eye centre + UI/2.
    """
    start = round(centre) % spu
    lead = (centre - start + spu / 2) % spu - spu / 2
    nominal = lead + spu / 2
    above = x > level
    above_rows = rows(above, start, spu, spu + 1)
    edge_rows = np.flatnonzero(above_rows[:, 0] != above_rows[:, -1])
    if edge_rows.size < MIN_EDGES:
        raise AnalysisError(
            f"samples hold {edge_rows.size} edges; jitter needs at least {MIN_EDGES}"
        )
    edges = above_rows[edge_rows]
    change = edges[:, 1:] != edges[:, :-1]
    first = np.argmax(change, axis=1)
    last = spu - 1 - np.argmax(change[:, ::-1], axis=1)
    base = start + edge_rows * spu

    def interpolated(col: NDArray[np.intp]) -> NDArray[np.float64]:
        before = x[base + col].astype(np.float64)
        after = x[base + col + 1].astype(np.float64)
        return col + (level - before) / (after - before)

    times = 0.5 * (interpolated(first) + interpolated(last))
    return (times - nominal) / spu


@dataclass(frozen=True, slots=True)
class TailFit:
    """Gaussian fitted to one tail: mean and sigma in the unit of the times (UI)."""

    mean: float
    sigma: float


def fit_tails(times: NDArray[np.float64]) -> tuple[TailFit, TailFit]:
    """Gaussians fitted to the left and right tails of a crossing-time distribution."""
    median = float(np.median(times))
    right = _fit_upper_tail(times[times >= median] - median)
    left = _fit_upper_tail(median - times[times <= median])
    return (
        TailFit(median - left.mean, left.sigma),
        TailFit(median + right.mean, right.sigma),
    )


def _fit_upper_tail(u: NDArray[np.float64]) -> TailFit:
    """Gaussian fitted to the upper tail of ``u`` (u >= 0, one half of the distribution).

    Counts in bins are modelled as Poisson with log-mean a u^2 + b u + c (a Gaussian) and fitted
    by maximum likelihood (iteratively reweighted least squares), so empty far-tail bins count
    too and no log of a small count biases the fit. The bins used run from where the count
    first reaches 70 % of the peak, going inward, out to the last non-empty bin.
    """
    q_inner, q_outer = np.quantile(u, [0.9, 0.999])
    top = float(u.max())
    width = max((q_outer - q_inner) / _BINS_PER_SPAN, top / _MAX_BINS)
    if not width > 0:
        raise AnalysisError("crossing times show no spread: cannot fit jitter tails")
    counts = np.bincount((u / width).astype(np.intp)).astype(np.float64)
    counts = counts[: np.flatnonzero(counts)[-1] + 1]
    peak = counts.max()
    inner = int(np.flatnonzero(counts >= _TAIL_CUTOFF * peak)[-1]) + 1
    y = counts[inner:]
    if y.size < _TAIL_MIN_BINS or np.count_nonzero(y) < _TAIL_MIN_BINS:
        raise AnalysisError("crossing-time tail too short to fit a Gaussian")
    centre_bin = inner + 0.5 * (y.size - 1)
    half_span = max(0.5 * (y.size - 1), 1.0)
    s = (np.arange(inner, counts.size) - centre_bin) / half_span
    design = np.stack([np.ones_like(s), s, s * s], axis=1)
    beta, *_ = np.linalg.lstsq(design, np.log(y + 0.5), rcond=None)
    for _ in range(_IRLS_ITERATIONS):  # iterations of an optimiser, not a data loop
        eta = np.clip(design @ beta, -700.0, 700.0)
        mu = np.exp(eta)
        z = eta + (y - mu) / mu
        root = np.sqrt(mu)
        new, *_ = np.linalg.lstsq(design * root[:, None], z * root, rcond=None)
        done = np.allclose(new, beta, rtol=1e-10, atol=1e-12)
        beta = new
        if done:
            break
    _, b, a = beta
    if not a < 0:
        raise AnalysisError("crossing-time tail is not Gaussian-shaped (log count not concave)")
    # back to u: bin k spans [k w, (k + 1) w), centre (k + 0.5) w, s = (k - centre_bin)/half_span
    scale = width * half_span
    mean_s = -b / (2.0 * a)
    sigma_s = np.sqrt(-1.0 / (2.0 * a))
    return TailFit(float((mean_s * half_span + centre_bin + 0.5) * width), float(sigma_s * scale))
