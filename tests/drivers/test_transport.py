"""Real transports against simulated instruments: late replies never reach the wrong query,
threads share a session safely, and faults surface as typed errors within their timeouts."""

from __future__ import annotations

import threading
import time

import pytest
import pyvisa

from drivers.base import ScpiInstrument
from drivers.devantech.usb_iss import UsbIss
from drivers.errors import InstrumentConnectionError, InstrumentTimeout
from drivers.keysight.n7744c import N7744C
from sim_instruments.bench import SimBench
from sim_instruments.faults import Fault


class NoRetry(ScpiInstrument):
    query_retries = 0


def test_late_reply_on_a_socket_is_never_handed_to_the_next_query(bench: SimBench) -> None:
    resource = bench.resources()["power_meter"]
    # The device answers 15 timeouts late: a wait bounded by the timeout, even on a busy
    # machine, stays well clear of one bounded by the device.
    bench.arm_fault("power_meter", Fault("delay", seconds=3.0, match="*IDN?"))
    with NoRetry.open(resource, timeout_s=0.2) as meter:
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout) as caught:
            meter.query("*IDN?")
        assert time.monotonic() - started < 1.5  # bounded by the timeout, not by the device
        assert caught.value.timeout_s == pytest.approx(0.2)
        # The *IDN? reply arrives after the timeout; the next queries get their own answers,
        # before it arrives and after.
        assert meter.query("SENS1:POW:UNIT?") == "0"
        time.sleep(max(0.0, 3.3 - (time.monotonic() - started)))
        assert meter.query("SENS1:POW:ATIM?") == "+1.000000E-04"
        assert meter.query("SYST:ERR?") == '0,"No error"'


def test_late_reply_on_a_serial_line_is_drained(bench: SimBench) -> None:
    resource = bench.resources()["module_host"]
    bench.arm_fault("module_host", Fault("delay", seconds=0.3, match="5a03"))  # ISS_SER_NUM
    with UsbIss.open(resource, timeout_s=0.1) as bridge:
        with pytest.raises(InstrumentTimeout):
            bridge.identify()
        # The 8-byte serial number comes late; the drain must swallow it, so the module's
        # identifier byte (lower page byte 0) reads as itself.
        assert bridge.read_registers(0x50, 0, 1) == b"\x19"
        assert bridge.identify().serial_number == "00031415"


def test_retry_of_an_idempotent_query_recovers_from_one_lost_reply(bench: SimBench) -> None:
    bench.arm_fault("power_meter", Fault("no_reply", match="*IDN?"))
    with N7744C.open(bench.resources()["power_meter"], timeout_s=0.2) as meter:
        assert meter.identify().model == "N7744C"


def test_dropped_connection_is_a_connection_error_then_recovers(bench: SimBench) -> None:
    bench.arm_fault("power_meter", Fault("disconnect", match="SENS1:POW:UNIT?"))
    with NoRetry.open(bench.resources()["power_meter"], timeout_s=0.3) as meter:
        with pytest.raises((InstrumentConnectionError, InstrumentTimeout)):
            meter.query("SENS1:POW:UNIT?")
        assert meter.query("*IDN?").startswith("Keysight Technologies,N7744C")


def test_threads_share_one_session_without_mixing_replies(bench: SimBench) -> None:
    with N7744C.open(bench.resources()["power_meter"]) as meter:
        failures: list[str] = []

        def worker(channel: int) -> None:
            try:
                for _ in range(100):
                    reply = meter.query(f"SENS{channel}:POW:WAV?")
                    if reply != "+1.550000E-06":
                        failures.append(reply)
                    if meter.query("*IDN?").split(",")[1] != "N7744C":
                        failures.append("idn")
            except Exception as err:  # reported by the assertion below, not lost in the thread
                failures.append(repr(err))

        threads = [threading.Thread(target=worker, args=(c,)) for c in (1, 2, 3, 4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []


def test_plain_pyvisa_client_reaches_the_simulated_meter(bench: SimBench) -> None:
    manager = pyvisa.ResourceManager("@py")
    session = manager.open_resource(
        bench.resources()["power_meter"], read_termination="\n", write_termination="\n"
    )
    try:
        assert session.query("*IDN?").startswith("Keysight Technologies,N7744C,MY54330045")
        assert float(session.query("READ1:POW?")) < -60  # dBm, dark
    finally:
        session.close()
