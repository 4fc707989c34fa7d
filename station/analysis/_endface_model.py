"""The clean-face model of station.analysis.endface: radial profiles in equal-area rings about
each fibre, robust to the features on the face, and the illumination surface.
"""

from __future__ import annotations

import numpy as np

_CENTRE_UM, _CENTRE_FIT_UM = 15.0, 25.0  # profile extrapolated inside, fitted between
# The illumination surface needs this many good samples (6 coefficients, well over-determined);
# with fewer (an empty field, a black frame) the light is taken as flat.
_MIN_LIGHT_SAMPLES = 60
# Relative illumination never falls below this: real vignetting costs tens of percent, and a fit
# through noise must not reach zero, where dividing by it would blow up.
_MIN_LIGHT = 0.05


def ring_profile(
    values: np.ndarray,
    ring: np.ndarray,
    weight: np.ndarray,
    ring_r_um: np.ndarray,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted mean of `values` per (image, ring); `ring` holds flat (image * rings + ring)
    indices and `ring_r_um` (rings,) each ring's radius. Returns (n, rings).

    Inside `_CENTRE_UM` the profile is the extrapolation of a + b r^2 fitted over the rings out to
    `_CENTRE_FIT_UM`: a particle can cover the few small rings at the centre entirely, and must
    not become part of the clean face. This takes the core as invisible (its contrast in
    reflected light is a few per cent); a visible core would show as a defect at the centre of
    every fibre. Rings with no weight take `fallback`'s value, or without one their neighbours'.
    """
    n, rings = values.shape[0], ring_r_um.size
    total = np.bincount(ring.ravel(), (values * weight).ravel(), minlength=n * rings)
    count = np.bincount(ring.ravel(), weight.ravel(), minlength=n * rings).reshape(n, rings)
    mean = total.reshape(n, rings) / np.maximum(count, 1e-12)
    centre = ring_r_um < _CENTRE_UM
    fit = (ring_r_um >= _CENTRE_UM) & (ring_r_um < _CENTRE_FIT_UM)
    x = ring_r_um[fit] ** 2
    w = count[:, fit]
    y = mean[:, fit]
    sw, sx, sxx = w.sum(axis=1), (w * x).sum(axis=1), (w * x * x).sum(axis=1)
    sy, sxy = (w * y).sum(axis=1), (w * x * y).sum(axis=1)
    det = sw * sxx - sx**2
    ok = det > 1e-12 * np.maximum(sw * sxx, 1e-300)
    b = np.where(ok, (sw * sxy - sx * sy) / np.where(ok, det, 1.0), 0.0)
    a = np.where(ok, (sy - b * sx) / np.maximum(sw, 1e-12), 0.0)
    mean[:, centre] = a[:, None] + b[:, None] * ring_r_um[centre] ** 2
    count[:, centre] = np.where(ok, 3.0, 0.0)[:, None]
    valid = count >= 3
    if fallback is not None:
        return np.where(valid, mean, fallback)
    index = np.arange(rings)
    below = np.maximum.accumulate(np.where(valid, index, -1), axis=1)
    above = np.minimum.accumulate(np.where(valid, index, rings)[:, ::-1], axis=1)[:, ::-1]
    source = np.where(below >= 0, below, np.minimum(above, rings - 1))
    return np.take_along_axis(mean, source, axis=1)


def clipped(
    values: np.ndarray, ring: np.ndarray, weight: np.ndarray, rings: int, iterations: int = 2
) -> np.ndarray:
    """`weight` with the pixels outside +-1.5 standard deviations of their ring's mean set to 0,
    `iterations` times: a ring half covered by a scratch is bimodal, and the clipping keeps the
    mode of the clean face (the first pass would otherwise average the two)."""
    n = values.shape[0]
    flat_ring = ring.ravel()
    for _ in range(iterations):
        w = weight.ravel()
        count = np.bincount(flat_ring, w, minlength=n * rings)
        total = np.bincount(flat_ring, (values * weight).ravel(), minlength=n * rings)
        square = np.bincount(flat_ring, (values * values * weight).ravel(), minlength=n * rings)
        mean = total / np.maximum(count, 1e-12)
        spread = np.sqrt(np.maximum(square / np.maximum(count, 1e-12) - mean**2, 0.0))
        keep = np.abs(values - np.take(mean, ring)) <= 1.5 * np.take(spread, ring) + 1e-6
        weight = weight * keep
    return weight


def interpolation(
    ring_position: np.ndarray, rings: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (image * rings + ring) indices of the ring centres either side of each pixel's
    continuous ring position, and the weight of the upper one: for `interpolate`, computed once
    per stack (np.take with native-size indices is several times faster than fancy indexing)."""
    n = ring_position.shape[0]
    t = np.clip(ring_position - np.float32(0.5), 0.0, rings - 1.001)
    lower = t.astype(np.intp)
    weight = t - lower
    lower += (np.arange(n, dtype=np.intp) * rings)[:, None, None]
    return lower, lower + 1, weight


def interpolate(
    profile: np.ndarray, lower: np.ndarray, upper: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Profile (n, rings) at continuous ring positions, linearly (see `interpolation`)."""
    flat = profile.ravel().astype(np.float32)
    below = np.take(flat, lower)
    return below + (np.take(flat, upper) - below) * weight


def robust_sigma(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per-image robust standard deviation (MAD) of `values` over `region`, on a 3x-subsampled
    grid. Returns (n,)."""
    sub = np.where(region[:, ::3, ::3], values[:, ::3, ::3], np.nan)
    flat = sub.reshape(sub.shape[0], -1)
    # An image with an empty region (no fibre found) has no noise estimate: inf, and no
    # all-NaN median is taken for it.
    usable = ~np.isnan(flat).all(axis=1)
    sigma = np.full(flat.shape[0], np.inf)
    if usable.any():
        median = np.nanmedian(flat[usable], axis=1)
        mad = np.nanmedian(np.abs(flat[usable] - median[:, None]), axis=1)
        sigma[usable] = np.where(np.isfinite(mad), 1.4826 * mad, np.inf)
    return sigma


def window_around(
    stack: np.ndarray, centre: np.ndarray, half: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (2 half + 1)-pixel square around each centre, when smaller than the images.

    Returns (windows (n, size, size), origin (n, 2) of each window in its image, inside (n, size,
    size): True where the window lies on the image; pixels beyond the image edge repeat it)."""
    n, height, width = stack.shape
    size = 2 * half + 1
    if size >= min(height, width):
        return stack, np.zeros((n, 2), dtype=np.intp), np.ones(stack.shape, dtype=bool)
    origin = np.rint(centre).astype(np.intp) - half
    rows = origin[:, 0, None] + np.arange(size)
    cols = origin[:, 1, None] + np.arange(size)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
        :, None, :
    ]
    window = stack[
        np.arange(n)[:, None, None],
        np.clip(rows, 0, height - 1)[:, :, None],
        np.clip(cols, 0, width - 1)[:, None, :],
    ]
    return window, origin, inside


def illumination(ratio: np.ndarray, good: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Least-squares quadratic surface through `ratio` over `good` pixels (4x-subsampled), per
    image, in coordinates relative to the fibre centre: the illumination's vignetting (radial
    about the optical axis, which is not the fibre's) and slope. Returns (n, rows, cols)."""
    n, height, width = ratio.shape
    scale = float(max(height, width))
    y = (np.arange(height, dtype=np.float32)[None, :, None] - centre[:, 0, None, None]) / scale
    x = (np.arange(width, dtype=np.float32)[None, None, :] - centre[:, 1, None, None]) / scale
    ys = np.broadcast_to(y, ratio.shape)[:, ::4, ::4].reshape(n, -1).astype(np.float64)
    xs = np.broadcast_to(x, ratio.shape)[:, ::4, ::4].reshape(n, -1).astype(np.float64)
    w = good[:, ::4, ::4].reshape(n, 1, -1).astype(np.float64)
    v = ratio[:, ::4, ::4].reshape(n, -1).astype(np.float64)
    basis = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=1)
    normal = np.einsum("nip,njp->nij", basis * w, basis) + np.eye(6) * 1e-9
    rhs = np.einsum("nip,np->ni", basis * w, v)
    c = np.linalg.solve(normal, rhs[..., None])[..., 0].astype(np.float32)[:, :, None, None]
    surface = c[:, 0] + c[:, 1] * x + c[:, 2] * y
    surface = surface + c[:, 3] * x * x + c[:, 4] * x * y + c[:, 5] * y * y
    fitted = (w.sum(axis=(1, 2)) >= _MIN_LIGHT_SAMPLES)[:, None, None]
    return np.where(fitted, np.maximum(surface, np.float32(_MIN_LIGHT)), np.float32(1.0))
