"""Simulated benches: a world, the simulated instruments that share it, and their servers.

A bench kind ("module", and later "wafer", "els") is a builder that adds its instruments to a
world. Roles and instrument serial numbers match the station's config for that simulated bench,
so the station checks identities and calibration exactly as on a real bench.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sim_instruments.clock import SimClock
from sim_instruments.devantech_usb_iss import SimUsbIss
from sim_instruments.endfaces import EndFaceFixture
from sim_instruments.faults import Fault, FaultPlan
from sim_instruments.formfactor_velox import SimVelox
from sim_instruments.generic_scpi_endface_microscope import SimScpiEndfaceMicroscope
from sim_instruments.ilx_ldc3724c import SerialLineDevice, SimLdc3724c
from sim_instruments.keithley_2450 import SimK2450
from sim_instruments.keysight_m8050a import SimM8050A
from sim_instruments.keysight_n1000a import SimN1000A
from sim_instruments.keysight_n7734a import SimN7734A
from sim_instruments.keysight_n7744c import SimN7744C
from sim_instruments.keysight_n7764a import SimN7764A
from sim_instruments.keysight_n7776c import SimN7776C
from sim_instruments.scpi import ScpiDevice
from sim_instruments.server import BinaryDevice, PtySerialServer, ScpiSocketServer, Server
from sim_instruments.temptronic_ats710 import SimAts710
from sim_instruments.wafer_station import OUTPUT_CHANNELS, WaferStation
from sim_instruments.world import World
from sim_instruments.yokogawa_aq6370d import SimAq6370d

Device = ScpiDevice | BinaryDevice
BenchBuilder = Callable[[World], dict[str, Device]]


def module_bench(world: World) -> dict[str, Device]:
    """Pluggable-module bench: CMIS host board, TX lane switch, power meter; BERT, reference
    transmitter, attenuator and RX lane switch."""
    world.add_switch(ports=12)
    rx_switch = world.add_rx_path(switch_ports=12)  # BERT -> reference TX -> attenuator -> switch
    world.add_tx_splitter()  # TX switch common -> scope 1, power meter 1, OSA
    world.dut_inserter = world.insert_into_cage  # a module, or the path-cal loopback fixture
    return {
        "module_host": SimUsbIss(world, "00031415"),
        "optical_switch": SimN7734A(world, "MY53100212"),
        "power_meter": SimN7744C(world, "MY54330045"),
        "bert": SimM8050A(world, "MY62380154"),  # 2-120 GBd: 800G and 1.6T DR8 receivers
        "attenuator": SimN7764A(world, "MY57220088"),
        "rx_switch": SimN7734A(rx_switch, "MY53100377"),  # type: ignore[arg-type]
        "sampling_scope": SimN1000A(world, "MY59200417"),
        "osa": SimAq6370d(world, "91RA12345"),
        "thermal_head": SimAts710(world, "AT710-2231"),  # the module's case follows its head
        # End-face inspection of the DUT's MPO receptacle and the station's MPO jumper.
        "inspection_microscope": SimScpiEndfaceMicroscope(world, EndFaceFixture(world), "EFM0417"),
    }


def els_bench(world: World) -> dict[str, Device]:
    """External-laser-source bench: an LDC-3724C on RS-232 drives the laser the fixture relay
    selects; the relay follows the switch, which puts that laser's fibre on the power meter and,
    through a tap, on the OSA."""
    world.add_els_fixture(ports=12)  # switch common -> 90/10 tap: power meter 1 and the OSA
    world.dut_inserter = world.insert_els
    return {
        "laser_driver": SerialLineDevice(SimLdc3724c(world, "37241187")),
        "optical_switch": SimN7734A(world, "MY53100388"),
        "power_meter": SimN7744C(world, "MY54330101"),
        "osa": SimAq6370d(world, "91RA12399"),
    }


def wafer_bench(world: World) -> dict[str, Device]:
    """PIC wafer bench: a Velox prober with a fibre array over the die, a tunable laser into the
    input fibre, the output fibres on power meter channels 1-2 (its trigger input on the laser's
    step-trigger output), and an SMU on the DC probes (front: photodetector, rear: heater)."""
    station = world.wafer = WaferStation(world.bench_rng("fibre-array"))
    world.dut_inserter = station.load
    laser = SimN7776C(world, "MY57200418")
    meter = SimN7744C(world, "MY54330072")
    smu = SimK2450(world, "04518842")
    station.laser = laser.emission
    station.heater_power_w = smu.heater_power_w
    for channel in OUTPUT_CHANNELS:
        world.ports[f"power_meter:{channel}"] = partial(station.meter_light, channel)
        world.laser_paths[f"power_meter:{channel}"] = partial(station.laser_transmission, channel)
    world.trigger_inputs.append(meter.trigger_input)
    return {
        "prober": SimVelox(world, "VX2310-0457"),
        "tunable_laser": laser,
        "power_meter": meter,
        "smu": smu,
    }


#: bench kind -> builder; each kind has a station config `station/configs/sim-<kind>-bench.toml`
BENCHES: dict[str, BenchBuilder] = {
    "module": module_bench,
    "els": els_bench,
    "wafer": wafer_bench,
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

    def endfaces(self) -> EndFaceFixture:
        """The connectors the inspection microscope's probe can be seated on."""
        device = self.devices.get("inspection_microscope")
        if not isinstance(device, SimScpiEndfaceMicroscope):
            raise KeyError(f"the {self.kind} bench has no inspection microscope")
        return device.fixture

    def clean(self, fibre: int | None = None) -> int:
        """Run the simulated MPO cleaner over the connector under the inspection probe (one
        fibre, or every fibre with None); returns how many particles came off."""
        return self.endfaces().clean(fibre)
