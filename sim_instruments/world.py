"""The physical world of one simulated bench: the DUT in its cage, fibres, switch and meters.

Light is followed from the module's lasers through the jumpers and the switch to the power meter,
so every instrument that looks at a lane sees the same light, less the same losses.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim_instruments.clock import SimClock
from sim_instruments.els import ElsFixture, make_els
from sim_instruments.light import DARK, Emission, Light, Port
from sim_instruments.pluggable import SimulatedModule
from sim_instruments.population import make_module, serial_rng
from sim_instruments.reference_fixture import FIXTURE_PRODUCTS, ReferenceFixture, reference_signal
from sim_instruments.rx_path import LANES, RxPath, SimJumper, SwitchView
from sim_instruments.transmitter import TxSignal

if TYPE_CHECKING:
    from sim_instruments.wafer_station import WaferStation


@dataclass
class SwitchState:
    port_count: int
    port_loss_db: np.ndarray  # insertion loss of each port, common to port k
    repeatability_db: float = 0.015
    routed: int = 1
    settled_at_s: float = 0.0
    route_error_db: float = 0.0


@dataclass
class TriggerBurst:
    """The step triggers of one tunable-laser sweep, as its trigger output emits them."""

    times_s: np.ndarray  # simulated time of each trigger, shape (points,)
    wavelengths_nm: np.ndarray  # true wavelength of the light at each trigger, shape (points,)
    power_w: float  # laser output power during the sweep (0 with the output off)
    speed_nm_per_s: float
    stop_s: float = math.inf  # set when the sweep is stopped early: later triggers never come


TX_BREAKOUT_SERIAL = "MPO8-TX-0417"  # the jumper the module bench is built with
JUMPERS = ("tx_breakout", "rx_breakout")  # the module bench's jumpers, by the name a config uses


@dataclass
class World:
    """Everything physical on one bench. Instruments hold a reference and read it."""

    clock: SimClock
    bench_id: str = "sim-module-bench-1"
    module: SimulatedModule | None = None
    jumper_loss_db: np.ndarray = field(default_factory=lambda: np.zeros(8))
    switch: SwitchState | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: named optical ports ("power_meter:1", "osa", ...) -> the light arriving there now
    ports: dict[str, Port] = field(default_factory=dict)
    #: set by the bench builder: how this bench takes a DUT (module in a cage, wafer on a chuck)
    dut_inserter: Callable[[str, str], None] | None = None
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    #: the prober's chuck, wafer and probes, on a wafer bench
    wafer: WaferStation | None = None
    #: named optical ports -> power transmission (linear) from the bench's tunable laser, now,
    #: at the given wavelengths (nm): what a triggered meter samples during a sweep
    laser_paths: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    #: trigger inputs wired to the tunable laser's step-trigger output
    trigger_inputs: list[Callable[[TriggerBurst], None]] = field(default_factory=list)
    #: the ELS bench's fixture: an external laser source on a TEC plate (see `add_els_fixture`)
    els: ElsFixture | None = None
    #: loss of each leg of the tap coupler after the ELS bench's switch, dB
    els_tap_loss_db: dict[str, float] = field(default_factory=dict)
    #: the module bench's receive path: reference TX, attenuator, RX switch (see `add_rx_path`)
    rx: RxPath | None = None
    #: named ports carrying modulated light ("scope:1") -> the signal arriving there now, or None
    signals: dict[str, Callable[[], TxSignal | None]] = field(default_factory=dict)
    #: the DUT's case temperature now, when something (a thermal head) controls it
    case_temperature_c: Callable[[], float] | None = None
    #: loss of each leg of the splitter after the TX switch (see `add_tx_splitter`), dB
    tx_splitter_loss_db: dict[str, float] = field(default_factory=dict)
    #: the module TX MPO breakout jumper whose legs' losses are `jumper_loss_db` (module bench)
    tx_jumper: SimJumper | None = None
    #: the reference loopback fixture, when it is in the module cage instead of a module
    fixture: ReferenceFixture | None = None

    @classmethod
    def build(cls, clock: SimClock, bench_id: str = "sim-module-bench-1") -> World:
        """An empty world; a bench builder adds what its bench has (see `add_switch`)."""
        return cls(clock=clock, bench_id=bench_id)

    def bench_rng(self, part: str) -> np.random.Generator:
        """Random numbers fixed by the bench id: the same bench always has the same losses."""
        return serial_rng("bench", self.bench_id, part)

    def add_switch(self, ports: int) -> None:
        """TX lane k reaches switch port k through an MPO breakout jumper; the switch's common
        port goes to power meter channel 1."""
        rng = self.bench_rng("tx-switch")
        self.jumper_loss_db = rng.uniform(0.15, 0.35, 8)
        self.tx_jumper = SimJumper.install(TX_BREAKOUT_SERIAL, 8, self.clock.now_s())
        self.switch = SwitchState(port_count=ports, port_loss_db=rng.uniform(0.55, 0.95, ports))
        self.ports["power_meter:1"] = self.module_tx_at_switch_common

    def tx_jumper_db(self, lane: int) -> float:
        """Loss of the TX breakout leg of `lane` (0-based) now, drift included."""
        jumper = self.tx_jumper
        drift = jumper.drift_at_db(lane, self.clock.now_s()) if jumper is not None else 0.0
        return float(self.jumper_loss_db[lane]) + drift

    def swap_jumper(self, name: str, serial: str, extra_loss_db: float = 0.0) -> None:
        """Replace jumper `name` ("tx_breakout", "rx_breakout") by the jumper `serial`, whose
        legs have their own losses (plus `extra_loss_db`: an adapter, a worn ferrule)."""
        if name not in JUMPERS:
            raise ValueError(f"no jumper {name!r}; this bench has {', '.join(JUMPERS)}")
        if not 0.0 <= extra_loss_db < 20.0:
            raise ValueError(f"extra loss {extra_loss_db} dB: need 0 to 20 dB")
        losses = serial_rng("jumper", serial).uniform(0.15, 0.35, LANES) + extra_loss_db
        with self.lock:
            jumper = SimJumper.install(serial, LANES, self.clock.now_s())
            if name == "tx_breakout":
                if self.switch is None:
                    raise ValueError("this bench has no TX breakout jumper")
                self.jumper_loss_db, self.tx_jumper = losses, jumper
            else:
                if self.rx is None:
                    raise ValueError("this bench has no RX breakout jumper")
                self.rx.breakout_loss_db, self.rx.breakout = losses, jumper

    def insert_dut(self, serial: str, product: str) -> None:
        """Put a DUT on the bench; what that means is up to the bench (see `dut_inserter`)."""
        if self.dut_inserter is None:
            raise ValueError(f"bench {self.bench_id} takes no DUT")
        self.dut_inserter(serial, product)

    def add_rx_path(self, switch_ports: int) -> SwitchView:
        """The BERT drives a reference transmitter whose light passes the attenuator and a second
        switch: port k feeds module RX lane k; its monitor output goes to power meter channel 3.
        Returns that switch, as its twin sees it."""
        switch_rng = self.bench_rng("rx-switch")
        rx_switch = SwitchState(switch_ports, switch_rng.uniform(0.55, 0.95, switch_ports))
        rng = self.bench_rng("rx-path")
        self.rx = RxPath.build(self.clock, rng, rx_switch, lambda: self.module)
        for lane in range(1, 9):
            self.ports[f"module_rx:{lane}"] = functools.partial(self.rx.light_at_module_rx, lane)
        self.ports["power_meter:2"] = self.fixture_tap_light  # the path-cal fixture's tap fan-in
        self.ports["power_meter:3"] = self.rx.light_at_monitor  # the reference TX's monitor
        return SwitchView(self.clock, rx_switch, self.lock, self.rng)

    def insert_into_cage(self, serial: str, product: str) -> None:
        """The module bench's cage takes a module, or the reference loopback fixture."""
        if product in FIXTURE_PRODUCTS:
            self.insert_fixture(serial)
        else:
            self.insert_module(serial, product)

    def insert_fixture(self, serial: str) -> None:
        with self.lock:
            self.module, self.fixture = None, ReferenceFixture.make(serial)

    def insert_module(self, serial: str, product: str) -> SimulatedModule:
        with self.lock:
            self.fixture = None
            self.module = SimulatedModule(make_module(serial, product), self.clock)
            if self.rx is not None:
                self.module.rx_input_source = self.rx.input_w
            if self.case_temperature_c is not None:
                self.module.case_temperature_c = self.case_temperature_c
            return self.module

    def remove_dut(self) -> None:
        with self.lock:
            self.module = None
            self.fixture = None
            if self.els is not None:
                self.els.unmount()
            if self.wafer is not None:
                self.wafer.unload()

    def fire_triggers(self, burst: TriggerBurst) -> None:
        """Deliver a sweep's step triggers to every trigger input wired to the laser."""
        for trigger_input in list(self.trigger_inputs):
            trigger_input(burst)

    def add_els_fixture(self, ports: int) -> None:
        """Laser k of the ELS reaches switch port k through its output pigtail and a jumper; the
        switch's common port feeds a 90/10 tap coupler: 90 % to power meter channel 1, 10 % to
        the OSA. The fixture relays the laser diode controller to the laser the switch selects."""
        rng = self.bench_rng("els-switch")
        self.jumper_loss_db = rng.uniform(0.15, 0.35, ports)
        self.switch = SwitchState(port_count=ports, port_loss_db=rng.uniform(0.55, 0.95, ports))
        self.els = ElsFixture(self.clock)
        tap = self.bench_rng("els-tap")
        self.els_tap_loss_db = {
            "power_meter:1": float(tap.uniform(0.55, 0.75)),
            "osa": float(tap.uniform(10.2, 10.7)),
        }
        for leg, loss_db in self.els_tap_loss_db.items():
            self.ports[leg] = functools.partial(self.els_at_switch_common, loss_db)

    def insert_els(self, serial: str, product: str) -> None:
        assert self.els is not None
        with self.lock:
            self.els.mount(make_els(serial, product))

    def els_path_loss_db(self, laser: int, port: str = "power_meter:1") -> float:
        """Loss from laser `laser`'s (0-based) output fibre to `port` (a leg of the tap)."""
        assert self.switch is not None
        through_switch = self.jumper_loss_db[laser] + self.switch.port_loss_db[laser]
        return float(through_switch + self.els_tap_loss_db[port])

    # --- switch ---------------------------------------------------------------------------------
    def route_switch(self, port: int, switching_time_s: float) -> None:
        assert self.switch is not None
        with self.lock:
            if port != self.switch.routed:
                self.switch.settled_at_s = self.clock.now_s() + switching_time_s
            self.switch.routed = port
            self.switch.route_error_db = float(self.rng.normal(0.0, self.switch.repeatability_db))

    def switch_settling_s(self) -> float:
        assert self.switch is not None
        return max(0.0, self.switch.settled_at_s - self.clock.now_s())

    # --- light ------------------------------------------------------------------------------------
    def light_at(self, port: str) -> Light:
        """What arrives now at the named optical port; dark if nothing is wired to it."""
        source = self.ports.get(port)
        return source() if source is not None else DARK

    def module_tx_at_switch_common(self) -> Light:
        """The routed module TX lane at the switch's common port (port k carries lane k)."""
        with self.lock:
            switch, module = self.switch, self.module
            if self.fixture is not None:
                signal = self.module_tx_signal_at_switch_common()
                return DARK if signal is None else (signal.emission(),)
            if switch is None or module is None or self.switch_settling_s() > 0:
                return DARK
            lane = switch.routed - 1
            if lane >= module.lanes:
                return DARK
            emitted = module.emitted_power_w()[lane]
            if emitted <= 0:
                return DARK
            loss_db = self.tx_jumper_db(lane) + switch.port_loss_db[lane] + switch.route_error_db
            wavelength = float(module.lane_wavelengths_nm()[lane])
            return (Emission(wavelength, float(emitted)).attenuated(float(loss_db)),)

    def els_at_switch_common(self, extra_loss_db: float = 0.0) -> Light:
        """The ELS laser the switch selects, at the switch's common port less `extra_loss_db` (a
        leg of the tap); dark unless that laser is driven."""
        with self.lock:
            switch, els = self.switch, self.els
            if switch is None or els is None or self.switch_settling_s() > 0:
                return DARK
            laser = switch.routed - 1
            emission = els.emission(laser)
            if emission is None:
                return DARK
            through_switch = self.jumper_loss_db[laser] + switch.port_loss_db[laser]
            loss_db = float(through_switch) + switch.route_error_db + extra_loss_db
            return (emission.attenuated(loss_db),)

    # --- TX splitter: one lane, three instruments -----------------------------------------------
    def add_tx_splitter(self) -> None:
        """A fixed 1x3 splitter (50/25/25 with excess loss and patch cords) after the TX switch's
        common port feeds scope channel 1, power meter channel 1 and the OSA."""
        rng = self.bench_rng("tx-splitter")
        self.tx_splitter_loss_db = {
            "scope:1": float(rng.uniform(3.2, 3.6)),
            "power_meter:1": float(rng.uniform(6.3, 6.8)),
            "osa": float(rng.uniform(6.3, 6.8)),
        }
        for leg, loss_db in self.tx_splitter_loss_db.items():
            self.signals[leg] = functools.partial(self.module_tx_signal_at_switch_common, loss_db)
            self.ports[leg] = functools.partial(self._tx_leg_light, loss_db)

    def module_tx_signal_at_switch_common(self, extra_loss_db: float = 0.0) -> TxSignal | None:
        """The routed module TX lane's modulated light at the switch's common port, less
        `extra_loss_db` (a splitter leg); None when dark."""
        with self.lock:
            switch, module = self.switch, self.module
            if switch is None or self.switch_settling_s() > 0:
                return None
            lane = switch.routed - 1
            if self.fixture is not None:
                signal = self.fixture_tx_signal(lane)
            elif module is None or lane >= module.lanes:
                return None
            else:
                signal = module.lane_signal(lane)
            if signal is None:
                return None
            loss_db = self.tx_jumper_db(lane) + switch.port_loss_db[lane] + switch.route_error_db
            return signal.attenuated(float(loss_db) + extra_loss_db)

    # --- the path-cal fixture in the cage -------------------------------------------------------
    def fixture_tx_signal(self, lane: int) -> TxSignal | None:
        """The light the fixture loops back into the cage's TX leg `lane` (0-based): what
        arrives at its RX leg, less the loopback's loss; None when dark."""
        fixture, rx = self.fixture, self.rx
        if fixture is None or rx is None or lane >= LANES:
            return None
        loss = rx.loss_db(lane + 1)
        if math.isinf(loss):
            return None
        return reference_signal(rx.ref_tx, loss + float(fixture.loopback_db[lane]))

    def fixture_tap_light(self) -> Light:
        """What the fixture's tap fan-in delivers to its power meter channel: every RX leg's
        light less that leg's tap loss."""
        fixture, rx = self.fixture, self.rx
        if fixture is None or rx is None:
            return DARK
        return tuple(
            emission.attenuated(float(fixture.tap_db[lane - 1]))
            for lane in range(1, LANES + 1)
            for emission in rx.light_at_module_rx(lane)
        )

    def _tx_leg_light(self, loss_db: float) -> Light:
        signal = self.module_tx_signal_at_switch_common(loss_db)
        return DARK if signal is None else (signal.emission(),)
