"""Generic automated fibre end-face inspection microscope with an MPO tip, over SCPI (socket).

NOT A CONFIRMED PRODUCT PROTOCOL. Automated end-face inspection instruments exist (Viavi/JDSU
FiberChek and MultiFiber Pro, EXFO FIP-500 with ConnectorMax2, Sumix, Data-Pixel), but no public
remote-command reference for any of them was found (their automation is documented as vendor PC
software and SDKs). Rather than invent a real product's commands, this driver speaks a minimal,
SCPI-conventional set (IEEE 488.2 common commands, SCPI 1999 tree style: ROUTe, SENSe, INITiate,
FETCh, FORMat), to be mapped onto the real instrument's interface when one is chosen:

    ROUTe:FIBer <n> | ROUTe:FIBer?     fibre in view (1..count); the tip moves (overlapped)
    ROUTe:FIBer:COUNt?                 fibre positions of the fitted tip
    SENSe:FOCus:AUTO ONCE              auto-focus on the fibre in view (overlapped)
    SENSe:FOCus:POSition <um> | ?      focus drive position in um
    SENSe:IMAGe:SIZE?                  "<rows>,<cols>"
    SENSe:IMAGe:SCALe?                 calibrated pixel pitch in um
    FORMat:DATA UINT,8|UINT,16 | ?     transfer format: the sensor's top 8 bits, or its counts
                                       unscaled in 16-bit little-endian words
    INITiate                           expose one frame (overlapped; *OPC? waits)
    FETCh:IMAGe?                       the frame as an IEEE 488.2 definite-length block, row-major

Overlapped commands complete before `*OPC?` answers; every write is followed by `SYST:ERR?`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError
from drivers.interfaces import EndFaceImage


class ScpiEndfaceMicroscope(ScpiInstrument):
    """Generic SCPI end-face inspection microscope; implements `InspectionMicroscope`."""

    #: The longest overlapped operation (a tip move across the connector, an auto-focus sweep):
    #: `*OPC?` after one may take this long.
    operation_timeout_s: ClassVar[float] = 10.0

    selected_fibre = ScpiProperty[int]("ROUT:FIB?", "ROUT:FIB {value}", kind=int, limits=(1, 72))
    focus_um = ScpiProperty[float](
        "SENS:FOC:POS?", "SENS:FOC:POS {value}", unit="um", limits=(-200.0, 200.0), fmt="{:.2f}"
    )
    um_per_pixel = ScpiProperty[float]("SENS:IMAG:SCAL?", unit="um")
    data_format = ScpiProperty[str](
        "FORM:DATA?", "FORM:DATA {value}", kind=str, choices=("UINT,8", "UINT,16")
    )

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self._fibre_count: int | None = None
        self._size: tuple[int, int] | None = None
        self._bits: int | None = None
        self._fibre: int | None = None

    def reset(self) -> None:
        super().reset()
        self._fibre_count = self._size = self._bits = self._fibre = None

    @property
    def fibre_count(self) -> int:
        if self._fibre_count is None:
            reply = self.query("ROUT:FIB:COUN?")
            try:
                self._fibre_count = int(reply)
            except ValueError:
                raise InstrumentReplyError(
                    "ROUT:FIB:COUN?", reply, "a fibre count", resource=self.resource
                ) from None
        return self._fibre_count

    def image_size(self) -> tuple[int, int]:
        """(rows, cols) of a frame."""
        if self._size is None:
            reply = self.query("SENS:IMAG:SIZE?")
            try:
                rows, cols = (int(v) for v in reply.split(","))
            except ValueError:
                raise InstrumentReplyError(
                    "SENS:IMAG:SIZE?", reply, "'<rows>,<cols>'", resource=self.resource
                ) from None
            self._size = (rows, cols)
        return self._size

    def set_bit_depth(self, bits: int) -> None:
        """Transfer frames with 8 (the top 8 bits, half the bytes) or 16 bits per pixel."""
        if bits not in (8, 16):
            raise ValueError(f"bit depth {bits} is not 8 or 16")
        self.data_format = f"UINT,{bits}"
        self._bits = bits

    def wait_complete(self) -> None:
        """Wait until every overlapped operation (move, focus, exposure) has finished."""
        with self.timeout(self.transport.timeout_s + self.operation_timeout_s):
            reply = self.query("*OPC?")
        if reply != "1":
            raise InstrumentReplyError("*OPC?", reply, "'1'", resource=self.resource)

    def select_fibre(self, fibre: int) -> None:
        count = self.fibre_count
        if not 1 <= fibre <= count:
            raise ValueError(f"fibre {fibre} is outside 1..{count}")
        with self.lock:
            self.selected_fibre = fibre
            self.wait_complete()
            self._fibre = fibre

    def auto_focus(self) -> None:
        with self.lock:
            self.write("SENS:FOC:AUTO ONCE")
            self.wait_complete()

    def capture(self) -> EndFaceImage:
        with self.lock:
            if self._bits is None:
                self.set_bit_depth(8)
            rows, cols = self.image_size()
            fibre = self._fibre if self._fibre is not None else self.selected_fibre
            self.write("INIT")
            self.wait_complete()
            scale = self.um_per_pixel
            raw = self.query_block("FETC:IMAG?", "uint8" if self._bits == 8 else "int16")
        if raw.size != rows * cols:
            raise InstrumentReplyError(
                "FETC:IMAG?",
                f"{raw.size} pixels",
                f"{rows} x {cols} = {rows * cols} pixels",
                resource=self.resource,
            )
        image = raw.reshape(rows, cols)
        if self._bits == 16:
            image = image.view(np.uint16)
        if not scale > 0:
            raise InstrumentReplyError(
                "SENS:IMAG:SCAL?", str(scale), "a positive scale", resource=self.resource
            )
        return EndFaceImage(image=image, um_per_pixel=scale, fibre=fibre)
