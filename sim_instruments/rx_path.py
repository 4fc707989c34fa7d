"""The module bench's receive path: BERT-driven reference transmitter, attenuator, RX switch and
MPO breakout, and what each module receiver gets and hands back to the BERT's error detectors.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim_instruments.clock import SimClock
from sim_instruments.light import DARK, Emission, Light
from sim_instruments.population import serial_rng
from sim_instruments.receiver import LaneErrorRates, ModuleReceiver, make_receiver

if TYPE_CHECKING:
    from sim_instruments.pluggable import SimulatedModule
    from sim_instruments.world import SwitchState

RX_BREAKOUT_SERIAL = "MPO8-RX-0418"  # the jumper the bench is built with (its station config's)
LANES = 8  # MPO breakout legs: switch port k feeds module RX lane k
#: slow drift of a jumper leg's loss (connector creep, temperature): amplitude range, dB, and
#: period range, simulated seconds
JUMPER_DRIFT_DB = (0.01, 0.04)
JUMPER_DRIFT_PERIOD_S = (8 * 3600.0, 16 * 3600.0)
#: the reference transmitter's monitor output: a fused tap inside its housing puts this much less
#: than its certified output power on a fibre to a power meter channel (its certificate's value;
#: the real one differs from it by a few millidecibels)
MONITOR_CERTIFIED_DB = 9.6
MONITOR_CERTIFICATE_SIGMA_DB = 0.005


@dataclass(frozen=True)
class SimJumper:
    """A station jumper as installed: its serial and how its legs' losses drift from the values
    they had when it was mated (zero drift at installation, then a slow swing)."""

    serial: str
    drift_db: np.ndarray  # amplitude per leg, shape (legs,)
    drift_period_s: np.ndarray  # per leg, shape (legs,)
    installed_at_s: float

    @classmethod
    def install(cls, serial: str, legs: int, now_s: float) -> SimJumper:
        rng = serial_rng("jumper-drift", serial)
        return cls(
            serial,
            rng.uniform(*JUMPER_DRIFT_DB, legs),
            rng.uniform(*JUMPER_DRIFT_PERIOD_S, legs),
            now_s,
        )

    def drift_at_db(self, leg: int, now_s: float) -> float:
        """How far leg `leg` (0-based) has drifted from its installed loss by `now_s`."""
        phase = 2.0 * math.pi * (now_s - self.installed_at_s) / self.drift_period_s[leg]
        return float(self.drift_db[leg] * math.sin(phase))


#: a module's clock recovery locks within this fraction of its line rate
BAUD_TOLERANCE = 100e-6
PRODUCT_BAUD_GBD = {"800G-DR8": 53.125, "1.6T-DR8": 106.25}


@dataclass
class ReferenceTransmitter:
    """The bench's reference PAM4 optical transmitter, driven by the BERT's pattern generator.

    Undriven (generator output off) its laser keeps emitting the same average power, unmodulated:
    the module sees light but no data.
    """

    oma_outer_dbm: float  # at its output connector, when driven
    er_db: float  # outer extinction ratio P3 / P0
    penalty_db: float  # how much worse than an ideal eye its eye is (a SECQ-like number)
    wavelength_nm: float
    # how the BERT's generator output drives it (set by the BERT twin)
    driven: bool = False
    line_coding: str = "NRZ"
    pam4_mapping: str = "GRAY"
    polynomial: int = 31  # PRBS 2^n - 1
    baud_gbd: float = 0.0

    @property
    def oma_w(self) -> float:
        return 10 ** (self.oma_outer_dbm / 10.0) * 1e-3

    @property
    def average_power_w(self) -> float:
        ratio = 10 ** (self.er_db / 10.0)
        p0 = self.oma_w / (ratio - 1.0)
        return p0 * (1.0 + ratio) / 2.0  # four equally spaced, equally likely levels

    def modulated_oma_w(self) -> float:
        return self.oma_w if self.driven else 0.0


@dataclass
class AttenuatorState:
    """One channel of a variable optical attenuator: filter position, calibration, shutter.

    The reported attenuation is the factor set (insertion loss comes on top). The filter is
    calibrated at the wavelength it is told; light at another wavelength is attenuated by a
    slightly different amount.
    """

    max_db: float = 60.0
    insertion_loss_db: float = 1.0
    wdl_per_nm: float = 8e-4  # relative attenuation error per nm between light and setting
    linearity_db: float = 0.03  # amplitude of the residual calibration ripple
    speed_db_per_s: float = 200.0
    settle_s: float = 0.05  # after every move
    set_db: float = 0.0
    wavelength_set_nm: float = 1550.0
    shutter_open: bool = False
    stuck: bool = False  # fault: the filter no longer moves; the reading still follows the setting
    _from_db: float = 0.0
    _to_db: float = 0.0
    _move_start_s: float = 0.0
    _move_end_s: float = 0.0

    def set_attenuation(self, value_db: float, now_s: float) -> None:
        self.set_db = value_db
        if self.stuck:
            return
        current = self.filter_db(now_s)
        self._from_db, self._to_db = current, value_db
        self._move_start_s = now_s
        self._move_end_s = now_s + self.settle_s + abs(value_db - current) / self.speed_db_per_s

    def settling_s(self, now_s: float) -> float:
        return max(0.0, self._move_end_s - now_s)

    def filter_db(self, now_s: float) -> float:
        """Where the filter is now (it travels from the old to the new setting)."""
        if now_s >= self._move_end_s:
            return self._to_db
        span = self._move_end_s - self._move_start_s
        done = (now_s - self._move_start_s) / span if span > 0 else 1.0
        return self._from_db + (self._to_db - self._from_db) * min(max(done, 0.0), 1.0)

    def loss_db(self, now_s: float, wavelength_nm: float) -> float:
        """Loss the light at `wavelength_nm` sees now; infinite with the shutter closed."""
        if not self.shutter_open:
            return math.inf
        filter_db = self.filter_db(now_s)
        error = filter_db * self.wdl_per_nm * (wavelength_nm - self.wavelength_set_nm)
        error += self.linearity_db * math.sin(math.pi * filter_db / 20.0)
        return self.insertion_loss_db + filter_db + error


class SwitchView:
    """A second switch on one bench, seen the way a switch twin reads the world.

    The N7734A twin reads `clock`, `switch`, `route_switch` and `switch_settling_s` of what it
    is given; this offers exactly those for a switch other than the world's TX switch.
    """

    def __init__(
        self,
        clock: SimClock,
        switch: SwitchState,
        lock: threading.RLock,
        rng: np.random.Generator,
    ) -> None:
        self.clock = clock
        self.switch = switch
        self._lock = lock
        self._rng = rng

    def route_switch(self, port: int, switching_time_s: float) -> None:
        with self._lock:
            if port != self.switch.routed:
                self.switch.settled_at_s = self.clock.now_s() + switching_time_s
            self.switch.routed = port
            self.switch.route_error_db = float(self._rng.normal(0.0, self.switch.repeatability_db))

    def switch_settling_s(self) -> float:
        return max(0.0, self.switch.settled_at_s - self.clock.now_s())


@dataclass
class RxPath:
    """Reference TX -> jumper -> attenuator -> jumper -> RX switch port k -> MPO breakout leg k ->
    module RX lane k; the module's host-side output of lane k goes to BERT error detector k.

    Readers take no lock: they are called from inside the module's lock (its RX monitors), and
    the world's lock is taken by paths that call into the module, so locking here could deadlock.
    """

    clock: SimClock
    module: Callable[[], SimulatedModule | None]
    ref_tx: ReferenceTransmitter
    attenuator: AttenuatorState
    switch: SwitchState
    patch_loss_db: float  # the two jumpers around the attenuator
    breakout_loss_db: np.ndarray  # switch port k to module RX lane k, shape (LANES,)
    #: the MPO breakout jumper whose legs those are (its serial, how its legs drift)
    breakout: SimJumper | None = None
    #: the reference transmitter's certified output to its monitor output, dB
    monitor_db: float = MONITOR_CERTIFIED_DB
    _receivers: dict[tuple[str, str], ModuleReceiver] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        clock: SimClock,
        rng: np.random.Generator,
        switch: SwitchState,
        module: Callable[[], SimulatedModule | None],
    ) -> RxPath:
        """A bench's receive path; `rng` fixes its passive parts (the same bench, the same
        losses)."""
        ref_tx = ReferenceTransmitter(
            oma_outer_dbm=float(rng.normal(2.0, 0.1)),
            er_db=float(rng.normal(5.0, 0.15)),
            penalty_db=float(rng.uniform(0.3, 0.5)),
            wavelength_nm=float(rng.normal(1310.5, 0.5)),
        )
        attenuator = AttenuatorState(
            insertion_loss_db=float(rng.uniform(0.85, 1.15)),
            linearity_db=float(rng.uniform(0.01, 0.04)),
        )
        # Power-on state of a bench left safe: shutter closed at maximum attenuation.
        attenuator.set_attenuation(attenuator.max_db, clock.now_s())
        return cls(
            clock=clock,
            module=module,
            ref_tx=ref_tx,
            attenuator=attenuator,
            switch=switch,
            patch_loss_db=float(rng.uniform(0.2, 0.4)),
            breakout_loss_db=rng.uniform(0.15, 0.35, LANES),
            breakout=SimJumper.install(RX_BREAKOUT_SERIAL, LANES, clock.now_s()),
            monitor_db=MONITOR_CERTIFIED_DB + float(rng.normal(0.0, MONITOR_CERTIFICATE_SIGMA_DB)),
        )

    def breakout_db(self, lane: int, now_s: float) -> float:
        """Loss of the breakout leg to module RX `lane` (1-based) now."""
        drift = self.breakout.drift_at_db(lane - 1, now_s) if self.breakout is not None else 0.0
        return float(self.breakout_loss_db[lane - 1]) + drift

    # --- optics -------------------------------------------------------------------------------
    def fixed_loss_db(self, lane: int) -> float:
        """Loss from the reference TX to module RX `lane` (1-based) at 0 dB attenuation, at the
        reference TX's wavelength: what a station calibrates as its RX path loss."""
        return (
            self.patch_loss_db
            + self.attenuator.insertion_loss_db
            + float(self.switch.port_loss_db[lane - 1])
            + self.breakout_db(lane, self.clock.now_s())
        )

    def loss_db(self, lane: int) -> float:
        """Loss from the reference TX to module RX `lane` (1-based) now; infinite when the switch
        routes elsewhere, is still moving, or the shutter is closed."""
        switch = self.switch
        now = self.clock.now_s()
        if not 1 <= lane <= LANES or switch.routed != lane or switch.settled_at_s > now:
            return math.inf
        attenuator = self.attenuator.loss_db(now, self.ref_tx.wavelength_nm)
        return (
            self.patch_loss_db
            + attenuator
            + float(switch.port_loss_db[lane - 1])
            + switch.route_error_db
            + self.breakout_db(lane, now)
        )

    def light_at_module_rx(self, lane: int) -> Light:
        loss = self.loss_db(lane)
        if math.isinf(loss):
            return DARK
        emission = Emission(self.ref_tx.wavelength_nm, self.ref_tx.average_power_w)
        return (emission.attenuated(loss),)

    def light_at_monitor(self) -> Light:
        """The reference transmitter's monitor output: its laser never stops (undriven it keeps
        its average power), so this is always lit."""
        emission = Emission(self.ref_tx.wavelength_nm, self.ref_tx.average_power_w)
        return (emission.attenuated(self.monitor_db),)

    def input_w(self) -> np.ndarray:
        """Average optical power arriving at each module receiver now, W, shape (lanes,)."""
        module = self.module()
        lanes = module.lanes if module is not None else LANES
        out = np.zeros(lanes)
        for lane in range(1, min(lanes, LANES) + 1):
            loss = self.loss_db(lane)
            if not math.isinf(loss):
                out[lane - 1] = self.ref_tx.average_power_w * 10 ** (-loss / 10.0)
        return out

    def oma_w(self, lane: int) -> float:
        """OMA outer arriving at module RX `lane` (1-based) now, W (0 when undriven)."""
        loss = self.loss_db(lane)
        return 0.0 if math.isinf(loss) else self.ref_tx.modulated_oma_w() * 10 ** (-loss / 10.0)

    # --- the module's receivers ---------------------------------------------------------------
    def receiver(self) -> ModuleReceiver | None:
        module = self.module()
        if module is None:
            return None
        key = (module.truth.serial, module.truth.design.name)
        if key not in self._receivers:
            self._receivers[key] = make_receiver(*key)
        return self._receivers[key]

    def module_output(self, lane: int) -> LaneErrorRates | None:
        """What module receiver `lane` (1-based) delivers at its host-side output now: its error
        rates, or None while the output is squelched (no module, data path not activated, loss
        of signal, or nothing its clock recovery can lock to)."""
        module, receiver = self.module(), self.receiver()
        if module is None or receiver is None or not 1 <= lane <= module.lanes:
            return None
        if not module.rx_outputs_active()[lane - 1]:
            return None
        average_w = self.input_w()[lane - 1]
        if average_w <= 0 or 10 * math.log10(average_w / 1e-3) < receiver.los_assert_dbm:
            return None  # CMIS default: host output squelched on RX loss of signal
        tx = self.ref_tx
        line_rate = PRODUCT_BAUD_GBD[module.truth.design.name]
        if (
            not tx.driven
            or tx.line_coding != "PAM4"
            or abs(tx.baud_gbd / line_rate - 1.0) > BAUD_TOLERANCE
        ):
            return None  # no PAM4 data at the module's line rate: loss of lock, squelched
        temperature_c = module.internal_temperature_c()
        return receiver.error_rates(lane - 1, self.oma_w(lane), temperature_c, tx.penalty_db)
