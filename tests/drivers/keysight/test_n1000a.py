"""Protocol tests of the Keysight N1000A (FlexDCA) driver: scripted, and against its simulated twin
over the real transport, including a power cycle in mid-run."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.devantech.usb_iss import UsbIssCmisHost
from drivers.errors import InstrumentConnectionError, InstrumentReplyError, InstrumentTimeout
from drivers.interfaces import ModuleState, SamplingScope
from drivers.keysight.n1000a import N1000A
from drivers.keysight.n7734a import N7734A
from sim_instruments.bench import SimBench
from sim_instruments.faults import Fault
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '0,"No error"')


def _writes(*commands: str) -> list[tuple[str, str | None]]:
    """Each command followed by its error-queue check."""
    pairs: list[tuple[str, str | None]] = []
    for command in commands:
        pairs += [(command, None), OK]
    return pairs


CONFIGURE = _writes(
    ":CHANnel1A:DISPlay 1",
    ":CHANnel1A:WAVelength WAVelength2",
    ":TRIGger:BRATe:AUTodetect 0",
    ":TRIGger:PLENgth:AUTodetect 0",
    ":TIMebase:BRATe 5.3125000000e+10",
    ":TRIGger:PLENgth 8191",
    ":TRIGger:PLOCk 1",
    ":SYSTem:MODE EYE",
    ":MEASure:EYE:APOWer:UNITs WATT",
    ":MEASure:EYE:OOMA:UNITs WATT",
    ":MEASure:EYE:OER:UNITs DECibel",
)


def _acquire(patterns: int) -> list[tuple[str, str | None]]:
    return [
        *_writes(
            f":LTESt:ACQuire:CTYPe:PATTerns {patterns}",
            ":LTESt:ACQuire:STATe 1",
            ":ACQuire:CDISplay",
            ":ACQuire:RUN",
        ),
        ("*OPC?", "1"),
    ]


def test_configure_eye_locks_to_the_pattern_at_the_nearest_calibrated_wavelength() -> None:
    transport = ScriptedTransport(scpi(*CONFIGURE))
    N1000A(transport).configure_eye(1, 53.125, "PRBS13Q", 1311.2)
    assert transport.done()


def test_acquire_waveform_reads_a_whole_pattern_as_little_endian_float32() -> None:
    samples = (np.arange(8191 * 13) % 7).astype("<f4") * 1e-4
    payload = samples.tobytes()
    header = f"#{len(str(len(payload)))}{len(payload)}".encode()
    script = scpi(
        *CONFIGURE,
        *_writes(
            ":SYSTem:MODE OSC",
            ":ACQuire:EPATtern 1",
            ":ACQuire:SPBit:MODe MANual",
            ":ACQuire:SPBit 13",
        ),
        *_acquire(1),
        *_writes(":WAVeform:SOURce CHAN1A", ":SYSTem:BORDer LEND"),
    )
    script.append((b":WAVeform:XYFormat:FLOat:YDATa?\n", [header + payload + b"\n"]))
    transport = ScriptedTransport(script)
    scope = N1000A(transport)
    scope.configure_eye(1, 53.125, "PRBS13Q", 1311.2)
    waveform = scope.acquire_waveform(1, 100_000)  # 100000 / 8191 -> 13 samples per UI
    assert transport.done()
    assert waveform.samples_per_ui == 13 and waveform.pattern == "PRBS13Q"
    assert waveform.baud_rate_hz == 53.125e9
    np.testing.assert_array_equal(waveform.samples_w, samples)


def test_a_short_waveform_is_a_reply_error() -> None:
    payload = np.zeros(100, "<f4").tobytes()
    script = scpi(
        *CONFIGURE,
        *_writes(
            ":SYSTem:MODE OSC",
            ":ACQuire:EPATtern 1",
            ":ACQuire:SPBit:MODe MANual",
            ":ACQuire:SPBit 4",
        ),
        *_acquire(1),
        *_writes(":WAVeform:SOURce CHAN1A", ":SYSTem:BORDer LEND"),
    )
    script.append((b":WAVeform:XYFormat:FLOat:YDATa?\n", [b"#3400" + payload + b"\n"]))
    scope = N1000A(ScriptedTransport(script))
    scope.configure_eye(1, 53.125, "PRBS13Q", 1311.2)
    with pytest.raises(InstrumentReplyError, match="32764 samples"):
        scope.acquire_waveform(1, 1000)


def test_eye_readouts_turn_invalid_measurements_into_nan() -> None:
    measurements = []
    for name, status, value in (
        ("APOWer", "CORR", "+5.000000E-04"),
        ("OOMA", "CORR", "+6.000000E-04"),
        ("OER", "QUES", "+9.910000E+37"),
        ("TDEQ", "CORR", "+1.500000E+00"),
    ):
        measurements += _writes(f":MEASure:EYE:{name}:SOURce CHAN1A", f":MEASure:EYE:{name}")
        measurements += [(f":MEASure:EYE:{name}:STATus?", status), (f":MEASure:EYE:{name}?", value)]
    transport = ScriptedTransport(
        scpi(*CONFIGURE, *_writes(":SYSTem:MODE EYE"), *_acquire(4), *measurements)
    )
    scope = N1000A(transport)
    scope.configure_eye(1, 53.125, "PRBS13Q", 1311.2)
    eye = scope.eye_readouts(1)
    assert transport.done()
    assert (eye.average_power_w, eye.oma_outer_w, eye.tdecq_db) == (5e-4, 6e-4, 1.5)
    assert math.isnan(eye.er_outer_db)


def test_bad_arguments_are_refused_before_sending() -> None:
    scope = N1000A(ScriptedTransport([]))
    with pytest.raises(ValueError, match="channel 5"):
        scope.configure_eye(5, 53.125, "PRBS13Q", 1310)
    with pytest.raises(ValueError, match="PRBS31Q"):
        scope.configure_eye(1, 53.125, "PRBS31Q", 1310)
    with pytest.raises(ValueError, match="configure_eye"):
        scope.acquire_waveform(1, 1000)


@pytest.fixture
def warm_bench() -> Iterator[SimBench]:
    """A bench whose module has been on long enough for its self-heating to settle, so the lane
    does not drift between the scope's acquisition and the truth it is compared with."""
    with SimBench.build(time_factor=0.005) as sim:
        sim.insert("SIM0001", "800G-DR8")
        _light_up(sim, 2)
        sim.world.clock.sleep(100.0)
        yield sim


def _light_up(bench: SimBench, lane: int) -> None:
    resources = bench.resources()
    with (
        UsbIssCmisHost.open(resources["module_host"]) as host,
        N7734A.open(resources["optical_switch"]) as switch,
    ):
        host.set_low_power(False)
        assert host.wait_module_state(ModuleState.READY) is not None
        assert host.activate_data_paths(1) is not None
        switch.route(lane)


def test_against_twin_waveform_and_readouts_come_from_the_routed_lane(
    warm_bench: SimBench,
) -> None:
    bench = warm_bench
    with N1000A.open(bench.resources()["sampling_scope"]) as scope:
        assert isinstance(scope, SamplingScope)
        identity = scope.identify()
        assert (identity.manufacturer, identity.model) == ("Keysight Technologies", "N1000A")
        assert identity.serial_number == "MY59200417"
        scope.configure_eye(1, 53.125, "PRBS13Q", 1311)
        waveform = scope.acquire_waveform(1, 8191 * 8)
        eye = scope.eye_readouts(1)
    assert waveform.samples_w.dtype == np.float32
    assert waveform.samples_w.shape == (8191 * 8,) and waveform.samples_per_ui == 8
    signal = bench.world.signals["scope:1"]()
    assert signal is not None
    # the sampler's and the power monitor's gains are calibrated to +-0.1 dB
    assert float(waveform.samples_w.mean()) == pytest.approx(signal.average_power_w, rel=0.03)
    assert eye.average_power_w == pytest.approx(signal.average_power_w, rel=0.03)
    assert eye.oma_outer_w == pytest.approx(signal.oma_outer_w, rel=0.04)
    assert 0.0 < eye.tdecq_db < 3.4


def test_against_twin_a_power_cycle_is_a_typed_error_then_the_defaults_answer(
    bench: SimBench,
) -> None:
    with N1000A.open(bench.resources()["sampling_scope"], timeout_s=0.3) as scope:
        scope.mode = "OSC"
        scope.symbol_rate_hz = 53.125e9
        # it loses power on this query and boots for longer than the query and its retry wait
        bench.arm_fault("sampling_scope", Fault("reset", seconds=4.0, match=":TIMEBASE:BRATE?"))
        started = time.monotonic()
        with pytest.raises((InstrumentConnectionError, InstrumentTimeout)):
            scope.symbol_rate_hz  # noqa: B018 -- the query the instrument dies on
        # the timeout and one retry (0.6 s), not a wait for the 4 s boot
        assert time.monotonic() - started < 3.0
        time.sleep(max(0.0, 4.1 - (time.monotonic() - started)))  # it has booted
        assert scope.query("*IDN?").startswith("Keysight Technologies,N1000A")
        assert scope.mode == "EYE"  # the settings are the power-on ones again
        assert scope.symbol_rate_hz == pytest.approx(9.95328e9)
