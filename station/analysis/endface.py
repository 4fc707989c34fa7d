"""Connector end-face grading (IEC 61300-3-35) on inspection-microscope images, vectorised over
the fibres of a connector: locate, detect and size defects and scratches, grade every zone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from station.analysis._endface_locate import FibreLocation, as_stack, check_scale, locate
from station.analysis._endface_model import (
    clipped,
    illumination,
    interpolate,
    interpolation,
    ring_profile,
    robust_sigma,
    window_around,
)
from station.analysis.endface_criteria import MPO_SM_APC, FaceCriteria

__all__ = ["EndFaceFeatures", "EndFaceGrades", "FibreLocation", "grade_endfaces", "locate_fibres"]

_EDGE_BAND_UM = 1.5  # band on the cladding edge left out of the detection
_REGION_MARGIN_UM = 6.0  # detection reaches this far beyond the outer zone: whole features
_RING_AREA_PX = 60.0  # area of each ring of the radial profile, px^2 (0.25 px wide at 120 px)
_SMOOTH_PX = 0.8
_SEED_SIGMAS, _GROW_SIGMAS = 6.0, 3.0
_SEED_CONTRAST, _GROW_CONTRAST = 0.08, 0.04
# 8-connected in each image, never across images of the stack
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = True


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
    stack = as_stack(images)
    check_scale(um_per_pixel, stack.shape, criteria)
    return locate(stack, um_per_pixel, criteria)


def grade_endfaces(
    images: np.ndarray, um_per_pixel: float, criteria: FaceCriteria = MPO_SM_APC
) -> EndFaceGrades:
    """Grade the end faces of a connector's fibres against `criteria`.

    Method, for a stack of images (fibres, rows, cols):
    1. Locate the cladding: an Otsu threshold gives a first centre (centroid of the bright
       disc); the cladding edge is then found along 128 rays (steepest fall of the grey level,
       refined to sub-pixel) and an algebraic circle fit, twice, with outlier rays left out.
       Zones are centred on the cladding centre (core and cladding are concentric within 1 um in
       single-mode fibre). The edge search assumes a cladding brighter than what surrounds it,
       as coaxial illumination shows.
    2. Model the clean face: a radial profile (mean grey level in equal-area rings about the
       centre; inside 15 um extrapolated from 15-25 um, so that a particle covering the centre
       is not taken for the face) times a fitted quadratic illumination surface (vignetting
       about an optical axis that is not the fibre's, and slope), refined twice without the
       pixels the last model calls outliers. The relative contrast 1 - image / model is then ~0
       on a clean face, positive where a feature darkens it, negative where it brightens it.
    3. Detect: the contrast, smoothed by a 0.8-pixel Gaussian, is thresholded with hysteresis
       (seeds above max(6 sigma, 8 %), grown down to max(3 sigma, 4 %), sigma the robust noise
       of each image) over the graded zones and 6 um beyond (so that a feature straddling the
       outer zone is measured whole), leaving out a +-1.5 um band on the cladding edge, where
       the model is least exact (zone C: not graded for MPO, unlimited for PC). Only a window
       around each fibre is worked on. Components are labelled in one call over the whole stack
       (no connectivity between images).
    4. Measure each component over its pixels at or above half its peak contrast: the second
       moments give the principal axes. Elongation (length / width) >= `scratch_min_elongation`
       makes it a scratch, with length sqrt(12 lambda_1) and width area / length; otherwise a
       defect with diameter 4 sqrt(lambda_1) (its major diameter: exact for a disc or an
       ellipse).
    5. Grade: a defect belongs to the innermost zone it touches; a scratch counts in every zone
       it crosses. Each zone passes when every `CountLimit` of the table holds; the face passes
       when every zone does and the fibre was located.

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
    stack = as_stack(images)
    check_scale(um_per_pixel, stack.shape, criteria)
    n = stack.shape[0]
    location = locate(stack, um_per_pixel, criteria)
    # Only the graded zones (and the glass, for the noise) are worked on: a window around each
    # fibre, about a quarter of the image for MPO fibres.
    reach_um = criteria.outer_diameter_um / 2.0 + _REGION_MARGIN_UM
    half = int(np.ceil((reach_um + 2.0) / um_per_pixel))
    window, origin, inside = window_around(stack, location.centre_rc, half)
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
    lower, upper, weight = interpolation(ring_position, rings)
    ring_r_um = np.sqrt((np.arange(rings) + 0.5) * _RING_AREA_PX) * um_per_pixel
    kept = clipped(window, ring, inside.astype(np.float32), rings)
    first = ring_profile(window, ring, kept, ring_r_um)
    model = interpolate(first, lower, upper, weight)
    floor = np.float32(1e-3) * np.maximum(window.max(axis=(1, 2)), 1.0)[:, None, None]
    light = np.ones_like(window)
    for _ in range(2):
        ratio = window / np.maximum(model, floor)
        sigma0 = robust_sigma(ratio, face)[:, None, None]
        good = (np.abs(ratio - 1.0) < 4.0 * sigma0) & inside
        light *= illumination(ratio, good & ~edge_band, centre)
        flat = window / light
        # Rings with no good pixel (steep edges where everything is an outlier) keep their
        # first-pass mean.
        profile = ring_profile(flat, ring, good.astype(np.float32), ring_r_um, first)
        model = interpolate(profile, lower, upper, weight) * light
    contrast = 1.0 - window / np.maximum(model, floor)

    # --- detection ------------------------------------------------------------------------------
    sigma = robust_sigma(contrast, face)
    smoothed = ndimage.gaussian_filter(contrast, (0.0, _SMOOTH_PX, _SMOOTH_PX), truncate=3.0)
    sigma_s = robust_sigma(smoothed, face)[:, None, None]
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
