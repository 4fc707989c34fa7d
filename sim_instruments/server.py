"""Transports for simulated instruments: a SCPI socket server on loopback and a pty serial device.

Each connection is served by its own thread; the instrument's lock serialises what they do to it.
Faults armed on an instrument are committed here, where a real instrument's would show.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
import traceback
import tty
from collections.abc import Callable
from typing import Protocol

from sim_instruments.faults import Fault, FaultPlan
from sim_instruments.scpi import ScpiDevice


class Server(Protocol):
    role: str

    @property
    def resource(self) -> str: ...

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _garble(reply: bytes) -> bytes:
    # A plausible corruption: bytes flipped and the terminator lost in the middle of the line.
    body = bytes(b ^ 0x5A for b in reply.rstrip(b"\n")) or b"\x5a"
    return body[: max(1, len(body) // 2)] + b"\n"


class ScpiSocketServer:
    """Serve one ScpiDevice on 127.0.0.1 as a raw SCPI socket (`TCPIP::host::port::SOCKET`)."""

    def __init__(
        self, role: str, device: ScpiDevice, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.role = role
        self.device = device
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._booting_until = 0.0  # after a "reset" fault: monotonic time the device answers again
        self._thread = threading.Thread(target=self._accept, name=f"sim-{role}", daemon=True)

    @property
    def resource(self) -> str:
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            # close() alone does not wake a thread blocked in accept(): it would hang on forever
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connections.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), daemon=True, name=f"sim-{self.role}-conn"
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    message = line.decode("ascii", "replace").strip()
                    if message and not self._execute(conn, message):
                        return
        except OSError:
            return
        finally:
            self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _execute(self, conn: socket.socket, message: str) -> bool:
        fault = self.device.faults.take(message)
        if fault is not None and fault.kind == "error":
            self.device.push_error(fault.code, fault.message)
            return True
        if fault is not None and fault.kind == "disconnect":
            return False
        if fault is not None and fault.kind == "reset":
            self._power_cycle(fault.seconds)
            return False
        if time.monotonic() < self._booting_until:
            return True  # still booting: the command is lost
        replies = self.device.handle(message)
        if not replies:
            return True
        payload = b"".join((r if isinstance(r, bytes) else r.encode()) + b"\n" for r in replies)
        return self._send(conn, payload, fault)

    def _power_cycle(self, boot_s: float) -> None:
        """The instrument loses power mid-run: every connection drops, settings return to the
        power-on (*RST) state, the error queue empties; it answers again after `boot_s`."""
        with self.device.lock:
            self.device.errors.clear()
            self.device.reset()
        self._booting_until = time.monotonic() + boot_s
        for other in list(self._connections):
            with contextlib.suppress(OSError):
                other.shutdown(socket.SHUT_RDWR)

    def _send(self, conn: socket.socket, payload: bytes, fault: Fault | None) -> bool:
        if fault is not None:
            if fault.kind == "no_reply":
                return True
            if fault.kind == "garble":
                payload = _garble(payload)
            if fault.kind == "delay":
                time.sleep(fault.seconds)  # wall-clock: a fault is about the client's timeout
        try:
            conn.sendall(payload)
        except OSError:
            return False  # the client gave up on this connection (e.g. reopened after a timeout)
        return True


class BinaryDevice(Protocol):
    """A simulated device with a binary serial protocol."""

    faults: FaultPlan

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the host; return the bytes to send back (possibly empty)."""
        ...


class PtySerialServer:
    """Expose a device as a pseudo-terminal: clients open the slave path with pyserial."""

    def __init__(
        self,
        role: str,
        device: BinaryDevice,
        on_fault: Callable[[bytes], Fault | None] | None = None,
    ) -> None:
        self.role = role
        self.device = device
        self._on_fault = on_fault
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass as they are
        self.device_path = os.ttyname(self._slave)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"sim-{role}", daemon=True)

    @property
    def resource(self) -> str:
        return f"ASRL{self.device_path}::INSTR"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        # Close only once the serving thread is gone: a closed descriptor number is reused by the
        # next pty, and a thread still selecting on it would serve that pty's bytes to this device.
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _serve(self) -> None:
        poller = select.poll()  # not select(): a process with 1,024 descriptors open breaks it
        poller.register(self._master, select.POLLIN)
        while not self._stopping.is_set():
            try:
                if not poller.poll(50):
                    continue
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                continue
            try:
                reply = self.device.feed(data)
            except Exception:  # a simulator bug: the device stays silent, as a hung one would
                traceback.print_exc(file=sys.stderr)
                continue
            if reply:
                try:
                    os.write(self._master, reply)
                except OSError:
                    return
