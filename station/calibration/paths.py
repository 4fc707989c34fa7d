"""Path calibration records: one measured loss of one optical path of a station (switch port x
jumper x attenuator setting x wavelength), its uncertainty, provenance and expiry.

Records are rows of the results store's `path_calibrations` table: never updated, a re-measure
adds rows, and the newest row of a path is the one in force. Reading needs no write access: a
station that has never run has no records, and looking for them creates nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import sqlalchemy as sa

from station.config import PathLossDb, StationConfig
from station.errors import StationError
from station.results.schema import path_calibrations
from station.results.store import read_only

#: the sequence that measures a station's paths (it uses none of them)
PATH_CAL_SEQUENCE = "path-cal"
#: the path name of the attenuator's linearity records (index: the attenuator channel - 1; one
#: record per calibrated setting, `attenuation_db`, whose loss is the attenuation really applied
#: relative to the 0 dB setting: the RX path's record holds the insertion loss)
ATTENUATOR_PATH = "attenuator"
#: the path name of the power meter's wavelength correction records (index: the channel - 1 it
#: was measured on; the loss is the dB to add to a reading at the record's wavelength setting)
METER_WAVELENGTH_PATH = "power_meter_wavelength"


class PathCalibrationInvalid(StationError):
    """A path the run would measure through has no calibration in force (none, expired, its
    jumper swapped or worn out)."""


@dataclass(frozen=True)
class PathCalibration:
    station_id: str
    site: int
    path: str
    path_index: int  # 0-based (lane - 1)
    wavelength_nm: float
    attenuation_db: float | None  # the attenuator setting, where it matters
    loss_db: float
    uncertainty_db: float
    measured_at: dt.datetime
    expires_at: dt.datetime
    method: str
    reference_instruments: str  # "role=serial; ..." of the references used
    jumper_serial: str | None
    run_id: str
    id: int | None = None  # set once stored

    def expired(self, now: dt.datetime) -> bool:
        return _utc(self.expires_at) <= now


def _utc(when: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back naive: they were written in UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def load_path_calibrations(db_url: str, station_id: str) -> list[PathCalibration]:
    """Every calibration record of `station_id` in the results database, oldest first. A
    database file that does not exist, or predates the table, holds none."""
    engine = read_only(db_url)
    if engine is None:
        return []
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(path_calibrations.name):
                return []
            rows = conn.execute(
                sa.select(path_calibrations)
                .where(path_calibrations.c.station_id == station_id)
                .order_by(path_calibrations.c.measured_at, path_calibrations.c.id)
            ).all()
    except sa.exc.SQLAlchemyError as err:
        reason = str(err).splitlines()[0]
        raise StationError(f"{db_url}: cannot read path calibrations: {reason}") from err
    finally:
        engine.dispose()
    return [
        PathCalibration(
            **{
                **row._asdict(),
                "measured_at": _utc(row.measured_at),
                "expires_at": _utc(row.expires_at),
            }
        )
        for row in rows
    ]


def write_path_calibrations(
    conn: sa.Connection, records: Iterable[PathCalibration]
) -> list[PathCalibration]:
    """Insert `records` (in the caller's transaction); returns them with their ids."""
    stored = []
    for record in records:
        row = asdict(record)
        row.pop("id")
        key = conn.execute(path_calibrations.insert().values(**row)).inserted_primary_key
        assert key is not None  # an INSERT of one row always has one
        stored.append(PathCalibration(**{**row, "id": int(key[0])}))
    return stored


class CalibratedAttenuation(PathLossDb):
    """The attenuation (dB, relative to the 0 dB setting) an attenuator channel really applies at
    one calibrated setting, naming the linearity record it came from."""

    setting_db: float

    def __new__(
        cls, actual_db: float, calibration_id: int, setting_db: float
    ) -> CalibratedAttenuation:
        value = float.__new__(cls, actual_db)
        value.calibration_id = calibration_id
        value.setting_db = setting_db
        return value

    def __reduce__(self) -> tuple[type[CalibratedAttenuation], tuple[float, int, float]]:  # type: ignore[override]
        return CalibratedAttenuation, (float(self), self.calibration_id, self.setting_db)


def attenuation_key(setting_db: float, index: int = 0) -> tuple[str, int]:
    """Where a run's calibration table keeps the linearity entry of one setting."""
    return f"{ATTENUATOR_PATH}@{setting_db:g}", index


@dataclass(frozen=True)
class AttenuatorCurve:
    """What an attenuator channel really does against its setting: the linearity records in
    force, interpolated linearly between calibrated settings and holding the nearest end's
    error outside them. Without records (a characterisation run on bootstrap values) the
    setting is taken as the attenuation (`nominal`)."""

    settings_db: tuple[float, ...]  # ascending
    errors_db: tuple[float, ...]  # actual minus setting, per setting
    calibration_ids: tuple[int, ...]

    @classmethod
    def nominal(cls) -> AttenuatorCurve:
        return cls((0.0,), (0.0,), ())

    @classmethod
    def of(cls, config: StationConfig, index: int = 0) -> AttenuatorCurve:
        """The curve of attenuator channel `index` + 1 in `config`'s calibrations (its site's)."""
        entries = sorted(
            (value.setting_db, float(value) - value.setting_db, value.calibration_id)
            for (name, at), value in config.calibrations.get(config.site or 1, {}).items()
            if at == index and isinstance(value, CalibratedAttenuation)
            and name.startswith(ATTENUATOR_PATH + "@")
        )  # fmt: skip
        if not entries:
            return cls.nominal()
        settings, errors, ids = zip(*entries, strict=True)
        return cls(settings, errors, ids)

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration_ids)

    def error_db(self, setting_db: float) -> float:
        return float(np.interp(setting_db, self.settings_db, self.errors_db))

    def actual_db(self, setting_db: float) -> float:
        """The attenuation (relative to 0 dB) the light sees at `setting_db`."""
        return setting_db + self.error_db(setting_db)

    def setting_for(self, actual_db: float) -> float:
        """The setting at which the light sees `actual_db` (a fixed point: the error changes by
        far less than a decibel per decibel of setting)."""
        setting = actual_db
        for _ in range(20):
            previous, setting = setting, actual_db - self.error_db(setting)
            if abs(setting - previous) < 1e-9:
                break
        return setting
