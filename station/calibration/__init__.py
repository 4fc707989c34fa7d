"""Station calibration beyond instrument due dates: optical path losses measured by `path-cal`
(paths, resolve, writer) and golden-unit offsets (offsets), kept in the results store; a golden
run out of bounds locks the station in the audit log (station.security.lock).
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
