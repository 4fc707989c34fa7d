"""Which path losses a run uses: for every path its sequence measures through, the newest
calibration record at the product's wavelength, and every reason that record may not be used
(none, expired, taken with another jumper, the jumper past its mating limit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from station.calibration.paths import PathCalibration
from station.config import PathLossDb, StationConfig

#: a record measured this far from the product's wavelength does not describe its paths
WAVELENGTH_WINDOW_NM = 10.0


@dataclass(frozen=True)
class PathProblem:
    """Why a path may not be used as calibrated, in words an operator acts on."""

    site: int
    path: str
    index: int | None  # None: the whole path (its jumper)
    reason: str

    def line(self, sites: int) -> str:
        where = f"path {self.path}" + (f" lane {self.index + 1}" if self.index is not None else "")
        return where + (f" (site {self.site})" if sites > 1 else "") + f": {self.reason}"


def paths_used(config: StationConfig, roles: Iterable[str]) -> list[str]:
    """The paths under path calibration (a jumper serves them) whose end instruments a
    sequence with `roles` uses."""
    have = set(roles)
    return [
        name
        for name, path in config.paths.items()
        if path.roles and set(path.roles) <= have and config.jumper_of(name) is not None
    ]


def resolve_paths(
    config: StationConfig,
    records: Sequence[PathCalibration],
    roles: Iterable[str],
    wavelength_nm: float,
    now: dt.datetime,
) -> tuple[dict[int, dict[tuple[str, int], PathLossDb]], list[PathProblem]]:
    """Per site, the loss in force of every index of every path used, and what is wrong."""
    roles = tuple(roles)
    newest: dict[tuple[int, str, int], PathCalibration] = {}
    for record in records:  # oldest first: a later record replaces an earlier one
        if record.attenuation_db is None and (
            abs(record.wavelength_nm - wavelength_nm) <= WAVELENGTH_WINDOW_NM
        ):
            newest[(record.site, record.path, record.path_index)] = record
    tables: dict[int, dict[tuple[str, int], PathLossDb]] = {}
    problems: list[PathProblem] = []
    for site in range(1, config.site_count + 1):
        view = config.for_site(site)
        table = tables.setdefault(site, {})
        worn: set[str] = set()
        for name in paths_used(view, roles):
            jumper = view.jumper_of(name)
            assert jumper is not None  # paths_used keeps jumpered paths only
            if jumper.mating_count > jumper.mating_limit and jumper.name not in worn:
                worn.add(jumper.name)
                problems.append(
                    PathProblem(
                        site,
                        name,
                        None,
                        f"jumper {jumper.name} ({jumper.serial}) mated {jumper.mating_count} "
                        f"times, limit {jumper.mating_limit}: replace it",
                    )
                )
            for index in range(len(view.paths[name].loss_db)):
                found = newest.get((site, name, index))
                if found is None:
                    problems.append(PathProblem(site, name, index, "not calibrated"))
                    continue
                record = found
                assert record.id is not None
                table[(name, index)] = PathLossDb(record.loss_db, record.id)
                if record.expired(now):
                    when = record.expires_at.strftime("%Y-%m-%d %H:%M UTC")
                    problems.append(
                        PathProblem(
                            site,
                            name,
                            index,
                            f"calibration {record.id} expired {when}",
                        )
                    )
                elif record.jumper_serial != jumper.serial:
                    problems.append(
                        PathProblem(
                            site,
                            name,
                            index,
                            f"jumper {jumper.name} is {jumper.serial}, calibrated with "
                            f"{record.jumper_serial}",
                        )
                    )
    return tables, problems
