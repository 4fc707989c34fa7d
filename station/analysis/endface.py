"""Connector end-face grading (IEC 61300-3-35) on microscope images, vectorised over the fibres of
a connector: locate each fibre, model its clean face, detect defects and scratches, size them in
um and grade every zone against a `FaceCriteria` table (station.analysis.endface_criteria).

Method, for a stack of images (fibres, rows, cols):
1. Locate the cladding: an Otsu threshold gives a first centre (centroid of the bright disc);
   the cladding edge is then found along 128 rays (steepest fall of the grey level, refined to
   sub-pixel) and an algebraic circle fit, twice, with outlier rays left out. Zones are centred on
   the cladding centre (core and cladding are concentric within 1 um in single-mode fibre). The
   edge search assumes a cladding brighter than what surrounds it, as coaxial illumination shows.
2. Model the clean face: a radial profile (mean grey level in equal-area rings about the centre;
   inside 15 um extrapolated from 15-25 um, so that a particle covering the centre is not taken
   for the face) times a fitted quadratic illumination surface (vignetting about an optical axis
   that is not the fibre's, and slope), refined twice without the pixels the last model calls
   outliers. The relative contrast 1 - image / model is then ~0 on a clean face, positive where a
   feature darkens it, negative where it brightens it.
3. Detect: the contrast, smoothed by a 0.8-pixel Gaussian, is thresholded with hysteresis
   (seeds above max(6 sigma, 8 %), grown down to max(3 sigma, 4 %), sigma the robust noise of each
   image) over the graded zones and 6 um beyond (so that a feature straddling the outer zone is
   measured whole), leaving out a +-1.5 um band on the cladding edge, where the model is least
   exact (zone C: not graded for MPO, unlimited for PC). Only a window around each fibre is worked
   on. Components are labelled in one call over the whole stack (no connectivity between images).
4. Measure each component over its pixels at or above half its peak contrast: the second moments
   give the principal axes. Elongation (length / width) >= `scratch_min_elongation` makes it a
   scratch, with length sqrt(12 lambda_1) and width area / length; otherwise a defect with
   diameter 4 sqrt(lambda_1) (its major diameter: exact for a disc or an ellipse).
5. Grade: a defect belongs to the innermost zone it touches; a scratch counts in every zone it
   crosses. Each zone passes when every `CountLimit` of the table holds; the face passes when every
   zone does and the fibre was located.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from station.analysis.endface_criteria import MPO_SM_APC, FaceCriteria
from station.analysis.errors import AnalysisError

_RAYS = 128
_EDGE_SEARCH_UM = 12.0  # half-width of the window searched for the cladding edge
_EDGE_BAND_UM = 1.5  # band on the cladding edge left out of the detection
_REGION_MARGIN_UM = 6.0  # detection reaches this far beyond the outer zone: whole features
_RING_AREA_PX = 60.0  # area of each ring of the radial profile, px^2 (0.25 px wide at 120 px)
_CENTRE_UM, _CENTRE_FIT_UM = 15.0, 25.0  # profile extrapolated inside, fitted between
_SMOOTH_PX = 0.8
_SEED_SIGMAS, _GROW_SIGMAS = 6.0, 3.0
_SEED_CONTRAST, _GROW_CONTRAST = 0.08, 0.04
_MAX_DIAMETER_ERROR_UM = 6.0  # located only if the cladding measures 125 +- this
_MIN_EDGE_RAYS = 0.6  # fraction of rays that must see a clear edge
# 8-connected in each image, never across images of the stack
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = True


@dataclass(frozen=True, slots=True)
class FibreLocation:
    """Where each fibre of a stack is.

    Attributes:
        centre_rc: (fibres, 2) cladding centre (row, column) in pixels.
        cladding_diameter_um: (fibres,) fitted cladding diameter in um.
        edge_rays: (fibres,) fraction of the 128 rays on which a clear edge was found.
        located: (fibres,) True where a cladding of the nominal diameter was found.
    """

    centre_rc: np.ndarray
    cladding_diameter_um: np.ndarray
    edge_rays: np.ndarray
    located: np.ndarray


@dataclass(frozen=True, slots=True)
class EndFaceFeatures:
    """Every detected feature of a stack, one entry per feature (k features).

    Attributes:
        fibre: (k,) index of the image in the stack.
        is_scratch: (k,) True for a scratch (linear feature), False for a defect.
        size_um: (k,) what the criteria judge: a scratch's width, a defect's diameter.
        length_um: (k,) extent along the major axis (a defect's major diameter).
        width_um: (k,) extent across it (a defect's minor diameter).
        centre_um: (k, 2) centroid (x right, y down) relative to the fibre centre, in um.
        contrast: (k,) peak relative contrast, positive for a dark feature.
        zone: (k,) index into `criteria.zones` of the innermost zone the feature touches, -1 when
            it touches none (outside the graded zones).
        zones_crossed: (k, zones) True for each zone the feature has pixels in.
        counted: (k,) False for features below `criteria.min_feature_um`, which are not graded.
    """

    fibre: np.ndarray
    is_scratch: np.ndarray
    size_um: np.ndarray
    length_um: np.ndarray
    width_um: np.ndarray
    centre_um: np.ndarray
    contrast: np.ndarray
    zone: np.ndarray
    zones_crossed: np.ndarray
    counted: np.ndarray

    def __len__(self) -> int:
        return int(self.fibre.size)


@dataclass(frozen=True, slots=True)
class EndFaceGrades:
    """Grades of a stack of end-face images against one criteria table.

    Attributes:
        criteria: The table graded against.
        um_per_pixel: Pixel scale of the images.
        location: Where each fibre was found.
        features: Every detected feature.
        labels: (fibres, rows, cols) int32: 0 where nothing was detected, else 1 + the feature's
            index in `features` (its pixels at or above half its peak contrast): for annotation.
        noise_sigma: (fibres,) robust standard deviation of the relative contrast (before the
            detection smoothing): the noise floor detection worked against.
        scratch_count: (fibres, zones) counted scratches crossing each zone.
        defect_count: (fibres, zones) counted defects whose innermost zone is each zone.
        zone_passed: (fibres, zones) True where the zone meets every limit of its table.
        passed: (fibres,) True where the fibre was located and every zone passed.
    """

    criteria: FaceCriteria
    um_per_pixel: float
    location: FibreLocation
    features: EndFaceFeatures
    labels: np.ndarray
    noise_sigma: np.ndarray
    scratch_count: np.ndarray
    defect_count: np.ndarray
    zone_passed: np.ndarray
    passed: np.ndarray

    def failures(self, fibre: int) -> tuple[str, ...]:
        """Why fibre `fibre` (index in the stack) failed, one line per broken limit."""
        if not self.location.located[fibre]:
            return ("fibre not found in the image (no cladding of the nominal diameter)",)
        lines = []
        f = self.features
        mine = (f.fibre == fibre) & f.counted
        for z, zone in enumerate(self.criteria.zones):
            for is_scratch, limits, what in (
                (True, zone.scratches, "scratches"),
                (False, zone.defects, "defects"),
            ):
                where = f.zones_crossed[:, z] if is_scratch else f.zone == z
                kind = mine & where & (f.is_scratch == is_scratch)
                for limit in limits:
                    band = kind & (f.size_um > limit.above_um) & (f.size_um <= limit.up_to_um)
                    found = int(band.sum())
                    if limit.max_count is not None and found > limit.max_count:
                        sizes = ", ".join(f"{s:.1f}" for s in np.sort(f.size_um[band])[::-1])
                        lines.append(
                            f"zone {zone.name}: {found} {what} ({sizes} um); {limit.describe(what)}"
                        )
        return tuple(lines)


def _as_stack(images: np.ndarray) -> np.ndarray:
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


def _check_scale(um_per_pixel: float, shape: tuple[int, ...], criteria: FaceCriteria) -> None:
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
    n = stack.shape[0]
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


def locate_fibres(
    images: np.ndarray, um_per_pixel: float, criteria: FaceCriteria = MPO_SM_APC
) -> FibreLocation:
    """Find the cladding centre and diameter of each image.

    Args:
        images: (fibres, rows, cols) or (rows, cols) grey levels (any integer or float type).
        um_per_pixel: Object-plane pixel pitch in um.
        criteria: Supplies the nominal cladding diameter.

    Returns:
        The centres, fitted diameters and which fibres were located.

    Raises:
        AnalysisError: On images of the wrong shape or type, or a field of view too small for
            the cladding.
    """
    stack = _as_stack(images)
    _check_scale(um_per_pixel, stack.shape, criteria)
    return _locate(stack, um_per_pixel, criteria)


def _locate(stack: np.ndarray, um_per_pixel: float, criteria: FaceCriteria) -> FibreLocation:
    centre, contrast_ok = _otsu_centres(stack)
    radius_px = criteria.cladding_diameter_um / 2.0 / um_per_pixel
    window_px = _EDGE_SEARCH_UM / um_per_pixel
    centre, radius, _ = _edge_fit(stack, centre, radius_px, window_px)
    centre, radius, rays = _edge_fit(stack, centre, radius_px, window_px / 2.0)
    diameter_um = 2.0 * radius * um_per_pixel
    located = (
        contrast_ok
        & (rays >= _MIN_EDGE_RAYS)
        & (np.abs(diameter_um - criteria.cladding_diameter_um) <= _MAX_DIAMETER_ERROR_UM)
    )
    return FibreLocation(centre, diameter_um, rays, located)


def _ring_profile(
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


def _clipped(
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


def _interpolation(
    ring_position: np.ndarray, rings: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (image * rings + ring) indices of the ring centres either side of each pixel's
    continuous ring position, and the weight of the upper one: for `_interpolate`, computed once
    per stack (np.take with native-size indices is several times faster than fancy indexing)."""
    n = ring_position.shape[0]
    t = np.clip(ring_position - np.float32(0.5), 0.0, rings - 1.001)
    lower = t.astype(np.intp)
    weight = t - lower
    lower += (np.arange(n, dtype=np.intp) * rings)[:, None, None]
    return lower, lower + 1, weight


def _interpolate(
    profile: np.ndarray, lower: np.ndarray, upper: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Profile (n, rings) at continuous ring positions, linearly (see `_interpolation`)."""
    flat = profile.ravel().astype(np.float32)
    below = np.take(flat, lower)
    return below + (np.take(flat, upper) - below) * weight


def _robust_sigma(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per-image robust standard deviation (MAD) of `values` over `region`, on a 3x-subsampled
    grid. Returns (n,)."""
    sub = np.where(region[:, ::3, ::3], values[:, ::3, ::3], np.nan)
    median = np.nanmedian(sub.reshape(sub.shape[0], -1), axis=1)
    mad = np.nanmedian(np.abs(sub.reshape(sub.shape[0], -1) - median[:, None]), axis=1)
    return np.where(np.isfinite(mad), 1.4826 * mad, np.inf)


def _window(
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


def grade_endfaces(
    images: np.ndarray, um_per_pixel: float, criteria: FaceCriteria = MPO_SM_APC
) -> EndFaceGrades:
    """Grade the end faces of a connector's fibres against `criteria`.

    Args:
        images: (fibres, rows, cols) or (rows, cols) grey levels of end-face images, one fibre
            per image, all at the same pixel scale (any integer or float type).
        um_per_pixel: Object-plane pixel pitch in um (the microscope's calibrated scale).
        criteria: Acceptance table of the connector variant (default: single-mode APC MPO).

    Returns:
        Location, detected features, per-zone counts and verdicts, and a label image for
        annotation.

    Raises:
        AnalysisError: On images of the wrong shape or type, or a field of view too small for
            the cladding. A fibre that cannot be found does not raise: it is not `located` and
            does not pass.
    """
    stack = _as_stack(images)
    _check_scale(um_per_pixel, stack.shape, criteria)
    n = stack.shape[0]
    location = _locate(stack, um_per_pixel, criteria)
    # Only the graded zones (and the glass, for the noise) are worked on: a window around each
    # fibre, about a quarter of the image for MPO fibres.
    reach_um = criteria.outer_diameter_um / 2.0 + _REGION_MARGIN_UM
    half = int(np.ceil((reach_um + 2.0) / um_per_pixel))
    window, origin, inside = _window(stack, location.centre_rc, half)
    centre = location.centre_rc - origin

    # --- geometry: radius of every pixel from its fibre's centre ------------------------------
    size_r, size_c = window.shape[1:]
    dy = np.arange(size_r, dtype=np.float32)[None, :, None] - centre[:, 0, None, None]
    dx = np.arange(size_c, dtype=np.float32)[None, None, :] - centre[:, 1, None, None]
    r2 = (dy**2 + dx**2).astype(np.float32)
    ring_position = r2 / np.float32(_RING_AREA_PX)
    rings = int(ring_position.max()) + 2
    ring = ring_position.astype(np.intp) + (np.arange(n, dtype=np.intp) * rings)[:, None, None]
    r_um = np.sqrt(r2) * np.float32(um_per_pixel)
    clad_um = criteria.cladding_diameter_um / 2.0
    edge_band = np.abs(r_um - clad_um) < _EDGE_BAND_UM
    face = (r_um < clad_um - _EDGE_BAND_UM) & inside  # the glass, for the noise estimate

    # --- clean-face model: radial profile x quadratic illumination, refined twice -----------
    lower, upper, weight = _interpolation(ring_position, rings)
    ring_r_um = np.sqrt((np.arange(rings) + 0.5) * _RING_AREA_PX) * um_per_pixel
    clipped = _clipped(window, ring, inside.astype(np.float32), rings)
    first = _ring_profile(window, ring, clipped, ring_r_um)
    model = _interpolate(first, lower, upper, weight)
    floor = np.float32(1e-3) * np.maximum(window.max(axis=(1, 2)), 1.0)[:, None, None]
    light = np.ones_like(window)
    for _ in range(2):
        ratio = window / np.maximum(model, floor)
        sigma0 = _robust_sigma(ratio, face)[:, None, None]
        good = (np.abs(ratio - 1.0) < 4.0 * sigma0) & inside
        light *= _illumination(ratio, good & ~edge_band, centre)
        flat = window / light
        # Rings with no good pixel (steep edges where everything is an outlier) keep their
        # first-pass mean.
        profile = _ring_profile(flat, ring, good.astype(np.float32), ring_r_um, first)
        model = _interpolate(profile, lower, upper, weight) * light
    contrast = 1.0 - window / np.maximum(model, floor)

    # --- detection ------------------------------------------------------------------------------
    sigma = _robust_sigma(contrast, face)
    smoothed = ndimage.gaussian_filter(contrast, (0.0, _SMOOTH_PX, _SMOOTH_PX), truncate=3.0)
    sigma_s = _robust_sigma(smoothed, face)[:, None, None]
    smooth = np.abs(smoothed)
    region = (r_um < reach_um) & ~edge_band & inside
    region &= location.located[:, None, None]
    grow = region & (smooth > np.maximum(_GROW_SIGMAS * sigma_s, _GROW_CONTRAST))
    seed = grow & (smooth > np.maximum(_SEED_SIGMAS * sigma_s, _SEED_CONTRAST))
    labels, count = ndimage.label(grow, structure=_STRUCTURE)
    features, pixels = _measure(
        labels, count, seed, smooth, contrast, r_um, centre, um_per_pixel, criteria
    )
    label_image = np.zeros(stack.shape, dtype=np.int32)
    fibre_px, row, col, ident = pixels
    label_image[fibre_px, row + origin[fibre_px, 0], col + origin[fibre_px, 1]] = ident
    scratch_count, defect_count, zone_passed = _grade(features, n, criteria)
    passed = location.located & zone_passed.all(axis=1)
    return EndFaceGrades(
        criteria=criteria,
        um_per_pixel=float(um_per_pixel),
        location=location,
        features=features,
        labels=label_image,
        noise_sigma=sigma,
        scratch_count=scratch_count,
        defect_count=defect_count,
        zone_passed=zone_passed,
        passed=passed,
    )


def _illumination(ratio: np.ndarray, good: np.ndarray, centre: np.ndarray) -> np.ndarray:
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
    return c[:, 0] + c[:, 1] * x + c[:, 2] * y + c[:, 3] * x * x + c[:, 4] * x * y + c[:, 5] * y * y


def _measure(
    labels: np.ndarray,
    count: int,
    seed: np.ndarray,
    smooth: np.ndarray,
    contrast: np.ndarray,
    r_um: np.ndarray,
    centre: np.ndarray,
    um_per_pixel: float,
    criteria: FaceCriteria,
) -> tuple[EndFaceFeatures, tuple[np.ndarray, ...]]:
    """Measure the seeded components of `labels` over their half-maximum pixels.

    Returns the features and their pixels as (image, row, column, 1 + feature index) arrays."""
    zones = len(criteria.zones)
    flat_labels = labels.ravel()
    where = np.flatnonzero(flat_labels)
    label = flat_labels[where]
    seeded = np.bincount(label, seed.ravel()[where], minlength=count + 1) > 0
    seeded[0] = False
    strength = smooth.ravel()[where]
    peak = np.zeros(count + 1, dtype=np.float32)
    np.maximum.at(peak, label, strength)
    half = seeded[label] & (strength >= 0.5 * peak[label])
    where, label = where[half], label[half]
    new_id = np.zeros(count + 1, dtype=np.int64)
    new_id[seeded] = np.arange(1, int(seeded.sum()) + 1)
    k = int(seeded.sum())
    ident = new_id[label]
    fibre_px, row, col = np.unravel_index(where, labels.shape)

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(ident, weights, minlength=k + 1)[1:]

    area = total(None)
    safe_area = np.maximum(area, 1.0)
    mean_r, mean_c = total(row) / safe_area, total(col) / safe_area
    var_r = total(row.astype(float) ** 2) / safe_area - mean_r**2 + 1.0 / 12.0
    var_c = total(col.astype(float) ** 2) / safe_area - mean_c**2 + 1.0 / 12.0
    cov = total(row.astype(float) * col) / safe_area - mean_r * mean_c
    mid, half_gap = (var_r + var_c) / 2.0, np.sqrt(((var_r - var_c) / 2.0) ** 2 + cov**2)
    major, minor = mid + half_gap, np.maximum(mid - half_gap, 1.0 / 12.0)
    fibre = (total(fibre_px.astype(float)) / safe_area).round().astype(np.int64)
    elongation = np.sqrt(major / minor)
    is_scratch = elongation >= criteria.scratch_min_elongation
    line_length = np.sqrt(12.0 * major)
    length_px = np.where(is_scratch, line_length, 4.0 * np.sqrt(major))
    width_px = np.where(is_scratch, area / line_length, 4.0 * np.sqrt(minor))
    length_um, width_um = length_px * um_per_pixel, width_px * um_per_pixel
    size_um = np.where(is_scratch, width_um, length_um)
    peak_contrast = np.zeros(k + 1)
    np.maximum.at(peak_contrast, ident, np.abs(contrast.ravel()[where]))
    sign = np.sign(total(contrast.ravel()[where].astype(float)))

    outer_um = np.array([z.outer_diameter_um / 2.0 for z in criteria.zones])
    inner_um = np.array([z.inner_diameter_um / 2.0 for z in criteria.zones])
    pixel_zone = np.searchsorted(outer_um, r_um.ravel()[where], side="right")
    inside = (pixel_zone < zones) & (
        r_um.ravel()[where] >= inner_um[np.minimum(pixel_zone, zones - 1)]
    )
    crossed = (
        np.bincount(ident[inside] * zones + pixel_zone[inside], minlength=(k + 1) * zones).reshape(
            k + 1, zones
        )[1:]
        > 0
    )
    zone = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1), -1)
    centre_px = centre[fibre] if k else np.zeros((0, 2))
    centre_um = np.stack([mean_c - centre_px[:, 1], mean_r - centre_px[:, 0]], axis=1)
    features = EndFaceFeatures(
        fibre=fibre,
        is_scratch=is_scratch,
        size_um=size_um,
        length_um=length_um,
        width_um=width_um,
        centre_um=centre_um * um_per_pixel,
        contrast=peak_contrast[1:] * sign,
        zone=zone,
        zones_crossed=crossed,
        counted=length_um >= criteria.min_feature_um,
    )
    return features, (fibre_px, row, col, ident)


def _grade(
    features: EndFaceFeatures, n: int, criteria: FaceCriteria
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-zone counts and verdicts, (n, zones) each; loops run over the zones and their limits."""
    zones = len(criteria.zones)
    scratch_count = np.zeros((n, zones), dtype=np.int64)
    defect_count = np.zeros((n, zones), dtype=np.int64)
    zone_passed = np.ones((n, zones), dtype=bool)
    f = features
    for z, zone in enumerate(criteria.zones):
        scratch = f.counted & f.is_scratch & f.zones_crossed[:, z]
        defect = f.counted & ~f.is_scratch & (f.zone == z)
        scratch_count[:, z] = np.bincount(f.fibre[scratch], minlength=n)
        defect_count[:, z] = np.bincount(f.fibre[defect], minlength=n)
        for kind, limits in ((scratch, zone.scratches), (defect, zone.defects)):
            for limit in limits:
                if limit.max_count is None:
                    continue
                band = kind & (f.size_um > limit.above_um) & (f.size_um <= limit.up_to_um)
                zone_passed[:, z] &= np.bincount(f.fibre[band], minlength=n) <= limit.max_count
    return scratch_count, defect_count, zone_passed
