"""Every instrument of a real station answers, is the one its config names, goes to its safe
state, and reads plausibly. Only reads and safe settings: nothing here lights a laser, sources a
voltage or moves a prober."""

from __future__ import annotations

import math

import pytest

from drivers.interfaces import (
    Attenuator,
    Bert,
    InspectionMicroscope,
    Instrument,
    ModuleHost,
    OpticalSwitch,
    PowerMeter,
    ThermalController,
    TunableLaser,
    WaferProber,
)
from station.config import StationConfig

pytestmark = pytest.mark.hardware


def test_identity_matches_the_config(
    instrument: Instrument, station_config: StationConfig, role: str
) -> None:
    identity = instrument.identify()
    assert identity.serial_number == station_config.instruments[role].serial_number
    assert identity.manufacturer and identity.model and identity.firmware


def test_safe_state_and_plausible_readings(instrument: Instrument) -> None:
    instrument.safe_state()
    if isinstance(instrument, TunableLaser):
        assert not instrument.output_enabled()
    if isinstance(instrument, PowerMeter):
        assert instrument.channel_count >= 1
        dark_w = instrument.read_power_w(1)
        assert math.isfinite(dark_w) and dark_w < 0.1  # no source on the input after safe state
    if isinstance(instrument, OpticalSwitch):
        assert 1 <= instrument.routed_port() <= instrument.port_count
    if isinstance(instrument, Attenuator):
        assert 0.0 <= instrument.attenuation_db() <= instrument.max_attenuation_db
    if isinstance(instrument, ThermalController):
        assert -90.0 < instrument.temperature_c() < 250.0
    if isinstance(instrument, Bert):
        low, high = instrument.baud_range_gbd
        assert 0.0 < low < high
    if isinstance(instrument, WaferProber):
        assert all(pitch > 0.0 for pitch in instrument.die_pitch_um())
    if isinstance(instrument, InspectionMicroscope):
        assert instrument.fibre_count >= 1
    if isinstance(instrument, ModuleHost):
        assert instrument.lane_count >= 1
