"""External laser source (ELS) for CPO: the serial-seeded population of parts, their laser physics,
and the bench fixture holding one part on a TEC plate with the drive connected to one laser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim_instruments.clock import SimClock
from sim_instruments.light import Emission
from sim_instruments.population import serial_rng

THERMAL_VOLTAGE_25C_V = 0.025693  # kT/q at 25 degC
REFERENCE_C = 25.0  # junction temperature the per-laser truth is quoted at
WAVELENGTH_TEMPERATURE_NM_PER_K = 0.09  # DFB grating shift
DIODE_VOLTAGE_TEMPERATURE_V_PER_K = -1.2e-3  # the band gap shrinks as the junction warms
SPONTANEOUS_W_PER_A = 5e-4  # sub-threshold (LED-like) light coupled into the fibre
TURN_ON_SMOOTHING_A = 4e-4  # width of the knee at threshold
MONITOR_DARK_A = 5e-9


@dataclass(frozen=True)
class ElsDesign:
    """Design point of an ELS product line."""

    name: str
    part_number: str
    grid_nm: tuple[float, ...]  # nominal wavelength of each laser (its count is the laser count)
    threshold_a: float
    threshold_sigma_a: float
    slope_w_per_a: float  # at the output fibre
    slope_sigma_w_per_a: float
    max_current_a: float  # absolute maximum bias of one laser
    operating_current_a: float
    weak_part_rate: float  # fraction of parts with one weak laser
    kink_rate: float  # fraction of lasers with a mode-hop kink
    low_smsr_rate: float  # fraction of lasers with a poor side-mode suppression

    @property
    def lasers(self) -> int:
        return len(self.grid_nm)


_CWDM4_NM = (1271.0, 1291.0, 1311.0, 1331.0)
_DESIGN_SPREAD = dict(
    threshold_sigma_a=0.002,
    slope_sigma_w_per_a=0.025,
    max_current_a=0.45,
    operating_current_a=0.2,
    weak_part_rate=0.05,
    kink_rate=0.04,
    low_smsr_rate=0.03,
)
ELS_PRODUCTS: dict[str, ElsDesign] = {
    # Eight CW lasers on one wavelength, one per DR lane of a CPO engine.
    "ELS8-DR": ElsDesign(
        "ELS8-DR",
        "SO-ELS8-1311",
        (1311.0,) * 8,
        threshold_a=0.016,
        slope_w_per_a=0.26,
        **_DESIGN_SPREAD,
    ),
    # Eight CW lasers on the CWDM4 grid (twice), for FR4 engines.
    "ELS8-FR4": ElsDesign(
        "ELS8-FR4",
        "SO-ELS8-CWDM4",
        _CWDM4_NM * 2,
        threshold_a=0.018,
        slope_w_per_a=0.24,
        **_DESIGN_SPREAD,
    ),
}


@dataclass(frozen=True)
class LaserTruth:
    """What one laser of a part really does (the station must discover it by measuring).

    Threshold, slope and wavelength are quoted at a junction temperature of 25 degC; the junction
    runs hotter than the TEC plate by its thermal resistance times the electrical power it turns
    into heat.
    """

    wavelength_nm: float
    threshold_a: float
    slope_w_per_a: float  # at the output fibre
    threshold_t0_k: float  # Ith(T) = Ith(25) exp((T - 25) / T0)
    slope_t1_k: float  # eta(T) = eta(25) exp(-(T - 25) / T1)
    thermal_resistance_k_per_w: float
    series_resistance_ohm: float
    ideality: float
    saturation_current_a: float
    fibre_coupling: float  # fibre power / front-facet power
    smsr_db: float
    monitor_a_per_w: float  # back-facet photodiode current per watt in the fibre
    monitor_tracking_per_k: float  # relative drift of the front/back ratio with temperature
    kink_current_a: float | None  # a mode hop (kink) in the L-I curve, if the laser has one
    kink_depth: float
    kink_width_a: float
    kink_hop_nm: float
    weak: bool


@dataclass(frozen=True)
class ElsTruth:
    serial: str
    design: ElsDesign
    lasers: tuple[LaserTruth, ...]
    weak_laser: int | None  # 0-based laser that is weak, if any


def make_els(serial: str, product: str) -> ElsTruth:
    """The ELS part `serial` of `product`: the same serial always makes the same part."""
    if product not in ELS_PRODUCTS:
        raise ValueError(f"no simulated ELS product {product!r}; known: {sorted(ELS_PRODUCTS)}")
    design = ELS_PRODUCTS[product]
    n = design.lasers
    rng = serial_rng("els", product, serial)
    thresholds = np.clip(rng.normal(design.threshold_a, design.threshold_sigma_a, n), 0.010, 0.025)
    slopes = np.clip(rng.normal(design.slope_w_per_a, design.slope_sigma_w_per_a, n), 0.15, 0.35)
    t0 = rng.normal(55.0, 5.0, n)
    t1 = rng.normal(100.0, 8.0, n)
    rth = rng.normal(70.0, 5.0, n)
    rs = np.clip(rng.normal(4.0, 0.5, n), 2.5, 6.0)
    ideality = rng.normal(1.9, 0.08, n)
    saturation = 10.0 ** rng.normal(-10.0, 0.15, n)
    coupling = rng.uniform(0.65, 0.8, n)
    wavelengths = np.asarray(design.grid_nm) + rng.normal(0.0, 0.8, n)
    smsr = np.clip(rng.normal(46.0, 3.0, n), 38.0, 56.0)
    low_smsr = rng.random(n) < design.low_smsr_rate
    smsr = np.where(low_smsr, rng.uniform(24.0, 33.0, n), smsr)
    monitor = rng.uniform(0.008, 0.015, n)
    tracking = rng.normal(0.0, 8e-4, n)
    kinked = rng.random(n) < design.kink_rate
    kink_at = rng.uniform(0.3, 0.75, n) * design.max_current_a
    kink_depth = rng.uniform(0.05, 0.10, n)
    kink_width = rng.uniform(1.0e-3, 2.5e-3, n)
    kink_hop = rng.uniform(0.3, 0.6, n) * rng.choice([-1.0, 1.0], n)
    weak_laser = int(rng.integers(n)) if rng.random() < design.weak_part_rate else None
    weak_slope, weak_threshold = rng.uniform(0.45, 0.6), rng.uniform(1.3, 1.6)
    lasers = []
    for i in range(n):
        weak = i == weak_laser
        lasers.append(
            LaserTruth(
                wavelength_nm=float(wavelengths[i]),
                threshold_a=float(thresholds[i] * (weak_threshold if weak else 1.0)),
                slope_w_per_a=float(slopes[i] * (weak_slope if weak else 1.0)),
                threshold_t0_k=float(t0[i]),
                slope_t1_k=float(t1[i]),
                thermal_resistance_k_per_w=float(rth[i]),
                series_resistance_ohm=float(rs[i]),
                ideality=float(ideality[i]),
                saturation_current_a=float(saturation[i]),
                fibre_coupling=float(coupling[i]),
                smsr_db=float(smsr[i]),
                monitor_a_per_w=float(monitor[i]),
                monitor_tracking_per_k=float(tracking[i]),
                kink_current_a=float(kink_at[i]) if kinked[i] else None,
                kink_depth=float(kink_depth[i]),
                kink_width_a=float(kink_width[i]),
                kink_hop_nm=float(kink_hop[i]),
                weak=weak,
            )
        )
    return ElsTruth(serial, design, tuple(lasers), weak_laser)


# --- physics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatingPoint:
    """One laser at given currents (arrays of the current's shape, or floats)."""

    current_a: np.ndarray
    power_w: np.ndarray  # in the output fibre
    voltage_v: np.ndarray  # across the diode (4-wire)
    junction_c: np.ndarray
    wavelength_nm: np.ndarray
    smsr_db: np.ndarray
    monitor_a: np.ndarray  # back-facet photodiode current


def _kink_step(laser: LaserTruth, current_a: np.ndarray) -> np.ndarray:
    """0 below the kink, 1 above it, smooth over the kink's width."""
    if laser.kink_current_a is None:
        return np.zeros_like(current_a)
    return 0.5 * (1.0 + np.tanh((current_a - laser.kink_current_a) / laser.kink_width_a))


def _fibre_power_w(laser: LaserTruth, current_a: np.ndarray, junction_c: np.ndarray) -> np.ndarray:
    rise = junction_c - REFERENCE_C
    threshold = laser.threshold_a * np.exp(rise / laser.threshold_t0_k)
    slope = laser.slope_w_per_a * np.exp(-rise / laser.slope_t1_k)
    # softplus: a sharp but smooth knee, so derivatives of a measured curve stay finite
    above = TURN_ON_SMOOTHING_A * np.logaddexp(0.0, (current_a - threshold) / TURN_ON_SMOOTHING_A)
    stimulated = slope * above * (1.0 - laser.kink_depth * _kink_step(laser, current_a))
    return stimulated + SPONTANEOUS_W_PER_A * np.minimum(current_a, threshold)


def diode_voltage_v(laser: LaserTruth, current_a: np.ndarray, junction_c: np.ndarray) -> np.ndarray:
    """Forward voltage: ideal diode with ideality n, plus series resistance, plus the band-gap
    shift with junction temperature."""
    slope_v = laser.ideality * THERMAL_VOLTAGE_25C_V
    diode = slope_v * np.log1p(current_a / laser.saturation_current_a)
    shift = DIODE_VOLTAGE_TEMPERATURE_V_PER_K * (junction_c - REFERENCE_C)
    return np.maximum(diode + laser.series_resistance_ohm * current_a + shift, 0.0)


def operating_point(laser: LaserTruth, current_a: object, heatsink_c: float) -> OperatingPoint:
    """Solve the laser at `current_a` (A, scalar or array) on a heatsink at `heatsink_c`.

    The junction heats by R_th x (I V - P_facet); threshold rises and slope falls with it, which
    rolls the L-I curve over at high current. The coupled equations are solved by damped
    fixed-point iteration (the loop gain is far below one for any sane thermal resistance).
    """
    current = np.clip(np.asarray(current_a, dtype=float), 0.0, None)
    junction = np.full_like(current, heatsink_c)
    for _ in range(40):
        power = _fibre_power_w(laser, current, junction)
        voltage = diode_voltage_v(laser, current, junction)
        heat_w = np.maximum(current * voltage - power / laser.fibre_coupling, 0.0)
        junction = 0.5 * junction + 0.5 * (heatsink_c + laser.thermal_resistance_k_per_w * heat_w)
    power = _fibre_power_w(laser, current, junction)
    voltage = diode_voltage_v(laser, current, junction)
    rise = junction - REFERENCE_C
    threshold = laser.threshold_a * np.exp(rise / laser.threshold_t0_k)
    hop = laser.kink_hop_nm * _kink_step(laser, current)
    wavelength = laser.wavelength_nm + WAVELENGTH_TEMPERATURE_NM_PER_K * rise + hop
    # Close to threshold (and while hopping between modes) the side modes are barely suppressed;
    # below threshold there is only broad spontaneous emission.
    margin = np.clip((current - threshold) / threshold, 0.0, None)
    smsr = laser.smsr_db - 15.0 * np.exp(-margin)
    if laser.kink_current_a is not None:
        distance = (current - laser.kink_current_a) / (2.0 * laser.kink_width_a)
        smsr = smsr - 15.0 * np.exp(-(distance**2))
    smsr = np.where(current > threshold, np.maximum(smsr, 3.0), 3.0)
    monitor = (
        laser.monitor_a_per_w * power * (1.0 + laser.monitor_tracking_per_k * rise) + MONITOR_DARK_A
    )
    return OperatingPoint(current, power, voltage, junction, wavelength, smsr, monitor)


# --- the bench fixture --------------------------------------------------------------------------
@dataclass
class FirstOrder:
    """A quantity relaxing exponentially towards a target (a current loop, a TEC plate)."""

    value: float
    target: float
    tau_s: float
    since_s: float = 0.0

    def at(self, now_s: float) -> float:
        elapsed = max(0.0, now_s - self.since_s)
        return self.target + (self.value - self.target) * math.exp(-elapsed / self.tau_s)

    def retarget(self, now_s: float, target: float, tau_s: float | None = None) -> None:
        self.value = self.at(now_s)
        self.since_s = now_s
        self.target = target
        if tau_s is not None:
            self.tau_s = tau_s


CURRENT_TAU_S = 0.004  # the controller's current loop after a step
TEC_TAU_S = 6.0  # the TEC plate under regulation
AMBIENT_TAU_S = 40.0  # the plate drifting to ambient with the TEC off


@dataclass
class ElsFixture:
    """An ELS part on a TEC plate; the laser diode controller's output is relayed to one laser.

    The relay follows the optical switch: selecting switch port k connects laser k's output fibre
    to the meter and the controller's LD, PD and sense lines to laser k. What flows is physical
    truth here; the controller twin sets targets and reads it back.
    """

    clock: SimClock
    ambient_c: float = 23.0
    part: ElsTruth | None = None
    output_on: bool = False
    driven_laser: int | None = None  # 0-based laser the output was connected to when switched on
    current: FirstOrder = field(default_factory=lambda: FirstOrder(0.0, 0.0, CURRENT_TAU_S))
    plate: FirstOrder = field(default_factory=lambda: FirstOrder(23.0, 23.0, AMBIENT_TAU_S))
    # instrument-specific faults: "the laser fails to settle"
    tec_oscillation_k: float = 0.0  # an unstable TEC loop swinging around its setpoint
    tec_oscillation_period_s: float = 14.0
    current_shortfall: float = 0.0  # a current loop that stalls short of its setpoint

    def mount(self, part: ElsTruth) -> None:
        self.part = part
        self.output_on = False
        self.driven_laser = None

    def unmount(self) -> None:
        self.part = None
        self.output_on = False
        self.driven_laser = None

    def laser(self, index: int) -> LaserTruth | None:
        if self.part is None or not 0 <= index < len(self.part.lasers):
            return None
        return self.part.lasers[index]

    def drive(self, current_a: float) -> None:
        """The controller's current loop heads for `current_a` (what the laser gets)."""
        now = self.clock.now_s()
        self.current.retarget(now, current_a * (1.0 - self.current_shortfall))

    def regulate(self, setpoint_c: float | None) -> None:
        """TEC on at `setpoint_c`, or off (None): the plate drifts back to ambient."""
        now = self.clock.now_s()
        if setpoint_c is None:
            self.plate.retarget(now, self.ambient_c, AMBIENT_TAU_S)
        else:
            self.plate.retarget(now, setpoint_c, TEC_TAU_S)

    def current_a(self) -> float:
        return self.current.at(self.clock.now_s()) if self.output_on else 0.0

    def plate_c(self) -> float:
        now = self.clock.now_s()
        swing = self.tec_oscillation_k * math.sin(2 * math.pi * now / self.tec_oscillation_period_s)
        return self.plate.at(now) + swing

    def operating_point(self) -> OperatingPoint | None:
        """The driven laser now, or None when nothing is driven."""
        if not self.output_on or self.driven_laser is None:
            return None
        laser = self.laser(self.driven_laser)
        if laser is None:
            return None
        return operating_point(laser, self.current_a(), self.plate_c())

    def emission(self, index: int) -> Emission | None:
        """The light laser `index` puts into its output fibre now (None when it is dark)."""
        if index != self.driven_laser:
            return None
        point = self.operating_point()
        if point is None or float(point.power_w) <= 0.0:
            return None
        return Emission(
            wavelength_nm=float(point.wavelength_nm),
            power_w=float(point.power_w),
            smsr_db=float(point.smsr_db),
            side_mode_offset_nm=1.0,  # DFB side modes sit at the stop-band edges
        )
