"""Which path losses a run uses: for every path its sequence measures through, the newest
calibration record at the product's wavelength, and every reason that record may not be used
(none, expired, taken with another jumper, the jumper at its mating limit). Also the jumpers'
mating counters: the results store counts a mating of each of a site's DUT-side jumpers per run,
and no run starts on a jumper at or over its limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from station.calibration.paths import (
    ATTENUATOR_PATH,
    CalibratedAttenuation,
    PathCalibration,
    attenuation_key,
)
from station.config import Jumper, PathLossDb, StationConfig
from station.errors import StationError
from station.results.schema import jumper_matings
from station.results.store import read_only

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
    linearity = _linearity_in_force(records, wavelength_nm)
    tables: dict[int, dict[tuple[str, int], PathLossDb]] = {}
    problems: list[PathProblem] = []
    for site in range(1, config.site_count + 1):
        view = config.for_site(site)
        table = tables.setdefault(site, {})
        worn: set[str] = set()
        for name in paths_used(view, roles):
            jumper = view.jumper_of(name)
            assert jumper is not None  # paths_used keeps jumpered paths only
            if jumper.mating_count >= jumper.mating_limit and jumper.name not in worn:
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
        if any(ATTENUATOR_ROLE in view.paths[name].roles for name in paths_used(view, roles)):
            problems.extend(_attenuator_entries(site, linearity.get(site, {}), table, now))
    return tables, problems


#: the role of the instrument whose linearity path-cal records (channel 1: index 0)
ATTENUATOR_ROLE = "attenuator"


def _linearity_in_force(
    records: Sequence[PathCalibration], wavelength_nm: float
) -> dict[int, dict[float, PathCalibration]]:
    """Per site, the newest linearity record of attenuator channel 1 at each setting."""
    found: dict[int, dict[float, PathCalibration]] = {}
    for record in records:  # oldest first
        if (
            record.path == ATTENUATOR_PATH
            and record.path_index == 0
            and record.attenuation_db is not None
            and abs(record.wavelength_nm - wavelength_nm) <= WAVELENGTH_WINDOW_NM
        ):
            found.setdefault(record.site, {})[record.attenuation_db] = record
    return found


def _attenuator_entries(
    site: int,
    records: dict[float, PathCalibration],
    table: dict[tuple[str, int], PathLossDb],
    now: dt.datetime,
) -> list[PathProblem]:
    """Put the attenuator's linearity in force into `table` (a path through the attenuator is
    corrected at the setting used); what is wrong with it."""
    if not records:
        return [PathProblem(site, ATTENUATOR_PATH, None, "linearity not calibrated")]
    problems: list[PathProblem] = []
    for setting, record in sorted(records.items()):
        assert record.id is not None
        table[attenuation_key(setting)] = CalibratedAttenuation(record.loss_db, record.id, setting)
        if record.expired(now) and not problems:
            when = record.expires_at.strftime("%Y-%m-%d %H:%M UTC")
            reason = f"linearity calibration {record.id} expired {when}"
            problems.append(PathProblem(site, ATTENUATOR_PATH, None, reason))
    return problems


class JumperWorn(StationError, RuntimeError):
    """A DUT-side jumper is at or over its mating limit: it must be replaced (the new serial
    counts from its own configured count)."""


def site_jumpers(config: StationConfig) -> list[tuple[int, Jumper]]:
    """(site, jumper) for every site's DUT-side jumpers, each serial once, by site and name."""
    seen: set[str] = set()
    found = []
    for site in range(1, config.site_count + 1):
        for _name, jumper in sorted(config.for_site(site).jumpers.items()):
            if jumper.serial not in seen:
                seen.add(jumper.serial)
                found.append((site, jumper))
    return found


def check_jumpers(config: StationConfig) -> None:
    """Refuse (JumperWorn, one line) when a jumper of the station is at or over its mating
    limit; `config` carries the store's counts (`StationConfig.with_matings`)."""
    worn = [(s, j) for s, j in site_jumpers(config) if j.mating_count >= j.mating_limit]
    if not worn:
        return
    site, jumper = worn[0]
    where = f" (site {site})" if config.site_count > 1 else ""
    more = f" (and {len(worn) - 1} more)" if len(worn) > 1 else ""
    raise JumperWorn(
        f"{config.station_id}: jumper {jumper.name}{where} serial {jumper.serial} has "
        f"{jumper.mating_count} matings, limit {jumper.mating_limit}: replace it "
        f"(`station jumpers swap {jumper.name}`){more}"
    )


def load_matings(target: str | Path, station_id: str) -> dict[str, int]:
    """The results store's mating count of every jumper serial the station has used (none when
    the database does not exist yet: looking must not create it)."""
    engine = read_only(target)
    if engine is None:
        return {}
    j = jumper_matings
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(j.name):
                return {}
            rows = conn.execute(
                sa.select(j.c.jumper_serial, j.c.matings).where(j.c.station_id == station_id)
            ).all()
    except sa.exc.SQLAlchemyError as err:
        reason = str(err).splitlines()[0]
        raise StationError(f"{engine.url}: cannot read jumper matings: {reason}") from err
    finally:
        engine.dispose()
    return {serial: int(count) for serial, count in rows}


JUMPER_COLUMNS = ("site", "jumper", "serial", "matings", "limit", "remaining", "counted_by")


def jumper_table(config: StationConfig, matings: dict[str, int]) -> list[dict[str, object]]:
    """One row per DUT-side jumper of the station (`station jumpers`): its matings as the store
    counts them ("store"), or as configured while the store has not seen its serial ("config")."""
    rows: list[dict[str, object]] = []
    for site, jumper in site_jumpers(config):
        count = matings.get(jumper.serial, jumper.mating_count)
        rows.append(
            {
                "site": site,
                "jumper": jumper.name,
                "serial": jumper.serial,
                "matings": count,
                "limit": jumper.mating_limit,
                "remaining": max(jumper.mating_limit - count, 0),
                "counted_by": "store" if jumper.serial in matings else "config",
            }
        )
    return rows
