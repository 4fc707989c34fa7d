"""Simulated Devantech USB-ISS in I2C mode, with a module's management interface behind it.

Speaks ISS_VERSION, ISS_SER_NUM, I2C_TEST and I2C_AD1; a transaction costs a USB frame plus the
I2C bus time at 100 kHz. Faults: delayed, lost or corrupted replies, as a flaky USB link shows.
"""

from __future__ import annotations

import time

from sim_instruments.clock import SimClock
from sim_instruments.faults import FaultPlan
from sim_instruments.world import World

ISS_CMD, ISS_VERSION, ISS_SER_NUM = 0x5A, 0x01, 0x03
I2C_AD1, I2C_TEST = 0x55, 0x58
MODULE_ADDRESS = 0x50
USB_FRAME_S = 0.001
I2C_BYTE_S = 9 / 100e3  # nine clocks per byte at 100 kHz


class SimUsbIss:
    """Byte-stream device: buffers partial commands, answers complete ones."""

    firmware = 7

    def __init__(self, world: World, serial_number: str) -> None:
        self.world = world
        self.clock: SimClock = world.clock
        self.serial_number = serial_number.encode("ascii")[:8].ljust(8, b"0")
        self.faults = FaultPlan()
        self._buffer = bytearray()

    def _needed(self) -> int | None:
        """Length of the command at the head of the buffer, or None if not yet known."""
        buf = self._buffer
        if not buf:
            return None
        if buf[0] == ISS_CMD:
            return 2
        if buf[0] == I2C_TEST:
            return 2
        if buf[0] == I2C_AD1:
            if len(buf) < 4:
                return None
            return 4 if buf[1] & 1 else 4 + buf[3]
        return 1  # unknown byte: the module drops it and resynchronises

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while True:
            needed = self._needed()
            if needed is None or len(self._buffer) < needed:
                break
            command = bytes(self._buffer[:needed])
            del self._buffer[:needed]
            out += self._reply(command)
        return bytes(out)

    def _reply(self, command: bytes) -> bytes:
        fault = self.faults.take(command.hex())
        reply = self._execute(command)
        if fault is None:
            return reply
        if fault.kind == "no_reply":
            return b""
        if fault.kind == "garble":
            return bytes(b ^ 0xA5 for b in reply[: max(1, len(reply) - 1)])
        if fault.kind == "delay":
            time.sleep(fault.seconds)  # wall-clock: a fault is about the client's timeout
        return reply

    def _execute(self, command: bytes) -> bytes:
        op = command[0]
        if op == ISS_CMD:
            self.clock.sleep(USB_FRAME_S)
            if command[1] == ISS_VERSION:
                return bytes([0x07, self.firmware, 0x40])
            if command[1] == ISS_SER_NUM:
                return self.serial_number
            return bytes([0x00, 0x05])  # NACK, unknown command
        module = self.world.module
        address = command[1] >> 1
        present = module is not None and address == MODULE_ADDRESS
        if op == I2C_TEST:
            self.clock.sleep(USB_FRAME_S + I2C_BYTE_S)
            return bytes([1 if present else 0])
        register, count = command[2], command[3]
        reading = bool(command[1] & 1)
        self.clock.sleep(USB_FRAME_S + I2C_BYTE_S * (3 + count))
        if reading:
            if not present or count == 0 or count > 60:
                return bytes([0xFF] * count)  # no ACK: the bus floats high
            assert module is not None
            return module.read(register, count)
        if not present or count == 0 or count > 60:
            return b"\x00"
        assert module is not None
        module.write(register, command[4 : 4 + count])
        return b"\x01"
