"""Devantech USB-ISS I2C bridge (a USB CDC serial port) and the CMIS host board built on it.

Command set: Devantech "USB-ISS Multifunction USB Communications Module" technical documentation,
pages "Technical Specification" (ISS_VERSION 0x5A 0x01, ISS_SER_NUM 0x5A 0x03) and "I2C Mode"
(I2C_AD1 0x55 for 1-byte-addressed devices, at most 60 data bytes per transfer; I2C_TEST 0x58).
The bridge is binary: a command is one burst of bytes; writes answer one status byte (0 = failed).
"""

from __future__ import annotations

from typing import ClassVar

from drivers.base import Instrument, InstrumentIdentity
from drivers.cmis import CmisHost
from drivers.errors import InstrumentReplyError, InstrumentStateError
from drivers.transport import Transport, TransportTimeout

ISS_CMD = 0x5A
ISS_VERSION = 0x01
ISS_SER_NUM = 0x03
I2C_AD1 = 0x55
I2C_TEST = 0x58
MAX_TRANSFER = 60
USB_ISS_MODULE_ID = 0x07


class UsbIss(Instrument):
    """The USB-ISS in I2C mode: register reads and writes on 7-bit device addresses."""

    default_timeout_s = 0.5  # the manual's advice: time a transaction out after 500 ms
    late_reply_window_s = 0.6  # so a reply later than that has surely come before we go on
    baud_rate = 115200

    def _transact(self, request: bytes, reply_length: int, name: str) -> bytes:
        with self.lock:
            self.transport.write(request)
            try:
                return self.transport.read_exact(reply_length)
            except TransportTimeout:
                raise self._timed_out(name) from None

    def identify(self) -> InstrumentIdentity:
        version = self._transact(bytes([ISS_CMD, ISS_VERSION]), 3, "ISS_VERSION")
        if version[0] != USB_ISS_MODULE_ID:
            raise InstrumentReplyError(
                "ISS_VERSION", version, "module id 7 (USB-ISS)", resource=self.resource
            )
        serial = self._transact(bytes([ISS_CMD, ISS_SER_NUM]), 8, "ISS_SER_NUM")
        return InstrumentIdentity(
            "Devantech", "USB-ISS", serial.decode("ascii", "replace"), f"{version[1]}"
        )

    def device_present(self, address: int) -> bool:
        return self._transact(bytes([I2C_TEST, address << 1]), 1, "I2C_TEST")[0] != 0

    def read_registers(self, address: int, register: int, length: int) -> bytes:
        """Read `length` bytes from `register` on, in transfers of at most 60 bytes."""
        data = bytearray()
        while len(data) < length:
            count = min(MAX_TRANSFER, length - len(data))
            reg = register + len(data)
            data += self._transact(
                bytes([I2C_AD1, (address << 1) | 1, reg, count]),
                count,
                f"I2C_AD1 read 0x{address:02x}:{reg}+{count}",
            )
        return bytes(data)

    def write_registers(self, address: int, register: int, data: bytes) -> None:
        for start in range(0, len(data), MAX_TRANSFER):
            chunk = data[start : start + MAX_TRANSFER]
            name = f"I2C_AD1 write 0x{address:02x}:{register + start}+{len(chunk)}"
            status = self._transact(
                bytes([I2C_AD1, address << 1, register + start, len(chunk)]) + chunk, 1, name
            )
            if status[0] == 0:
                raise InstrumentStateError(f"{name} was not acknowledged", resource=self.resource)


class UsbIssCmisHost(CmisHost):
    """A module host board whose management interface is a USB-ISS; implements `ModuleHost`."""

    bridge_class: ClassVar[type[UsbIss]] = UsbIss

    def __init__(self, transport: Transport) -> None:
        super().__init__(UsbIss(transport))

    @classmethod
    def open(cls, resource: str, *, timeout_s: float | None = None) -> UsbIssCmisHost:
        return cls(UsbIss.open(resource, timeout_s=timeout_s).transport)

    @property
    def usb_iss(self) -> UsbIss:
        return self.bridge  # type: ignore[return-value]
