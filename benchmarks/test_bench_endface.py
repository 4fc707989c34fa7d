"""End-face grading of a 16-fibre MPO connector (16 x 480 x 480 pixels) against a reference
written the obvious way: a Python loop over the fibres, a median-filter background and
scipy.ndimage.label per image, and a Python loop over the features found.

Run: pytest benchmarks/test_bench_endface.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sim_instruments.endfaces import Optics, Particle, Scratch, make_connector, render_endface
from station.analysis.endface import grade_endfaces
from station.analysis.endface_criteria import MPO_SM_APC, FaceCriteria

pytestmark = pytest.mark.benchmark

FIBRES = 16
UM_PER_PIXEL = 0.5
BUDGET_S = 0.5


@pytest.fixture(scope="module")
def connector_images() -> np.ndarray:
    """(16, 480, 480) uint8: a dirty MPO-16 connector as the simulated microscope sees it, with
    a wide scratch on fibre 3 and a pit in zone A of fibre 9 added."""
    connector = make_connector("dut", "benchmark/endface", dirty_rate=1.0)
    connector.face(3).scratches.append(Scratch(-30.0, 20.0, 35.0, 28.0, 4.0))
    connector.face(9).particles.append(Particle(4.0, -3.0, 3.0, kind="pit"))
    optics, rng = Optics(), np.random.default_rng(2)
    frames = [
        render_endface(face, optics, rng, offset_um=tuple(rng.uniform(-12.0, 12.0, 2)))
        for face in connector.faces
    ]
    return (np.stack(frames) >> 4).astype(np.uint8)


def reference_grade(images: np.ndarray, um_per_pixel: float, criteria: FaceCriteria) -> np.ndarray:
    """The obvious way, one fibre and one feature at a time. Returns (fibres,) pass flags."""
    passed = []
    zone_edges = [z.outer_diameter_um / 2.0 for z in criteria.zones]
    for image in images.astype(float):
        threshold = 0.5 * (np.percentile(image, 5) + np.percentile(image, 99))
        labels, count = ndimage.label(image > threshold)
        sizes = ndimage.sum(np.ones_like(image), labels, range(1, count + 1))
        fibre = labels == 1 + int(np.argmax(sizes))
        cy, cx = ndimage.center_of_mass(fibre)
        background = ndimage.median_filter(image, size=15)
        contrast = 1.0 - image / np.maximum(background, 1.0)
        yy, xx = np.indices(image.shape)
        r_um = np.hypot(yy - cy, xx - cx) * um_per_pixel
        mask = (contrast > 0.08) & (r_um < zone_edges[-1] + 3.0)
        labels, count = ndimage.label(mask)
        counts: dict[tuple[int, str, float], int] = {}
        for index, window in enumerate(ndimage.find_objects(labels), start=1):
            rows, cols = np.nonzero(labels[window] == index)
            if rows.size < 3:
                continue
            cov = np.cov(np.stack([rows, cols])) + np.eye(2) / 12.0
            minor, major = np.linalg.eigvalsh(cov)
            scratch = np.sqrt(major / minor) >= criteria.scratch_min_elongation
            size = rows.size / np.sqrt(12 * major) if scratch else 4.0 * np.sqrt(major)
            inner = r_um[window][rows, cols].min()
            for z, zone in enumerate(criteria.zones):
                outer = r_um[window][rows, cols].max()
                low, high = zone.inner_diameter_um / 2.0, zone.outer_diameter_um / 2.0
                touches = inner < high and outer >= low
                first = next(i for i, e in enumerate([*zone_edges, np.inf]) if inner < e) == z
                if (scratch and touches) or (not scratch and first):
                    for limit in zone.scratches if scratch else zone.defects:
                        if limit.above_um < size * um_per_pixel <= limit.up_to_um:
                            key = (z, "s" if scratch else "d", limit.above_um)
                            counts[key] = counts.get(key, 0) + 1
        ok = True
        for (z, kind, above), found in counts.items():
            zone = criteria.zones[z]
            for limit in zone.scratches if kind == "s" else zone.defects:
                if limit.above_um == above and limit.max_count is not None:
                    ok &= found <= limit.max_count
        passed.append(ok)
    return np.array(passed)


def test_grade_16_fibre_connector(benchmark, connector_images) -> None:
    benchmark.group = "end-face grading: 16 x 480 x 480"
    grades = benchmark.pedantic(
        grade_endfaces,
        args=(connector_images, UM_PER_PIXEL, MPO_SM_APC),
        rounds=10,
        iterations=1,
        warmup_rounds=1,
    )
    assert grades.location.located.all()
    assert not grades.passed[2] and not grades.passed[8]  # the wide scratch, the pit in zone A
    benchmark.extra_info["failing_fibres"] = [int(i) + 1 for i in np.flatnonzero(~grades.passed)]
    assert benchmark.stats.stats.median < BUDGET_S


def test_reference_loop_over_fibres(benchmark, connector_images) -> None:
    benchmark.group = "end-face grading: 16 x 480 x 480"
    passed = benchmark.pedantic(
        reference_grade,
        args=(connector_images, UM_PER_PIXEL, MPO_SM_APC),
        rounds=3,
        iterations=1,
    )
    assert not passed[2] and not passed[8]
    benchmark.extra_info["failing_fibres"] = [int(i) + 1 for i in np.flatnonzero(~passed)]


def test_same_method_one_fibre_at_a_time(benchmark, connector_images) -> None:
    """What the vectorisation over the stack itself is worth: the same method, called per fibre."""
    benchmark.group = "end-face grading: 16 x 480 x 480"
    results = benchmark.pedantic(
        lambda: [grade_endfaces(image, UM_PER_PIXEL, MPO_SM_APC) for image in connector_images],
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    together = grade_endfaces(connector_images, UM_PER_PIXEL, MPO_SM_APC)
    np.testing.assert_array_equal([r.passed[0] for r in results], together.passed)
