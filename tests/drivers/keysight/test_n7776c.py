"""Protocol tests of the Keysight N7776C tunable laser driver (scripted) and against its twin."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.errors import InstrumentCommandError, InstrumentStateError, InstrumentTimeout
from drivers.interfaces import TunableLaser
from drivers.keysight.n7776c import N7776C
from sim_instruments.bench import SimBench
from sim_instruments.keysight_n7776c import SimN7776C
from tests.scripted import TIMEOUT, ScriptedTransport, scpi

OK = ("SYST:ERR?", '+0,"No error"')
FAST = 0.01


@pytest.fixture
def wafer_bench() -> Iterator[SimBench]:
    with SimBench.build("wafer", time_factor=FAST) as sim:
        sim.insert("W01", "CPO-PIC-A1")
        yield sim


# --- scripted protocol ------------------------------------------------------------------------
def test_set_wavelength_is_sent_in_nm_and_waits_for_operation_complete() -> None:
    transport = ScriptedTransport(
        scpi(("SOUR0:WAV 1310.5000NM", None), OK, ("*OPC?", "1"), ("SOUR0:WAV?", "+1.3105E-06"))
    )
    laser = N7776C(transport)
    laser.set_wavelength_nm(1310.5)
    assert laser.wavelength_nm() == pytest.approx(1310.5)
    assert transport.done()


def test_a_laser_that_never_settles_times_out_once_without_retrying() -> None:
    transport = ScriptedTransport(scpi(("SOUR0:WAV 1300.0000NM", None), OK, ("*OPC?", TIMEOUT)))
    with pytest.raises(InstrumentTimeout):
        N7776C(transport).set_wavelength_nm(1300)
    assert transport.resyncs == 1 and transport.done()


def test_configure_sweep_sets_continuous_lambda_logging_with_step_triggers() -> None:
    transport = ScriptedTransport(
        scpi(
            ("SOUR0:WAV:SWE:MODE CONT", None), OK,
            ("SOUR0:WAV:SWE:CYCL 1", None), OK,
            ("SOUR0:WAV:SWE:STAR 1290.0000NM", None), OK,
            ("SOUR0:WAV:SWE:STOP 1330.0000NM", None), OK,
            ("SOUR0:WAV:SWE:STEP 0.0050NM", None), OK,
            ("SOUR0:WAV:SWE:SPE 20NM/S", None), OK,
            ("TRIG0:OUTP STF", None), OK,
            ("SOUR0:WAV:SWE:LLOG 1", None), OK,
            ("SOUR0:WAV:SWE:CHEC?", "0,OK"),
        )
    )  # fmt: skip
    assert N7776C(transport).configure_sweep(1290, 1330, 0.005, 20) == 8001
    assert transport.done()


def test_inconsistent_sweep_settings_are_a_state_error() -> None:
    transport = ScriptedTransport(scpi(("SOUR0:WAV:SWE:CHEC?", "369,Sweep time too small")))
    with pytest.raises(InstrumentStateError, match="369"):
        N7776C(transport).check_sweep()


def test_lambda_log_is_read_as_a_float64_block_in_metres() -> None:
    metres = np.array([1.31e-6, 1.31001e-6, 1.31002e-6], dtype="<f8").tobytes()
    transport = ScriptedTransport(
        [
            *scpi(("SOUR0:READ:POIN? LLOG", "3")),
            (b"SOUR0:READ:DATA? LLOG\n", [b"#224" + metres + b"\n"]),
        ]
    )
    logged = N7776C(transport).logged_wavelengths_nm()
    np.testing.assert_allclose(logged, [1310.0, 1310.01, 1310.02])
    assert transport.done()


def test_out_of_range_wavelength_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="1500"):
        N7776C(ScriptedTransport([])).set_wavelength_nm(1500)


# --- against the twin over a socket --------------------------------------------------------------
def test_against_twin_tunes_and_settles(wafer_bench: SimBench) -> None:
    twin = wafer_bench.devices["tunable_laser"]
    assert isinstance(twin, SimN7776C)
    clock = wafer_bench.world.clock
    with N7776C.open(wafer_bench.resources()["tunable_laser"], timeout_s=5) as laser:
        assert isinstance(laser, TunableLaser)
        assert laser.identify().model == "N7776C"
        laser.set_power_dbm(3.0)
        laser.set_output(True)
        assert laser.output_enabled()
        started = clock.now_s()
        laser.set_wavelength_nm(1280.0)
        assert clock.now_s() - started >= 30.0 / 50.0  # 30 nm at the slew rate, simulated
        emission = twin.emission()
        assert emission is not None
        assert emission.wavelength_nm == pytest.approx(1280.0, abs=0.01)
        assert 10 * np.log10(emission.power_w / 1e-3) == pytest.approx(3.0)
        laser.safe_state()
        assert not laser.output_enabled() and twin.emission() is None


def test_sweep_takes_span_over_speed_and_logs_each_trigger(wafer_bench: SimBench) -> None:
    clock = wafer_bench.world.clock
    with N7776C.open(wafer_bench.resources()["tunable_laser"], timeout_s=5) as laser:
        points = laser.configure_sweep(1300.0, 1320.0, 0.01, 10.0)
        assert points == 2001
        started = clock.now_s()
        laser.start_sweep()
        assert not laser.sweep_complete()
        assert laser.sweep_flag % 2 == 1  # odd while a sweep is under way
        laser.wait_sweep(timeout_s=10)
        assert clock.now_s() - started >= 20.0 / 10.0
        assert laser.sweep_flag % 2 == 0
        logged = laser.logged_wavelengths_nm()
    nominal = 1300.0 + 0.01 * np.arange(points)
    assert logged.shape == (points,)
    assert np.all(np.diff(logged) > 0)
    error = logged - nominal
    assert np.abs(error).max() < 0.008  # a few pm of ramp error, and not zero
    assert error.std() > 1e-5


def test_sweep_settings_the_laser_cannot_run_are_refused(wafer_bench: SimBench) -> None:
    with N7776C.open(wafer_bench.resources()["tunable_laser"], timeout_s=5) as laser:
        with pytest.raises(InstrumentStateError):
            laser.configure_sweep(1300.0, 1300.5, 0.0001, 200.0)  # 2 MHz of triggers
        with pytest.raises(InstrumentCommandError) as caught:
            laser.write("SOUR0:WAV 1500NM")
        assert caught.value.code == -222
        with pytest.raises(InstrumentCommandError) as caught:
            laser.write("SOUR0:WAV:SWE:WOBBLE 1")
        assert caught.value.code == -113


def test_laser_that_fails_to_settle_times_out_in_bounded_time(wafer_bench: SimBench) -> None:
    twin = wafer_bench.devices["tunable_laser"]
    assert isinstance(twin, SimN7776C)
    with N7776C.open(wafer_bench.resources()["tunable_laser"], timeout_s=2) as laser:
        laser.settle_timeout_s = 0.5
        twin.fail_to_settle()
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout):
            laser.set_wavelength_nm(1295.0)
        assert time.monotonic() - started < 3.0
        assert laser.wavelength_nm() == pytest.approx(1295.0)  # next query answers correctly
        emission = twin.emission()
        assert emission is None or abs(emission.wavelength_nm - 1295.0) > 0.02
        laser.configure_sweep(1300.0, 1301.0, 0.01, 10.0)
        laser.start_sweep()
        with pytest.raises(InstrumentTimeout):
            laser.wait_sweep(timeout_s=0.5)  # the ramp never starts
        assert laser.sweep_complete()  # stopped by the driver
        twin.fail_to_settle(False)
        laser.set_wavelength_nm(1296.0)  # recovered
