"""Unit conversions for optical power, vectorised.

dBm is decibels relative to 1 mW; non-positive powers have no dBm value and give NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def watts_to_dbm(power_w: ArrayLike) -> NDArray[np.float64]:
    """Power in W (any shape) to dBm; NaN where the power is not positive."""
    power = np.asarray(power_w, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(power > 0, 10.0 * np.log10(np.where(power > 0, power, 1.0) / 1e-3), np.nan)


def dbm_to_watts(power_dbm: ArrayLike) -> NDArray[np.float64]:
    """Power in dBm (any shape) to W."""
    return 1e-3 * np.power(10.0, np.asarray(power_dbm, dtype=np.float64) / 10.0)
