"""Capability interfaces: the typed Protocols sequences program against, one per instrument class.

Sequences and the engine depend on these, never on a model. Units are in the names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from drivers.base import InstrumentIdentity

__all__ = [
    "DataPathState",
    "Instrument",
    "InstrumentIdentity",
    "ModuleHost",
    "ModuleIdentity",
    "ModuleMonitors",
    "ModuleState",
    "OpticalSwitch",
    "PowerMeter",
]


@runtime_checkable
class Instrument(Protocol):
    """What every instrument offers the engine."""

    resource: str

    def identify(self) -> InstrumentIdentity:
        """Manufacturer, model, serial number and firmware, as the instrument reports them."""
        ...

    def safe_state(self) -> None:
        """Outputs off, sources to zero, attenuation to maximum; a no-op for passive instruments."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PowerMeter(Instrument, Protocol):
    """An optical power meter with one or more channels (numbered from 1)."""

    @property
    def channel_count(self) -> int: ...

    def set_wavelength_nm(self, channel: int, wavelength_nm: float) -> None:
        """Wavelength the detector's responsivity correction uses."""
        ...

    def set_averaging_time_s(self, channel: int, averaging_time_s: float) -> None: ...

    def read_power_w(self, channel: int) -> float:
        """Trigger a measurement and return the optical power in watts."""
        ...


@runtime_checkable
class OpticalSwitch(Instrument, Protocol):
    """A 1xN optical switch: the common port is connected to one of `port_count` ports."""

    @property
    def port_count(self) -> int: ...

    def route(self, port: int) -> None:
        """Connect the common port to `port` (1..port_count) and wait until it has settled."""
        ...

    def routed_port(self) -> int: ...


class ModuleState(enum.IntEnum):
    """CMIS module state (lower page byte 3, bits 3-1)."""

    LOW_POWER = 1
    POWER_UP = 2
    READY = 3
    POWER_DOWN = 4
    FAULT = 5


class DataPathState(enum.IntEnum):
    """CMIS data path state per lane (page 11h bytes 128-131)."""

    DEACTIVATED = 1
    INIT = 2
    DEINIT = 3
    ACTIVATED = 4
    TX_TURN_ON = 5
    TX_TURN_OFF = 6
    INITIALIZED = 7


@dataclass(frozen=True, slots=True)
class ModuleIdentity:
    """Identity a CMIS module advertises (lower page and page 00h)."""

    identifier: int
    cmis_revision: str
    vendor_name: str
    part_number: str
    serial_number: str
    vendor_revision: str
    date_code: str
    firmware_version: str


@dataclass(frozen=True, slots=True)
class ModuleMonitors:
    """Digital diagnostic monitors (DDM) of a module, all lanes at once."""

    temperature_c: float
    vcc_v: float
    tx_power_w: tuple[float, ...]
    tx_bias_a: tuple[float, ...]
    rx_power_w: tuple[float, ...]


@runtime_checkable
class ModuleHost(Instrument, Protocol):
    """A host board holding one pluggable module, reaching its CMIS memory map over I2C."""

    @property
    def lane_count(self) -> int: ...

    def read_memory(self, page: int, offset: int, length: int, *, bank: int = 0) -> bytes:
        """Read `length` bytes at `offset` (0-255; 0-127 is the lower page) of `page`."""
        ...

    def write_memory(self, page: int, offset: int, data: bytes, *, bank: int = 0) -> None: ...

    def module_identity(self) -> ModuleIdentity: ...

    def module_state(self) -> ModuleState: ...

    def set_low_power(self, low_power: bool) -> None:
        """Request (True) or release (False) module low-power mode by software."""
        ...

    def wait_module_state(self, state: ModuleState, timeout_s: float | None = None) -> float | None:
        """Wait until the module reaches `state`; return the seconds it took, or None if it did
        not get there in time (or went to ModuleFault): a verdict on the module, not the station.

        Without `timeout_s`, the module's own advertised maximum duration is used.
        """
        ...

    def activate_data_paths(
        self, application: int = 1, timeout_s: float | None = None
    ) -> float | None:
        """Select `application` on every lane, initialise the data paths and wait until all are
        Activated; return the seconds it took, or None if the module rejected the configuration
        or did not activate in time."""
        ...

    def data_path_states(self) -> tuple[DataPathState, ...]: ...

    def set_tx_disable(self, lanes_disabled: tuple[bool, ...]) -> None:
        """Disable (True) or enable (False) each lane's transmitter."""
        ...

    def monitors(self) -> ModuleMonitors: ...
