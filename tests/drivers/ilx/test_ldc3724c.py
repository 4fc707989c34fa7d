"""Protocol tests of the ILX LDC-3724C driver (scripted) and of the driver against its twin on a
pty, through the real serial transport."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentStateError,
    InstrumentTimeout,
)
from drivers.ilx.ldc3724c import LDC3724C
from drivers.interfaces import LaserDiodeController
from drivers.keysight.n7734a import N7734A
from drivers.keysight.n7744c import N7744C
from sim_instruments.bench import SimBench
from sim_instruments.faults import Fault
from sim_instruments.ilx_ldc3724c import SerialLineDevice, SimLdc3724c
from tests.scripted import ScriptedTransport, scpi

FAST = 0.02
OK = ("ERR?", "0")


# --- scripted protocol ---------------------------------------------------------------------------
def test_current_is_sent_in_ma_and_checked_against_the_limit_read_once() -> None:
    transport = ScriptedTransport(
        scpi(
            ("LAS:LIM:I?", "80.00"),
            ("LAS:LDI 50.000", None),
            OK,
            ("LAS:OUT?", "0"),  # output off: nothing to wait for
            ("LAS:LDI 75.000", None),
            OK,
        )
    )
    ldc = LDC3724C(transport)
    ldc.set_current_a(0.05)
    ldc.set_current_a(0.075)
    assert transport.done()


def test_current_above_the_limit_is_refused_before_anything_is_sent() -> None:
    transport = ScriptedTransport(scpi(("LAS:LIM:I 100.00", None), OK))
    ldc = LDC3724C(transport)
    ldc.set_current_limit_a(0.1)
    with pytest.raises(ValueError, match=r"outside 0\.\.100 mA"):
        ldc.set_current_a(0.1001)
    with pytest.raises(ValueError, match="outside"):
        ldc.set_current_a(-0.001)
    with pytest.raises(ValueError, match="current_limit_a"):
        ldc.set_current_limit_a(0.6)  # beyond the controller's 500 mA range
    assert transport.done()


def test_output_on_waits_until_the_measured_current_reaches_the_setpoint() -> None:
    transport = ScriptedTransport(
        scpi(
            ("LAS:LIM:I 100.00", None),
            OK,
            ("LAS:LDI 50.000", None),
            OK,
            ("LAS:OUT?", "0"),
            ("LAS:OUT 1", None),
            OK,
            ("LAS:LDI?", "0.00"),  # the measurement is one scan old
            ("LAS:LDI?", "31.72"),
            ("LAS:LDI?", "49.99"),
            ("LAS:LDI 60.000", None),
            OK,
            ("LAS:LDI?", "59.98"),
        )
    )
    ldc = LDC3724C(transport)
    ldc.set_current_limit_a(0.1)
    ldc.set_current_a(0.05)
    ldc.set_output(True)
    ldc.set_current_a(0.06)
    assert transport.done()


def test_a_current_that_never_settles_is_a_typed_error_in_bounded_time() -> None:
    transport = ScriptedTransport(
        scpi(("LAS:LDI 50.000", None), OK, ("LAS:LDI?", "46.00"), ("LAS:LDI?", "46.01"))
    )
    ldc = LDC3724C(transport)
    ldc._limit_a, ldc._output_on = 0.1, True
    ldc.current_settle_timeout_s = 0.0
    ldc.poll_interval_s = 0.0
    with pytest.raises(InstrumentStateError, match=r"did not settle at 50.00 mA"):
        ldc.set_current_a(0.05)


def test_err_list_raises_the_first_code_with_its_text() -> None:
    transport = ScriptedTransport(scpi(("LAS:LDI 50.000", None), ("ERR?", "505,201")))
    ldc = LDC3724C(transport)
    ldc._limit_a = 0.1
    with pytest.raises(InstrumentCommandError, match="above the current limit") as caught:
        ldc.set_current_a(0.05)
    assert caught.value.code == 505
    assert transport.done()


def test_unparseable_err_reply_is_a_reply_error() -> None:
    transport = ScriptedTransport(scpi(("TEC:OUT 1", None), ("ERR?", '0,"No error"')))
    with pytest.raises(InstrumentReplyError, match="ERR"):
        LDC3724C(transport).set_tec_output(True)


def test_readings_are_converted_to_si_units() -> None:
    transport = ScriptedTransport(
        scpi(
            ("LAS:LDV?", "1.734"),
            ("LAS:MDI?", "512.40"),
            ("TEC:T?", "25.012"),
            ("TEC:T 30.00", None),
            OK,
        )
    )
    ldc = LDC3724C(transport)
    assert ldc.laser_voltage_v() == pytest.approx(1.734)
    assert ldc.monitor_current_a() == pytest.approx(512.4e-6)
    assert ldc.tec_temperature_c() == pytest.approx(25.012)
    ldc.set_tec_temperature_c(30)
    assert transport.done()


def test_tec_settling_is_judged_against_the_setpoint_and_times_out() -> None:
    transport = ScriptedTransport(
        scpi(("TEC:SET:T?", "30.00"), ("TEC:T?", "30.04"), ("TEC:SET:T?", "30.00"))
        + scpi(("TEC:T?", "30.35"))
    )
    ldc = LDC3724C(transport)
    ldc.tec_hold_s = 0.0
    assert ldc.wait_tec_settled(0.1, timeout_s=5.0) >= 0.0
    with pytest.raises(InstrumentStateError, match=r"last reading 30.350"):
        ldc.wait_tec_settled(0.1, timeout_s=0.0)
    assert transport.done()


def test_safe_state_turns_output_off_then_current_to_zero_and_leaves_the_tec_alone() -> None:
    transport = ScriptedTransport(
        scpi(("LAS:OUT 0", None), ("ERR?", "300"), ("LAS:LDI 0", None), OK)
    )
    with pytest.raises(InstrumentCommandError) as caught:
        LDC3724C(transport).safe_state()
    assert caught.value.code == 300  # the first failure is reported, after both were tried
    assert transport.done()  # and no TEC command was sent


# --- against the twin, over a pty -------------------------------------------------------------
@pytest.fixture
def els_bench() -> Iterator[SimBench]:
    with SimBench.build("els", time_factor=FAST) as sim:
        sim.insert("ELS0001", "ELS8-DR")
        yield sim


def _twin(bench: SimBench) -> SimLdc3724c:
    device = bench.devices["laser_driver"]
    assert isinstance(device, SerialLineDevice) and isinstance(device.device, SimLdc3724c)
    return device.device


def test_twin_identity_and_interface(els_bench: SimBench) -> None:
    resource = els_bench.resources()["laser_driver"]
    assert resource.startswith("ASRL/dev/")
    with LDC3724C.open(resource) as ldc:
        assert isinstance(ldc, LaserDiodeController)
        identity = ldc.identify()
        assert (identity.manufacturer, identity.model) == ("ILX Lightwave", "LDC-3724C")
        assert identity.serial_number == "37241187"
        # This family has no SYST:ERR?: the twin answers nothing and lists a command error.
        ldc.write("SYST:ERR?", check=False)
        assert ldc.query("ERR?") == "123"
        assert ldc.query("ERR?") == "0"
        # several queries in one message come back on one line
        assert ldc.query("LAS:OUT?;TEC:OUT?") == "0,0"


def test_twin_enforces_the_limit_itself_and_never_exceeds_it(els_bench: SimBench) -> None:
    resources = els_bench.resources()
    with (
        LDC3724C.open(resources["laser_driver"]) as ldc,
        N7734A.open(resources["optical_switch"]) as switch,
    ):
        switch.route(1)
        ldc.set_current_limit_a(0.2)
        ldc.set_current_a(0.15)
        with pytest.raises(InstrumentCommandError) as caught:
            ldc.write("LAS:LDI 250")  # past the driver's own check: the controller refuses
        assert caught.value.code == 505
        assert ldc.current_setpoint_a == pytest.approx(0.15)
        ldc.set_output(True)
        assert ldc.measured_current_a == pytest.approx(0.15, abs=2e-4)
        ldc.set_current_limit_a(0.1)  # lowering the limit clamps the flowing current
        time.sleep(0.05)  # a couple of measurement scans
        assert ldc.measured_current_a == pytest.approx(0.1, abs=2e-4)
        assert ldc.current_setpoint_a == pytest.approx(0.15)
        ldc.safe_state()
        assert not ldc.output_enabled()
        assert ldc.current_setpoint_a == 0.0
        assert ldc.tec_output is False  # never switched on here, and safe_state left it alone


def test_switching_lasers_under_current_trips_the_output(els_bench: SimBench) -> None:
    resources = els_bench.resources()
    with (
        LDC3724C.open(resources["laser_driver"]) as ldc,
        N7734A.open(resources["optical_switch"]) as switch,
        N7744C.open(resources["power_meter"]) as meter,
    ):
        meter.set_averaging_time_s(1, 0.01)
        switch.route(3)
        ldc.set_current_limit_a(0.2)
        ldc.set_current_a(0.1)
        ldc.set_output(True)
        assert meter.read_power_w(1) > 1e-3
        switch.route(4)  # the relay moves to laser 4 with 100 mA flowing
        with pytest.raises(InstrumentCommandError) as caught:
            ldc.set_current_a(0.12)
        assert caught.value.code == 503
        assert not ldc.output_enabled()
        assert abs(meter.read_power_w(1)) < 1e-9


def test_generic_faults_on_the_serial_line_are_recovered(els_bench: SimBench) -> None:
    with LDC3724C.open(els_bench.resources()["laser_driver"], timeout_s=0.3) as ldc:
        els_bench.arm_fault("laser_driver", Fault("no_reply", match="LAS:LDV"))
        ldc.query_retries = 0
        with pytest.raises(InstrumentTimeout):
            ldc.laser_voltage_v()
        assert ldc.tec_output is False  # resynchronised: no stale reply
        els_bench.arm_fault("laser_driver", Fault("garble", match="TEC:T?"))
        with pytest.raises(InstrumentReplyError):
            ldc.tec_temperature_c()
        assert 15.0 < ldc.tec_temperature_c() < 30.0
        els_bench.arm_fault("laser_driver", Fault("error", code=-300, match="TEC:OUT"))
        with pytest.raises(InstrumentCommandError) as caught:
            ldc.set_tec_output(True)
        assert caught.value.code == 300
        ldc.set_current_limit_a(0.3)
        els_bench.arm_fault("laser_driver", Fault("reset", seconds=0.3, match="TEC:OUT"))
        with pytest.raises(InstrumentTimeout):
            ldc.set_tec_output(True)  # lost, and so is the error query while it boots
        time.sleep(0.3)
        assert ldc.current_limit_a == pytest.approx(0.1)  # back to its power-on settings
        assert ldc.tec_output is False


def test_settle_faults_are_detected_within_a_bounded_time(els_bench: SimBench) -> None:
    twin = _twin(els_bench)
    resources = els_bench.resources()
    with (
        LDC3724C.open(resources["laser_driver"]) as ldc,
        N7734A.open(resources["optical_switch"]) as switch,
    ):
        ldc.tec_hold_s = 0.1  # 5 simulated seconds
        ldc.set_tec_temperature_c(25.0)
        ldc.set_tec_output(True)
        twin.fail_to_settle("tec")
        started = time.monotonic()
        with pytest.raises(InstrumentStateError, match="TEC did not settle"):
            ldc.wait_tec_settled(0.1, timeout_s=1.5)  # 75 simulated seconds: five swings
        assert time.monotonic() - started < 5.0

        twin.clear_settle_fault()
        assert ldc.wait_tec_settled(0.1, timeout_s=5.0) < 5.0

        switch.route(2)
        ldc.set_current_limit_a(0.2)
        ldc.set_current_a(0.1)
        twin.fail_to_settle("current")
        ldc.current_settle_timeout_s = 0.5
        started = time.monotonic()
        with pytest.raises(InstrumentStateError, match=r"did not settle at 100\.00 mA"):
            ldc.set_output(True)
        assert time.monotonic() - started < 3.0
        ldc.safe_state()
