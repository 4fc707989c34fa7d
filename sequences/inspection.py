"""Connector end-face inspection (IEC 61300-3-35) before mating: the station's MPO jumper and the
module's MPO receptacle, fibre by fibre, with cleaning and re-inspection of a face that fails.

The operator seats the inspection probe on each connector in turn (a prompt answered "Seated")
and, when a face fails, cleans it and confirms ("Cleaned"), up to `MAX_CLEANINGS` times. Every
inspection's images are kept as `endface` artefacts (annotated in the report); the measurements
are those of each connector's last inspection. Who is to blame decides the outcome
(DOMAIN.md section 9): a station jumper that does not come clean, or a receptacle that stays
dirty, ends the site ERROR (the station could not judge the module); a receptacle whose only
remaining faults are scratches is damaged, a FAIL of the module. The step runs before
`power_up`, while the module's transmitters are off: nobody looks into a lit fibre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.interfaces import InspectionMicroscope
from station.analysis.endface import EndFaceGrades, grade_endfaces
from station.analysis.endface_criteria import MPO_SM_APC, FaceCriteria
from station.engine import StepContext
from station.errors import StationError
from station.sequence import Sequence, step

#: cleanings of one connector before the station gives up on it
MAX_CLEANINGS = 3
#: the operator's answers (a simulated bench's hands act on the same words)
SEATED, CLEANED, CANNOT_CLEAN = "Seated", "Cleaned", "Cannot clean"
PROMPT_TIMEOUT_S = 600.0
CRITERIA: FaceCriteria = MPO_SM_APC  # single-mode APC MPO: DR8 modules
#: stored images: the graded zones and a margin, binned 2 x 2 (1 um a pixel at 0.5 um)
IMAGE_MARGIN_UM = 6.0
IMAGE_BINNING = 2


@dataclass(frozen=True)
class Connector:
    key: str  # measurement and artefact prefix
    label: str  # as the operator reads it
    station_side: bool  # the station's own: a face that will not pass is a station problem


JUMPER = Connector("jumper", "station's MPO jumper (the end that mates with the module)", True)
RECEPTACLE = Connector("receptacle", "module's MPO receptacle", False)
CONNECTORS = (JUMPER, RECEPTACLE)
#: per fibre (lane = fibre position): the criteria table's verdict and the counts it limits
_SUFFIXES = ("endface_grade", "zone_a_defects", "zone_b_defects", "scratches_over_3um")


def measures_of(connector: Connector) -> tuple[str, ...]:
    return tuple(f"{connector.key}_{suffix}" for suffix in _SUFFIXES)


INSPECTION_MEASURES = tuple(name for c in CONNECTORS for name in measures_of(c))


class EndFaceNotClean(StationError):
    """A connector's faces still fail after cleaning: the station cannot judge the module."""

    def __init__(self, connector: Connector, fibres: tuple[int, ...], why: str) -> None:
        listed = ", ".join(str(f) for f in fibres)
        super().__init__(f"{connector.label}: fibre {listed} {why}")
        self.connector = connector.key
        self.fibres = fibres


@step(roles=("inspection_microscope",), measures=INSPECTION_MEASURES, timeout_s=180.0)
def inspect(ctx: StepContext) -> None:
    """Inspect the station jumper and the module receptacle fibre by fibre; clean what fails."""
    microscope = ctx.instrument("inspection_microscope", InspectionMicroscope)
    for connector in CONNECTORS:
        ctx.prompt(
            f"{ctx.dut_serial}: seat the inspection probe on the {connector.label}",
            choices=(SEATED,),
            timeout_s=PROMPT_TIMEOUT_S,
        )
        grades = _inspect(ctx, microscope, connector, 1)
        cleanings, gave_up = 0, False
        while not grades.passed.all() and cleanings < MAX_CLEANINGS and not gave_up:
            failing = _failing(grades)
            answer = ctx.prompt(
                f"{ctx.dut_serial}: fibre {', '.join(map(str, failing))} of the {connector.label} "
                "failed inspection "
                f"({_why(grades, failing[0])}). Clean the connector with the MPO cleaner, seat "
                "the probe on it again and confirm",
                choices=(CLEANED, CANNOT_CLEAN),
                timeout_s=PROMPT_TIMEOUT_S,
            )
            gave_up = answer == CANNOT_CLEAN
            if not gave_up:
                cleanings += 1
                grades = _inspect(ctx, microscope, connector, cleanings + 1)
        ctx.attribute(f"{connector.key}_cleanings", cleanings)
        _record(ctx, connector, grades)
        failing = _failing(grades)
        if not failing:
            continue
        if gave_up:
            raise EndFaceNotClean(connector, failing, "failed and the operator could not clean it")
        if connector.station_side:
            raise EndFaceNotClean(
                connector, failing, f"still fails after {cleanings} cleanings: replace the jumper"
            )
        dirty = tuple(f for f in failing if not _only_scratches(grades, f - 1))
        if dirty:
            raise EndFaceNotClean(
                connector,
                dirty,
                f"stays dirty after {cleanings} cleanings: module not judged",  # or was not found
            )
        # Only scratches are left: the receptacle is damaged, and its measurements fail it.


def _inspect(
    ctx: StepContext, microscope: InspectionMicroscope, connector: Connector, inspection: int
) -> EndFaceGrades:
    """Image every fibre of the seated connector, grade them, store the images."""
    microscope.select_fibre(1)
    microscope.auto_focus()  # once per seating: the faces of one ferrule are within a um
    frames = []
    for fibre in range(1, microscope.fibre_count + 1):
        microscope.select_fibre(fibre)
        frames.append(microscope.capture())
        ctx.check_cancelled()
    images = np.stack([frame.image for frame in frames])
    grades = grade_endfaces(images, frames[0].um_per_pixel, CRITERIA)
    _store_images(ctx, connector, inspection, images, grades)
    return grades


def _failing(grades: EndFaceGrades) -> tuple[int, ...]:
    """Fibre positions (from 1) that did not pass."""
    return tuple(int(i) + 1 for i in np.flatnonzero(~grades.passed))


def _why(grades: EndFaceGrades, fibre: int) -> str:
    reasons = grades.failures(fibre - 1)
    return reasons[0] if reasons else "failed"


def _counts(grades: EndFaceGrades) -> dict[str, np.ndarray]:
    """Per fibre: counted defects in zone A, defects over 2 um in zone B, scratches over 3 um
    wide crossing either zone (what the criteria table limits, as the limits file counts it)."""
    f, n = grades.features, grades.passed.size
    zones = CRITERIA.zone_names()
    a, b = zones.index("A"), zones.index("B")
    defect = f.counted & ~f.is_scratch
    wide = f.counted & f.is_scratch & (f.size_um > 3.0) & f.zones_crossed.any(axis=1)
    return {
        "zone_a_defects": np.bincount(f.fibre[defect & (f.zone == a)], minlength=n),
        "zone_b_defects": np.bincount(
            f.fibre[defect & (f.zone == b) & (f.size_um > 2.0)], minlength=n
        ),
        "scratches_over_3um": np.bincount(f.fibre[wide], minlength=n),
    }


def _record(ctx: StepContext, connector: Connector, grades: EndFaceGrades) -> None:
    counts = _counts(grades)
    for index, passed in enumerate(grades.passed):
        fibre = index + 1
        grade = "PASS" if passed else "FAIL"
        ctx.measure(f"{connector.key}_endface_grade", grade, unit="", lane=fibre)
        for suffix, values in counts.items():
            ctx.measure(f"{connector.key}_{suffix}", int(values[index]), unit="", lane=fibre)


def _only_scratches(grades: EndFaceGrades, index: int) -> bool:
    """Whether fibre `index` (in the stack) was located and breaks no defect limit: what is
    left on it is scratches, damage no cleaning removes."""
    if not grades.location.located[index]:
        return False
    f = grades.features
    mine = (f.fibre == index) & f.counted & ~f.is_scratch
    for z, zone in enumerate(CRITERIA.zones):
        for limit in zone.defects:
            if limit.max_count is None:
                continue
            band = mine & (f.zone == z) & (f.size_um > limit.above_um)
            if int((band & (f.size_um <= limit.up_to_um)).sum()) > limit.max_count:
                return False
    return True


def _store_images(
    ctx: StepContext,
    connector: Connector,
    inspection: int,
    images: np.ndarray,
    grades: EndFaceGrades,
) -> None:
    """One `endface` artefact a fibre: the graded zones cut out around the fibre, binned, as
    uint8, with the detected features' mask and sizes (about 20 kB a fibre, compressed)."""
    scale = grades.um_per_pixel
    n, rows, cols = images.shape
    half = int(np.ceil((CRITERIA.outer_diameter_um / 2.0 + IMAGE_MARGIN_UM) / scale))
    half += -half % IMAGE_BINNING
    centre = np.where(
        grades.location.located[:, None],
        np.nan_to_num(grades.location.centre_rc, nan=0.0),
        [(rows - 1) / 2.0, (cols - 1) / 2.0],
    )
    top_left = np.rint(centre).astype(np.int64) - half
    offsets = np.arange(2 * half)
    r = np.clip(top_left[:, 0, None] + offsets, 0, rows - 1)[:, :, None]
    c = np.clip(top_left[:, 1, None] + offsets, 0, cols - 1)[:, None, :]
    fibres = np.arange(n)[:, None, None]
    grey = images[fibres, r, c].astype(np.float32)
    if images.dtype != np.uint8:  # 16-bit transfers: keep the top 8 bits of the sensor's range
        grey *= 255.0 / max(float(images.max()), 1.0)
    size, k = half * 2 // IMAGE_BINNING, IMAGE_BINNING
    binned = grey.reshape(n, size, k, size, k).mean(axis=(2, 4))
    mask = (grades.labels[fibres, r, c] > 0).reshape(n, size, k, size, k).any(axis=(2, 4))
    centre_px = (centre - top_left) / k - 0.5 * (1 - 1 / k)  # in binned pixels
    f = grades.features
    outer_um = np.array([z.outer_diameter_um / 2.0 for z in CRITERIA.zones])
    names = ",".join(measures_of(connector))
    for index in range(n):
        mine = (f.fibre == index) & f.counted & (f.zone >= 0)
        ctx.artefact(
            f"{connector.key}_endface_{inspection}",
            {
                "image": np.clip(np.rint(binned[index]), 0, 255).astype(np.uint8),
                "defect_mask": mask[index].astype(np.uint8),
                "centre_px": centre_px[index],
                "um_per_pixel": np.array(scale * k),
                "zone_radius_um": outer_um,
                "feature_centre_um": f.centre_um[mine],
                "feature_size_um": f.size_um[mine],
                "feature_is_scratch": f.is_scratch[mine].astype(np.uint8),
            },
            lane=index + 1,
            kind="endface",
            connector=connector.key,
            inspection=str(inspection),
            grade="PASS" if grades.passed[index] else "FAIL",
            failures="; ".join(grades.failures(index)),
            zones=",".join(CRITERIA.zone_names()),
            measurements=names,
        )


SEQUENCE = Sequence(
    name="inspection",
    description=__doc__.strip().splitlines()[0],
    products=("800G-DR8", "1.6T-DR8"),
    steps=(inspect,),
)
