"""Protocol tests of the Keithley 2450 SourceMeter driver (scripted) and against its twin."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from drivers.errors import InstrumentCommandError
from drivers.interfaces import SourceMeter
from drivers.keithley.k2450 import K2450
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '0,"No error"')
FAST = 0.01


@pytest.fixture
def wafer_bench() -> Iterator[SimBench]:
    with SimBench.build("wafer", time_factor=FAST) as sim:
        sim.insert("W01", "CPO-PIC-A1")
        yield sim


# --- scripted protocol ------------------------------------------------------------------------
def test_source_voltage_sets_the_limit_before_the_level() -> None:
    transport = ScriptedTransport(
        scpi(
            (":SOUR:FUNC VOLT", None), OK,
            (":SOUR:VOLT:ILIM 0.001", None), OK,
            (":SOUR:VOLT -3", None), OK,
        )
    )  # fmt: skip
    K2450(transport).source_voltage(-3.0, 1e-3)
    assert transport.done()


def test_current_readings_select_the_sense_function_once() -> None:
    transport = ScriptedTransport(
        scpi(
            (':SENS:FUNC "CURR"', None), OK,
            (":SENS:CURR:NPLC?", "+1.000000E+00"),
            (":READ?", "-1.234000E-06"),
            (":READ?", "-1.235000E-06"),
        )
    )  # fmt: skip
    smu = K2450(transport)
    assert smu.measure_current_a() == pytest.approx(-1.234e-6)
    assert smu.measure_current_a() == pytest.approx(-1.235e-6)
    assert transport.done()


def test_sweep_runs_the_linear_staircase_and_reads_source_and_reading_pairs() -> None:
    transport = ScriptedTransport(
        scpi(
            (":SOUR:FUNC VOLT", None), OK,
            (":SOUR:VOLT:ILIM 0.0001", None), OK,
            (':SENS:FUNC "CURR"', None), OK,
            (':TRAC:CLE "defbuffer1"', None), OK,
            (':SOUR:SWE:VOLT:LIN -1, 1, 3, -1, 1, BEST, OFF, OFF, "defbuffer1"', None), OK,
            (":INIT", None), OK,
            (":SENS:CURR:NPLC?", "+1.000000E+00"),
            ("*OPC?", "1"),
            (':TRAC:DATA? 1, 3, "defbuffer1", SOUR, READ', "-1,-2E-9,0,1E-12,1,1E-4"),
        )
    )  # fmt: skip
    voltage, current = K2450(transport).sweep_voltage(-1.0, 1.0, 3, 1e-4)
    np.testing.assert_allclose(voltage, [-1, 0, 1])
    np.testing.assert_allclose(current, [-2e-9, 1e-12, 1e-4])
    assert transport.done()


def test_safe_state_turns_the_output_off_and_the_level_to_zero() -> None:
    transport = ScriptedTransport(
        scpi((":OUTP 0", None), OK, (":SOUR:FUNC VOLT", None), OK, (":SOUR:VOLT 0", None), OK)
    )
    K2450(transport).safe_state()
    assert transport.done()


# --- against the twin over a socket --------------------------------------------------------------
def test_against_twin_open_circuit_until_the_chuck_is_in_contact(wafer_bench: SimBench) -> None:
    with K2450.open(wafer_bench.resources()["smu"], timeout_s=5) as smu:
        assert isinstance(smu, SourceMeter)
        assert smu.identify().model == "MODEL 2450"
        smu.source_voltage(-3.0, 1e-3)
        smu.set_output(True)
        assert abs(smu.measure_current_a()) < 1e-10  # probes in the air
        smu.set_output(False)
        smu.source_current(1e-3, 5.0)
        smu.set_output(True)
        assert smu.measure_voltage_v() == pytest.approx(5.0, abs=0.01)  # at the voltage limit
        assert smu.in_compliance()
        smu.safe_state()
        assert not smu.output


def test_sweep_takes_its_integration_time(wafer_bench: SimBench) -> None:
    clock = wafer_bench.world.clock
    with K2450.open(wafer_bench.resources()["smu"], timeout_s=5) as smu:
        smu.set_nplc(1.0)
        started = clock.now_s()
        voltage, current = smu.sweep_voltage(-2.0, 2.0, 41, 1e-3)
        assert clock.now_s() - started >= 41 * 0.02  # 1 PLC at 50 Hz per point
        np.testing.assert_allclose(voltage, np.linspace(-2, 2, 41))
        assert current.shape == (41,) and np.abs(current).max() < 1e-9  # open circuit


def test_bad_values_and_settings_conflicts_are_errors(wafer_bench: SimBench) -> None:
    with K2450.open(wafer_bench.resources()["smu"], timeout_s=5) as smu:
        with pytest.raises(InstrumentCommandError) as caught:
            smu.write(":SOUR:VOLT 500")
        assert caught.value.code == -222
        smu.set_output(True)
        with pytest.raises(InstrumentCommandError) as caught:
            smu.use_rear_terminals(True)  # not with the output on
        assert caught.value.code == -221
        with pytest.raises(ValueError):
            smu.source_voltage(1.0, 5.0)  # a 5 A limit is beyond the instrument
