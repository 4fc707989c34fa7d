"""ILX Lightwave (Newport) LDC-3724C laser diode controller: a current source and a TEC controller.

Command set: ILX Lightwave "LDC-3700 Series Laser Diode Controller User's Guide", chapter 3
(Remote Operation; 3.6 Error Messages: `ERR?` returns the queued error codes, up to 10 at once)
and chapter 4 (Command Reference): `LAS:LDI <mA>`, `LAS:LDI?` (measured, mA), `LAS:SET:LDI?`,
`LAS:LIM:I <mA>`, `LAS:LIM:I?`, `LAS:OUT`, `LAS:LDV?` (V), `LAS:MDI?` (uA), `TEC:T <degC>`,
`TEC:T?` (measured), `TEC:SET:T?`, `TEC:OUT`, and the IEEE 488.2 `*IDN?`. Not confirmed against
the LDC-3724C's own pages: `LAS:LIM:I` (other members of the family, and public code for this
model, name the limit per range: `LAS:LIM:I2` / `LAS:LIM:I5`), the numeric error codes, and the
RS-232 line settings (this driver uses the transport's defaults and LF termination).
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import (
    InstrumentCommandError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentStateError,
)

MAX_CURRENT_A = 0.5  # the higher of the two output ranges
TEC_RANGE_C = (-20.0, 90.0)

#: ILX-style error codes this driver can name (others are reported by number)
ERROR_TEXT = {
    123: "Command not found",
    104: "Invalid numeric parameter",
    201: "Value out of range",
    503: "LASER open circuit, output disabled",
    505: "LASER current setpoint above the current limit",
}


class LDC3724C(ScpiInstrument):
    """ILX Lightwave LDC-3724C; implements `LaserDiodeController`.

    Setting a current waits until the measured current has reached it (the controller updates
    its measurements about every 600 ms), so a caller reads light and voltage at a settled point.
    `safe_state()` turns the output off and the current to zero but leaves the TEC regulating:
    the TEC protects the laser (no thermal shock, no condensation on a cooled part), emits no
    light, and the next part is tested at a plate that is already settled.
    """

    error_query: ClassVar[str] = "ERR?"
    _NO_ERROR = re.compile(r"^\s*[+]?0\s*$")
    default_timeout_s: ClassVar[float] = 2.0
    late_reply_window_s: ClassVar[float] = 0.1
    #: how close the measured current must come to its setpoint: max(absolute, relative x I)
    current_tolerance_a: ClassVar[float] = 5e-5
    current_tolerance_rel: ClassVar[float] = 5e-4
    poll_interval_s: ClassVar[float] = 0.005
    #: wall seconds a current step may take to show as settled (several measurement updates)
    current_settle_timeout_s: float = 3.0
    #: wall seconds the TEC must stay within tolerance to count as settled
    tec_hold_s: float = 3.0

    current_limit_a = ScpiProperty[float](
        "LAS:LIM:I?",
        "LAS:LIM:I {value}",
        unit="A",
        scale=1e-3,
        limits=(0.0, MAX_CURRENT_A),
        fmt="{:.2f}",
    )
    current_setpoint_a = ScpiProperty[float](
        "LAS:SET:LDI?",
        "LAS:LDI {value}",
        unit="A",
        scale=1e-3,
        limits=(0.0, MAX_CURRENT_A),
        fmt="{:.3f}",
    )
    measured_current_a = ScpiProperty[float]("LAS:LDI?", unit="A", scale=1e-3)
    measured_voltage_v = ScpiProperty[float]("LAS:LDV?", unit="V")
    measured_monitor_a = ScpiProperty[float]("LAS:MDI?", unit="A", scale=1e-6)
    laser_output = ScpiProperty[bool]("LAS:OUT?", "LAS:OUT {value}", kind=bool)
    tec_setpoint_c = ScpiProperty[float](
        "TEC:SET:T?", "TEC:T {value}", unit="degC", limits=TEC_RANGE_C, fmt="{:.2f}"
    )
    measured_tec_c = ScpiProperty[float]("TEC:T?", unit="degC")
    tec_output = ScpiProperty[bool]("TEC:OUT?", "TEC:OUT {value}", kind=bool)

    def __init__(self, transport: object) -> None:
        super().__init__(transport)  # type: ignore[arg-type]
        # What this session last set; None until known (then asked of the instrument once).
        self._limit_a: float | None = None
        self._setpoint_a: float | None = None
        self._output_on: bool | None = None

    # --- errors: `ERR?` answers every queued code at once, "0" when there is none ---------------
    def raise_queued_errors(self, command: str) -> None:
        reply = self.query(self.error_query)
        if self._NO_ERROR.match(reply):
            return
        try:
            codes = [int(code) for code in reply.split(",")]
        except ValueError:
            raise InstrumentReplyError(
                self.error_query, reply, "'0' or '<code>,<code>,...'", resource=self.resource
            ) from None
        errors = [code for code in codes if code != 0]
        if errors:
            text = ERROR_TEXT.get(errors[0], "see the manual's error list")
            raise InstrumentCommandError(command, errors[0], text, resource=self.resource)

    # --- LaserDiodeController ---------------------------------------------------------------
    def set_current_limit_a(self, limit_a: float) -> None:
        self.current_limit_a = limit_a
        self._limit_a = float(limit_a)

    def set_current_a(self, current_a: float) -> None:
        """Set the laser current; with the output on, wait until the current has settled."""
        limit_a = self._limit_a if self._limit_a is not None else self.current_limit_a
        self._limit_a = limit_a
        if not 0.0 <= current_a <= limit_a:
            raise ValueError(
                f"current {current_a * 1e3:g} mA is outside 0..{limit_a * 1e3:g} mA "
                "(the current limit); nothing was sent"
            )
        self.current_setpoint_a = current_a
        self._setpoint_a = float(current_a)
        if self._output_enabled():
            self._wait_current(float(current_a))

    def set_output(self, enabled: bool) -> None:
        self.laser_output = enabled
        self._output_on = bool(enabled)
        if enabled:
            setpoint = self._setpoint_a
            if setpoint is None:
                setpoint = self._setpoint_a = self.current_setpoint_a
            limit = self._limit_a if self._limit_a is not None else self.current_limit_a
            self._wait_current(min(setpoint, limit))

    def output_enabled(self) -> bool:
        self._output_on = self.laser_output
        return self._output_on

    def laser_voltage_v(self) -> float:
        return self.measured_voltage_v

    def monitor_current_a(self) -> float:
        return self.measured_monitor_a

    def set_tec_temperature_c(self, temperature_c: float) -> None:
        self.tec_setpoint_c = temperature_c

    def tec_temperature_c(self) -> float:
        return self.measured_tec_c

    def set_tec_output(self, enabled: bool) -> None:
        self.tec_output = enabled

    def wait_tec_settled(self, tolerance_c: float = 0.1, timeout_s: float = 60.0) -> float:
        """Wait until the TEC has held within +-`tolerance_c` of its setpoint for `tec_hold_s`;
        return the seconds it took. A TEC that does not settle within `timeout_s` (an unstable
        loop, an overloaded plate) raises InstrumentStateError."""
        setpoint = self.tec_setpoint_c
        start = time.monotonic()
        inside_since: float | None = None
        last = float("nan")
        while True:
            now = time.monotonic()
            last = self.measured_tec_c
            if abs(last - setpoint) <= tolerance_c:
                inside_since = now if inside_since is None else inside_since
                if now - inside_since >= self.tec_hold_s:
                    return now - start
            else:
                inside_since = None
            if now - start > timeout_s:
                raise InstrumentStateError(
                    f"TEC did not settle within +-{tolerance_c:g} K of {setpoint:g} degC in "
                    f"{timeout_s:g} s (last reading {last:.3f} degC)",
                    resource=self.resource,
                )
            time.sleep(self.poll_interval_s)

    def safe_state(self) -> None:
        """Output off, then the current setpoint to zero; the TEC keeps regulating (see the
        class docstring). Both are attempted even if the first fails."""
        failures: list[InstrumentError] = []
        for command in ("LAS:OUT 0", "LAS:LDI 0"):
            try:
                self.write(command)
            except InstrumentError as err:
                failures.append(err)
        self._output_on, self._setpoint_a = False, 0.0
        if failures:
            raise failures[0]

    # --- internals ---------------------------------------------------------------------------
    def _output_enabled(self) -> bool:
        return self._output_on if self._output_on is not None else self.output_enabled()

    def _wait_current(self, target_a: float) -> None:
        tolerance = max(self.current_tolerance_a, self.current_tolerance_rel * target_a)
        deadline = time.monotonic() + self.current_settle_timeout_s
        while True:
            measured = self.measured_current_a
            if abs(measured - target_a) <= tolerance:
                return
            if time.monotonic() > deadline:
                raise InstrumentStateError(
                    f"laser current did not settle at {target_a * 1e3:.2f} mA within "
                    f"{self.current_settle_timeout_s:g} s (measured {measured * 1e3:.2f} mA)",
                    resource=self.resource,
                )
            time.sleep(self.poll_interval_s)
