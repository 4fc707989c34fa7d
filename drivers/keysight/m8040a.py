"""Keysight M8040A 64 GBd high-performance BERT (M8045A pattern generator, M8046A error detectors),
programmed through the M8070B system software's SCPI server; `M8070BBert` holds that server's
command set, which the M8050A (drivers/keysight/m8050a.py) shares.

Command set: Keysight M8070A Programming Guide, chapter 5 "SCPI Command Reference" (the M8070B
keeps these), and chapter 2 "Recommended Programming Techniques" (sequence definitions, status
registers). Confirmed there: `:DATA:LINecoding[:VALue] '<id>',NRZ|PAM4` and
`:DATA:LINecoding:PAM4:MAPPing '<id>',NONE|GRAY|CUSTom`; `:FETCh:BCOunt? '<id>'` (bit counters
since the start of the accumulation period, with compared and errored symbols per PAM4 level);
`:FETCh:IBERate? '<id>'` (instantaneous BER, plus SER and per-level SER for PAM4); the sequence
XML (blocks, loops, `<prbs polynomial="2^31-1"/>`); the Questionable INSTrument register bits
(0 error, 1 data loss, 2 sync loss, 3 clock loss, 4 CDR unlocked) and Operation bit 8 RUN.
Seen in public automation code, not in the guide: `:DATA:SEQuence:SET:VALue '<name>',<block>`
and `:DATA:SEQuence:BIND '<name>','<location>'...`.
NOT confirmed (the forms used here follow the guide's identifier conventions and must be checked
against a real M8070B before use): `:SOURce:FREQuency 'M1.ClkGen',<Hz>` for the symbol rate,
`:OUTPut:STATe '<id>',0|1`, the per-location argument of
`:STATus:QUEStionable:INSTrument:CONDition?`, and the error ratio measurement's
`:PLUGin:ERATio:ACQuisition:FTIMe|:STARt|:STOP 'ErrorRatio'` (its fixed accumulation time of
1 s to 31.5 Ms is from the M8000 User Guide, "Acquisition and Evaluation Parameters for Error
Ratio"). DOMAIN.md's `:DATA:SEQ:SET '<loc>',PRBS,'2^31-1'` form was not found: the M8070 takes a
sequence definition block instead. Locations: generator 'M1.DataOut1', clock 'M1.ClkGen', error
detector of lane k 'M<k+1>.DataIn1' (one M8046A per lane).
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass
from typing import ClassVar

from drivers.base import ScpiInstrument
from drivers.errors import InstrumentReplyError, InstrumentTimeout
from drivers.interfaces import ErrorCount

#: pattern name -> (PRBS order, required line coding or None for either)
PATTERNS: dict[str, tuple[int, str | None]] = {
    "PRBS13Q": (13, "PAM4"),
    "PRBS31Q": (31, "PAM4"),
    "PRBS7": (7, None),
    "PRBS9": (9, None),
    "PRBS13": (13, None),
    "PRBS15": (15, None),
    "PRBS23": (23, None),
    "PRBS31": (31, None),
}
SCPI_NAN = 9.91e37
_STRING = re.compile(r'^"([^"]*)"$')


class DetectorCondition(enum.IntFlag):
    """An error detector's Questionable INSTrument condition bits."""

    NONE = 0
    ERROR = 1
    DATA_LOSS = 2
    SYNC_LOSS = 4
    CLOCK_LOSS = 8
    CDR_UNLOCKED = 16


@dataclass(frozen=True, slots=True)
class InstantaneousRatios:
    """`:FETCh:IBERate?`: ratios over the detector's last short interval (nan without data)."""

    ber: float
    ser: float  # nan for NRZ
    level_ser: tuple[float, ...]  # PAM4: by transmitted level 0..3; () for NRZ


def _sequence_block(polynomial: int, analyzer: bool) -> str:
    """A sequence definition that loops one PRBS block (the analyzer's block also synchronises),
    as an IEEE 488.2 definite-length block."""
    prbs = f'<prbs polynomial="2^{polynomial}-1" />'
    if analyzer:
        body = f'<syncAndLoopBlock length="512">{prbs}</syncAndLoopBlock>'
    else:
        body = f'<loop><block length="512">{prbs}</block></loop>'
    xml = (
        '<sequenceDefinition xmlns="http://www.agilent.com/schemas/M8000/DataSequence">'
        f"<description /><sequence>{body}</sequence></sequenceDefinition>"
    )
    length = str(len(xml))
    return f"#{len(length)}{length}{xml}"


class M8070BBert(ScpiInstrument):
    """A BERT run by the M8070B system software; implements `Bert`. Lane k (1-based) is error
    detector 'M<k+1>.DataIn1'. A model sets its symbol rate range (`baud_range_gbd`).

    `count_errors` runs the error ratio measurement for a fixed time on every detector, polls the
    RUN bit until it ends, then reads each lane's counters. A lane whose detector has no data
    (module output squelched, loss of signal) compares no bits: its count has `bits == 0` and
    `ber` nan; a lane out of pattern sync counts errors at about half its bits. `conditions`
    tells which.
    """

    default_timeout_s: ClassVar[float] = 5.0  # sequence loads take a while
    generator: ClassVar[str] = "M1.DataOut1"
    clock: ClassVar[str] = "M1.ClkGen"
    measurement: ClassVar[str] = "ErrorRatio"
    lanes: ClassVar[int] = 8
    baud_range_gbd: ClassVar[tuple[float, float]]  # the model's generator and detectors, GBd
    gate_range_s: ClassVar[tuple[float, float]] = (1.0, 31.5e6)

    @property
    def lane_count(self) -> int:
        return self.lanes

    def analyzer(self, lane: int) -> str:
        if not 1 <= lane <= self.lanes:
            raise ValueError(f"lane {lane} is outside 1..{self.lanes}")
        return f"M{lane + 1}.DataIn1"

    def _analyzers(self) -> list[str]:
        return [self.analyzer(lane) for lane in range(1, self.lanes + 1)]

    # --- setup ------------------------------------------------------------------------------------
    def configure(self, modulation: str, pattern: str, baud_rate_gbd: float) -> None:
        modulation = modulation.upper()
        if modulation not in ("NRZ", "PAM4"):
            raise ValueError(f"modulation {modulation!r} is not NRZ or PAM4")
        if pattern.upper() not in PATTERNS:
            raise ValueError(f"pattern {pattern!r} is not one of {sorted(PATTERNS)}")
        order, needs = PATTERNS[pattern.upper()]
        if needs is not None and needs != modulation:
            raise ValueError(f"{pattern} is a {needs} pattern, not {modulation}")
        low, high = self.baud_range_gbd
        if not low <= baud_rate_gbd <= high:
            raise ValueError(f"symbol rate {baud_rate_gbd} GBd is outside {low:g}..{high:g} GBd")
        locations = [self.generator, *self._analyzers()]
        with self.lock:
            self.write(f":SOUR:FREQ '{self.clock}',{round(baud_rate_gbd * 1e9)}")
            for location in locations:
                self.write(f":DATA:LIN '{location}',{modulation}")
                if modulation == "PAM4":
                    self.write(f":DATA:LIN:PAM4:MAPP '{location}',GRAY")
            self.write(f":DATA:SEQ:SET:VAL 'Generator',{_sequence_block(order, analyzer=False)}")
            self.write(f":DATA:SEQ:SET:VAL 'Analyzer',{_sequence_block(order, analyzer=True)}")
            self.write(f":DATA:SEQ:BIND 'Generator','{self.generator}'")
            self.write(":DATA:SEQ:BIND 'Analyzer'," + ",".join(f"'{a}'" for a in locations[1:]))
            self.query("*OPC?")  # the detectors have re-synchronised to the new pattern

    def set_output(self, enabled: bool) -> None:
        self.write(f":OUTP:STAT '{self.generator}',{1 if enabled else 0}")

    def output_enabled(self) -> bool:
        reply = self.query(f":OUTP:STAT? '{self.generator}'")
        if reply not in ("0", "1"):
            raise InstrumentReplyError(":OUTP:STAT?", reply, "0 or 1", resource=self.resource)
        return reply == "1"

    def safe_state(self) -> None:
        """Generator output off: the reference transmitter stops sending data."""
        self.set_output(False)

    # --- counting ---------------------------------------------------------------------------------
    def count_errors(self, lanes: tuple[int, ...], gate_time_s: float) -> tuple[ErrorCount, ...]:
        if not lanes:
            raise ValueError("no lanes to count")
        locations = [self.analyzer(lane) for lane in lanes]
        low, high = self.gate_range_s
        if not low <= gate_time_s <= high:
            raise ValueError(f"gate {gate_time_s} s is outside {low:g}..{high:g} s")
        with self.lock:
            self.write(f":PLUG:ERAT:ACQ:FTIM '{self.measurement}',{gate_time_s:.6g}")
            self.write(f":PLUG:ERAT:STAR '{self.measurement}'")
            self._wait_for_gate(gate_time_s)
            return tuple(
                self._error_count(lane, location, gate_time_s)
                for lane, location in zip(lanes, locations, strict=True)
            )

    def _wait_for_gate(self, gate_time_s: float) -> None:
        budget_s = 1.5 * gate_time_s + 2.0 * self.transport.timeout_s
        deadline = time.monotonic() + budget_s
        pause_s = 0.001
        while self._running():
            if time.monotonic() > deadline:
                raise InstrumentTimeout(
                    ":STAT:OPER:COND? (error ratio gate)", budget_s, resource=self.resource
                )
            time.sleep(pause_s)
            pause_s = min(2 * pause_s, 0.05, gate_time_s / 20)

    def _running(self) -> bool:
        reply = self.query(":STAT:OPER:COND?")
        try:
            return bool(int(reply) & (1 << 8))
        except ValueError:
            raise InstrumentReplyError(
                ":STAT:OPER:COND?", reply, "a register value", resource=self.resource
            ) from None

    def _fields(self, command: str) -> tuple[str, list[float]]:
        """`(timestamp,"location",n,...)` -> (location, [n, ...])."""
        reply = self.query(command)
        parts = reply.strip().removeprefix("(").removesuffix(")").split(",")
        location = _STRING.match(parts[1].strip()) if len(parts) > 2 else None
        try:
            if location is None or not reply.startswith("("):
                raise ValueError(reply)
            float(parts[0])
            return location[1], [float(p) for p in parts[2:]]
        except ValueError:
            raise InstrumentReplyError(
                command, reply, '(timestamp,"location",values...)', resource=self.resource
            ) from None

    def _error_count(self, lane: int, location: str, gate_time_s: float) -> ErrorCount:
        command = f":FETC:BCO? '{location}'"
        where, values = self._fields(command)
        if where != location or len(values) not in (4, 14):  # NRZ; PAM4 adds symbol counters
            raise InstrumentReplyError(
                command,
                f"{where}: {len(values)} values",
                f"{location}, 4 or 14 counters",
                resource=self.resource,
            )
        pam4 = len(values) == 14
        counts = [round(v) for v in values]
        ones, zeros, errored_ones, errored_zeros = counts[:4]
        return ErrorCount(
            lane=lane,
            gate_time_s=gate_time_s,
            bits=ones + zeros,
            errors=errored_ones + errored_zeros,
            symbols=counts[4] if pam4 else 0,
            level_symbol_errors=tuple(counts[7:14:2]) if pam4 else (),
        )

    # --- status -----------------------------------------------------------------------------------
    def conditions(self, lane: int) -> DetectorCondition:
        """What lane `lane`'s error detector reports now (data loss, sync loss, ...)."""
        command = f":STAT:QUES:INST:COND? '{self.analyzer(lane)}'"
        reply = self.query(command)
        try:
            return DetectorCondition(int(reply) & 0x1F)
        except ValueError:
            raise InstrumentReplyError(
                command, reply, "a register value", resource=self.resource
            ) from None

    def instantaneous_ratios(self, lane: int) -> InstantaneousRatios:
        """BER (and PAM4 SER by level) over the detector's last short interval: for watching a
        link, not for measuring it (use `count_errors`)."""
        location = self.analyzer(lane)
        command = f":FETC:IBER? '{location}'"
        where, values = self._fields(command)
        if where != location or len(values) not in (1, 6):  # NRZ: BER; PAM4: also SER by level
            raise InstrumentReplyError(
                command, f"{where}: {values}", f"{location}, 1 or 6 ratios", resource=self.resource
            )
        ratios = [float("nan") if v >= SCPI_NAN else v for v in values]
        if len(ratios) == 1:
            return InstantaneousRatios(ratios[0], float("nan"), ())
        return InstantaneousRatios(ratios[0], ratios[1], tuple(ratios[2:]))


class M8040A(M8070BBert):
    """Keysight M8040A: M8045A generator and M8046A detectors, 2 to 64 GBd (M8045A option G64;
    M8000 Series User Guide, "Bit Rate Range": specified to 58 GBd, programmable to 64.8)."""

    baud_range_gbd: ClassVar[tuple[float, float]] = (2.0, 64.0)
