"""IEC 61300-3-35 end-face acceptance criteria as data: zones and the scratches and defects each
zone allows, one table per connector variant (an engineer corrects the numbers here, not code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf


@dataclass(frozen=True, slots=True)
class CountLimit:
    """At most `max_count` features whose size lies in (`above_um`, `up_to_um`]; `max_count`
    None means any number. Size is a scratch's width or a defect's diameter."""

    above_um: float
    up_to_um: float
    max_count: int | None

    def describe(self, what: str) -> str:
        if self.up_to_um == INF:
            band = f"{what} > {self.above_um:g} um" if self.above_um > 0 else f"{what} of any size"
        elif self.above_um > 0:
            band = f"{what} of {self.above_um:g}-{self.up_to_um:g} um"
        else:
            band = f"{what} <= {self.up_to_um:g} um"
        allowed = "no limit" if self.max_count is None else f"at most {self.max_count}"
        return f"{band}: {allowed}"


@dataclass(frozen=True, slots=True)
class ZoneCriteria:
    """One graded zone: an annulus of the end face centred on the fibre core, with diameters
    in um, and the limits on the scratches (by width) and defects (by diameter) inside it.

    A feature not covered by any limit (e.g. a 1 um defect in zone B) is allowed in any number.
    """

    name: str
    inner_diameter_um: float
    outer_diameter_um: float
    scratches: tuple[CountLimit, ...]
    defects: tuple[CountLimit, ...]


@dataclass(frozen=True, slots=True)
class FaceCriteria:
    """The acceptance table of one connector variant.

    The numbers follow ../shared/DOMAIN.md section 9, which summarises IEC 61300-3-35; they were
    not checked against the standard's own text.

    Attributes:
        name: What the table is, for the record.
        zones: Graded zones, innermost first, not overlapping. Zones the variant does not grade
            (C and D of an MPO fibre) are simply absent.
        cladding_diameter_um: Nominal cladding diameter; locating the fibre looks for this edge.
        min_feature_um: Features whose largest extent is below this are not counted (the
            detection limit the grading assumes; the standard asks for a system resolving
            defects of this order; unverified).
        scratch_min_elongation: Length / width ratio from which a feature counts as a scratch
            (a linear feature) rather than a defect.
        source: Where the numbers come from.
    """

    name: str
    zones: tuple[ZoneCriteria, ...]
    cladding_diameter_um: float = 125.0
    min_feature_um: float = 1.0
    scratch_min_elongation: float = 3.0
    source: str = "IEC 61300-3-35 as summarised in DOMAIN.md section 9"

    @property
    def outer_diameter_um(self) -> float:
        return self.zones[-1].outer_diameter_um

    def zone_names(self) -> tuple[str, ...]:
        return tuple(zone.name for zone in self.zones)


# Zone B of single-mode faces, PC and APC alike: no scratch wider than 3 um, no defect larger
# than 5 um, at most 5 defects of 2-5 um; smaller scratches and defects in any number.
_ZONE_B = ZoneCriteria(
    "B",
    25.0,
    115.0,
    scratches=(CountLimit(3.0, INF, 0),),
    defects=(CountLimit(2.0, 5.0, 5), CountLimit(5.0, INF, 0)),
)

#: Single-mode PC (RL >= 45 dB), single-fibre ferrule: zones A to D.
SM_PC = FaceCriteria(
    name="IEC 61300-3-35 single-mode PC, zones A-D",
    zones=(
        ZoneCriteria(
            "A",
            0.0,
            25.0,
            scratches=(CountLimit(0.0, INF, 0),),
            defects=(CountLimit(0.0, INF, 0),),
        ),
        _ZONE_B,
        # Adhesive: no limit on either.
        ZoneCriteria("C", 115.0, 135.0, scratches=(), defects=()),
        # Contact zone: no defect of 10 um or more (graded here as > 10 um; at the resolution of
        # the measurement the two are the same).
        ZoneCriteria("D", 135.0, 250.0, scratches=(), defects=(CountLimit(10.0, INF, 0),)),
    ),
)

#: Single-mode APC (RL >= 60 dB) fibre of a multi-fibre (MPO) ferrule, as DR8 modules use:
#: zone A allows up to 4 scratches of at most 3 um; only zones A and B are graded per fibre.
MPO_SM_APC = FaceCriteria(
    name="IEC 61300-3-35 single-mode APC, multi-fibre (MPO), zones A-B",
    zones=(
        ZoneCriteria(
            "A",
            0.0,
            25.0,
            scratches=(CountLimit(0.0, 3.0, 4), CountLimit(3.0, INF, 0)),
            defects=(CountLimit(0.0, INF, 0),),
        ),
        _ZONE_B,
    ),
)

#: Standard variant -> its table, by the name a sequence or limits file gives.
CRITERIA: dict[str, FaceCriteria] = {
    "sm-pc": SM_PC,
    "mpo-sm-apc": MPO_SM_APC,
}
