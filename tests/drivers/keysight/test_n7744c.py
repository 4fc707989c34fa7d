"""Protocol tests of the Keysight N7744C driver (scripted) and against its simulated twin."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.interfaces import PowerMeter
from drivers.keysight.n7744c import N7744C
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '+0,"No error"')


def test_read_power_sets_watts_once_and_waits_for_the_averaging_time() -> None:
    transport = ScriptedTransport(
        scpi(
            ("SENS2:POW:UNIT 1", None),
            OK,
            ("SENS2:POW:ATIM?", "+1.000000E-01"),
            ("READ2:POW?", "+1.234000E-03"),
            ("SENS2:POW:ATIM?", "+1.000000E-01"),
            ("READ2:POW?", "+1.235000E-03"),
        )
    )
    meter = N7744C(transport)
    assert meter.read_power_w(2) == pytest.approx(1.234e-3)
    assert meter.read_power_w(2) == pytest.approx(1.235e-3)
    assert transport.done()


def test_wavelength_is_sent_in_nm_and_read_back_from_metres() -> None:
    transport = ScriptedTransport(
        scpi(("SENS1:POW:WAV 1310.0000NM", None), OK, ("SENS1:POW:WAV?", "+1.310000E-06"))
    )
    meter = N7744C(transport)
    meter.set_wavelength_nm(1, 1310)
    assert meter.channel(1).wavelength_nm == pytest.approx(1310.0)


def test_channel_out_of_range_is_refused_before_sending() -> None:
    meter = N7744C(ScriptedTransport([]))
    with pytest.raises(ValueError, match="channel 5"):
        meter.read_power_w(5)


def test_against_twin_implements_power_meter_and_sees_light(bench: SimBench) -> None:
    with N7744C.open(bench.resources()["power_meter"]) as meter:
        assert isinstance(meter, PowerMeter)
        identity = meter.identify()
        assert (identity.manufacturer, identity.model) == ("Keysight Technologies", "N7744C")
        meter.set_wavelength_nm(1, 1311)
        meter.set_averaging_time_s(1, 0.01)
        assert meter.channel(1).averaging_time_s == pytest.approx(0.01)
        dark = meter.read_power_w(1)  # the module is still in low power: no light
        assert abs(dark) < 1e-9


def test_logging_returns_a_float32_block_of_the_requested_length(bench: SimBench) -> None:
    with N7744C.open(bench.resources()["power_meter"], timeout_s=5) as meter:
        samples = meter.log_power_w(1, 20_000, 1e-4)
    assert samples.dtype == np.float32 and samples.shape == (20_000,)
    assert np.abs(samples).max() < 1e-9  # dark, noise only
    assert samples.std() > 0  # real noise, not a constant
