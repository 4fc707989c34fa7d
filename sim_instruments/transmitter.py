"""Module transmitter physics: what each lane's modulated light really is, and how it varies.

Owns per-lane extinction ratio, level mismatch, bandwidth (ISI), RIN, jitter and SMSR with their
temperature coefficients, and `TxSignal`, a lane's PAM4 signal as it arrives at a port.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim_instruments.light import Emission
from sim_instruments.population import PRODUCTS, serial_rng
from sim_instruments.waveforms import pattern_symbols, symbol_counts, two_pole_response

#: internal temperature at which a lane's truth holds; coefficients move it from there
REFERENCE_TEMPERATURE_C = 40.0
ER_TC_DB_PER_K = -0.02  # the laser's slope efficiency falls when hot: the eye closes a little
BANDWIDTH_TC_PER_K = -0.002  # relative bandwidth change per kelvin
#: fraction of units carrying one slow lane (driver/laser bandwidth too low: TDECQ fails)
SLOW_LANE_RATE = 0.04
#: fraction of units carrying one lane with a weak side-mode suppression
LOW_SMSR_RATE = 0.01


@dataclass(frozen=True, slots=True)
class TxSignal:
    """One lane's PAM4 light where it arrives: four long-run levels and its impairments.

    `levels_w` are the powers of long runs of symbols 0..3 (P0 < P1 < P2 < P3); the waveform
    between them follows `bandwidth_hz` (a two-pole response). RIN is relative, so it survives
    attenuation; jitter is in UI.
    """

    baud_rate_hz: float
    levels_w: tuple[float, float, float, float]
    bandwidth_hz: float
    rin_db_per_hz: float
    rj_ui: float
    pj_ui: float  # peak-to-peak periodic jitter
    wavelength_nm: float
    smsr_db: float
    side_mode_offset_nm: float
    pattern: str = "PRBS13Q"

    def attenuated(self, loss_db: float) -> TxSignal:
        scale = 10 ** (-loss_db / 10.0)
        return replace(self, levels_w=tuple(p * scale for p in self.levels_w))  # type: ignore[arg-type]

    @property
    def symbol_weights(self) -> np.ndarray:
        counts = symbol_counts(self.pattern)
        return counts / counts.sum()

    @property
    def average_power_w(self) -> float:
        """Mean power over one pattern period (the filter keeps the mean)."""
        return float(np.dot(self.symbol_weights, self.levels_w))

    @property
    def oma_outer_w(self) -> float:
        return self.levels_w[3] - self.levels_w[0]

    @property
    def er_outer_db(self) -> float:
        return float(10.0 * np.log10(self.levels_w[3] / self.levels_w[0]))

    @property
    def carrier_fraction(self) -> float:
        """Share of the power in the optical carrier, |<E>|^2 / <|E|^2> with E = sqrt(P); the
        rest is spread over the modulation sidebands (what an OSA with a narrow RBW misses)."""
        field = np.dot(self.symbol_weights, np.sqrt(self.levels_w))
        return float(field**2 / self.average_power_w)

    def response(self, frequency_hz: np.ndarray) -> np.ndarray:
        return two_pole_response(frequency_hz, self.bandwidth_hz)

    def symbol_levels_w(self) -> np.ndarray:
        """The level of every symbol of one pattern period, shape (period,)."""
        return np.asarray(self.levels_w)[pattern_symbols(self.pattern)]

    def rin_sigma(self, bandwidth_hz: float) -> float:
        """Relative rms intensity noise integrated over `bandwidth_hz`."""
        return float(np.sqrt(10 ** (self.rin_db_per_hz / 10.0) * bandwidth_hz))

    def emission(self) -> Emission:
        return Emission(
            wavelength_nm=self.wavelength_nm,
            power_w=self.average_power_w,
            smsr_db=self.smsr_db,
            side_mode_offset_nm=self.side_mode_offset_nm,
        )


@dataclass(frozen=True, slots=True)
class LaneTx:
    """What one lane's transmitter really does at REFERENCE_TEMPERATURE_C."""

    er_db: float  # outer extinction ratio
    inner_offsets: tuple[float, float]  # P1, P2 displacement from equal spacing, units of OMA
    bandwidth_hz: float
    rin_db_per_hz: float
    rj_ui: float
    pj_ui: float
    smsr_db: float
    side_mode_offset_nm: float

    def signal(
        self,
        average_power_w: float,
        wavelength_nm: float,
        temperature_c: float,
        baud_rate_hz: float,
        pattern: str = "PRBS13Q",
    ) -> TxSignal:
        """The launched signal: the average power is the module's (population) truth; P0 and P3
        follow from the extinction ratio, the inner levels from the offsets."""
        delta = temperature_c - REFERENCE_TEMPERATURE_C
        ratio = 10 ** ((self.er_db + ER_TC_DB_PER_K * delta) / 10.0)
        position = np.array(
            [0.0, 1 / 3 + self.inner_offsets[0], 2 / 3 + self.inner_offsets[1], 1.0]
        )
        counts = symbol_counts(pattern)
        mean_position = float(np.dot(counts, position) / counts.sum())
        p0 = average_power_w / (1.0 + (ratio - 1.0) * mean_position)
        levels = p0 + p0 * (ratio - 1.0) * position
        return TxSignal(
            baud_rate_hz=baud_rate_hz,
            levels_w=tuple(float(p) for p in levels),  # type: ignore[arg-type]
            bandwidth_hz=self.bandwidth_hz * max(0.5, 1.0 + BANDWIDTH_TC_PER_K * delta),
            rin_db_per_hz=self.rin_db_per_hz,
            rj_ui=self.rj_ui,
            pj_ui=self.pj_ui,
            wavelength_nm=wavelength_nm,
            smsr_db=self.smsr_db,
            side_mode_offset_nm=self.side_mode_offset_nm,
            pattern=pattern,
        )


@dataclass(frozen=True)
class ModuleTx:
    lanes: tuple[LaneTx, ...]
    slow_lane: int | None  # 0-based lane with too little bandwidth, if any
    low_smsr_lane: int | None  # 0-based lane with a weak side-mode suppression, if any


def make_module_tx(serial: str, product: str) -> ModuleTx:
    """The transmitter truth of module `serial`: the same serial always gives the same lanes.

    Per lane: outer ER 4.5-6 dB; inner levels off equal spacing by up to 0.7 % of OMA (RLM
    0.96-1.0); bandwidth about 0.75 x baud (sigma 0.05 x baud, at least 0.6 x baud), and for
    SLOW_LANE_RATE of units one lane at 0.20-0.24 x baud (TDECQ above 3.4 dB); RIN -148 to
    -142 dB/Hz; RJ 0.008-0.014 UI rms; periodic jitter 0.02-0.05 UI pp; SMSR 36-50 dB (normal,
    mean 43), and for LOW_SMSR_RATE of units one lane at 24-29 dB; the side mode 0.6-0.9 nm to
    either side of the main mode.
    """
    design = PRODUCTS[product]
    baud = design.baud_rate_gbd * 1e9
    rng = serial_rng("module-tx", product, serial)
    n = design.lanes
    # the rare defects first, so that adding a parameter later does not reshuffle who has them
    slow_lane = int(rng.integers(n)) if rng.random() < SLOW_LANE_RATE else None
    low_smsr_lane = int(rng.integers(n)) if rng.random() < LOW_SMSR_RATE else None
    er = rng.uniform(4.5, 6.0, n)
    offsets = rng.uniform(-0.007, 0.007, (n, 2))
    bandwidth = np.maximum(rng.normal(0.75, 0.05, n), 0.6) * baud
    rin = rng.uniform(-148.0, -142.0, n)
    rj = rng.uniform(0.008, 0.014, n)
    pj = rng.uniform(0.02, 0.05, n)
    smsr = np.clip(rng.normal(43.0, 3.0, n), 36.0, 50.0)
    side = rng.uniform(0.6, 0.9, n) * rng.choice([-1.0, 1.0], n)
    if slow_lane is not None:
        bandwidth[slow_lane] = rng.uniform(0.20, 0.24) * baud
    if low_smsr_lane is not None:
        smsr[low_smsr_lane] = rng.uniform(24.0, 29.0)
    lanes = tuple(
        LaneTx(
            er_db=float(er[i]),
            inner_offsets=(float(offsets[i, 0]), float(offsets[i, 1])),
            bandwidth_hz=float(bandwidth[i]),
            rin_db_per_hz=float(rin[i]),
            rj_ui=float(rj[i]),
            pj_ui=float(pj[i]),
            smsr_db=float(smsr[i]),
            side_mode_offset_nm=float(side[i]),
        )
        for i in range(n)
    )
    return ModuleTx(lanes=lanes, slow_lane=slow_lane, low_smsr_lane=low_smsr_lane)
