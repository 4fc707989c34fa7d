"""The traveller of a run: lot / work order, route operation and, where known, the unit's
genealogy (the parts it is built from). Recorded as run attributes until the schema has columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from station.events import AttributeRecorded

STEP = "traveller"


@dataclass(frozen=True)
class Traveller:
    lot_id: str
    operation: str
    work_order: str | None = None
    #: part role -> part identity, e.g. {"laser_3": "ELS-W12-L0457", "pic_die": "W07:12,-3"}
    genealogy: dict[str, str] = field(default_factory=dict)


def traveller_attributes(run_id: str, traveller: Traveller) -> list[AttributeRecorded]:
    """Attribute events recording `traveller` on run `run_id` (emit after RunStarted)."""
    facts = {"route_operation": traveller.operation}
    if traveller.work_order:
        facts["work_order"] = traveller.work_order
    facts |= {f"genealogy.{part}": ident for part, ident in sorted(traveller.genealogy.items())}
    return [AttributeRecorded(run_id, STEP, name, value) for name, value in facts.items()]
