"""A complete simulated bench: the world, every simulated instrument, and the servers exposing them.

The roles and instrument serial numbers match the station's simulated-bench config, so the
station checks identities and calibration exactly as it does on a real bench.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim_instruments.clock import SimClock
from sim_instruments.devantech_usb_iss import SimUsbIss
from sim_instruments.faults import Fault
from sim_instruments.keysight_n7734a import SimN7734A
from sim_instruments.keysight_n7744c import SimN7744C
from sim_instruments.scpi import ScpiDevice
from sim_instruments.server import PtySerialServer, ScpiSocketServer, Server
from sim_instruments.world import World

#: role -> instrument serial number (the station config names the same serials)
SERIALS = {
    "module_host": "00031415",
    "optical_switch": "MY53100212",
    "power_meter": "MY54330045",
}


@dataclass
class SimBench:
    world: World
    devices: dict[str, ScpiDevice | SimUsbIss]
    servers: dict[str, Server]

    @classmethod
    def build(cls, *, time_factor: float = 1.0, bench_id: str = "sim-bench-1") -> SimBench:
        world = World.build(SimClock(time_factor), bench_id)
        devices: dict[str, ScpiDevice | SimUsbIss] = {
            "module_host": SimUsbIss(world, SERIALS["module_host"]),
            "optical_switch": SimN7734A(world, SERIALS["optical_switch"]),
            "power_meter": SimN7744C(world, SERIALS["power_meter"]),
        }
        servers: dict[str, Server] = {}
        for role, device in devices.items():
            if isinstance(device, ScpiDevice):
                servers[role] = ScpiSocketServer(role, device)
            else:
                servers[role] = PtySerialServer(role, device)
        return cls(world, devices, servers)

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
        """Put the module `serial` of `product` in the host board's cage."""
        self.world.insert_module(serial, product)

    def arm_fault(self, role: str, fault: Fault) -> None:
        if role not in self.devices:
            raise KeyError(f"no role {role!r} on this bench; roles: {sorted(self.devices)}")
        self.devices[role].faults.arm(fault)
