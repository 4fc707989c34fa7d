"""Byte transports under every driver: a VISA session (pyvisa with pyvisa-py) or a serial port.

A transport moves bytes and lines with a timeout and can resynchronise itself; it knows nothing of
commands. Which one is used follows from the resource string alone, never from whether the far end
is real.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from typing import Protocol

import pyvisa
import pyvisa.constants
import serial

from drivers.errors import InstrumentConnectionError

_SERIAL_RESOURCE = re.compile(r"^ASRL(?P<device>.+?)(::INSTR)?$", re.IGNORECASE)


class TransportTimeout(Exception):
    """A read ran out of time; the transport turns it into InstrumentTimeout with the command."""


class Transport(Protocol):
    """What a driver needs from the wire."""

    resource: str
    timeout_s: float

    def write(self, data: bytes) -> None: ...
    def read_line(self) -> bytes: ...
    def read_exact(self, count: int) -> bytes: ...
    def resynchronise(self) -> None: ...
    def close(self) -> None: ...


def open_transport(
    resource: str, *, timeout_s: float = 2.0, termination: bytes = b"\n", baud_rate: int = 115200
) -> Transport:
    """Open the transport a resource string names.

    `ASRL<device>[::INSTR]` (for example `ASRL/dev/pts/4::INSTR`) opens a serial port with
    pyserial; everything else (`TCPIP::host::port::SOCKET`, `TCPIP::host::INSTR`,
    `GPIB0::5::INSTR`, ...) opens a VISA session with the pure-Python pyvisa-py back end.
    """
    match = _SERIAL_RESOURCE.match(resource)
    if match:
        return SerialTransport(
            resource,
            match["device"],
            timeout_s=timeout_s,
            termination=termination,
            baud_rate=baud_rate,
        )
    return VisaTransport(resource, timeout_s=timeout_s, termination=termination)


_resource_manager: pyvisa.ResourceManager | None = None


def _visa() -> pyvisa.ResourceManager:
    # One resource manager per process: pyvisa-py keeps its sessions there.
    global _resource_manager
    if _resource_manager is None:
        _resource_manager = pyvisa.ResourceManager("@py")
    return _resource_manager


class VisaTransport:
    """A pyvisa message-based session (socket, VXI-11, HiSLIP, GPIB) through pyvisa-py."""

    # pyvisa-py receives at most this many bytes per socket read by default; large binary blocks
    # move several times faster with bigger receives (measured in benchmarks/bench_block_read.py).
    large_receive_bytes = 1 << 20

    def __init__(self, resource: str, *, timeout_s: float, termination: bytes) -> None:
        self.resource = resource
        self.timeout_s = timeout_s
        self._termination = termination
        self._session: pyvisa.resources.MessageBasedResource | None = None
        self._open()

    def _open(self) -> None:
        try:
            session = _visa().open_resource(self.resource)
        except (pyvisa.errors.VisaIOError, OSError, ValueError) as err:
            raise InstrumentConnectionError(f"cannot open: {err}", resource=self.resource) from err
        if not isinstance(session, pyvisa.resources.MessageBasedResource):
            session.close()
            raise InstrumentConnectionError("not a message-based resource", resource=self.resource)
        session.timeout = self.timeout_s * 1000.0
        session.read_termination = self._termination.decode()
        session.write_termination = ""
        sessions = getattr(session.visalib, "sessions", {})  # pyvisa-py keeps its session objects
        low_level = sessions.get(session.session)
        if low_level is not None and hasattr(low_level, "max_recv_size"):
            low_level.max_recv_size = max(low_level.max_recv_size, self.large_receive_bytes)
        sock = getattr(low_level, "interface", None)
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A command with no reply followed by `SYST:ERR?` is two small writes in a row:
            # with Nagle's algorithm the second waits for the delayed ACK of the first (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._session = session

    @property
    def _s(self) -> pyvisa.resources.MessageBasedResource:
        if self._session is None:
            raise InstrumentConnectionError("session is closed", resource=self.resource)
        return self._session

    def set_timeout(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._s.timeout = timeout_s * 1000.0

    def write(self, data: bytes) -> None:
        try:
            self._s.write_raw(data)
        except pyvisa.errors.VisaIOError as err:
            raise InstrumentConnectionError(f"write failed: {err}", resource=self.resource) from err

    def read_line(self) -> bytes:
        session = self._s
        try:
            return session.read_raw()
        except pyvisa.errors.VisaIOError as err:
            if err.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise TransportTimeout from err
            raise InstrumentConnectionError(f"read failed: {err}", resource=self.resource) from err

    def read_exact(self, count: int) -> bytes:
        session = self._s
        try:
            with session.read_termination_context(""):
                data = session.read_bytes(count, chunk_size=max(count, 1), break_on_termchar=False)
        except pyvisa.errors.VisaIOError as err:
            if err.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise TransportTimeout from err
            raise InstrumentConnectionError(f"read failed: {err}", resource=self.resource) from err
        if len(data) != count:
            raise TransportTimeout
        return data

    def resynchronise(self) -> None:
        # A late reply to a timed-out query would otherwise be handed to the next query
        # (pyvisa-py keeps it in its buffer). Reopening the session drops the connection the late
        # reply travels on; a device clear alone cannot discard bytes still in flight.
        self.close()
        self._open()

    def close(self) -> None:
        if self._session is not None:
            # The far end may be gone already; closing must not raise on the way out.
            with contextlib.suppress(pyvisa.errors.VisaIOError, OSError):
                self._session.close()
            self._session = None


class SerialTransport:
    """A serial port through pyserial (USB CDC bridges, RS-232 controllers, pty devices)."""

    # After a timeout the line counts as quiet again once no byte has come for this long; a
    # driver sets it to its device's longest answer time, so a late reply is always drained.
    quiet_s = 0.05

    def __init__(
        self, resource: str, device: str, *, timeout_s: float, termination: bytes, baud_rate: int
    ) -> None:
        self.resource = resource
        self.device = device
        self.timeout_s = timeout_s
        self._termination = termination
        try:
            self._port = serial.Serial(
                device, baudrate=baud_rate, timeout=timeout_s, write_timeout=timeout_s
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise InstrumentConnectionError(f"cannot open: {err}", resource=resource) from err

    def set_timeout(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._port.timeout = timeout_s
        self._port.write_timeout = timeout_s

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as err:
            raise InstrumentConnectionError(f"write failed: {err}", resource=self.resource) from err

    def read_line(self) -> bytes:
        try:
            line = self._port.read_until(self._termination)
        except (serial.SerialException, OSError) as err:
            raise InstrumentConnectionError(f"read failed: {err}", resource=self.resource) from err
        if not line.endswith(self._termination):
            raise TransportTimeout
        return line[: -len(self._termination)]

    def read_exact(self, count: int) -> bytes:
        try:
            data = self._port.read(count)
        except (serial.SerialException, OSError) as err:
            raise InstrumentConnectionError(f"read failed: {err}", resource=self.resource) from err
        if len(data) != count:
            raise TransportTimeout
        return data

    def resynchronise(self) -> None:
        # A serial line cannot be reconnected: drain until it has been quiet for `quiet_s`, so a
        # late reply is thrown away rather than read as the next one. Bounded, for a device that
        # never stops talking.
        deadline = time.monotonic() + 4 * self.quiet_s + self.timeout_s
        saved = self._port.timeout
        self._port.timeout = self.quiet_s
        try:
            while time.monotonic() < deadline:
                if not self._port.read(4096):
                    break
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError) as err:
            raise InstrumentConnectionError(
                f"resync failed: {err}", resource=self.resource
            ) from err
        finally:
            self._port.timeout = saved

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):  # a vanished port
            self._port.close()

