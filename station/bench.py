"""Opening a station's instruments from its config: load each role's driver, open its resource,
check the identity it reports against the config, and refuse expired calibrations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import InstrumentError
from drivers.interfaces import Instrument
from station.calibration.paths import (
    PATH_CAL_SEQUENCE,
    PathCalibration,
    PathCalibrationInvalid,
    load_path_calibrations,
)
from station.calibration.resolve import resolve_paths
from station.config import InstrumentConfig, StationConfig
from station.errors import CalibrationExpired, InputError, StationError
from station.events import InstrumentRecord


class InstrumentSetupError(StationError):
    """An instrument could not be opened or identified, or is not the one the config names."""


def driver_class(config: StationConfig, instrument: InstrumentConfig) -> type[Any]:
    module_name, _, class_name = instrument.driver.partition(":")
    field_name = f"instruments.{instrument.role}.driver"
    try:
        module = importlib.import_module(f"drivers.{module_name}")
    except ModuleNotFoundError:
        raise InputError(
            config.path, field_name, instrument.driver, "no such driver module"
        ) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise InputError(config.path, field_name, instrument.driver, "no such driver class")
    return cls


@dataclass
class OpenBench:
    """The instruments of one run, opened; closing closes them all."""

    instruments: dict[str, Instrument] = field(default_factory=dict)
    records: list[InstrumentRecord] = field(default_factory=list)

    def close(self) -> None:
        for device in self.instruments.values():
            with contextlib.suppress(InstrumentError, OSError):
                device.close()

    def __enter__(self) -> OpenBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_calibration(
    config: StationConfig, roles: Iterable[str], today: dt.date, override: str | None
) -> None:
    """Refuse to start with an instrument past its calibration date, unless overridden."""
    due_dates = {role: config.instruments[role].calibration_due for role in roles}
    expired = [(role, due) for role, due in due_dates.items() if due is not None and due < today]
    if expired and not override:
        role, due = expired[0]
        raise CalibrationExpired(
            f"{config.path}: instruments.{role}.calibration_due = {due} has passed; recalibrate "
            "or give --calibration-override '<reason>' (it is recorded with the run)"
        )


def check_path_calibration(
    config: StationConfig,
    sequence: str,
    roles: Iterable[str],
    records: Sequence[PathCalibration],
    wavelength_nm: float,
    now: dt.datetime,
    mode: str,
    override: str | None,
) -> tuple[StationConfig, str | None]:
    """The station with the path losses in force for a run of `sequence`, and the calibration
    override to record with it.

    Every path the sequence measures through needs a calibration record in force: present, not
    expired, measured with the jumper the config names now, that jumper within its mating
    limit. A production run refuses otherwise, naming the first path and why; a
    characterisation run goes ahead with `override`, which is recorded with what it overrode.
    """
    if sequence == PATH_CAL_SEQUENCE:
        return config, override  # it measures the paths; it does not use them
    tables, problems = resolve_paths(config, records, roles, wavelength_nm, now)
    config = config.with_calibrations(tables)
    if not problems:
        return config, override
    first = problems[0].line(config.site_count)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    if mode == "characterisation" and override:
        return config, f"{override} [path calibration overridden: {first}{more}]"
    action = (
        "run path-cal (production needs calibrated paths)"
        if mode == "production"
        else "run path-cal or give --calibration-override '<reason>'"
    )
    raise PathCalibrationInvalid(f"{config.path.name}: {first}{more}; {action}")


def resolve_run_paths(
    config: StationConfig,
    sequence: str,
    roles: Iterable[str],
    wavelength_nm: float,
    db_url: str,
    mode: str,
    override: str | None,
    now: dt.datetime | None = None,
) -> tuple[StationConfig, str | None]:
    """`check_path_calibration` against the records in the results database at `db_url`."""
    if sequence == PATH_CAL_SEQUENCE and config.path_cal is None:
        raise InputError(config.path, "path_cal", None, "path-cal needs this table")
    records = load_path_calibrations(db_url, config.station_id)
    now = now or dt.datetime.now(dt.UTC)
    return check_path_calibration(
        config, sequence, roles, records, wavelength_nm, now, mode, override
    )


def open_bench(
    config: StationConfig, roles: Iterable[str], resources: dict[str, str] | None = None
) -> OpenBench:
    """Open the instruments for `roles`; `resources` replaces config resource strings by role."""
    roles = list(roles)
    missing = [role for role in roles if role not in config.instruments]
    if missing:
        raise InputError(
            config.path,
            f"instruments.{missing[0]}",
            None,
            "the sequence needs this role but the station config has none",
        )
    classes = {role: driver_class(config, config.instruments[role]) for role in roles}
    bench = OpenBench()
    try:
        for role in roles:
            spec = config.instruments[role]
            resource = (resources or {}).get(role, spec.resource)
            try:
                device = classes[role].open(resource, timeout_s=spec.timeout_s)
                bench.instruments[role] = device
                identity = device.identify()
            except InstrumentError as err:
                raise InstrumentSetupError(f"{role} at {resource}: {err}") from err
            if identity.serial_number != spec.serial_number:
                raise InstrumentSetupError(
                    f"{role} at {resource} is {identity}, but {config.path.name} names serial "
                    f"{spec.serial_number}: wrong instrument or config"
                )
            bench.records.append(
                InstrumentRecord(
                    role=role,
                    driver=spec.driver,
                    resource=resource,
                    manufacturer=identity.manufacturer,
                    model=identity.model,
                    serial_number=identity.serial_number,
                    firmware=identity.firmware,
                    calibration_due=spec.calibration_due,
                )
            )
    except BaseException:
        bench.close()
        raise
    return bench


def open_sites(
    config: StationConfig,
    roles: Iterable[str],
    resources: dict[tuple[str, int], str] | None = None,
) -> tuple[OpenBench, list[dict[str, Instrument]], list[tuple[InstrumentRecord, ...]]]:
    """Open every site's instruments; an instrument several sites name is opened once and shared.

    `resources` replaces resource strings by (role, site). Returns the bench owning every open
    instrument, each site's role map, and each site's instrument records.
    """
    roles = list(roles)
    bench = OpenBench()
    opened: dict[tuple[str, str], tuple[Instrument, InstrumentRecord]] = {}
    site_maps: list[dict[str, Instrument]] = []
    site_records: list[tuple[InstrumentRecord, ...]] = []
    try:
        for site in range(1, config.site_count + 1):
            view = config.for_site(site)
            missing = [role for role in roles if role not in view.instruments]
            if missing:
                raise InputError(
                    config.path,
                    f"sites.{site}.instruments.{missing[0]}",
                    None,
                    "the sequence needs this role but the site has none",
                )
            site_map, records = {}, []
            for role in roles:
                spec = view.instruments[role]
                resource = (resources or {}).get((role, site), spec.resource)
                key = (spec.driver, resource)
                if key not in opened:
                    single = open_bench(
                        StationConfig(config.path, config.station_id, {role: spec}),
                        [role],
                        {role: resource},
                    )
                    opened[key] = (single.instruments[role], single.records[0])
                    bench.instruments[f"{role}@{site}"] = single.instruments[role]
                    bench.records.append(single.records[0])
                device, record = opened[key]
                site_map[role] = device
                records.append(record)
            site_maps.append(site_map)
            site_records.append(tuple(records))
    except BaseException:
        bench.close()
        raise
    return bench, site_maps, site_records
