"""Protocol tests of the Yokogawa AQ6370D driver: scripted, and against its simulated twin."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.errors import InstrumentCommandError, InstrumentReplyError
from drivers.interfaces import OpticalSpectrumAnalyzer
from drivers.yokogawa.aq6370d import AQ6370D
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '0,"No error"')


def _block(values: np.ndarray) -> bytes:
    payload = values.astype("<f8").tobytes()
    return f"#{len(str(len(payload)))}{len(payload)}".encode() + payload + b"\n"


def test_configure_sends_metres_as_nm_and_a_single_sweep_mode() -> None:
    transport = ScriptedTransport(
        scpi(
            (":SENSe:WAVelength:CENTer 1311.0000NM", None),
            OK,
            (":SENSe:WAVelength:SPAN 10.0000NM", None),
            OK,
            (":SENSe:BANDwidth:RESolution 0.020NM", None),
            OK,
            (":SENSe:SWEep:POINts 1001", None),
            OK,
            (":SENSe:SENSe 2", None),
            OK,
            (":INITiate:SMODe 1", None),
            OK,
            (":SENSe:WAVelength:CENTer?", "+1.31100000E-006"),
        )
    )
    osa = AQ6370D(transport)
    osa.configure(1311.0, 10.0, 0.02, 1001)
    assert osa.center_wavelength_nm == pytest.approx(1311.0)
    assert transport.done()


def test_resolution_outside_the_slit_set_is_refused_before_sending() -> None:
    osa = AQ6370D(ScriptedTransport([]))
    with pytest.raises(ValueError, match=r"0\.03 nm"):
        osa.configure(1311.0, 10.0, 0.03, 1001)
    with pytest.raises(ValueError, match="SUPER"):
        osa.configure(1311.0, 10.0, 0.02, 1001, sensitivity="SUPER")


def test_sweep_polls_the_operation_event_then_reads_binary_traces() -> None:
    x = np.linspace(1306e-9, 1316e-9, 5)
    y = np.array([-70.0, -60.0, -3.0, -60.0, -70.0])
    script = scpi(
        (":FORMat:DATA REAL,64", None),
        OK,
        ("*CLS", None),
        (":INITiate", None),
        OK,
        (":STATus:OPERation:EVENt?", "0"),
        (":STATus:OPERation:EVENt?", "1"),
        (":SENSe:BANDwidth:RESolution?", "+2.00000000E-011"),
    )
    script[-1:-1] = [(b":TRACe:X? TRA\n", [_block(x)]), (b":TRACe:Y? TRA\n", [_block(y)])]
    transport = ScriptedTransport(script)
    spectrum = AQ6370D(transport).sweep()
    assert transport.done()
    np.testing.assert_allclose(spectrum.wavelength_nm, x * 1e9)
    np.testing.assert_array_equal(spectrum.power_dbm, y)
    assert spectrum.resolution_nm == pytest.approx(0.02)


def test_smsr_analysis_parses_the_six_values() -> None:
    reply = "+1.31120000E-06,-6.660,+1.31190000E-06,-49.0,+7.00000000E-10,+42.340"
    transport = ScriptedTransport(
        scpi(
            (":CALCulate:CATegory SMSR", None),
            OK,
            (":CALCulate:PARameter:SMSR:MODE SMSR1", None),
            OK,
            (":CALCulate", None),
            OK,
            (":CALCulate:DATA?", reply),
            (":CALCulate:CATegory SMSR", None),
            OK,
            (":CALCulate:PARameter:SMSR:MODE SMSR1", None),
            OK,
            (":CALCulate", None),
            OK,
            (":CALCulate:DATA?", "-6.660"),
        )
    )
    osa = AQ6370D(transport)
    result = osa.smsr_analysis()
    assert result.peak_wavelength_nm == pytest.approx(1311.2)
    assert result.side_mode_wavelength_nm == pytest.approx(1311.9)
    assert result.smsr_db == pytest.approx(42.34)
    with pytest.raises(InstrumentReplyError, match="six SMSR values"):
        osa.smsr_db()


def test_an_analysis_without_a_sweep_is_a_command_error() -> None:
    transport = ScriptedTransport(
        scpi(
            (":CALCulate:MARKer:MAXimum", None),
            ("SYST:ERR?", '-230,"Data corrupt or stale"'),
            OK,
        )
    )
    with pytest.raises(InstrumentCommandError, match="-230"):
        AQ6370D(transport).peak_wavelength_nm()


def test_against_twin_a_dark_sweep_takes_its_time_and_shows_the_noise_floor(
    bench: SimBench,
) -> None:
    with AQ6370D.open(bench.resources()["osa"]) as osa:
        assert isinstance(osa, OpticalSpectrumAnalyzer)
        identity = osa.identify()
        assert (identity.manufacturer, identity.model) == ("YOKOGAWA", "AQ6370D")
        osa.configure(1311.0, 20.0, 0.1, 2001, sensitivity="HIGH1")
        clock = bench.world.clock
        started = clock.now_s()
        osa.write(":INITiate")
        assert osa.query(":STATus:OPERation:EVENt?") == "0"  # still sweeping
        with pytest.raises(InstrumentCommandError, match="-213"):
            osa.write(":INITiate")  # a sweep is running
        with osa.timeout(10.0):
            assert osa.query("*OPC?") == "1"
        spectrum = osa.sweep()
        elapsed = clock.now_s() - started
    # two sweeps of 2001 points at 2 ms each (HIGH1), 20 nm span: at least 8 simulated seconds
    assert elapsed > 8.0
    assert spectrum.wavelength_nm.shape == spectrum.power_dbm.shape == (2001,)
    assert spectrum.wavelength_nm[0] == pytest.approx(1301.0)
    assert spectrum.wavelength_nm[-1] == pytest.approx(1321.0)
    assert -81.0 < float(np.median(spectrum.power_dbm)) < -75.0  # HIGH1 floor, about -78 dBm
    assert spectrum.power_dbm.std() > 0.1  # a noisy floor, not a constant


def test_against_twin_rejects_a_resolution_setting_it_does_not_have(bench: SimBench) -> None:
    with AQ6370D.open(bench.resources()["osa"]) as osa:
        osa.write(":SENSe:BANDwidth:RESolution 0.07NM")  # the nearest slit is taken
        assert osa.resolution_nm == pytest.approx(0.05)
        with pytest.raises(InstrumentCommandError, match="-222"):
            osa.write(":SENSe:WAVelength:CENTer 2000NM")
