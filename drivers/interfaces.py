"""Capability interfaces: the typed Protocols sequences program against, one per instrument class.

Sequences and the engine depend on these, never on a model. Units are in the names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from drivers.base import InstrumentIdentity
from drivers.errors import InstrumentError  # the root of every error an instrument raises

__all__ = [
    "Attenuator",
    "Bert",
    "DataPathState",
    "DiePosition",
    "EndFaceImage",
    "ErrorCount",
    "EyeReadouts",
    "InspectionMicroscope",
    "Instrument",
    "InstrumentError",
    "InstrumentIdentity",
    "LaserDiodeController",
    "ModuleHost",
    "ModuleIdentity",
    "ModuleMonitors",
    "ModuleState",
    "OpticalSpectrumAnalyzer",
    "OpticalSwitch",
    "PowerMeter",
    "SamplingScope",
    "SourceMeter",
    "Spectrum",
    "ThermalController",
    "TunableLaser",
    "WaferProber",
    "Waveform",
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

    def start_logging(
        self, channel: int, points: int, averaging_time_s: float, *, triggered: bool = False
    ) -> None:
        """Log `points` samples of `averaging_time_s` each; with `triggered`, one sample per
        input trigger (a tunable laser's step trigger), so samples line up with its sweep."""
        ...

    def logging_complete(self, channel: int) -> bool: ...

    def fetch_logged_power_w(self, channel: int) -> np.ndarray:
        """The logged samples in W, shape (points,)."""
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


# --- light sources --------------------------------------------------------------------------------
@runtime_checkable
class TunableLaser(Instrument, Protocol):
    """A tunable laser source with swept mode, wavelength logging and a step trigger output."""

    def set_wavelength_nm(self, wavelength_nm: float) -> None: ...

    def wavelength_nm(self) -> float: ...

    def set_power_dbm(self, power_dbm: float) -> None: ...

    def set_output(self, enabled: bool) -> None: ...

    def output_enabled(self) -> bool: ...

    def configure_sweep(
        self, start_nm: float, stop_nm: float, step_nm: float, speed_nm_per_s: float
    ) -> int:
        """Continuous sweep with wavelength logging and one output trigger per step; returns
        the number of points it will log."""
        ...

    def start_sweep(self) -> None: ...

    def sweep_complete(self) -> bool: ...

    def logged_wavelengths_nm(self) -> np.ndarray:
        """The wavelength of every trigger of the last sweep, shape (points,)."""
        ...


@runtime_checkable
class SourceMeter(Instrument, Protocol):
    """A source-measure unit: source voltage or current, measure both, under a compliance."""

    def source_voltage(self, voltage_v: float, current_compliance_a: float) -> None: ...

    def source_current(self, current_a: float, voltage_compliance_v: float) -> None: ...

    def set_output(self, enabled: bool) -> None: ...

    def measure_current_a(self) -> float: ...

    def measure_voltage_v(self) -> float: ...

    def sweep_voltage(
        self, start_v: float, stop_v: float, points: int, current_compliance_a: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Staircase voltage sweep; returns (voltage_v, current_a), each shape (points,)."""
        ...

    def use_rear_terminals(self, rear: bool) -> None:
        """Source and measure on the rear (True) or front (False) terminals; output off first."""
        ...


@runtime_checkable
class LaserDiodeController(Instrument, Protocol):
    """A laser diode current source with a TEC controller and a photodiode monitor input."""

    def set_current_limit_a(self, limit_a: float) -> None: ...

    def set_current_a(self, current_a: float) -> None: ...

    def set_output(self, enabled: bool) -> None: ...

    def laser_voltage_v(self) -> float:
        """Forward voltage across the laser (4-wire sense where the controller has it)."""
        ...

    def monitor_current_a(self) -> float:
        """Back-facet photodiode current."""
        ...

    def set_tec_temperature_c(self, temperature_c: float) -> None: ...

    def tec_temperature_c(self) -> float: ...

    def set_tec_output(self, enabled: bool) -> None: ...

    def wait_tec_settled(self, tolerance_c: float = 0.1, timeout_s: float = 60.0) -> float:
        """Wait until the TEC holds within +-`tolerance_c` of its setpoint; return the seconds
        it took. Raises InstrumentStateError if it has not settled within `timeout_s`."""
        ...


# --- signal integrity -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ErrorCount:
    """Result of one gated error count on one lane."""

    lane: int
    gate_time_s: float
    bits: int
    errors: int
    symbols: int  # 0 for NRZ
    level_symbol_errors: tuple[int, ...]  # PAM4: errored symbols by transmitted level 0..3

    @property
    def ber(self) -> float:
        return self.errors / self.bits if self.bits else float("nan")


@runtime_checkable
class Bert(Instrument, Protocol):
    """A bit error ratio tester: pattern generator and per-lane error detectors."""

    @property
    def lane_count(self) -> int: ...

    @property
    def baud_range_gbd(self) -> tuple[float, float]:
        """Lowest and highest symbol rate (GBd) the generator and detectors run at."""
        ...

    def configure(self, modulation: str, pattern: str, baud_rate_gbd: float) -> None:
        """modulation "NRZ" or "PAM4"; pattern e.g. "PRBS13Q", "PRBS31Q", "PRBS31"."""
        ...

    def set_output(self, enabled: bool) -> None: ...

    def count_errors(self, lanes: tuple[int, ...], gate_time_s: float) -> tuple[ErrorCount, ...]:
        """Start a gate of `gate_time_s` on `lanes` (1-based), wait for it, return the counts."""
        ...


@dataclass(frozen=True, slots=True)
class Waveform:
    """An equivalent-time eye capture: `samples_w` of optical power, `samples_per_ui` per unit
    interval, starting at an arbitrary phase of the UI."""

    samples_w: np.ndarray  # shape (n,), float32 or float64, W
    samples_per_ui: int
    baud_rate_hz: float
    pattern: str

    @property
    def time_step_s(self) -> float:
        return 1.0 / (self.baud_rate_hz * self.samples_per_ui)


@dataclass(frozen=True, slots=True)
class EyeReadouts:
    """The scope's own eye measurements (its firmware's algorithms and settings)."""

    average_power_w: float
    oma_outer_w: float
    er_outer_db: float
    tdecq_db: float


@runtime_checkable
class SamplingScope(Instrument, Protocol):
    """An equivalent-time sampling oscilloscope with an optical input (a DCA)."""

    def configure_eye(
        self, channel: int, baud_rate_gbd: float, pattern: str, wavelength_nm: float
    ) -> None: ...

    def acquire_waveform(self, channel: int, samples: int) -> Waveform: ...

    def eye_readouts(self, channel: int) -> EyeReadouts: ...


# --- optical path ---------------------------------------------------------------------------------
@runtime_checkable
class Attenuator(Instrument, Protocol):
    """A variable optical attenuator. Safe state: maximum attenuation, shutter closed."""

    @property
    def max_attenuation_db(self) -> float: ...

    def set_wavelength_nm(self, wavelength_nm: float) -> None: ...

    def set_attenuation_db(self, attenuation_db: float) -> None:
        """Set and wait until settled."""
        ...

    def attenuation_db(self) -> float: ...

    def set_output(self, enabled: bool) -> None:
        """Open (True) or close (False) the shutter."""
        ...


@dataclass(frozen=True, slots=True)
class Spectrum:
    wavelength_nm: np.ndarray  # shape (points,)
    power_dbm: np.ndarray  # shape (points,)
    resolution_nm: float


@runtime_checkable
class OpticalSpectrumAnalyzer(Instrument, Protocol):
    def configure(
        self, center_nm: float, span_nm: float, resolution_nm: float, points: int
    ) -> None: ...

    def sweep(self) -> Spectrum:
        """Run a single sweep and return its trace."""
        ...

    def peak_wavelength_nm(self) -> float:
        """The analyser's own peak search on the last sweep."""
        ...

    def smsr_db(self) -> float:
        """The analyser's own side-mode suppression ratio on the last sweep."""
        ...


# --- wafer and temperature ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DiePosition:
    column: int  # die x index on the wafer map
    row: int  # die y index on the wafer map
    index: int  # position in the prober's test order, from 0


@runtime_checkable
class WaferProber(Instrument, Protocol):
    """A wafer prober with a die map and an optical fibre positioner over the die."""

    def step_first_die(self) -> DiePosition: ...

    def step_next_die(self) -> DiePosition | None:
        """Step to the next die of the map; None at the end of the wafer."""
        ...

    def step_to_die(self, column: int, row: int) -> DiePosition: ...

    def die_pitch_um(self) -> tuple[float, float]:
        """The die pitch (index) the prober's map steps by, x and y in um."""
        ...

    def contact(self) -> None: ...

    def separate(self) -> None: ...

    def move_fibre_um(self, x_um: float, y_um: float) -> None:
        """Move the fibre (array) to (x, y) relative to the device's nominal coupler position."""
        ...

    def fibre_position_um(self) -> tuple[float, float]: ...


@runtime_checkable
class ThermalController(Instrument, Protocol):
    """A temperature forcing head or chuck. Safe state: back to ambient, flow stopped."""

    def set_setpoint_c(self, setpoint_c: float) -> None: ...

    def setpoint_c(self) -> float: ...

    def temperature_c(self) -> float:
        """Temperature at the controlled point (DUT thermocouple or air)."""
        ...

    def settled(self, tolerance_c: float) -> bool:
        """Within `tolerance_c` of the setpoint and the controller's soak time has passed."""
        ...

    def configure(self, *, window_c: float = 1.0, soak_time_s: int = 30) -> None:
        """Regulate the DUT sensor (e.g. a module case thermocouple) and count it settled once
        it has stayed within `window_c` of the setpoint for `soak_time_s`."""
        ...


# --- connector inspection -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EndFaceImage:
    """One grey-scale image of one fibre's end face (IEC 61300-3-35 inspection)."""

    image: np.ndarray  # shape (rows, cols), uint8 or uint16 grey levels, brighter = more light
    um_per_pixel: float  # calibrated object-plane pixel pitch, the same along rows and columns
    fibre: int  # fibre position in the connector, from 1


@runtime_checkable
class InspectionMicroscope(Instrument, Protocol):
    """A fibre end-face inspection microscope whose tip, seated on a (multi-fibre) connector,
    brings each of its fibres into view in turn."""

    @property
    def fibre_count(self) -> int:
        """Fibre positions the fitted tip reaches (16 for an MPO-16 tip, 1 for a single fibre)."""
        ...

    def select_fibre(self, fibre: int) -> None:
        """Bring fibre `fibre` (1..fibre_count) into view and wait until it is there."""
        ...

    def auto_focus(self) -> None:
        """Focus on the fibre in view and wait until done; a fixed-focus model does nothing."""
        ...

    def capture(self) -> EndFaceImage:
        """Acquire one image of the fibre in view."""
        ...
