"""The traveller of a run: lot / work order, route operation and, where known, the unit's
genealogy (the parts it is built from). It travels on the run's RunStarted event into the run
record: runs.lot_id, runs.work_order, runs.route_operation and the genealogy table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the attribute step under which records made before schema version 7 kept the traveller
STEP = "traveller"


@dataclass(frozen=True)
class Traveller:
    lot_id: str
    operation: str
    work_order: str | None = None
    #: part role -> part identity, e.g. {"laser_3": "ELS-W12-L0457", "pic_die": "W07:12,-3"}
    genealogy: dict[str, str] = field(default_factory=dict)

    def run_options(self) -> dict[str, Any]:
        """Keyword arguments of `RunEngine.run` (and `MultiSiteRunner.run`) that put this
        traveller on the run's RunStarted event, and so into the run record."""
        return {
            "lot_id": self.lot_id,
            "work_order": self.work_order,
            "route_operation": self.operation,
            "genealogy": dict(self.genealogy),
        }

    def run_fields(self) -> dict[str, Any]:
        """The RunStarted fields of this traveller (for code that builds the event itself)."""
        return {
            "lot_id": self.lot_id,
            "work_order": self.work_order,
            "route_operation": self.operation,
            "genealogy": tuple(sorted(self.genealogy.items())),
        }
