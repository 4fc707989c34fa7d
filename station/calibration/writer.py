"""Publishing a path-cal run: a subscriber of the event stream that turns the calibration facts
a passing `path-cal` run states into path calibration records in the results store.

A path-cal step records each loss twice: as a judged measurement (a loss outside its sanity
limits fails the run: a dirty or broken jumper) and as an attribute `cal:<path>:<index>` holding
the facts the record needs (JSON). Only a run that PASSes publishes; the records name it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field

import sqlalchemy as sa

from station.calibration.paths import PATH_CAL_SEQUENCE, PathCalibration, write_path_calibrations
from station.config import StationConfig
from station.errors import InputError
from station.events import AttributeRecorded, RunEnded, RunStarted, ns_to_datetime
from station.outcome import Outcome

CAL_PREFIX = "cal:"


def cal_attribute(path: str, index: int, attenuation_db: float | None = None) -> str:
    """The attribute name a path-cal step states one calibration under."""
    setting = f"@{attenuation_db:g}" if attenuation_db is not None else ""
    return f"{CAL_PREFIX}{path}:{index}{setting}"


def cal_facts(
    loss_db: float,
    uncertainty_db: float,
    wavelength_nm: float,
    method: str,
    references: tuple[str, ...],
    attenuation_db: float | None = None,
) -> str:
    """The JSON value of a `cal:` attribute; `references` are the roles of the reference
    instruments (the record names them by serial, with the fixture: the run's DUT)."""
    return json.dumps(
        {
            "loss_db": round(loss_db, 5),
            "uncertainty_db": round(uncertainty_db, 5),
            "wavelength_nm": wavelength_nm,
            "attenuation_db": attenuation_db,
            "method": method,
            "references": list(references),
        }
    )


@dataclass
class _PathCalRun:
    started: RunStarted
    facts: list[tuple[str, int, dict[str, object], int]] = field(default_factory=list)


class PathCalWriter:
    """Subscriber: publishes the calibrations of every passing path-cal run on the bus to the
    results database at `engine` (the store's), with `config`'s jumpers and validity."""

    def __init__(self, engine: sa.Engine, config: StationConfig) -> None:
        if config.path_cal is None:
            raise InputError(
                config.path, "path_cal", None, "path-cal needs this table (validity, fixture)"
            )
        self._validity = dt.timedelta(days=config.path_cal.validity_days)
        self.engine = engine
        self.config = config
        self.published: list[PathCalibration] = []
        self.failure: str | None = None  # why publishing failed, if it did
        self._runs: dict[str, _PathCalRun] = {}
        self._lock = threading.Lock()  # sites' runs end on their own threads

    def __call__(self, event: object) -> None:
        if isinstance(event, RunStarted):
            if event.sequence == PATH_CAL_SEQUENCE:
                self._runs[event.run_id] = _PathCalRun(event)
        elif isinstance(event, AttributeRecorded):
            run = self._runs.get(event.run_id)
            if run is not None and event.name.startswith(CAL_PREFIX):
                path, index = event.name[len(CAL_PREFIX) :].split("@")[0].rsplit(":", 1)
                run.facts.append((path, int(index), json.loads(event.value), event.at_ns))
        elif isinstance(event, RunEnded):
            run = self._runs.pop(event.run_id, None)
            if run is not None and event.outcome == Outcome.PASS and run.facts:
                self._publish(run)

    @staticmethod
    def _references(started: RunStarted, roles: object) -> str:
        serials = {record.role: record.serial_number for record in started.instruments}
        named = [f"{role}={serials[role]}" for role in roles if role in serials]  # type: ignore[attr-defined]
        return "; ".join([f"fixture={started.dut_serial}", *named])

    def _publish(self, run: _PathCalRun) -> None:
        view = self.config.for_site(run.started.site)
        records = []
        for path, index, facts, at_ns in run.facts:
            measured = ns_to_datetime(at_ns)
            jumper = view.jumper_of(path)
            attenuation = facts["attenuation_db"]
            records.append(
                PathCalibration(
                    station_id=run.started.station_id,
                    site=run.started.site,
                    path=path,
                    path_index=index,
                    wavelength_nm=float(facts["wavelength_nm"]),  # type: ignore[arg-type]
                    attenuation_db=None if attenuation is None else float(attenuation),  # type: ignore[arg-type]
                    loss_db=float(facts["loss_db"]),  # type: ignore[arg-type]
                    uncertainty_db=float(facts["uncertainty_db"]),  # type: ignore[arg-type]
                    measured_at=measured,
                    expires_at=measured + self._validity,
                    method=str(facts["method"]),
                    reference_instruments=self._references(run.started, facts["references"]),
                    jumper_serial=jumper.serial if jumper is not None else None,
                    run_id=run.started.run_id,
                )
            )
        try:
            with self._lock, self.engine.begin() as conn:
                self.published.extend(write_path_calibrations(conn, records))
        except sa.exc.SQLAlchemyError as err:  # nothing published: the run's data stays
            self.failure = f"run {run.started.run_id}: {str(err).splitlines()[0]}"
