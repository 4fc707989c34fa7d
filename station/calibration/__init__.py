"""Station calibration beyond instrument due dates: optical path losses measured by `path-cal`
(paths, resolve, writer) and golden-unit offsets (offsets, locks), kept in the results store.
"""

from __future__ import annotations

from station.calibration.paths import (
    PATH_CAL_SEQUENCE,
    PathCalibration,
    PathCalibrationInvalid,
    load_path_calibrations,
    write_path_calibrations,
)

__all__ = [
    "PATH_CAL_SEQUENCE",
    "PathCalibration",
    "PathCalibrationInvalid",
    "load_path_calibrations",
    "write_path_calibrations",
]
