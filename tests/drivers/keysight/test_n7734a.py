"""Protocol tests of the Keysight N7734A switch driver, and against its twin."""

from __future__ import annotations

import pytest

from drivers.errors import InstrumentReplyError
from drivers.interfaces import OpticalSwitch
from drivers.keysight.n7734a import N7734A
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi


def test_route_reads_the_port_count_then_routes_and_waits_for_settling() -> None:
    transport = ScriptedTransport(
        scpi(
            ("ROUT1:CHAN1:CONF?", "A,A;1,12"),
            ("ROUT1:CHAN1 A,7", None),
            ("SYST:ERR?", '0,"No error"'),
            ("*OPC?", "1"),
            ("ROUT1:CHAN1?", "A,7"),
        )
    )
    switch = N7734A(transport)
    switch.route(7)
    assert switch.routed_port() == 7
    assert switch.port_count == 12
    assert transport.done()


def test_port_outside_the_switch_is_refused() -> None:
    switch = N7734A(ScriptedTransport(scpi(("ROUT1:CHAN1:CONF?", "A,A;1,8"))))
    with pytest.raises(ValueError, match="port 9"):
        switch.route(9)


def test_malformed_configuration_reply() -> None:
    switch = N7734A(ScriptedTransport(scpi(("ROUT1:CHAN1:CONF?", "1x8"))))
    with pytest.raises(InstrumentReplyError):
        _ = switch.port_count


def test_against_twin(bench: SimBench) -> None:
    with N7734A.open(bench.resources()["optical_switch"]) as switch:
        assert isinstance(switch, OpticalSwitch)
        assert switch.port_count == 12
        for port in (3, 8, 1):
            switch.route(port)
            assert switch.routed_port() == port
