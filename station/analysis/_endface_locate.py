"""Locating fibres in end-face images (the cladding centre and diameter), for
station.analysis.endface; also the input checks the end-face functions share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.analysis.endface_criteria import FaceCriteria
from station.analysis.errors import AnalysisError

_RAYS = 128
_EDGE_SEARCH_UM = 12.0  # half-width of the window searched for the cladding edge
_MAX_DIAMETER_ERROR_UM = 6.0  # located only if the cladding measures 125 +- this
_MIN_EDGE_RAYS = 0.6  # fraction of rays that must see a clear edge
_MIN_EDGE_STEP = 0.15  # relative fall of the grey level across the cladding edge


@dataclass(frozen=True, slots=True)
class FibreLocation:
    """Where each fibre of a stack is.

    Attributes:
        centre_rc: (fibres, 2) cladding centre (row, column) in pixels.
        cladding_diameter_um: (fibres,) fitted cladding diameter in um.
        edge_rays: (fibres,) fraction of the 128 rays on which a clear edge was found.
        edge_step: (fibres,) median relative fall of the grey level from 2 um inside the fitted
            edge to 2 um outside it (about 0.4 for glass against an MPO ferrule).
        located: (fibres,) True where a cladding of the nominal diameter was found, with at
            least 60 % of the rays seeing its edge and an edge step of at least 0.15.
    """

    centre_rc: np.ndarray
    cladding_diameter_um: np.ndarray
    edge_rays: np.ndarray
    edge_step: np.ndarray
    located: np.ndarray


def as_stack(images: np.ndarray) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise AnalysisError(
            f"images must be (rows, cols) or (fibres, rows, cols), not {array.shape}"
        )
    if array.shape[0] == 0 or min(array.shape[1:]) < 64:
        raise AnalysisError(f"images {array.shape} are empty or smaller than 64 x 64 pixels")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise AnalysisError(f"images must hold grey levels, not {array.dtype}")
    stack = array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(stack).all():
        raise AnalysisError("images contain NaN or infinite values")
    return stack


def check_scale(um_per_pixel: float, shape: tuple[int, ...], criteria: FaceCriteria) -> None:
    if not np.isfinite(um_per_pixel) or not 0.05 <= um_per_pixel <= 5.0:
        raise AnalysisError(f"um_per_pixel = {um_per_pixel!r} is outside 0.05-5 um")
    field_um = min(shape[1:]) * um_per_pixel
    if field_um < criteria.cladding_diameter_um + 2 * _EDGE_SEARCH_UM:
        raise AnalysisError(
            f"field of view {field_um:.0f} um cannot show a {criteria.cladding_diameter_um:g} um "
            "cladding with its edge"
        )


def _otsu_centres(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First guess of each centre (row, col) in px: centroid of the brighter Otsu class, on a
    2x-subsampled grid. Returns (centres (n, 2), contrast ok (n,))."""
    n = stack.shape[0]
    sub = stack[:, ::2, ::2]
    low = sub.min(axis=(1, 2), keepdims=True)
    span = sub.max(axis=(1, 2), keepdims=True) - low
    ok = span[:, 0, 0] > 0
    levels = ((sub - low) * (255.0 / np.maximum(span, 1e-12))).astype(np.int32)
    hist = np.bincount(
        (levels + 256 * np.arange(n, dtype=np.int32)[:, None, None]).ravel(), minlength=256 * n
    ).reshape(n, 256)
    p = hist / hist.sum(axis=1, keepdims=True)
    omega = np.cumsum(p, axis=1)
    mu = np.cumsum(p * np.arange(256), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[:, -1:] * omega - mu) ** 2 / (omega * (1.0 - omega))
    threshold = np.nanargmax(np.where(np.isfinite(between), between, -1.0), axis=1)
    bright = levels > threshold[:, None, None]
    count = bright.sum(axis=(1, 2))
    rows = (bright.sum(axis=2) * np.arange(sub.shape[1])).sum(axis=1)
    cols = (bright.sum(axis=1) * np.arange(sub.shape[2])).sum(axis=1)
    centre = np.stack([rows, cols], axis=1) / np.maximum(count, 1)[:, None] * 2.0
    return centre, ok & (count > 0)


def _bilinear(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Stack (n, H, W) sampled at (n, ...) fractional rows and columns of its own image,
    bilinearly, clamped to the image edges."""
    n, height, width = stack.shape
    r = np.clip(rows, 0.0, height - 1.001)
    c = np.clip(cols, 0.0, width - 1.001)
    r0, c0 = r.astype(np.intp), c.astype(np.intp)
    fr, fc = r - r0, c - c0
    base = (np.arange(n, dtype=np.intp) * (height * width)).reshape((n,) + (1,) * (rows.ndim - 1))
    i00 = base + r0 * width + c0
    flat = stack.reshape(-1)
    top = np.take(flat, i00) * (1 - fc) + np.take(flat, i00 + 1) * fc
    bottom = np.take(flat, i00 + width) * (1 - fc) + np.take(flat, i00 + width + 1) * fc
    return top * (1 - fr) + bottom * fr


def _edge_fit(
    stack: np.ndarray, centre: np.ndarray, radius_px: float, window_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cladding edge along rays from `centre`, then a weighted algebraic (Kasa) circle fit.

    Returns (centre (n, 2), radius px (n,), fraction of rays with a clear edge (n,))."""
    theta = np.linspace(0.0, 2.0 * np.pi, _RAYS, endpoint=False)
    step = 0.5
    radii = radius_px + np.arange(-window_px, window_px + step / 2, step)
    sin, cos = np.sin(theta)[None, :, None], np.cos(theta)[None, :, None]
    rows = centre[:, 0, None, None] + radii * sin
    cols = centre[:, 1, None, None] + radii * cos
    samples = _bilinear(stack, rows, cols)
    slope = np.diff(samples, axis=2)
    slope[:, :, 1:-1] = 0.25 * slope[:, :, :-2] + 0.5 * slope[:, :, 1:-1] + 0.25 * slope[:, :, 2:]
    k = np.clip(np.argmin(slope, axis=2), 1, slope.shape[2] - 2)
    take = np.take_along_axis
    s0 = take(slope, (k - 1)[..., None], axis=2)[..., 0]
    s1 = take(slope, k[..., None], axis=2)[..., 0]
    s2 = take(slope, (k + 1)[..., None], axis=2)[..., 0]
    curvature = s0 - 2.0 * s1 + s2
    offset = np.where(curvature > 0, 0.5 * (s0 - s2) / np.where(curvature > 0, curvature, 1), 0)
    rho = radii[0] + (k + 0.5 + np.clip(offset, -0.5, 0.5)) * step
    strength = -s1
    typical = np.median(strength, axis=1, keepdims=True)
    valid = (strength > 0.3 * typical) & (typical > 0)
    x, y = rho * np.cos(theta), rho * np.sin(theta)  # relative to the guess

    def fit(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        design = np.stack([x, y, np.ones_like(x)], axis=2)  # (n, rays, 3)
        target = -(x**2 + y**2)
        normal = np.einsum("nri,nrj,nr->nij", design, design, weight)
        normal += np.eye(3) * 1e-9
        rhs = np.einsum("nri,nr,nr->ni", design, target, weight)
        d, e, f = np.linalg.solve(normal, rhs[..., None])[..., 0].T
        cx, cy = -d / 2.0, -e / 2.0
        return cx, cy, np.sqrt(np.maximum(cx**2 + cy**2 - f, 0.0))

    weight = valid.astype(float)
    cx, cy, radius = fit(weight)
    residual = np.hypot(x - cx[:, None], y - cy[:, None]) - radius[:, None]
    spread = 1.4826 * np.median(np.abs(np.where(valid, residual, np.nan)), axis=1)
    spread = np.where(np.isfinite(spread), spread, 0.0)
    keep = valid & (np.abs(residual) <= np.maximum(3.0 * spread, 0.75)[:, None])
    cx, cy, radius = fit(keep.astype(float))
    refined = centre + np.stack([cy, cx], axis=1)
    return refined, radius, keep.mean(axis=1)


def locate(stack: np.ndarray, um_per_pixel: float, criteria: FaceCriteria) -> FibreLocation:
    centre, contrast_ok = _otsu_centres(stack)
    radius_px = criteria.cladding_diameter_um / 2.0 / um_per_pixel
    window_px = _EDGE_SEARCH_UM / um_per_pixel
    centre, radius, _ = _edge_fit(stack, centre, radius_px, window_px)
    centre, radius, rays = _edge_fit(stack, centre, radius_px, window_px / 2.0)
    diameter_um = 2.0 * radius * um_per_pixel
    # The edge must be a real step, not the strongest ripple of noise: grey level 2 um inside
    # against 2 um outside, around the fitted circle.
    theta = np.linspace(0.0, 2.0 * np.pi, _RAYS, endpoint=False)
    reach = np.array([-1.0, 1.0])[:, None, None] * (2.0 / um_per_pixel) + radius[None, :, None]
    rows = centre[None, :, 0, None] + reach * np.sin(theta)
    cols = centre[None, :, 1, None] + reach * np.cos(theta)
    inner, outer = (_bilinear(stack, rows[k], cols[k]) for k in range(2))
    step = np.median((inner - outer) / np.maximum(inner, 1e-12), axis=1)
    located = (
        contrast_ok
        & (rays >= _MIN_EDGE_RAYS)
        & (step >= _MIN_EDGE_STEP)
        & (np.abs(diameter_um - criteria.cladding_diameter_um) <= _MAX_DIAMETER_ERROR_UM)
    )
    return FibreLocation(centre, diameter_um, rays, step, located)
