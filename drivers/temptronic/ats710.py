"""Temptronic ThermoStream ATS-710 temperature forcing head.

Command set: ATS-515/615, 525/625 & 535/635 ThermoStream Systems Interface & Applications Manual
(Rev. E, 2019), "Remote Interfaces" (the ATS-710 speaks the same message set; public ATS-710 code
uses it): `SETN`, `SETP`, `SOAK`, `WNDW`, `FLOW`, `HEAD`, `DUTM`, `TEMP?` (> 400 = invalid),
`TECR?` (bit 0 at temperature after the soak time, bit 1 not at temperature), `EROR?`
(device-specific error register), `*ESR?` (bits 2-5: query/device/execution/command error).
Not confirmed against an ATS-710 manual: the `*IDN?` fields, `*ESR?` (documented as the same as
`%S?`) on the LAN interface, and which setpoint numbers (0 hot, 1 ambient, 2 cold) to use.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentCommandError, InstrumentReplyError, InstrumentStateError

AT_TEMPERATURE = 0x01  # TECR? bit 0: within the window for the soak time
_ESR_ERRORS = {
    0x20: "command error",
    0x10: "execution error",
    0x08: "device error",
    0x04: "query error",
}
AMBIENT_C = 25.0


class ATS710(ScpiInstrument):
    """ThermoStream ATS-710; implements `ThermalController` (DUT control: the reading is the
    DUT thermocouple on the module case)."""

    # The head has no SCPI error queue: after a write its *ESR? error bits are checked instead.
    error_query: ClassVar[str] = "*ESR?"

    setpoint_number = ScpiProperty[int]("SETN?", "SETN {value}", kind=int, limits=(0, 17))
    setpoint_c = ScpiProperty[float](
        "SETP?", "SETP {value}", unit="degC", limits=(-99.9, 225.0), fmt="{:.1f}"
    )
    soak_time_s = ScpiProperty[int]("SOAK?", "SOAK {value}", kind=int, unit="s", limits=(0, 9999))
    window_c = ScpiProperty[float](
        "WNDW?", "WNDW {value}", unit="degC", limits=(0.1, 9.9), fmt="{:.1f}"
    )
    flow_on = ScpiProperty[bool]("FLOW?", "FLOW {value}", kind=bool)
    head_down = ScpiProperty[bool]("HEAD?", "HEAD {value}", kind=bool)
    dut_control = ScpiProperty[bool](
        "DUTM?", "DUTM {value}", kind=bool, doc="True: regulate the DUT sensor, False: the air"
    )
    condition = ScpiProperty[int](
        "TECR?", None, kind=int, doc="temperature event condition register"
    )
    error_register = ScpiProperty[int](
        "EROR?", None, kind=int, doc="device-specific errors (16 bits)"
    )

    def raise_queued_errors(self, command: str) -> None:
        reply = self.query(self.error_query)
        try:
            status = int(reply)
        except ValueError:
            raise InstrumentReplyError(
                self.error_query, reply, "an integer", resource=self.resource
            ) from None
        for bit, text in _ESR_ERRORS.items():
            if status & bit:
                raise InstrumentCommandError(command, bit, text, resource=self.resource)

    def reset(self) -> None:
        self.write("*RST")

    def configure(self, *, window_c: float = 1.0, soak_time_s: int = 30) -> None:
        """DUT control with the given window and soak time for the selected setpoint."""
        self.dut_control = True
        self.window_c = window_c
        self.soak_time_s = soak_time_s

    def set_setpoint_c(self, setpoint_c: float) -> None:
        """Select the Operator-screen setpoint that fits (0 hot, 1 ambient, 2 cold), set it and
        start the air flow."""
        number = 0 if setpoint_c > 30.0 else 2 if setpoint_c < 20.0 else 1
        with self.lock:
            self.setpoint_number = number
            self.setpoint_c = setpoint_c
            self.flow_on = True

    def temperature_c(self) -> float:
        reply = self.query("TEMP?")
        try:
            value = float(reply)
        except ValueError:
            raise InstrumentReplyError(
                "TEMP?", reply, "a temperature", resource=self.resource
            ) from None
        if value > 400.0:  # the head's way of saying the sensor reading is invalid
            raise InstrumentStateError(
                f"TEMP? reads {value:g}: no valid sensor reading", resource=self.resource
            )
        return value

    def settled(self, tolerance_c: float) -> bool:
        with self.lock:
            errors = self.error_register
            if errors:
                raise InstrumentStateError(
                    f"EROR? = {errors:#06x}: head fault", resource=self.resource
                )
            if not self.condition & AT_TEMPERATURE:
                return False
            return abs(self.temperature_c() - self.setpoint_c) <= tolerance_c

    def safe_state(self) -> None:
        """Back to ambient, then stop the air."""
        with self.lock:
            self.setpoint_number = 1
            self.setpoint_c = AMBIENT_C
            self.flow_on = False
