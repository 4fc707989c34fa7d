"""The simulated population of devices: the same serial always makes the same unit.

Units vary like a production population: unit-to-unit and lane-to-lane spread around the
design point, and a few percent carry a defect that fails a marginal parameter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


def serial_rng(*parts: str) -> np.random.Generator:
    """A random generator seeded by text, stable across processes and Python versions."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class ProductDesign:
    """Design point of a module product line."""

    name: str
    part_number: str
    lanes: int
    baud_rate_gbd: float
    tx_power_dbm: float  # population mean of average launch power
    tx_power_unit_sigma_db: float
    tx_power_lane_sigma_db: float
    weak_lane_rate: float  # fraction of units with one degraded laser
    weak_lane_power_dbm: float
    wavelength_nm: float


PRODUCTS: dict[str, ProductDesign] = {
    "800G-DR8": ProductDesign(
        "800G-DR8", "SO-8DR8-800G", 8, 53.125, 1.2, 0.45, 0.35, 0.05, -3.3, 1311.0
    ),
    "1.6T-DR8": ProductDesign(
        "1.6T-DR8", "SO-8DR8-1600G", 8, 106.25, 1.8, 0.45, 0.35, 0.06, -2.6, 1311.0
    ),
}


@dataclass(frozen=True)
class LaneTruth:
    """What one lane really does (the station must discover it by measuring)."""

    tx_power_dbm: float
    wavelength_nm: float
    slope_w_per_a: float
    threshold_a: float
    ddm_tx_error_db: float
    ddm_rx_error_db: float


@dataclass(frozen=True)
class ModuleTruth:
    serial: str
    design: ProductDesign
    lanes: tuple[LaneTruth, ...]
    weak_lane: int | None  # 0-based lane with a degraded laser, if any
    date_code: str
    firmware: tuple[int, int]
    ddm_temperature_offset_c: float
    self_heating_c: float


def make_module(serial: str, product: str) -> ModuleTruth:
    if product not in PRODUCTS:
        raise ValueError(f"no simulated product {product!r}; known: {sorted(PRODUCTS)}")
    design = PRODUCTS[product]
    rng = serial_rng("module", product, serial)
    unit_offset = rng.normal(0.0, design.tx_power_unit_sigma_db)
    powers = (
        design.tx_power_dbm
        + unit_offset
        + rng.normal(0.0, design.tx_power_lane_sigma_db, design.lanes)
    )
    weak_lane = int(rng.integers(design.lanes)) if rng.random() < design.weak_lane_rate else None
    if weak_lane is not None:
        powers[weak_lane] = design.weak_lane_power_dbm + rng.normal(0.0, 0.3)
    wavelengths = design.wavelength_nm + rng.normal(0.0, 1.5, design.lanes)
    slopes = rng.normal(0.09, 0.01, design.lanes)  # W/A at the facet, after the modulator
    thresholds = rng.normal(0.012, 0.002, design.lanes)
    lanes = tuple(
        LaneTruth(
            tx_power_dbm=float(powers[i]),
            wavelength_nm=float(wavelengths[i]),
            slope_w_per_a=float(max(slopes[i], 0.04)),
            threshold_a=float(max(thresholds[i], 0.005)),
            ddm_tx_error_db=float(rng.normal(0.0, 0.25)),
            ddm_rx_error_db=float(rng.normal(0.0, 0.3)),
        )
        for i in range(design.lanes)
    )
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return ModuleTruth(
        serial=serial,
        design=design,
        lanes=lanes,
        weak_lane=weak_lane,
        date_code=f"26{month:02d}{day:02d}  ",
        firmware=(3, int(rng.choice([2, 4]))),
        ddm_temperature_offset_c=float(rng.normal(0.0, 1.0)),
        self_heating_c=float(rng.normal(14.0, 1.5)),
    )
