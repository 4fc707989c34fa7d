"""Protocol tests of the Keysight N7764A attenuator driver (scripted) and against its twin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentCommandError, InstrumentReplyError
from drivers.interfaces import Attenuator
from drivers.keysight.n7764a import N7764A
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '+0,"No error"')
FAST = 0.01


def test_set_attenuation_checks_the_range_then_waits_for_the_filter_to_settle() -> None:
    transport = ScriptedTransport(
        scpi(
            ("INP1:ATT? MAX", "+6.000000E+01"),
            ("INP1:ATT 12.500DB", None),
            OK,
            ("*OPC?", "1"),
            ("INP1:ATT?", "+1.250000E+01"),
        )
    )
    attenuator = N7764A(transport)
    attenuator.set_attenuation_db(12.5)
    assert attenuator.attenuation_db() == pytest.approx(12.5)
    assert attenuator.max_attenuation_db == pytest.approx(60.0)  # asked once, remembered
    assert transport.done()
    assert transport.timeout_s == pytest.approx(1.0)  # the longer settling timeout is undone


def test_attenuation_outside_the_range_is_refused_before_sending() -> None:
    attenuator = N7764A(ScriptedTransport(scpi(("INP1:ATT? MAX", "+6.000000E+01"))))
    with pytest.raises(ValueError, match=r"outside 0\.\.60 dB"):
        attenuator.set_attenuation_db(60.5)
    with pytest.raises(ValueError, match="outside"):
        attenuator.set_attenuation_db(-1.0)


def test_safe_state_closes_the_shutter_then_goes_to_maximum_attenuation() -> None:
    transport = ScriptedTransport(
        scpi(("OUTP1:STAT 0", None), OK, ("INP1:ATT MAX", None), OK, ("*OPC?", "1"))
    )
    N7764A(transport).safe_state()
    assert transport.done()


def test_wavelength_is_sent_in_nm_and_read_back_from_metres_on_the_chosen_channel() -> None:
    transport = ScriptedTransport(
        scpi(
            ("INP3:WAV 1310.700NM", None),
            OK,
            ("INP3:WAV?", "+1.310700E-06"),
            ("OUTP3:STAT 1", None),
            OK,
            ("OUTP3:STAT?", "1"),
        )
    )
    attenuator = N7764A(transport, channel=3)
    attenuator.set_wavelength_nm(1310.7)
    assert attenuator.wavelength_nm == pytest.approx(1310.7)
    attenuator.set_output(True)
    assert attenuator.shutter_open
    with pytest.raises(ValueError, match="1260"):
        attenuator.set_wavelength_nm(1700.0)
    with pytest.raises(ValueError, match="channel 5"):
        N7764A(ScriptedTransport([]), channel=5)


def test_unreadable_maximum_is_a_reply_error() -> None:
    attenuator = N7764A(ScriptedTransport(scpi(("INP1:ATT? MAX", "lots"))))
    with pytest.raises(InstrumentReplyError):
        _ = attenuator.max_attenuation_db


# --- against the twin, over the real transport ----------------------------------------------------
@pytest.fixture
def sim() -> Iterator[SimBench]:
    with SimBench.build(time_factor=FAST) as bench:
        yield bench


def test_against_twin_settles_reads_back_and_goes_safe(sim: SimBench) -> None:
    assert sim.world.rx is not None
    filter_state = sim.world.rx.attenuator
    with N7764A.open(sim.resources()["attenuator"]) as attenuator:
        assert isinstance(attenuator, Attenuator)
        identity = attenuator.identify()
        assert (identity.model, identity.serial_number) == ("N7764A", "MY57220088")
        assert attenuator.max_attenuation_db == pytest.approx(60.0)
        assert filter_state.set_db == 60.0 and not filter_state.shutter_open  # left safe
        attenuator.set_wavelength_nm(1310.7)
        attenuator.set_output(True)
        started_s = sim.world.clock.now_s()
        attenuator.set_attenuation_db(12.5)
        # 47.5 dB of travel at 200 dB/s plus 50 ms settling, all waited for by *OPC?
        assert sim.world.clock.now_s() - started_s >= 0.05 + 47.5 / 200
        assert filter_state.filter_db(sim.world.clock.now_s()) == pytest.approx(12.5)
        assert attenuator.attenuation_db() == pytest.approx(12.5)
        assert attenuator.wavelength_nm == pytest.approx(1310.7)
        attenuator.safe_state()
        assert not attenuator.shutter_open
        assert attenuator.attenuation_db() == pytest.approx(60.0)
        assert filter_state.settling_s(sim.world.clock.now_s()) == 0.0


def test_against_twin_bad_values_are_instrument_errors(sim: SimBench) -> None:
    with N7764A.open(sim.resources()["attenuator"]) as attenuator:
        for command, code in (
            ("INP1:ATT 61DB", -222),
            ("INP1:WAV 1700NM", -222),
            ("INP5:ATT 10DB", -114),
            ("INP1:ATT 10PARSECS", -131),
        ):
            with pytest.raises(InstrumentCommandError) as err:
                attenuator.write(command)
            assert err.value.code == code
        attenuator.write("INP2:ATT 7.25DB")  # another channel: its own setting
        assert float(attenuator.query("INP2:ATT?")) == pytest.approx(7.25)
        assert float(attenuator.query("INP1:ATT?")) == pytest.approx(60.0)
