"""Simulated silicon-photonic PIC wafers: the die map, process variation across the wafer, and what
each die's test cell really does (grating couplers, ring, photodetector, heater).

A wafer id seeds everything, so the same wafer always carries the same dies. Variation has three
parts, as on a real line: a centre-to-edge (radial) trend, die-to-die scatter, and a few clusters
of bad dies (particles, litho defects). The station must discover all of it by measuring.

The test cell of every die sits under a fibre array (input fibre and two output fibres, 127 um
pitch). Input grating coupler -> 1x2 MMI: one half goes past a ring (all-pass, through port) to
output coupler 2; the other half is split again between a straight loop-back to output coupler 1
and a germanium photodetector. The ring carries a resistive heater.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim_instruments.population import serial_rng

THERMAL_VOLTAGE_V = 0.02585
#: fraction of the input coupler's light reaching each branch (two 1x2 MMIs, 0.15 dB excess each)
MMI_EXCESS = 10 ** (-0.15 / 10)
SPLIT_RING = 0.5 * MMI_EXCESS
SPLIT_LOOPBACK = 0.25 * MMI_EXCESS**2
SPLIT_DETECTOR = 0.25 * MMI_EXCESS**2
#: resistance of an open heater or an unconnected probe (ohm)
OPEN_OHM = 1e13


@dataclass(frozen=True)
class WaferDesign:
    """Design point of a PIC wafer product (a mask revision)."""

    name: str
    diameter_mm: float = 200.0
    edge_exclusion_mm: float = 5.0
    pitch_x_mm: float = 10.0
    pitch_y_mm: float = 12.0
    gc_centre_nm: float = 1310.0
    gc_peak_loss_db: float = 3.9  # per coupler
    gc_bandwidth_1db_nm: float = 28.0
    #: fibre offset giving 1 dB extra loss per coupler (Gaussian mode overlap)
    gc_offset_1db_um: float = 1.75
    ring_resonance_nm: float = 1310.0  # one resonance of the design, at zero heater power
    ring_fsr_nm: float = 6.5  # 10 um radius, group index about 4.2
    ring_q_loaded: float = 2.0e4
    ring_extinction_db: float = 15.0
    pd_responsivity_a_per_w: float = 0.9  # at the detector
    pd_dark_current_a: float = 2e-9  # at -3 V
    heater_resistance_ohm: float = 1000.0
    heater_tuning_nm_per_mw: float = 0.25
    placement_sigma_um: float = 2.0  # where the couplers really are, per die and axis


WAFER_PRODUCTS: dict[str, WaferDesign] = {
    "CPO-PIC-A1": WaferDesign("CPO-PIC-A1"),
    "CPO-PIC-C1": WaferDesign(
        "CPO-PIC-C1", gc_centre_nm=1550.0, ring_resonance_nm=1550.0, ring_fsr_nm=9.0
    ),
    # The A1 test cell on a 300 mm wafer of smaller dies: 1,124 dies, for wafer-scale yield.
    "CPO-PIC-B1": WaferDesign(
        "CPO-PIC-B1", diameter_mm=300.0, edge_exclusion_mm=3.0, pitch_x_mm=7.5, pitch_y_mm=7.5
    ),
}


@dataclass(frozen=True)
class DieTruth:
    """What one die really is (the station has to measure it)."""

    index: int  # position in the prober's test order
    column: int
    row: int
    x_mm: float  # die centre from the wafer centre
    y_mm: float
    defect_cluster: bool
    gc_centre_nm: float
    gc_peak_loss_db: float  # per coupler
    gc_bandwidth_1db_nm: float
    ring_resonance_nm: float  # one resonance, at zero heater power
    ring_fsr_nm: float
    ring_q_loaded: float
    ring_extinction_db: float
    pd_responsivity_a_per_w: float
    pd_dark_current_a: float  # magnitude at -3 V
    heater_resistance_ohm: float
    heater_tuning_nm_per_mw: float
    fibre_optimum_um: tuple[float, float]  # where the fibre array couples best
    mode_radius_um: float  # 1/e power radius of the coupling overlap

    def ring_resonances_nm(self, low_nm: float, high_nm: float, heater_power_w: float = 0.0):
        """Every resonance between `low_nm` and `high_nm`."""
        first = self.ring_resonance_nm + self.heater_tuning_nm_per_mw * heater_power_w * 1e3
        k = np.arange(
            math.ceil((low_nm - first) / self.ring_fsr_nm),
            math.floor((high_nm - first) / self.ring_fsr_nm) + 1,
        )
        return first + k * self.ring_fsr_nm


class Wafer:
    """One wafer: the map and a parameter array per quantity, one entry per die in test order."""

    def __init__(self, wafer_id: str, design: WaferDesign) -> None:
        self.wafer_id = wafer_id
        self.design = design
        rng = serial_rng("wafer", design.name, wafer_id)
        self.columns, self.rows, self.x_mm, self.y_mm = _die_map(design)
        self.count = len(self.columns)
        self._by_position = {
            (int(c), int(r)): i
            for i, (c, r) in enumerate(zip(self.columns, self.rows, strict=True))
        }
        self._vary(rng)

    # --- map -----------------------------------------------------------------------------------
    def index_of(self, column: int, row: int) -> int | None:
        return self._by_position.get((column, row))

    def die(self, index: int) -> DieTruth:
        d = self.design
        return DieTruth(
            index=index,
            column=int(self.columns[index]),
            row=int(self.rows[index]),
            x_mm=float(self.x_mm[index]),
            y_mm=float(self.y_mm[index]),
            defect_cluster=bool(self.defect[index]),
            gc_centre_nm=float(self.gc_centre_nm[index]),
            gc_peak_loss_db=float(self.gc_peak_loss_db[index]),
            gc_bandwidth_1db_nm=float(self.gc_bandwidth_nm[index]),
            ring_resonance_nm=float(self.ring_resonance_nm[index]),
            ring_fsr_nm=float(self.ring_fsr_nm[index]),
            ring_q_loaded=float(self.ring_q[index]),
            ring_extinction_db=float(self.ring_extinction_db[index]),
            pd_responsivity_a_per_w=float(self.pd_responsivity[index]),
            pd_dark_current_a=float(self.pd_dark_a[index]),
            heater_resistance_ohm=float(self.heater_ohm[index]),
            heater_tuning_nm_per_mw=d.heater_tuning_nm_per_mw,
            fibre_optimum_um=(float(self.optimum_x_um[index]), float(self.optimum_y_um[index])),
            mode_radius_um=d.gc_offset_1db_um / math.sqrt(math.log(10) / 10),
        )

    # --- process variation ---------------------------------------------------------------------
    def _vary(self, rng: np.random.Generator) -> None:
        d, n = self.design, self.count
        usable_mm = d.diameter_mm / 2 - d.edge_exclusion_mm
        r2 = (np.hypot(self.x_mm, self.y_mm) / usable_mm) ** 2  # 0 at the centre, 1 at the edge
        # Wafer-level offsets (this wafer's film thickness and etch depth) and radial trends.
        gc_shift = rng.normal(0.0, 2.0)
        ring_shift = rng.normal(0.0, 0.8)
        self.gc_centre_nm = d.gc_centre_nm + gc_shift + 6.0 * r2 + rng.normal(0.0, 1.0, n)
        self.gc_peak_loss_db = d.gc_peak_loss_db + 0.6 * r2 + rng.normal(0.0, 0.15, n)
        self.gc_bandwidth_nm = np.clip(
            d.gc_bandwidth_1db_nm - 3.0 * r2 + rng.normal(0.0, 1.0, n), 20.0, 35.0
        )
        self.ring_resonance_nm = d.ring_resonance_nm + ring_shift + 2.5 * r2 + rng.normal(0, 0.3, n)
        self.ring_fsr_nm = d.ring_fsr_nm * (1 + 0.01 * r2) + rng.normal(0.0, 0.01, n)
        self.ring_q = np.clip(
            d.ring_q_loaded * (1 - 0.3 * r2) * np.exp(rng.normal(0.0, 0.12, n)), 5e3, 5e4
        )
        self.ring_extinction_db = np.clip(
            d.ring_extinction_db - 3.0 * r2 + rng.normal(0.0, 2.5, n), 3.0, 30.0
        )
        self.pd_responsivity = d.pd_responsivity_a_per_w - 0.05 * r2 + rng.normal(0.0, 0.02, n)
        self.pd_dark_a = d.pd_dark_current_a * np.exp(rng.normal(0.0, 0.4, n)) * (1 + r2)
        self.heater_ohm = d.heater_resistance_ohm * (1 + 0.04 * r2) + rng.normal(0.0, 15.0, n)
        self.optimum_x_um = rng.normal(0.0, d.placement_sigma_um, n)
        self.optimum_y_um = rng.normal(0.0, d.placement_sigma_um, n)
        # Random outliers: leaky or weak photodetectors, open heaters.
        leaky = rng.random(n) < 0.03
        self.pd_dark_a[leaky] *= rng.uniform(20.0, 100.0, leaky.sum())
        weak = rng.random(n) < 0.02
        self.pd_responsivity[weak] *= 0.5
        self.heater_ohm[rng.random(n) < 0.01] = OPEN_OHM
        # Clusters of bad dies (a particle, a scratch, a litho defect).
        self.defect = np.zeros(n, dtype=bool)
        for _ in range(int(rng.integers(2, 5))):
            angle, radius = rng.uniform(0, 2 * math.pi), usable_mm * math.sqrt(rng.uniform(0, 0.8))
            cx, cy = radius * math.cos(angle), radius * math.sin(angle)
            self.defect |= np.hypot(self.x_mm - cx, self.y_mm - cy) < rng.uniform(8.0, 18.0)
        bad = self.defect
        k = int(bad.sum())
        self.gc_peak_loss_db[bad] += rng.uniform(3.0, 8.0, k)
        self.ring_extinction_db[bad] = rng.uniform(0.3, 1.5, k)
        self.pd_dark_a[bad] *= rng.uniform(30.0, 300.0, k)
        self.heater_ohm[bad & (rng.random(n) < 0.3)] = OPEN_OHM


def _die_map(design: WaferDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole dies inside the edge exclusion, in test order: rows from the top, serpentine (left
    to right, then right to left), as a prober steps to save travel."""
    usable = design.diameter_mm / 2 - design.edge_exclusion_mm
    n_cols = int(design.diameter_mm // design.pitch_x_mm)
    n_rows = int(design.diameter_mm // design.pitch_y_mm)
    columns: list[int] = []
    rows: list[int] = []
    half_x, half_y = design.pitch_x_mm / 2, design.pitch_y_mm / 2
    for row in range(n_rows):
        y = ((n_rows - 1) / 2 - row) * design.pitch_y_mm
        inside = []
        for column in range(n_cols):
            x = (column - (n_cols - 1) / 2) * design.pitch_x_mm
            corners = [
                math.hypot(x + sx * half_x, y + sy * half_y) for sx in (-1, 1) for sy in (-1, 1)
            ]
            if max(corners) <= usable:
                inside.append(column)
        if len(set(rows)) % 2 == 1:  # every other populated row runs right to left
            inside.reverse()
        columns += inside
        rows += [row] * len(inside)
    cols, rws = np.array(columns), np.array(rows)
    x_mm = (cols - (n_cols - 1) / 2) * design.pitch_x_mm
    y_mm = ((n_rows - 1) / 2 - rws) * design.pitch_y_mm
    return cols, rws, x_mm, y_mm


def make_wafer(wafer_id: str, product: str) -> Wafer:
    if product not in WAFER_PRODUCTS:
        raise ValueError(f"no simulated wafer product {product!r}; known: {sorted(WAFER_PRODUCTS)}")
    return Wafer(wafer_id, WAFER_PRODUCTS[product])


# --- device responses (pure functions of a die's truth) -------------------------------------------
def coupler_transmission(die: DieTruth, wavelength_nm: np.ndarray) -> np.ndarray:
    """Power transmission of one grating coupler at the optimum fibre position: a Gaussian
    envelope (a parabola in dB), 1 dB down at +-half the 1 dB bandwidth."""
    detune = (np.asarray(wavelength_nm, dtype=float) - die.gc_centre_nm) / (
        die.gc_bandwidth_1db_nm / 2
    )
    return 10 ** (-(die.gc_peak_loss_db + detune**2) / 10)


def alignment_factor(die: DieTruth, x_um: float, y_um: float) -> float:
    """Power coupled through one coupler, relative to the optimum, with the fibre at (x, y)."""
    dx, dy = x_um - die.fibre_optimum_um[0], y_um - die.fibre_optimum_um[1]
    return math.exp(-(dx * dx + dy * dy) / die.mode_radius_um**2)


def ring_through(
    die: DieTruth, wavelength_nm: np.ndarray, heater_power_w: float = 0.0
) -> np.ndarray:
    """All-pass ring through-port transmission. Round-trip loss a and self-coupling r follow from
    the loaded Q, the FSR and the extinction (under-coupled: r > a)."""
    wavelengths = np.asarray(wavelength_nm, dtype=float)
    resonance = die.ring_resonance_nm + die.heater_tuning_nm_per_mw * heater_power_w * 1e3
    finesse = die.ring_fsr_nm * die.ring_q_loaded / resonance
    s = (-math.pi + math.sqrt(math.pi**2 + 4 * finesse**2)) / (2 * finesse)  # sqrt(a r)
    ar = s * s
    gap = math.sqrt(10 ** (-die.ring_extinction_db / 10)) * (1 - ar)  # r - a
    r = (gap + math.sqrt(gap * gap + 4 * ar)) / 2
    a = ar / r
    phase = 2 * math.pi * (wavelengths - resonance) / die.ring_fsr_nm
    cos = np.cos(phase)
    return (a * a - 2 * a * r * cos + r * r) / (1 - 2 * a * r * cos + ar * ar)


def detector_current_a(
    die: DieTruth, voltage_v: np.ndarray | float, optical_power_w: float
) -> np.ndarray:
    """Current into the photodetector's anode (the SMU's HI) at `voltage_v`: a diode with a
    shunt leak, minus the photocurrent. Reverse bias (negative V) gives negative current."""
    v = np.asarray(voltage_v, dtype=float)
    saturation = 0.3 * die.pd_dark_current_a
    shunt_ohm = 3.0 / (0.7 * die.pd_dark_current_a)  # together: the dark current at -3 V
    diode = saturation * np.expm1(np.minimum(v / (1.2 * THERMAL_VOLTAGE_V), 60.0))
    return diode + v / shunt_ohm - die.pd_responsivity_a_per_w * optical_power_w
