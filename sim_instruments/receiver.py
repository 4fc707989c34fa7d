"""Module receiver physics: per-lane sensitivity, input-referred noise, PAM4 symbol errors by level.

Each unit's receivers come from its serial (`serial_rng("module-rx", product, serial)`); the world
asks a lane for its error rates at the OMA that reaches it, the BERT draws its counts from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim_instruments.population import serial_rng

#: pre-FEC BER target of KP4 links, at which a receiver's sensitivity is defined
BER_TARGET = 2.4e-4
#: temperature at which the sensitivities below hold (module internal temperature)
REFERENCE_TEMPERATURE_C = 40.0
#: Gray-coded PAM4 with Gaussian noise: outer levels have one neighbour, inner levels two
_NEIGHBOURS = ((0, 1), (1, 1), (1, 1), (1, 0))  # (down, up) crossings per transmitted level


def q_tail(q: float) -> float:
    """Gaussian tail probability Q(q) = P(N(0, 1) > q)."""
    return 0.5 * math.erfc(q / math.sqrt(2.0))


def q_inverse(p: float) -> float:
    """The q with Q(q) = p, for 0 < p < 0.5 (bisection: exact enough, and runs once)."""
    low, high = 0.0, 40.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if q_tail(mid) > p:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


#: q = OMA / (6 sigma) at which PAM4 SER = 1.5 Q(q) = 2 x BER_TARGET (about 3.41)
Q_AT_TARGET = q_inverse(2.0 * BER_TARGET / 1.5)


@dataclass(frozen=True)
class ReceiverDesign:
    """Design point of a product's receivers (ideal source, reference temperature)."""

    sensitivity_oma_dbm: float  # population mean, OMA outer at BER_TARGET
    unit_sigma_db: float
    lane_sigma_db: float
    weak_lane_rate: float  # fraction of units with one marginal receiver lane
    weak_sensitivity_dbm: float
    los_assert_dbm: float  # average input power below which the host output is squelched
    temperature_coefficient_db_per_c: float  # sensitivity degrades this much per degC


RECEIVERS: dict[str, ReceiverDesign] = {
    # 802.3 limit for DR4/DR8: <= -4.4 dBm; production receivers sit about 2 dB better.
    "800G-DR8": ReceiverDesign(-6.5, 0.3, 0.4, 0.04, -4.6, -13.0, 0.012),
    # 1.6T DR8 at 106.25 GBd: the (unverified, DOMAIN.md 1) limit is about -2.8 dBm; production
    # receivers keep the same ~2 dB margin to it as 800G ones do, so a lot yields alike.
    "1.6T-DR8": ReceiverDesign(-4.8, 0.3, 0.4, 0.04, -2.2, -11.0, 0.015),
}


@dataclass(frozen=True)
class LaneErrorRates:
    """What one receiver lane delivers: error probabilities per transmitted PAM4 symbol.

    `crossings[k]` is (probability that level k is decided one level lower, one level higher);
    each crossing costs one bit with Gray coding, so BER = SER / 2.
    """

    crossings: tuple[tuple[float, float], ...]  # 4 levels x (down, up)

    @property
    def level_ser(self) -> tuple[float, ...]:
        """Symbol error probability of each transmitted level 0..3."""
        return tuple(down + up for down, up in self.crossings)

    @property
    def ser(self) -> float:
        return sum(self.level_ser) / 4.0  # PRBS patterns send the four levels equally often

    @property
    def ber(self) -> float:
        return self.ser / 2.0


@dataclass(frozen=True)
class ModuleReceiver:
    """The receivers of one module. Lanes are 0-based here."""

    serial: str
    product: str
    sensitivity_oma_dbm: tuple[float, ...]  # per lane, at BER_TARGET, ideal source, 40 degC
    error_floor_ber: tuple[float, ...]  # per lane: BER that no received power removes
    weak_lane: int | None
    design: ReceiverDesign

    @property
    def lanes(self) -> int:
        return len(self.sensitivity_oma_dbm)

    @property
    def los_assert_dbm(self) -> float:
        return self.design.los_assert_dbm

    def sensitivity_at(self, lane: int, temperature_c: float) -> float:
        """Sensitivity (OMA outer at BER_TARGET, ideal source) of `lane` at `temperature_c`."""
        drift = self.design.temperature_coefficient_db_per_c
        return self.sensitivity_oma_dbm[lane] + drift * (temperature_c - REFERENCE_TEMPERATURE_C)

    def noise_sigma_w(self, lane: int, temperature_c: float) -> float:
        """Input-referred noise (optical W, rms) that puts the BER target at the sensitivity."""
        sensitivity_w = 10 ** (self.sensitivity_at(lane, temperature_c) / 10.0) * 1e-3
        return sensitivity_w / (6.0 * Q_AT_TARGET)

    def error_rates(
        self, lane: int, oma_w: float, temperature_c: float, source_penalty_db: float = 0.0
    ) -> LaneErrorRates:
        """Error rates of `lane` receiving `oma_w` (OMA outer at its input) from a source whose
        eye is `source_penalty_db` worse than ideal (its SECQ, say): PAM4 SER = 1.5 Q(OMA/(6
        sigma)) plus the lane's error floor."""
        effective_w = max(oma_w, 0.0) * 10 ** (-source_penalty_db / 10.0)
        tail = q_tail(effective_w / (6.0 * self.noise_sigma_w(lane, temperature_c)))
        # The floor's symbol errors (2 x floor BER) are spread over the six possible crossings.
        per_crossing = tail + 2.0 * self.error_floor_ber[lane] * 4.0 / 6.0
        return LaneErrorRates(
            tuple((down * per_crossing, up * per_crossing) for down, up in _NEIGHBOURS)
        )


def make_receiver(serial: str, product: str) -> ModuleReceiver:
    """The receivers of module `serial`: the same serial always gives the same receivers."""
    if product not in RECEIVERS:
        raise ValueError(f"no receiver design for {product!r}; known: {sorted(RECEIVERS)}")
    design = RECEIVERS[product]
    lanes = 8
    rng = serial_rng("module-rx", product, serial)
    unit = rng.normal(0.0, design.unit_sigma_db)
    sensitivity = design.sensitivity_oma_dbm + unit + rng.normal(0.0, design.lane_sigma_db, lanes)
    weak_lane = int(rng.integers(lanes)) if rng.random() < design.weak_lane_rate else None
    if weak_lane is not None:
        sensitivity[weak_lane] = design.weak_sensitivity_dbm + rng.normal(0.0, 0.3)
    floor = 10 ** rng.uniform(-10.5, -9.0, lanes)
    return ModuleReceiver(
        serial=serial,
        product=product,
        sensitivity_oma_dbm=tuple(float(s) for s in sensitivity),
        error_floor_ber=tuple(float(f) for f in floor),
        weak_lane=weak_lane,
        design=design,
    )
