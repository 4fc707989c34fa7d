"""Simulated benches: a world, the simulated instruments that share it, and their servers.

A bench kind ("module", and later "wafer", "els") is a builder that adds its instruments to a
world. Roles and instrument serial numbers match the station's config for that simulated bench,
so the station checks identities and calibration exactly as on a real bench.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim_instruments.clock import SimClock
from sim_instruments.devantech_usb_iss import SimUsbIss
from sim_instruments.faults import Fault, FaultPlan
from sim_instruments.keysight_n7734a import SimN7734A
from sim_instruments.keysight_n7744c import SimN7744C
from sim_instruments.scpi import ScpiDevice
from sim_instruments.server import BinaryDevice, PtySerialServer, ScpiSocketServer, Server
from sim_instruments.world import World

Device = ScpiDevice | BinaryDevice
BenchBuilder = Callable[[World], dict[str, Device]]


def module_bench(world: World) -> dict[str, Device]:
    """Pluggable-module bench: CMIS host board, TX lane switch, power meter."""
    world.add_switch(ports=12)
    world.dut_inserter = world.insert_module
    return {
        "module_host": SimUsbIss(world, "00031415"),
        "optical_switch": SimN7734A(world, "MY53100212"),
        "power_meter": SimN7744C(world, "MY54330045"),
    }


#: bench kind -> builder; each kind has a station config `station/configs/sim-<kind>-bench.toml`
BENCHES: dict[str, BenchBuilder] = {
    "module": module_bench,
}


@dataclass
class SimBench:
    kind: str
    world: World
    devices: dict[str, Device]
    servers: dict[str, Server]

    @classmethod
    def build(
        cls, kind: str = "module", *, time_factor: float = 1.0, bench_id: str | None = None
    ) -> SimBench:
        if kind not in BENCHES:
            raise ValueError(f"no simulated bench {kind!r}; known: {sorted(BENCHES)}")
        world = World.build(SimClock(time_factor), bench_id or f"sim-{kind}-bench-1")
        devices = BENCHES[kind](world)
        servers: dict[str, Server] = {}
        for role, device in devices.items():
            if isinstance(device, ScpiDevice):
                servers[role] = ScpiSocketServer(role, device)
            else:
                servers[role] = PtySerialServer(role, device)
        return cls(kind, world, devices, servers)

    def start(self) -> SimBench:
        for server in self.servers.values():
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> SimBench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resources(self) -> dict[str, str]:
        return {role: server.resource for role, server in self.servers.items()}

    def insert(self, serial: str, product: str) -> None:
        """Put the DUT `serial` of `product` on the bench (a module in the cage, a wafer on the
        chuck, a laser source on its fixture)."""
        self.world.insert_dut(serial, product)

    def faults(self, role: str) -> FaultPlan:
        if role not in self.devices:
            raise KeyError(f"no role {role!r} on this bench; roles: {sorted(self.devices)}")
        return self.devices[role].faults

    def arm_fault(self, role: str, fault: Fault) -> None:
        self.faults(role).arm(fault)
