"""Known-answer tests of end-face grading (IEC 61300-3-35) on synthetic faces of known defects.

The faces are drawn here, independently of the simulated bench's renderer: hard-edged shapes on
a 4x finer grid, averaged down, blurred by the optics, vignetted and noisy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from station.analysis.endface import grade_endfaces, locate_fibres
from station.analysis.endface_criteria import CRITERIA, MPO_SM_APC, SM_PC, CountLimit
from station.analysis.errors import AnalysisError

SCALE_UM = 0.5  # um per pixel
SIZE = 480
SUPER = 4

Defect = tuple[float, float, float]  # x_um, y_um, diameter_um (dark, 75 % of the light lost)
Line = tuple[float, float, float, float, float]  # x0, y0, x1, y1, width, all um


def face(
    defects: tuple[Defect, ...] = (),
    scratches: tuple[Line, ...] = (),
    *,
    offset_um: tuple[float, float] = (0.0, 0.0),
    ferrule: str = "zirconia",
    seed: int = 0,
) -> np.ndarray:
    """A (480, 480) uint8 end-face image; positions relative to the fibre axis, x right, y down."""
    rng = np.random.default_rng(seed)
    n = SIZE * SUPER
    axis = (np.arange(n) - (n - 1) / 2.0) * (SCALE_UM / SUPER)
    x = axis[None, :] - offset_um[0]
    y = axis[:, None] - offset_um[1]
    r = np.hypot(x, y)
    ferrule_level = 0.6 if ferrule == "zirconia" else 0.5
    level = np.full((n, n), ferrule_level)
    level[r < 64.5] = 0.3  # adhesive ring
    level[r < 62.5] = 0.92  # cladding (the core is invisible in reflection)
    dark = np.zeros((n, n), dtype=bool)
    for dx, dy, diameter in defects:
        dark |= np.hypot(x - dx, y - dy) < diameter / 2.0
    for x0, y0, x1, y1, width in scratches:
        ux, uy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * ux + (y - y0) * uy) / (ux * ux + uy * uy), 0.0, 1.0)
        dark |= np.hypot(x - x0 - t * ux, y - y0 - t * uy) < width / 2.0
    level[dark] *= 0.25
    image = level.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))
    image = ndimage.gaussian_filter(image, 0.9)  # optics: 0.45 um
    if ferrule == "mpo":  # grainy ferrule outside the glass
        grain = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (SIZE, SIZE)), 4.0) * 0.3
        coarse = np.hypot(*np.meshgrid(axis[::SUPER] - offset_um[0], axis[::SUPER] - offset_um[1]))
        image *= 1.0 + np.where(coarse > 65.0, grain, 0.0)
    px = (np.arange(SIZE) - SIZE / 2.0) * SCALE_UM
    light = 1.0 - 0.12 * ((px[None, :] - 8.0) ** 2 + (px[:, None] + 5.0) ** 2) / 120.0**2
    light = light + 0.03 * px[None, :] / 120.0
    grey = 200.0 * image * light + rng.normal(0.0, 2.0, (SIZE, SIZE))
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def at(radius_um: float, angle_deg: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return radius_um * math.cos(a), radius_um * math.sin(a)


def spot(radius_um: float, angle_deg: float, diameter_um: float) -> Defect:
    """A defect of `diameter_um` centred `radius_um` from the axis, at `angle_deg`."""
    return (*at(radius_um, angle_deg), diameter_um)


def chord(offset_um: float, angle_deg: float, half_length_um: float, width_um: float) -> Line:
    """A straight scratch `offset_um` from the axis, along direction `angle_deg`."""
    a = math.radians(angle_deg)
    cx, cy = -offset_um * math.sin(a), offset_um * math.cos(a)
    dx, dy = half_length_um * math.cos(a), half_length_um * math.sin(a)
    return (cx - dx, cy - dy, cx + dx, cy + dy, width_um)


# --- location -----------------------------------------------------------------------------------
def test_locates_an_off_centre_fibre_and_measures_its_cladding() -> None:
    stack = np.stack([face(offset_um=(18.0, -11.0)), face(offset_um=(-7.5, 14.25), seed=1)])
    location = locate_fibres(stack, SCALE_UM)
    expected_rc = np.array([[-11.0, 18.0], [14.25, -7.5]]) / SCALE_UM + (SIZE - 1) / 2.0
    assert location.located.all()
    np.testing.assert_allclose(location.centre_rc, expected_rc, atol=0.25)
    np.testing.assert_allclose(location.cladding_diameter_um, 125.0, atol=0.6)


def test_an_image_without_a_fibre_is_not_located_and_does_not_pass() -> None:
    rng = np.random.default_rng(3)
    blank = np.clip(rng.normal(5.0, 2.0, (SIZE, SIZE)), 0, 255).astype(np.uint8)
    grades = grade_endfaces(np.stack([blank, face()]), SCALE_UM)
    np.testing.assert_array_equal(grades.location.located, [False, True])
    np.testing.assert_array_equal(grades.passed, [False, True])
    assert "not found" in grades.failures(0)[0]



@pytest.mark.parametrize("mean_counts", [0.0, 0.3, 1.0, 3.0])
def test_a_black_or_nearly_black_field_grades_without_numerical_trouble(mean_counts: float) -> None:
    # An empty cage shows only stray light: a frame of zeros and ones, where a fitted illumination
    # surface once crossed zero and the grading divided by it (warnings are errors here).
    rng = np.random.default_rng(7)
    frames = rng.poisson(mean_counts, size=(12, SIZE, SIZE)).astype(np.uint8)
    grades = grade_endfaces(frames, SCALE_UM)
    assert not grades.location.located.any() and not grades.passed.any()
    assert all("not found" in grades.failures(i)[0] for i in range(len(frames)))

# --- clean faces --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_clean_faces_pass_with_no_feature(name: str) -> None:
    stack = np.stack([face(offset_um=(5.0 * k - 10.0, 3.0 * k), seed=k) for k in range(5)])
    grades = grade_endfaces(stack, SCALE_UM, CRITERIA[name])
    assert grades.passed.all()
    assert len(grades.features) == 0
    assert (grades.noise_sigma < 0.03).all()


def test_a_grainy_mpo_ferrule_outside_the_graded_zones_is_ignored() -> None:
    grades = grade_endfaces(face(ferrule="mpo", seed=4), SCALE_UM, MPO_SM_APC)
    assert grades.passed.all() and len(grades.features) == 0


# --- sizes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("diameter_um", "radius_um", "zone"),
    [(2.0, 0.0, "A"), (3.0, 8.0, "A"), (2.5, 20.0, "B"), (4.5, 35.0, "B"), (7.0, 48.0, "B"),
     (9.0, 3.0, "A"), (6.0, 90.0, "D"), (12.0, 105.0, "D")],
)  # fmt: skip
def test_defects_are_sized_within_1_um_and_placed_in_their_zone(
    diameter_um: float, radius_um: float, zone: str
) -> None:
    centre = at(radius_um, 37.0)
    grades = grade_endfaces(
        face((spot(radius_um, 37.0, diameter_um),), offset_um=(6.0, -4.0)), SCALE_UM, SM_PC
    )
    f = grades.features
    assert len(f) == 1
    assert not f.is_scratch[0]
    assert f.size_um[0] == pytest.approx(diameter_um, abs=1.0)
    np.testing.assert_allclose(f.centre_um[0], centre, atol=0.5)
    assert SM_PC.zones[f.zone[0]].name == zone
    assert f.contrast[0] > 0.5  # dark


@pytest.mark.parametrize("width_um", [1.0, 2.0, 3.5, 5.0])
def test_scratches_are_recognised_and_their_width_measured_within_1_um(width_um: float) -> None:
    grades = grade_endfaces(face(scratches=(chord(30.0, 20.0, 25.0, width_um),)), SCALE_UM)
    f = grades.features
    assert len(f) == 1
    assert f.is_scratch[0]
    assert f.width_um[0] == pytest.approx(width_um, abs=1.0)
    assert f.length_um[0] == pytest.approx(50.0 + width_um, abs=3.0)
    assert MPO_SM_APC.zones[f.zone[0]].name == "B"


# --- grades -------------------------------------------------------------------------------------
@pytest.mark.parametrize("criteria", [SM_PC, MPO_SM_APC], ids=["pc", "mpo-apc"])
def test_a_wide_scratch_across_zone_b_fails(criteria) -> None:
    grades = grade_endfaces(face(scratches=(chord(35.0, -60.0, 30.0, 4.0),)), SCALE_UM, criteria)
    assert not grades.passed[0]
    assert list(grades.zone_passed[0][:2]) == [True, False]
    assert grades.scratch_count[0, 1] == 1
    assert "zone B: 1 scratches" in grades.failures(0)[0]


def test_a_fine_scratch_across_zone_b_passes() -> None:
    grades = grade_endfaces(face(scratches=(chord(35.0, -60.0, 30.0, 1.5),)), SCALE_UM, SM_PC)
    assert grades.passed[0]
    assert grades.scratch_count[0, 1] == 1


def test_particles_only_in_zone_c_pass_under_pc_criteria() -> None:
    particles = (spot(59.0, 10.0, 2.5), spot(66.0, 130.0, 2.5), spot(66.0, 250.0, 2.0))
    grades = grade_endfaces(face(particles), SCALE_UM, SM_PC)
    assert grades.passed[0]
    counted = grades.features.zone[grades.features.counted]
    assert len(counted) == 3 and (counted == 2).all()  # zone C
    # The same particles moved into zone B: two of them are 2-5 um, which B allows (up to 5)...
    assert grade_endfaces(face(tuple(spot(40.0, a, 3.0) for a in (10, 130, 250))), SCALE_UM,
                          SM_PC).passed[0]  # fmt: skip
    # ...and a 6 um one fails B.
    assert not grade_endfaces(face((spot(40.0, 80.0, 6.0),)), SCALE_UM, SM_PC).passed[0]


@pytest.mark.parametrize(("count", "passes"), [(5, True), (6, False)])
def test_zone_b_allows_five_defects_of_2_to_5_um(count: int, passes: bool) -> None:
    particles = tuple(spot(30.0 + 3.0 * k, 60.0 * k, 3.5) for k in range(count))
    grades = grade_endfaces(face(particles), SCALE_UM, MPO_SM_APC)
    assert grades.defect_count[0, 1] == count
    assert grades.passed[0] == passes


def test_any_defect_in_zone_a_fails() -> None:
    grades = grade_endfaces(face((spot(6.0, 200.0, 2.5),)), SCALE_UM, MPO_SM_APC)
    assert list(grades.zone_passed[0]) == [False, True]
    (reason,) = grades.failures(0)
    assert reason.startswith("zone A: 1 defects (") and "defects of any size: at most 0" in reason


@pytest.mark.parametrize(("count", "apc_passes"), [(4, True), (5, False)])
def test_apc_zone_a_allows_four_fine_scratches_where_pc_allows_none(
    count: int, apc_passes: bool
) -> None:
    scratches = tuple(chord(5.0 * k - 10.0, 0.0, 30.0, 1.5) for k in range(count))
    image = face(scratches=scratches)
    apc = grade_endfaces(image, SCALE_UM, MPO_SM_APC)
    pc = grade_endfaces(image, SCALE_UM, SM_PC)
    assert apc.scratch_count[0, 0] == count
    assert apc.passed[0] == apc_passes
    assert not pc.passed[0] and not pc.zone_passed[0, 0]


def test_a_scratch_wider_than_3_um_in_apc_zone_a_fails() -> None:
    grades = grade_endfaces(face(scratches=(chord(2.0, 45.0, 20.0, 3.8),)), SCALE_UM, MPO_SM_APC)
    assert not grades.zone_passed[0, 0]


def test_a_stack_grades_each_face_as_if_alone() -> None:
    faces = [
        face(seed=1),
        face((spot(40.0, 80.0, 6.0),), seed=2, offset_um=(-12.0, 8.0)),
        face(scratches=(chord(35.0, -60.0, 30.0, 4.0),), seed=3),
        face((spot(5.0, 10.0, 3.0),), scratches=(chord(-20.0, 30.0, 20.0, 1.2),), seed=4),
    ]
    together = grade_endfaces(np.stack(faces), SCALE_UM, SM_PC)
    np.testing.assert_array_equal(together.passed, [True, False, False, False])
    for index, image in enumerate(faces):
        alone = grade_endfaces(image, SCALE_UM, SM_PC)
        mine = together.features.fibre == index
        np.testing.assert_array_equal(alone.zone_passed[0], together.zone_passed[index])
        np.testing.assert_allclose(
            np.sort(alone.features.size_um), np.sort(together.features.size_um[mine]), atol=0.05
        )
    labelled = np.unique(together.labels[1])
    assert len(labelled) == 2  # background and the 6 um defect, numbered into the table
    assert together.features.fibre[labelled[1] - 1] == 1


def test_sixteen_bit_and_float_images_grade_like_eight_bit() -> None:
    image = face((spot(30.0, 10.0, 6.0),))
    eight = grade_endfaces(image, SCALE_UM)
    sixteen = grade_endfaces(image.astype(np.uint16) * 16, SCALE_UM)
    floats = grade_endfaces(image / 255.0, SCALE_UM)
    for other in (sixteen, floats):
        np.testing.assert_array_equal(other.passed, eight.passed)
        np.testing.assert_allclose(other.features.size_um, eight.features.size_um, atol=0.05)


# --- the table is data --------------------------------------------------------------------------
def test_criteria_tables_follow_the_domain_summary() -> None:
    a, b = MPO_SM_APC.zones
    assert (a.outer_diameter_um, b.outer_diameter_um) == (25.0, 115.0)
    assert CountLimit(0.0, 3.0, 4) in a.scratches
    assert [z.name for z in SM_PC.zones] == ["A", "B", "C", "D"]
    assert SM_PC.zones[3].defects == (CountLimit(10.0, math.inf, 0),)
    assert b.defects == (CountLimit(2.0, 5.0, 5), CountLimit(5.0, math.inf, 0))


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("images", "scale", "match"),
    [
        (np.zeros((2, 2, 2, 2)), SCALE_UM, "rows, cols"),
        (np.zeros((40, 40)), SCALE_UM, "smaller than 64"),
        (np.full((100, 100), np.nan), 2.0, "NaN"),
        (np.zeros((SIZE, SIZE)), 0.0, "um_per_pixel"),
        (np.zeros((SIZE, SIZE)), 0.2, "field of view"),
        (np.zeros((SIZE, SIZE), dtype=complex), SCALE_UM, "grey levels"),
    ],
)
def test_bad_input_raises_analysis_error(images: np.ndarray, scale: float, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        grade_endfaces(images, scale)
