"""Folding a sampled waveform modulo the unit interval (private to `station.analysis.eye`).

Owns input checks, eye-centre search, level clustering, per-phase level statistics and the one
full-length pass that gives the level means, sigmas and the average power.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, NDArray

from station.analysis.errors import AnalysisError

MIN_SAMPLES_PER_UI = 4
"""Fewer samples per UI cannot place a central window and an eye edge."""

MIN_UI = 64
"""Fewest whole unit intervals a capture must hold."""

SUBSET_SAMPLES = 2**17
"""Samples (about) examined per phase for the centre search and the eye widths."""

_SUBSET_BLOCKS = 8
"""The subset is this many contiguous runs of UIs spread over the capture: contiguous runs cannot
alias with a periodic test pattern the way a fixed stride can."""

_HIST_BINS = 256
_HIST_TAIL = 5e-4
"""Fraction of subset samples left outside the histogram range at each end (outlier guard)."""

_BLOCK_BYTES = 1 << 20
"""Block size of the full pass: small enough to stay in cache between its reads."""

_KMEANS_ITERATIONS = 30
_SETTLED_SAMPLES = 0.25
"""A centre refinement smaller than this (samples) does not warrant a second profile."""
_SIGMA_MULTIPLE = 3.0
"""Sigma-method eye edges: mean +- 3 sigma."""

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Waveform = NDArray[np.float32] | NDArray[np.float64]


def as_waveform(samples: ArrayLike) -> Waveform:
    """The capture as a contiguous 1-D float32/float64 array (float32 is kept, not upcast)."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise AnalysisError(f"samples must be a 1-D array, got shape {arr.shape}")
    if arr.dtype not in _DTYPES:
        if arr.dtype.kind not in "biuf":
            raise AnalysisError(f"samples must be real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    contiguous: Waveform = np.ascontiguousarray(arr)
    return contiguous


def check_samples_per_ui(samples_per_ui: int) -> int:
    """``samples_per_ui`` as an int, at least `MIN_SAMPLES_PER_UI`."""
    if isinstance(samples_per_ui, bool | np.bool_):
        raise AnalysisError(f"samples_per_ui must be an integer, got {samples_per_ui!r}")
    try:
        spu = operator.index(samples_per_ui)
    except TypeError as err:
        raise AnalysisError(f"samples_per_ui must be an integer, got {samples_per_ui!r}") from err
    if spu < MIN_SAMPLES_PER_UI:
        raise AnalysisError(
            f"samples_per_ui must be at least {MIN_SAMPLES_PER_UI}, got {samples_per_ui}"
        )
    return spu


def check_length(x: Waveform, spu: int) -> None:
    """Raise unless ``x`` holds at least `MIN_UI` + 2 unit intervals."""
    if x.size < (MIN_UI + 2) * spu:
        raise AnalysisError(
            f"samples holds {x.size} samples = {x.size / spu:.1f} UI at samples_per_ui={spu}; "
            f"need at least {MIN_UI + 2} UI"
        )


def check_window(window_ui: float) -> float:
    """``window_ui`` as a float in (0, 0.8]."""
    w = float(window_ui)
    if not 0.0 < w <= 0.8:
        raise AnalysisError(f"window_ui must be in (0, 0.8] UI, got {window_ui!r}")
    return w


def rows(x: NDArray[Any], start: int, spu: int, width: int) -> NDArray[Any]:
    """Read-only view, shape (n_rows, width): row r holds samples start + r*spu ... + width - 1."""
    n_rows = (x.size - start - width) // spu + 1
    step = x.strides[0]
    return as_strided(x[start:], shape=(n_rows, width), strides=(spu * step, step), writeable=False)


def subset_rows(n_rows: int, spu: int) -> NDArray[np.intp]:
    """Indices of the rows examined per phase: all, or `_SUBSET_BLOCKS` contiguous runs."""
    n_sub = max(SUBSET_SAMPLES // spu, 4 * _SUBSET_BLOCKS)
    if n_rows <= n_sub:
        return np.arange(n_rows)
    run = n_sub // _SUBSET_BLOCKS
    starts = np.linspace(0, n_rows - run, _SUBSET_BLOCKS).round().astype(np.intp)
    return (starts[:, None] + np.arange(run)).ravel()


def gather_subset(x: Waveform, start: int, spu: int, width: int) -> NDArray[np.float64]:
    """The subset rows (see `subset_rows`) of `rows` as a float64 copy, checked finite."""
    view = rows(x, start, spu, width)
    sub = view[subset_rows(view.shape[0], spu)].astype(np.float64)
    if not np.all(np.isfinite(sub)):
        raise AnalysisError("samples contain NaN or infinite values")
    return sub


def _kmeans_histograms(
    hist: NDArray[np.float64], centres_v: NDArray[np.floating[Any]], n_levels: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """1-D k-means on many histograms at once.

    Args:
        hist: Counts, shape (n_phases, n_bins).
        centres_v: Bin centres, shape (n_bins,).
        n_levels: Number of clusters.

    Returns:
        Cluster means, shape (n_phases, n_levels), ascending; and the within-cluster sum of
        squares divided by the total sum of squares per phase, shape (n_phases,) (inf where a
        phase has no spread).
    """
    cdf = np.cumsum(hist, axis=1)
    cdf /= np.maximum(cdf[:, -1:], 1.0)
    quantiles = (np.arange(n_levels) + 0.5) / n_levels
    first = (cdf[:, :, None] < quantiles).sum(axis=1).clip(0, centres_v.size - 1)
    means = centres_v[first]
    level_ids = np.arange(n_levels)
    for _ in range(_KMEANS_ITERATIONS):
        thresholds = 0.5 * (means[:, 1:] + means[:, :-1])
        labels = (centres_v[None, :, None] > thresholds[:, None, :]).sum(axis=2)
        onehot = labels[:, :, None] == level_ids
        weight = np.einsum("pb,pbl->pl", hist, onehot)
        total = np.einsum("pb,b,pbl->pl", hist, centres_v, onehot)
        new = np.where(weight > 0, total / np.maximum(weight, 1.0), means)
        if np.array_equal(new, means):
            break
        means = new
    means = np.sort(means, axis=1)
    thresholds = 0.5 * (means[:, 1:] + means[:, :-1])
    labels = (centres_v[None, :, None] > thresholds[:, None, :]).sum(axis=2)
    within = np.sum(hist * (centres_v - np.take_along_axis(means, labels, axis=1)) ** 2, axis=1)
    count = hist.sum(axis=1)
    mean_all = hist @ centres_v / np.maximum(count, 1.0)
    spread = np.sum(hist * (centres_v - mean_all[:, None]) ** 2, axis=1)
    ratio = np.divide(within, spread, out=np.full_like(within, np.inf), where=spread > 0)
    return means, ratio


def coarse_centre(x: Waveform, spu: int, n_levels: int) -> tuple[float, NDArray[np.float64]]:
    """Phase (samples, 0..spu) where the level clusters are tightest, and thresholds there.

    Folds a subset of whole UIs (capture-aligned rows), histograms every phase column, clusters
    each column into ``n_levels`` levels and scores it by within-level over total variance (an
    Otsu criterion). The best column is refined to sub-sample phase by a parabola through its
    neighbours (circular).

    Returns:
        Centre phase in samples and the (n_levels - 1,) thresholds midway between the cluster
        means at the best column.
    """
    sub = gather_subset(x, 0, spu, spu)
    flat = sub.ravel()[::7]  # a decimated copy is plenty for the histogram range
    k_lo = int(_HIST_TAIL * flat.size)
    k_hi = flat.size - 1 - k_lo
    part = np.partition(flat, (k_lo, k_hi))
    lo, hi = float(part[k_lo]), float(part[k_hi])
    if not hi > lo:
        raise AnalysisError("samples show no modulation: the waveform is constant")
    scale = _HIST_BINS / (hi - lo)
    bins = ((sub - lo) * scale).astype(np.intp)
    np.clip(bins, 0, _HIST_BINS - 1, out=bins)
    bins += np.arange(spu) * _HIST_BINS
    hist = np.bincount(bins.ravel(), minlength=spu * _HIST_BINS).reshape(spu, _HIST_BINS)
    centres_v = lo + (np.arange(_HIST_BINS) + 0.5) / scale
    means, ratio = _kmeans_histograms(hist.astype(np.float64), centres_v, n_levels)
    best = int(np.argmin(ratio))
    if not np.isfinite(ratio[best]):
        raise AnalysisError("samples show no modulation at any phase of the UI")
    left, mid, right = ratio[(best - 1) % spu], ratio[best], ratio[(best + 1) % spu]
    curvature = left - 2.0 * mid + right
    delta = 0.5 * (left - right) / curvature if np.isfinite(curvature) and curvature > 0 else 0.0
    centre = (best + float(np.clip(delta, -0.5, 0.5))) % spu
    thresholds = 0.5 * (means[best, 1:] + means[best, :-1])
    return centre, thresholds


@dataclass(frozen=True, slots=True)
class Alignment:
    """Rows realigned to the eye centre.

    Attributes:
        offset: First sample of row 0; row r starts at offset + r * spu.
        centre_col: Centre position inside a row, in samples (lead +- 0.5).
        lo_col: First column of the central window.
        hi_col: Last column of the central window (inclusive).
    """

    offset: int
    centre_col: float
    lo_col: int
    hi_col: int


def align(centre: float, spu: int, window_ui: float, lead: int) -> Alignment:
    """Row offset and central-window columns for rows holding ``lead`` samples before the centre.

    Args:
        centre: Eye centre phase in samples (0..spu).
        spu: Samples per UI.
        window_ui: Width of the central window in UI; at least the nearest column is used.
        lead: Whole samples from the row start to the sample nearest the centre.
    """
    nearest = round(centre)
    offset = (nearest - lead) % spu
    centre_col = lead + ((centre - nearest + spu / 2) % spu - spu / 2)
    half = 0.5 * window_ui * spu + 1e-9
    lo = max(math.ceil(centre_col - half), 0)
    hi = math.floor(centre_col + half)
    if hi < lo:
        lo = hi = lead
    return Alignment(offset, centre_col, lo, hi)


def refine_thresholds(
    window_means: NDArray[np.float64], thresholds: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """1-D k-means (Lloyd) on per-UI window means, started from ``thresholds``.

    Returns:
        Thresholds midway between the final level means, shape (n_levels - 1,), and each UI's
        level, shape (n_ui,).
    """
    n_levels = thresholds.size + 1
    labels = np.searchsorted(thresholds, window_means)
    for _ in range(_KMEANS_ITERATIONS):
        count = np.bincount(labels, minlength=n_levels)
        if np.any(count == 0):
            raise AnalysisError(
                f"found fewer than {n_levels} signal levels: is this a {n_levels}-level signal?"
            )
        means = np.bincount(labels, weights=window_means, minlength=n_levels) / count
        thresholds = 0.5 * (means[1:] + means[:-1])
        new = np.searchsorted(thresholds, window_means)
        if np.array_equal(new, labels):
            break
        labels = new
    return thresholds, labels


@dataclass(frozen=True, slots=True)
class PhaseProfile:
    """Per-phase statistics of each level on the subset of UIs.

    Attributes:
        thresholds: (n_levels - 1,) decision thresholds from the subset.
        eye_height_by_col: (n_levels - 1, 2 * spu + 1) sigma-method height of each inner eye per
            column, from 1 UI before to 1 UI after the centre (power unit of the input).
        eye_widths_ui: (n_levels - 1,) width of the open region around the centre, UI.
        open_mid_cols: (n_levels - 1,) middle of each open region, in samples from the start of
            the capture (modulo spu); NaN where the eye is shut.
    """

    thresholds: NDArray[np.float64]
    eye_height_by_col: NDArray[np.float64]
    eye_widths_ui: NDArray[np.float64]
    open_mid_cols: NDArray[np.float64]


def _open_region(height: NDArray[np.float64], start: int) -> tuple[float, float] | None:
    """(left, right) columns, interpolated, of the region around ``start`` where height > 0."""
    if not height[start] > 0:
        return None
    last = height.size - 1
    shut_right = np.flatnonzero(height[start + 1 :] <= 0)
    if shut_right.size:
        k = start + 1 + int(shut_right[0])
        right = (k - 1) + height[k - 1] / (height[k - 1] - height[k])
    else:
        right = float(last)
    shut_left = np.flatnonzero(height[:start] <= 0)
    if shut_left.size:
        k = int(shut_left[-1])
        left = k - height[k] / (height[k + 1] - height[k])
    else:
        left = 0.0
    return float(left), float(right)


def phase_profile(
    x: Waveform, spu: int, centre: float, window_ui: float, thresholds: NDArray[np.float64]
) -> PhaseProfile:
    """Eye height per phase and eye widths, on the subset of UIs.

    Each UI of the subset is assigned a level by the mean of its central-window samples (so
    noise on single samples does not truncate the level distributions), then the mean and
    standard deviation of each level are taken per column from -1 UI to +1 UI around the
    centre (wide enough that an open region around a centre guess is never cut by the row
    ends). An inner eye is open at a column when (mu_upper - 3 s_upper) - (mu_lower + 3 s_lower)
    > 0; its width is the contiguous open region around the centre, edges linearly interpolated
    between columns, capped at 1 UI.
    """
    width = 2 * spu + 1
    al = align(centre, spu, window_ui, spu)
    sub = gather_subset(x, al.offset, spu, width)
    ref = float(np.mean(thresholds))
    sub -= ref
    window_means = sub[:, al.lo_col : al.hi_col + 1].mean(axis=1)
    thresholds, labels = refine_thresholds(window_means, thresholds - ref)
    n_levels = thresholds.size + 1
    keys = (labels[:, None] * width + np.arange(width)).ravel()
    flat = sub.ravel()
    count = np.bincount(labels, minlength=n_levels)[:, None].astype(np.float64)
    s1 = np.bincount(keys, weights=flat, minlength=n_levels * width).reshape(n_levels, width)
    s2 = np.bincount(keys, weights=flat * flat, minlength=n_levels * width).reshape(n_levels, width)
    mean = s1 / count
    sigma = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    heights = (mean[1:] - _SIGMA_MULTIPLE * sigma[1:]) - (mean[:-1] + _SIGMA_MULTIPLE * sigma[:-1])
    start = min(max(round(al.centre_col), 0), width - 1)
    widths = np.zeros(n_levels - 1)
    mids = np.full(n_levels - 1, np.nan)
    for eye in range(n_levels - 1):  # a handful of eyes, not a data loop
        region = _open_region(heights[eye], start)
        if region is not None:
            widths[eye] = min((region[1] - region[0]) / spu, 1.0)
            mids[eye] = al.offset + 0.5 * (region[0] + region[1])
    return PhaseProfile(thresholds + ref, heights, widths, mids)


def find_eye(
    x: Waveform, spu: int, n_levels: int, window_ui: float
) -> tuple[float, Alignment, PhaseProfile]:
    """Eye centre (samples, 0..spu), the UI-wide alignment around it and the per-phase profile.

    The coarse centre (tightest clusters) is moved to the mean of the middles of the open inner
    eyes; unless that moved it by less than a quarter sample, the profile is taken again around
    the new centre (window and level assignment at the final place) and its open-eye middles
    give the reported centre.
    """
    centre, thresholds = coarse_centre(x, spu, n_levels)
    for _ in range(2):  # coarse -> refined -> profile and centre at the refined place
        profile = phase_profile(x, spu, centre, window_ui, thresholds)
        thresholds = profile.thresholds
        mids = profile.open_mid_cols[np.isfinite(profile.open_mid_cols)]
        if mids.size == 0:
            break
        moved = (float(np.mean(mids)) - centre + spu / 2) % spu - spu / 2
        centre = (centre + moved) % spu
        if abs(moved) < _SETTLED_SAMPLES:  # the window already sat at the refined centre
            break
    return centre, align(centre, spu, window_ui, spu // 2), profile


@dataclass(frozen=True, slots=True)
class LevelStats:
    """Level statistics over the central window of every whole UI of the capture.

    Attributes:
        means: (n_levels,) mean of each level, ascending.
        sigmas: (n_levels,) standard deviation of each level.
        counts: (n_levels,) number of UIs assigned to each level.
        average: Mean of all samples of the capture.
    """

    means: NDArray[np.float64]
    sigmas: NDArray[np.float64]
    counts: NDArray[np.int64]
    average: float


def _one_pass(matrix: Waveform, lo_col: int, hi_col: int) -> tuple[float, Waveform, Waveform]:
    """Sum of all of ``matrix``, and per-row sum and sum of squares of columns lo..hi.

    Args:
        matrix: (n_rows, spu) UIs of the capture, C-contiguous.
        lo_col: First window column.
        hi_col: Last window column (inclusive).

    Returns:
        Total (float64), window sums (n_rows,) and window sums of squares (n_rows,), the last
        two in the input dtype (each a sum of a few samples).
    """
    n_rows, spu = matrix.shape
    block = max(_BLOCK_BYTES // (spu * matrix.itemsize), 64)
    window_sum = np.empty(n_rows, dtype=matrix.dtype)
    squares = np.empty(n_rows, dtype=matrix.dtype)
    totals = np.empty(-(-n_rows // block), dtype=np.float64)
    buffer = np.empty((hi_col - lo_col + 1, block), dtype=matrix.dtype)
    # Cache blocking: the loop runs over ~1 MiB blocks of UIs (a few hundred iterations, not
    # one per UI) so that the window reads hit the cache the row total has just filled; the
    # capture crosses the memory bus once. The window is copied transposed, (k, block), so the
    # per-UI reductions run along contiguous rows instead of over k-long inner loops.
    for i, start in enumerate(range(0, n_rows, block)):
        part = matrix[start : start + block]
        stop = start + part.shape[0]
        totals[i] = part.sum()
        window = buffer[:, : part.shape[0]]
        np.copyto(window, part.T[lo_col : hi_col + 1])
        np.add.reduce(window, axis=0, out=window_sum[start:stop])
        np.multiply(window, window, out=window)
        np.add.reduce(window, axis=0, out=squares[start:stop])
    return float(totals.sum()), window_sum, squares


def level_stats(
    x: Waveform, spu: int, al: Alignment, thresholds: NDArray[np.float64]
) -> LevelStats:
    """The one full-length pass: central-window level statistics and the average power.

    The capture, viewed as (n_ui, spu) rows realigned to the eye centre, is read once in
    cache-sized blocks: row totals (for the average power) and per-UI window sums and sums of
    squares, in the input precision. Each UI goes to one level by its window sum against the
    thresholds, so all its window samples count for that level; everything after the pass is
    on (n_ui,) arrays.
    """
    n_levels = thresholds.size + 1
    n_rows = (x.size - al.offset) // spu
    used = n_rows * spu
    matrix = x[al.offset : al.offset + used].reshape(n_rows, spu)
    k = al.hi_col - al.lo_col + 1
    # NaN/inf anywhere reach `total`; silence the FP flags they raise on the way and report them
    # once, below, as bad input.
    with np.errstate(invalid="ignore", over="ignore"):
        total, window_sum, squares = _one_pass(matrix, al.lo_col, al.hi_col)
        total += float(x[: al.offset].sum(dtype=np.float64))
        total += float(x[al.offset + used :].sum(dtype=np.float64))
    if not (np.isfinite(total) and np.all(np.isfinite(squares))):
        raise AnalysisError("samples contain NaN or infinite values (or overflow when summed)")
    small = np.zeros(n_rows, dtype=np.uint8)
    above = np.empty(n_levels, dtype=np.int64)  # UIs above each threshold; all above "-inf"
    above[0] = n_rows
    for i, threshold in enumerate(thresholds):  # n_levels - 1 comparisons, vectorised over UIs
        higher = window_sum > float(threshold) * k
        above[i + 1] = np.count_nonzero(higher)
        small += higher
    labels = small.astype(np.intp)  # once, rather than inside each bincount
    count = above - np.append(above[1:], 0)
    if np.any(count == 0):
        raise AnalysisError(
            f"found fewer than {n_levels} signal levels: is this a {n_levels}-level signal?"
        )
    n_samples = count.astype(np.float64) * k
    means = np.bincount(labels, weights=window_sum, minlength=n_levels) / n_samples
    mean_sq = np.bincount(labels, weights=squares, minlength=n_levels) / n_samples
    sigmas = np.sqrt(np.maximum(mean_sq - means * means, 0.0))
    return LevelStats(means, sigmas, count, total / x.size)


def crossing_level(x: Waveform, spu: int, centre: float, threshold: float) -> float:
    """Level where the mean rising and mean falling NRZ edges cross (NaN if either is absent).

    Rows run from one eye centre to the next (spu + 1 samples), so each holds at most one edge;
    rows are classed rising or falling by their end samples against ``threshold``.
    """
    start = round(centre) % spu
    sub = gather_subset(x, start, spu, spu + 1)
    first = sub[:, 0] > threshold
    last = sub[:, -1] > threshold
    rising = ~first & last
    falling = first & ~last
    if not rising.any() or not falling.any():
        return float("nan")
    rise = sub[rising].mean(axis=0)
    fall = sub[falling].mean(axis=0)
    diff = rise - fall
    above = np.flatnonzero(diff > 0)
    if above.size == 0 or above[0] == 0:
        return float("nan")
    k = int(above[0])
    frac = -diff[k - 1] / (diff[k] - diff[k - 1])
    return float(rise[k - 1] + frac * (rise[k] - rise[k - 1]))
