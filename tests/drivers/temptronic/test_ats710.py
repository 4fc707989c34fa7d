"""Protocol tests of the Temptronic ATS-710 driver: scripted, and against its simulated twin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentCommandError, InstrumentStateError
from drivers.interfaces import ThermalController
from drivers.temptronic.ats710 import ATS710
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi

OK = ("*ESR?", "0")


def test_set_setpoint_selects_the_hot_setpoint_and_starts_the_flow() -> None:
    transport = ScriptedTransport(
        scpi(("SETN 0", None), OK, ("SETP 70.0", None), OK, ("FLOW 1", None), OK)
    )
    ATS710(transport).set_setpoint_c(70.0)
    assert transport.done()


def test_an_execution_error_bit_after_a_write_is_a_command_error() -> None:
    transport = ScriptedTransport(scpi(("SETN 2", None), OK, ("SETP -20.0", None), ("*ESR?", "16")))
    with pytest.raises(InstrumentCommandError, match="execution error"):
        ATS710(transport).set_setpoint_c(-20.0)


def test_settled_needs_the_soak_flag_and_the_reading_within_tolerance() -> None:
    transport = ScriptedTransport(
        scpi(
            ("EROR?", "0"),
            ("TECR?", "2"),  # not at temperature yet
            ("EROR?", "0"),
            ("TECR?", "1"),
            ("TEMP?", "69.6"),
            ("SETP?", "70.0"),
            ("EROR?", "0"),
            ("TECR?", "1"),
            ("TEMP?", "69.6"),
            ("SETP?", "70.0"),
        )
    )
    head = ATS710(transport)
    assert not head.settled(0.5)
    assert head.settled(0.5)
    assert not head.settled(0.3)
    assert transport.done()


def test_an_invalid_reading_or_a_head_fault_is_a_state_error() -> None:
    transport = ScriptedTransport(scpi(("TEMP?", "999.9"), ("EROR?", "8")))
    head = ATS710(transport)
    with pytest.raises(InstrumentStateError, match="no valid sensor"):
        head.temperature_c()
    with pytest.raises(InstrumentStateError, match="0x0008"):
        head.settled(1.0)


def test_safe_state_goes_back_to_ambient_and_stops_the_air() -> None:
    transport = ScriptedTransport(
        scpi(("SETN 1", None), OK, ("SETP 25.0", None), OK, ("FLOW 0", None), OK)
    )
    ATS710(transport).safe_state()
    assert transport.done()


@pytest.fixture
def fast_bench() -> Iterator[SimBench]:
    # the head settles over minutes of simulated time: run it 500 times faster than real
    with SimBench.build(time_factor=0.002) as sim:
        sim.insert("SIM0001", "800G-DR8")
        yield sim


def test_against_twin_the_head_settles_after_its_soak_time(fast_bench: SimBench) -> None:
    clock = fast_bench.world.clock
    with ATS710.open(fast_bench.resources()["thermal_head"]) as head:
        assert isinstance(head, ThermalController)
        identity = head.identify()
        assert (identity.manufacturer, identity.model) == ("Temptronic", "ATS-710")
        head.configure(window_c=1.0, soak_time_s=30)
        assert abs(head.temperature_c() - 25.0) < 0.5
        head.set_setpoint_c(70.0)
        assert head.setpoint_c == 70.0 and head.flow_on and head.dut_control
        started = clock.now_s()
        # the case entered the window after the last reading that saw it outside (by more than
        # five times the 0.05 C sensor noise), so a head that soaks 30 s cannot report settled
        # sooner than 30 s after that reading was asked for
        outside_at = started
        while not head.settled(1.0):
            asked_at = clock.now_s()
            if abs(head.temperature_c() - 70.0) > 1.25:
                outside_at = asked_at
            assert clock.now_s() - started < 900.0, "the head never settled"
            clock.sleep(2.0)
        assert outside_at > started  # the ramp was seen, so the bound below means something
        assert clock.now_s() - outside_at >= 30.0  # it soaked first
        assert abs(head.temperature_c() - 70.0) < 1.0
        head.safe_state()
        assert head.setpoint_c == 25.0 and not head.flow_on
        with pytest.raises(InstrumentCommandError, match="execution error"):
            head.write("SETP 300")  # beyond the upper air limit


def test_against_twin_without_flow_the_case_drifts_back_to_ambient(fast_bench: SimBench) -> None:
    clock = fast_bench.world.clock
    with ATS710.open(fast_bench.resources()["thermal_head"]) as head:
        head.configure()
        head.set_setpoint_c(0.0)
        clock.sleep(400.0)
        cold = head.temperature_c()
        head.flow_on = False
        clock.sleep(120.0)
        warmer = head.temperature_c()
    assert cold < 2.0
    assert cold + 5.0 < warmer < 25.0  # slow drift, not a jump
