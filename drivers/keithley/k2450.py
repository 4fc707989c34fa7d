"""Keithley 2450 SourceMeter, native 2450 SCPI command set (not the "SCPI 2400" emulation).

Command set: Keithley Model 2450 Interactive SourceMeter Instrument Reference Manual, section
"SCPI command reference": SOURce (`:SOUR:FUNC`, `:SOUR:VOLT`, `:SOUR:VOLT:ILIM`,
`:SOUR:VOLT:ILIM:TRIP?`, `:SOUR:CURR`, `:SOUR:CURR:VLIM`, `:SOUR:SWE:VOLT:LIN`), SENSe
(`:SENS:FUNC`, `:SENS:CURR:NPLC`), OUTPut, ROUTe (`:ROUT:TERM FRON|REAR`), READ?, INITiate and
TRACe (`:TRAC:CLE`, `:TRAC:DATA? <first>,<last>,"defbuffer1",SOUR,READ`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError

BUFFER = '"defbuffer1"'


class K2450(ScpiInstrument):
    """Keithley 2450 SourceMeter; implements `SourceMeter`."""

    line_frequency_hz: ClassVar[float] = 50.0
    max_voltage_v: ClassVar[float] = 210.0
    max_current_a: ClassVar[float] = 1.05

    source_function = ScpiProperty[str](
        ":SOUR:FUNC?", ":SOUR:FUNC {value}", kind=str, choices=("VOLT", "CURR")
    )
    voltage_level_v = ScpiProperty[float](
        ":SOUR:VOLT?", ":SOUR:VOLT {value}", unit="V", limits=(-210.0, 210.0)
    )
    current_limit_a = ScpiProperty[float](
        ":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM {value}", unit="A", limits=(1e-9, 1.05)
    )
    current_level_a = ScpiProperty[float](
        ":SOUR:CURR?", ":SOUR:CURR {value}", unit="A", limits=(-1.05, 1.05)
    )
    voltage_limit_v = ScpiProperty[float](
        ":SOUR:CURR:VLIM?", ":SOUR:CURR:VLIM {value}", unit="V", limits=(0.02, 210.0)
    )
    output = ScpiProperty[bool](":OUTP?", ":OUTP {value}", kind=bool)
    current_nplc = ScpiProperty[float](
        ":SENS:CURR:NPLC?", ":SENS:CURR:NPLC {value}", unit="PLC", limits=(0.01, 10.0)
    )
    terminals = ScpiProperty[str](
        ":ROUT:TERM?", ":ROUT:TERM {value}", kind=str, choices=("FRON", "REAR")
    )

    def __init__(self, transport: object) -> None:
        super().__init__(transport)  # type: ignore[arg-type]
        self._sense: str | None = None
        self._nplc: float | None = None

    def reset(self) -> None:
        super().reset()
        self._sense = self._nplc = None

    # --- source --------------------------------------------------------------------------------
    def source_voltage(self, voltage_v: float, current_compliance_a: float) -> None:
        """Source `voltage_v`, never drawing more than `current_compliance_a` (the limit is set
        before the level, so the load is never exposed to more)."""
        with self.lock:
            self.source_function = "VOLT"
            self.current_limit_a = current_compliance_a
            self.voltage_level_v = voltage_v

    def source_current(self, current_a: float, voltage_compliance_v: float) -> None:
        with self.lock:
            self.source_function = "CURR"
            self.voltage_limit_v = voltage_compliance_v
            self.current_level_a = current_a

    def set_output(self, enabled: bool) -> None:
        self.output = enabled

    def use_rear_terminals(self, rear: bool) -> None:
        """Rear terminals (True) or front terminals (False); the output must be off."""
        self.terminals = "REAR" if rear else "FRON"

    def in_compliance(self) -> bool:
        """Whether the last reading hit the source limit."""
        function = self.source_function
        limit = "VOLT:ILIM" if function == "VOLT" else "CURR:VLIM"
        reply = self.query(f":SOUR:{limit}:TRIP?")
        return reply.strip() == "1"

    def safe_state(self) -> None:
        with self.lock:
            self.output = False
            self.source_function = "VOLT"
            self.voltage_level_v = 0.0

    # --- measure -------------------------------------------------------------------------------
    def set_nplc(self, nplc: float) -> None:
        """Integration time of each reading, in power-line cycles."""
        with self.lock:
            self.current_nplc = nplc
            self._nplc = nplc

    def _reading_s(self) -> float:
        if self._nplc is None:
            self._nplc = self.current_nplc
        return self._nplc / self.line_frequency_hz + 0.01

    def _sense_function(self, function: str) -> None:
        if self._sense != function:
            self.write(f':SENS:FUNC "{function}"')
            self._sense = function

    def _read(self, function: str) -> float:
        with self.lock:
            self._sense_function(function)
            with self.timeout(self.transport.timeout_s + self._reading_s()):
                reply = self.query(":READ?", idempotent=False)  # READ? stores a reading
        try:
            return float(reply)
        except ValueError:
            raise InstrumentReplyError(
                ":READ?", reply, "a reading", resource=self.resource
            ) from None

    def measure_current_a(self) -> float:
        return self._read("CURR")

    def measure_voltage_v(self) -> float:
        return self._read("VOLT")

    def sweep_voltage(
        self, start_v: float, stop_v: float, points: int, current_compliance_a: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Linear staircase from `start_v` to `stop_v` (auto delay, one fixed best range, no
        abort at the limit): returns (source voltage, measured current), shape (points,)."""
        if not 2 <= points <= 100_000:
            raise ValueError(f"points {points} is outside 2..100000")
        if max(abs(start_v), abs(stop_v)) > self.max_voltage_v:
            raise ValueError(f"sweep {start_v}..{stop_v} V exceeds +-{self.max_voltage_v:g} V")
        with self.lock:
            self.source_function = "VOLT"
            self.current_limit_a = current_compliance_a
            self._sense_function("CURR")
            self.write(f":TRAC:CLE {BUFFER}")
            self.write(
                f":SOUR:SWE:VOLT:LIN {start_v:.6g}, {stop_v:.6g}, {points}, -1, 1, BEST, OFF, "
                f"OFF, {BUFFER}"
            )
            self.write(":INIT")
            budget_s = self.transport.timeout_s + points * (self._reading_s() + 0.002)
            with self.timeout(budget_s):
                self.query("*OPC?", idempotent=False)
            command = f":TRAC:DATA? 1, {points}, {BUFFER}, SOUR, READ"
            reply = self.query(command)
        try:
            values = np.array([float(v) for v in reply.split(",")])
        except ValueError:
            raise InstrumentReplyError(command, reply, "numbers", resource=self.resource) from None
        if values.shape != (2 * points,):
            raise InstrumentReplyError(
                command, reply, f"{2 * points} values", resource=self.resource
            )
        return values[0::2], values[1::2]
