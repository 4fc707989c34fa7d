"""The simulated end faces: a seeded population, cleaning that removes dirt but not damage, and
the inspection microscope, its images and the end-face analysis agreeing with the physical truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.generic.scpi_endface_microscope import ScpiEndfaceMicroscope
from sim_instruments.__main__ import _control
from sim_instruments.bench import SimBench
from sim_instruments.endfaces import (
    DIRTY_CONNECTOR_RATE,
    FibreFace,
    Optics,
    make_connector,
    render_endface,
)
from sim_instruments.population import serial_rng
from station.analysis.endface import EndFaceGrades, grade_endfaces
from station.analysis.endface_criteria import MPO_SM_APC, FaceCriteria

FAST = 0.02


def dut(serial: str, product: str = "800G-DR8"):
    return make_connector("dut", f"dut/{product}/{serial}")


def truth_grade(face: FibreFace, criteria: FaceCriteria = MPO_SM_APC) -> tuple[bool, bool]:
    """(passes, clear-cut) from what is physically on the face: a fibre is not clear-cut when a
    feature's size or position lies within measurement error of a limit, features may touch, or
    a feature reaches the cladding edge."""
    features = [("defect", p.diameter_um, p.radius_um - p.diameter_um / 2) for p in face.particles]
    features += [
        (
            "scratch",
            s.width_um,
            s.closest_approach_um() - s.width_um / 2,
            max(math.hypot(s.x0_um, s.y0_um), math.hypot(s.x1_um, s.y1_um)) + s.width_um / 2,
        )
        for s in face.scratches
    ]
    clear = len(face.scratches) == 0 or len(face.particles) == 0
    for i, p in enumerate(face.particles):
        clear &= p.radius_um + p.diameter_um / 2 < 60.0  # short of the cladding-edge band
        for q in face.particles[i + 1 :]:
            gap = math.hypot(p.x_um - q.x_um, p.y_um - q.y_um) - (p.diameter_um + q.diameter_um) / 2
            clear &= gap > 2.0
    bounds = [z.outer_diameter_um / 2 for z in criteria.zones]
    for _kind, size, inner, *_ in features:
        clear &= all(abs(size - limit) > 0.8 for limit in (2.0, 3.0, 5.0))
        clear &= all(abs(max(inner, 0.0) - b) > 1.0 for b in bounds)
    passed = True
    for z, zone in enumerate(criteria.zones):
        low, high = zone.inner_diameter_um / 2, zone.outer_diameter_um / 2
        for kind, limits in (("scratch", zone.scratches), ("defect", zone.defects)):
            for limit in limits:
                found = 0
                for k, size, inner, *rest in features:
                    if k != kind or not limit.above_um < size <= limit.up_to_um:
                        continue
                    if kind == "scratch":
                        found += inner < high and rest[0] > low
                    else:  # a defect belongs to the innermost zone it touches
                        found += next((i for i, b in enumerate(bounds) if inner < b), None) == z
                if limit.max_count is not None and found > limit.max_count:
                    passed = False
    return passed, clear


# --- the population ------------------------------------------------------------------------------
def test_the_same_serial_always_brings_the_same_faces() -> None:
    one, again, other = dut("SIM0031"), dut("SIM0031"), dut("SIM0032")
    assert one.faces == again.faces
    assert one.faces != other.faces
    assert one.fibre_count == 16 and one.kind == "MPO-16 APC"


def test_a_realistic_fraction_of_connectors_arrive_dirty_and_few_damaged() -> None:
    connectors = [dut(f"SIM{i:04d}") for i in range(1, 401)]
    dirty = np.mean([c.is_dirty() for c in connectors])
    damaged = np.mean([any(f.pits or f.scratches for f in c.faces) for c in connectors])
    assert dirty == pytest.approx(DIRTY_CONNECTOR_RATE, abs=0.07)
    assert 0.02 < damaged < 0.2


def test_cleaning_removes_loose_particles_but_never_pits_or_scratches() -> None:
    for i in range(1, 120):
        connector = dut(f"SIM{i:04d}")
        permanent = [(f.pits, f.scratches) for f in connector.faces]
        loose = sum(len(f.loose_particles) for f in connector.faces)
        removed = [connector.clean() for _ in range(8)]
        assert sum(removed) == loose  # eight passes leave no dust nor residue here
        assert not connector.is_dirty()
        assert [(f.pits, f.scratches) for f in connector.faces] == permanent
    one = dut("SIM0121")
    before = [len(f.loose_particles) for f in one.faces]
    one.clean(fibre=2)
    after = [len(f.loose_particles) for f in one.faces]
    assert after[2:] == before[2:] and after[0] == before[0] and after[1] < before[1]


# --- analysis against the physical truth ---------------------------------------------------------
def test_grading_the_rendered_faces_agrees_with_the_truth() -> None:
    optics, rng = Optics(), np.random.default_rng(11)
    agree = clear_cut = 0
    for i in range(6):
        connector = make_connector("dut", f"agreement/{i}", dirty_rate=1.0)
        frames = [
            render_endface(f, optics, rng, offset_um=tuple(rng.uniform(-12.0, 12.0, 2)))
            for f in connector.faces
        ]
        grades = grade_endfaces(np.stack(frames) >> 4, optics.um_per_pixel)
        assert grades.location.located.all()
        for index, face in enumerate(connector.faces):
            passes, clear = truth_grade(face)
            if clear:
                clear_cut += 1
                agree += passes == grades.passed[index]
    assert clear_cut > 50
    assert agree == clear_cut


# --- on the bench ---------------------------------------------------------------------------------
@pytest.fixture
def sim() -> Iterator[SimBench]:
    with SimBench.build(time_factor=FAST) as bench:
        yield bench


def inspect(microscope: ScpiEndfaceMicroscope) -> EndFaceGrades:
    microscope.select_fibre(1)
    microscope.auto_focus()  # once per seating: the faces of one ferrule are within a um
    frames = []
    for fibre in range(1, microscope.fibre_count + 1):
        microscope.select_fibre(fibre)
        frames.append(microscope.capture())
    return grade_endfaces(np.stack([f.image for f in frames]), frames[0].um_per_pixel)


def test_cleaning_on_the_bench_removes_the_particles_but_not_the_scratch(sim: SimBench) -> None:
    sim.insert("SIM0031", "800G-DR8")
    connector = sim.endfaces().under_probe()
    assert connector is not None
    # The premise: dust on fibres 6 and 7 (zone B, over 5 um), a 2.1 um scratch on fibre 12.
    assert [p.kind for p in connector.face(6).particles + connector.face(7).particles] == [
        "dust",
        "dust",
    ]
    (scratch,) = connector.face(12).scratches
    with ScpiEndfaceMicroscope.open(sim.resources()["inspection_microscope"]) as microscope:
        before = inspect(microscope)
        assert list(np.flatnonzero(~before.passed) + 1) == [6, 7]
        assert "zone B" in before.failures(5)[0]
        replies = [_control([sim], "clean") for _ in range(3)]
        assert replies[0].startswith("ok ") and replies[0].endswith(" removed")
        assert not connector.is_dirty()
        after = inspect(microscope)
    assert after.passed.all()
    f = after.features
    kept = f.counted & (f.zone >= 0)
    assert list(f.fibre[kept] + 1) == [12]  # only the scratch is left in the graded zones
    assert f.is_scratch[kept][0]
    assert f.width_um[kept][0] == pytest.approx(scratch.width_um, abs=1.0)
    assert after.scratch_count[11, 0] == 1  # in zone A, where APC allows up to 4 fine ones


def test_the_jumper_picks_up_dust_between_duts_and_cleans(sim: SimBench) -> None:
    fixture = sim.endfaces()
    assert not fixture.jumper.is_dirty()
    serials = [f"SIM{i:04d}" for i in range(1, 200)]
    picking = next(
        s for s in serials if serial_rng("jumper-pickup", sim.world.bench_id, s).random() < 0.15
    )
    sim.insert(picking, "800G-DR8")
    assert _control([sim], "probe jumper") == "ok"
    assert fixture.under_probe() is fixture.jumper
    assert fixture.jumper.is_dirty()  # handling the DUT left dust on the station's jumper
    while fixture.jumper.is_dirty():
        sim.clean()
    assert _control([sim], "probe cage").startswith("error")
    assert _control([sim], "clean 17").startswith("error")


def test_with_no_module_in_the_cage_the_probe_sees_no_fibre(sim: SimBench) -> None:
    with ScpiEndfaceMicroscope.open(sim.resources()["inspection_microscope"]) as microscope:
        microscope.auto_focus()
        frame = microscope.capture()
    grades = grade_endfaces(frame.image, frame.um_per_pixel)
    assert not grades.location.located[0] and not grades.passed[0]
    with pytest.raises(ValueError, match="no dut connector"):
        sim.clean()
