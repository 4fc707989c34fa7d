"""The physical world of one simulated bench: the DUT in its cage, fibres, switch and meters.

Light is followed from the module's lasers through the jumpers and the switch to the power meter,
so every instrument that looks at a lane sees the same light, less the same losses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim_instruments.clock import SimClock
from sim_instruments.light import DARK, Emission, Light, Port
from sim_instruments.pluggable import SimulatedModule
from sim_instruments.population import make_module, serial_rng


@dataclass
class SwitchState:
    port_count: int
    port_loss_db: np.ndarray  # insertion loss of each port, common to port k
    repeatability_db: float = 0.015
    routed: int = 1
    settled_at_s: float = 0.0
    route_error_db: float = 0.0


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
        self.switch = SwitchState(port_count=ports, port_loss_db=rng.uniform(0.55, 0.95, ports))
        self.ports["power_meter:1"] = self.module_tx_at_switch_common

    def insert_dut(self, serial: str, product: str) -> None:
        """Put a DUT on the bench; what that means is up to the bench (see `dut_inserter`)."""
        if self.dut_inserter is None:
            raise ValueError(f"bench {self.bench_id} takes no DUT")
        self.dut_inserter(serial, product)

    def insert_module(self, serial: str, product: str) -> SimulatedModule:
        with self.lock:
            self.module = SimulatedModule(make_module(serial, product), self.clock)
            return self.module

    def remove_dut(self) -> None:
        with self.lock:
            self.module = None

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
            if switch is None or module is None or self.switch_settling_s() > 0:
                return DARK
            lane = switch.routed - 1
            if lane >= module.lanes:
                return DARK
            emitted = module.emitted_power_w()[lane]
            if emitted <= 0:
                return DARK
            loss_db = self.jumper_loss_db[lane] + switch.port_loss_db[lane] + switch.route_error_db
            wavelength = float(module.lane_wavelengths_nm()[lane])
            return (Emission(wavelength, float(emitted)).attenuated(float(loss_db)),)
