"""Simulated Keysight M8040A 64 GBd BERT (M8070B system software's SCPI): an M8045A pattern
generator driving the bench's reference transmitter, and an M8046A error detector per module lane.
`SimM8070BBert` is the M8070B server itself, which the M8050A twin shares.

Gated counts are binomial draws from the error rates the module's receiver delivers for the OMA
the world routes to it, so they follow the attenuator; a gate lasts its simulated time.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field

import numpy as np

from sim_instruments.receiver import LaneErrorRates
from sim_instruments.scpi import ScpiDevice, ScpiError, block, parse_bool, parse_number, scpi
from sim_instruments.world import World

GENERATOR = "M1.DataOut1"
SPARE_OUTPUT = "M1.DataOut2"  # the M8045A's second channel: not wired on this bench
CLOCK_GENERATOR = "M1.ClkGen"
MEASUREMENT = "ErrorRatio"
MIN_BAUD_HZ, MAX_BAUD_HZ = 2e9, 64e9  # M8045A symbol rate range (option G64)
MIN_GATE_S, MAX_GATE_S = 1.0, 31.5e6  # error ratio "Accumulation Fix Time" range
CONFIGURE_S = 0.5  # loading a sequence or line coding, and re-synchronising the detectors
#: above this BER a detector cannot keep pattern synchronisation (a simulator parameter; the real
#: sync threshold is a setting whose default was not confirmed)
SYNC_LOSS_BER = 0.05
SCPI_NAN = "9.91E+37"
RUN = 1 << 8  # STATus:OPERation bit 8: a measurement is running
ERROR, DATA_LOSS, SYNC_LOSS, CLOCK_LOSS, CDR_UNLOCKED = 1, 2, 4, 8, 16
_IDENTIFIER = re.compile(r"^\s*'([^']*)'\s*(?:,\s*(.*?))?\s*$", re.DOTALL)
_POLYNOMIAL = re.compile(r"^2\^(\d+)-1$")


@dataclass
class _Counters:
    """An error detector's counters since the start of the accumulation period."""

    ones: int = 0
    zeros: int = 0
    errored_ones: int = 0
    errored_zeros: int = 0
    level_symbols: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    level_errors: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


def _split_identifier(args: str) -> tuple[str, str]:
    match = _IDENTIFIER.match(args)
    if not match:
        raise ScpiError(-109, "Missing parameter")
    return match[1], match[2] or ""


def _pam4_node(suffixes: tuple[int, ...]) -> None:
    if suffixes != (4,):
        raise ScpiError(-113, "Undefined header")


class SimM8070BBert(ScpiDevice):
    """A BERT behind the M8070B system software: generator 'M1.DataOut1' (clock 'M1.ClkGen')
    driving the bench's reference transmitter, error detector 'M<k+1>.DataIn1' on module lane k.
    A model sets its identity and symbol rate range."""

    manufacturer = "Keysight Technologies"
    min_baud_hz: float
    max_baud_hz: float

    def __init__(self, world: World, serial_number: str, lanes: int = 8) -> None:
        super().__init__(world.clock, serial_number)
        assert world.rx is not None, f"the {self.model} drives the bench's receive path"
        self.world = world
        self.rx = world.rx
        self.analyzers = [f"M{lane + 1}.DataIn1" for lane in range(1, lanes + 1)]
        self.rng = np.random.default_rng()
        # Instrument-specific faults (tests arm them on the twin directly).
        self.forced_sync_loss: set[int] = set()  # lanes (1-based) whose detector loses sync
        self.error_bursts: dict[int, int] = {}  # lane -> extra errors in its next counting
        self.reset()

    def reset(self) -> None:
        self.baud_hz = 26.5625e9
        locations = [GENERATOR, SPARE_OUTPUT, *self.analyzers]
        self.line_coding = dict.fromkeys(locations, "NRZ")
        self.mapping = dict.fromkeys(locations, "GRAY")
        self.sequences: dict[str, str] = {}
        self.polynomials = {"Generator": 31, "Analyzer": 31}
        self.bindings = {"Generator": [GENERATOR], "Analyzer": list(self.analyzers)}
        self.outputs = {GENERATOR: False, SPARE_OUTPUT: False}
        self.gate_s = MIN_GATE_S
        self.gate_start_s: float | None = None
        self.gate_end_s = 0.0
        self.counted_to_s = 0.0
        self.counters = {loc: _Counters() for loc in self.analyzers}
        self.busy_until_s = 0.0
        self._drive()

    def wait_operations(self) -> None:
        self.clock.sleep(self.busy_until_s - self.clock.now_s())

    # --- locations --------------------------------------------------------------------------------
    def _location(self, identifier: str, *, outputs: bool = True, inputs: bool = True) -> str:
        if outputs and identifier in self.outputs:
            return identifier
        if inputs:
            # The M8046A's input answers to 'Mn.DataIn' and 'Mn.DataIn1'.
            name = identifier + "1" if identifier.endswith(".DataIn") else identifier
            if name in self.counters:
                return name
        raise ScpiError(-224, "Illegal parameter value")

    def _lane(self, location: str) -> int:
        return self.analyzers.index(location) + 1

    def _reconfigured(self) -> None:
        self.busy_until_s = self.clock.now_s() + CONFIGURE_S
        self._drive()

    def _drive(self) -> None:
        """Tell the reference transmitter what the generator output sends it."""
        tx = self.rx.ref_tx
        with self.world.lock:
            tx.driven = self.outputs[GENERATOR] and GENERATOR in self.bindings["Generator"]
            tx.line_coding = self.line_coding[GENERATOR]
            tx.pam4_mapping = self.mapping[GENERATOR]
            tx.polynomial = self.polynomials["Generator"]
            tx.baud_gbd = self.baud_hz / 1e9

    # --- clock, line coding, patterns, output -----------------------------------------------------
    @scpi("SOURce:FREQuency")
    @scpi("FREQuency")
    def _set_frequency(self, s: tuple[int, ...], args: str) -> None:
        identifier, value = _split_identifier(args)
        if identifier != CLOCK_GENERATOR:
            raise ScpiError(-224, "Illegal parameter value")
        baud = parse_number(value, {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9})
        if not self.min_baud_hz <= baud <= self.max_baud_hz:
            raise ScpiError(-222, "Data out of range")
        self.baud_hz = baud
        self._reconfigured()

    @scpi("SOURce:FREQuency", query=True)
    @scpi("FREQuency", query=True)
    def _get_frequency(self, s: tuple[int, ...], args: str) -> str:
        if _split_identifier(args)[0] != CLOCK_GENERATOR:
            raise ScpiError(-224, "Illegal parameter value")
        return f"{self.baud_hz:.12E}"

    @scpi("DATA:LINecoding")
    @scpi("DATA:LINecoding:VALue")
    def _set_line_coding(self, s: tuple[int, ...], args: str) -> None:
        identifier, value = _split_identifier(args)
        location = self._location(identifier)
        coding = value.strip().upper()
        if coding not in ("NRZ", "PAM4"):
            raise ScpiError(-224, "Illegal parameter value")
        self.line_coding[location] = coding
        self._reconfigured()

    @scpi("DATA:LINecoding", query=True)
    @scpi("DATA:LINecoding:VALue", query=True)
    def _get_line_coding(self, s: tuple[int, ...], args: str) -> str:
        return self.line_coding[self._location(_split_identifier(args)[0])]

    # "PAM4" ends in a digit, which the header parser reads as a numeric suffix.
    @scpi("DATA:LINecoding:PAM#:MAPPing")
    def _set_mapping(self, s: tuple[int, ...], args: str) -> None:
        _pam4_node(s)
        identifier, value = _split_identifier(args)
        location = self._location(identifier)
        mapping = {"NONE": "NONE", "GRAY": "GRAY", "CUST": "CUSTOM", "CUSTOM": "CUSTOM"}.get(
            value.strip().upper()
        )
        if mapping is None:
            raise ScpiError(-224, "Illegal parameter value")
        self.mapping[location] = mapping
        self._reconfigured()

    @scpi("DATA:LINecoding:PAM#:MAPPing", query=True)
    def _get_mapping(self, s: tuple[int, ...], args: str) -> str:
        _pam4_node(s)
        return self.mapping[self._location(_split_identifier(args)[0])]

    @scpi("DATA:SEQuence:SET:VALue")
    @scpi("DATA:SEQuence:SET")
    def _set_sequence(self, s: tuple[int, ...], args: str) -> None:
        name, value = _split_identifier(args)
        if name not in self.polynomials:
            raise ScpiError(-224, "Illegal parameter value")
        match = re.fullmatch(r"#([1-9])(\d+)(.*)", value, re.DOTALL)
        if not match or len(match[2]) != int(match[1]) or int(match[2]) != len(match[3]):
            raise ScpiError(-161, "Invalid block data")
        self.polynomials[name] = self._parse_sequence(match[3])
        self.sequences[name] = match[3]
        self._reconfigured()

    @staticmethod
    def _parse_sequence(text: str) -> int:
        """The PRBS order of a sequence definition whose looped block is one PRBS."""
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError:
            raise ScpiError(-224, "Illegal parameter value") from None
        found = [e.get("polynomial", "") for e in root.iter() if e.tag.endswith("prbs")]
        match = _POLYNOMIAL.match(found[0]) if len(found) == 1 else None
        if match is None or int(match[1]) not in (7, 9, 10, 11, 13, 15, 23, 31):
            raise ScpiError(-224, "Illegal parameter value")
        return int(match[1])

    @scpi("DATA:SEQuence:SET:VALue", query=True)
    @scpi("DATA:SEQuence:SET", query=True)
    def _get_sequence(self, s: tuple[int, ...], args: str) -> bytes:
        name = _split_identifier(args)[0]
        if name not in self.sequences:
            raise ScpiError(-224, "Illegal parameter value")
        return block(self.sequences[name].encode())

    @scpi("DATA:SEQuence:BIND")
    def _bind(self, s: tuple[int, ...], args: str) -> None:
        name, rest = _split_identifier(args)
        if name not in self.bindings:
            raise ScpiError(-224, "Illegal parameter value")
        identifiers = re.findall(r"'([^']*)'", rest)
        if not identifiers:
            raise ScpiError(-109, "Missing parameter")
        wanted_outputs = name == "Generator"
        locations = [
            self._location(i, outputs=wanted_outputs, inputs=not wanted_outputs)
            for i in identifiers
        ]
        self.bindings[name] = locations
        self._reconfigured()

    @scpi("DATA:SEQuence:BIND", query=True)
    def _get_bind(self, s: tuple[int, ...], args: str) -> str:
        name = _split_identifier(args)[0]
        if name not in self.bindings:
            raise ScpiError(-224, "Illegal parameter value")
        return ",".join(f'"{location}"' for location in self.bindings[name])

    @scpi("OUTPut:STATe")
    @scpi("OUTPut")
    def _set_output(self, s: tuple[int, ...], args: str) -> None:
        identifier, value = _split_identifier(args)
        location = self._location(identifier, inputs=False)
        self.outputs[location] = parse_bool(value)
        self._drive()

    @scpi("OUTPut:STATe", query=True)
    @scpi("OUTPut", query=True)
    def _get_output(self, s: tuple[int, ...], args: str) -> str:
        location = self._location(_split_identifier(args)[0], inputs=False)
        return "1" if self.outputs[location] else "0"

    # --- the error ratio measurement: a gate of fixed time on every detector ------------------
    def _measurement(self, args: str) -> str:
        name, rest = _split_identifier(args)
        if name != MEASUREMENT:
            raise ScpiError(-224, "Illegal parameter value")
        return rest

    @scpi("PLUGin:ERATio:ACQuisition:FTIMe")
    def _set_gate(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(self._measurement(args), {"S": 1.0, "MS": 1e-3})
        if not MIN_GATE_S <= value <= MAX_GATE_S:
            raise ScpiError(-222, "Data out of range")
        self.gate_s = value

    @scpi("PLUGin:ERATio:ACQuisition:FTIMe", query=True)
    def _get_gate(self, s: tuple[int, ...], args: str) -> str:
        self._measurement(args)
        return f"{self.gate_s:.6E}"

    @scpi("PLUGin:ERATio:STARt")
    def _start(self, s: tuple[int, ...], args: str) -> None:
        self._measurement(args)
        now = self.clock.now_s()
        self.gate_start_s = self.counted_to_s = now
        self.gate_end_s = now + self.gate_s
        self.counters = {loc: _Counters() for loc in self.analyzers}

    @scpi("PLUGin:ERATio:STOP")
    def _stop(self, s: tuple[int, ...], args: str) -> None:
        self._measurement(args)
        self._advance()
        self.gate_end_s = min(self.gate_end_s, self.clock.now_s())

    @scpi("STATus:OPERation:CONDition", query=True)
    def _operation(self, s: tuple[int, ...], args: str) -> str:
        self._advance()
        running = self.gate_start_s is not None and self.clock.now_s() < self.gate_end_s
        return str(RUN if running else 0)

    def _advance(self) -> None:
        """Count every detector up to now (or to the end of the gate)."""
        if self.gate_start_s is None:
            return
        until = min(self.clock.now_s(), self.gate_end_s)
        duration = until - self.counted_to_s
        if duration <= 0:
            return
        for location in self.analyzers:
            burst = self.error_bursts.pop(self._lane(location), 0)
            self._count(location, duration, self.counters[location], burst)
        self.counted_to_s = until

    # --- what each detector sees --------------------------------------------------------------
    def _detector_state(self, location: str) -> tuple[int, LaneErrorRates | None]:
        """(status bits, error rates); rates None with SYNC_LOSS means errors saturate."""
        lane = self._lane(location)
        rates = self.rx.module_output(lane)
        if rates is None:
            return DATA_LOSS | SYNC_LOSS | CDR_UNLOCKED, None
        if lane in self.forced_sync_loss or not self._synchronisable(location):
            return SYNC_LOSS | ERROR, None
        if rates.ber > SYNC_LOSS_BER:
            return SYNC_LOSS | ERROR, None
        errors_per_decisecond = rates.ber * self.baud_hz * 0.1 * self._bits_per_symbol(location)
        return (ERROR if errors_per_decisecond >= 1.0 else 0), rates

    def _synchronisable(self, location: str) -> bool:
        """Does the detector expect what the generator sends (coding, mapping, pattern)?"""
        coding = self.line_coding[location]
        return (
            location in self.bindings["Analyzer"]
            and GENERATOR in self.bindings["Generator"]
            and coding == self.line_coding[GENERATOR]
            and (coding == "NRZ" or self.mapping[location] == self.mapping[GENERATOR] != "CUSTOM")
            and self.polynomials["Analyzer"] == self.polynomials["Generator"]
        )

    def _bits_per_symbol(self, location: str) -> int:
        return 2 if self.line_coding[location] == "PAM4" else 1

    def _count(self, location: str, duration_s: float, counters: _Counters, burst: int = 0) -> None:
        """Add `duration_s` of counting to `counters`; `burst` extra errored symbols (a burst
        the channel's statistics do not predict, as a FEC codeword-error histogram shows)."""
        status, rates = self._detector_state(location)
        if status & DATA_LOSS:
            return  # the detector's CDR has nothing to lock to: no bits are compared
        symbols = round(self.baud_hz * duration_s)
        per_level = [symbols // 4 + (1 if k < symbols % 4 else 0) for k in range(4)]
        pam4 = self.line_coding[location] == "PAM4"
        bits = symbols * self._bits_per_symbol(location)
        if rates is None:  # out of sync: compared against an unaligned pattern
            bit_errors = int(self.rng.binomial(bits, 0.5))
            level_errors = [int(self.rng.binomial(n, 0.75)) for n in per_level]
        else:
            level_errors, bit_errors = [0, 0, 0, 0], 0
            costs = self._crossing_bits(location)
            for level, (down, up) in enumerate(rates.crossings):
                n_down = int(self.rng.binomial(per_level[level], down)) if down else 0
                n_up = int(self.rng.binomial(per_level[level], up)) if up else 0
                level_errors[level] = n_down + n_up
                bit_errors += n_down * costs[level][0] + n_up * costs[level][1]
            for level in range(4):
                level_errors[level] = min(per_level[level], level_errors[level] + burst // 4)
            bit_errors = min(bits, bit_errors + burst // 4 * 4)
        errored_ones = int(self.rng.binomial(bit_errors, 0.5))
        counters.ones += bits - bits // 2
        counters.zeros += bits // 2
        counters.errored_ones += errored_ones
        counters.errored_zeros += bit_errors - errored_ones
        if pam4:
            for level in range(4):
                counters.level_symbols[level] += per_level[level]
                counters.level_errors[level] += level_errors[level]

    def _crossing_bits(self, location: str) -> tuple[tuple[int, int], ...]:
        """Bits lost per (down, up) symbol crossing of each level: one with Gray coding; the
        middle boundary (01 <-> 10) costs two without it."""
        if self.mapping[location] == "GRAY" or self.line_coding[location] == "NRZ":
            return ((1, 1),) * 4
        return ((1, 1), (1, 2), (2, 1), (1, 1))

    # --- results ------------------------------------------------------------------------------
    @scpi("FETCh:BCOunt", query=True)
    def _bit_counts(self, s: tuple[int, ...], args: str) -> str:
        location = self._location(_split_identifier(args)[0], outputs=False)
        self._advance()
        c = self.counters[location]
        values = [c.ones, c.zeros, c.errored_ones, c.errored_zeros]
        if self.line_coding[location] == "PAM4":
            values += [sum(c.level_symbols), sum(c.level_errors)]
            for level in range(4):
                values += [c.level_symbols[level], c.level_errors[level]]
        numbers = ",".join(f"{float(v):.15g}" for v in values)
        return f'({time.time():.3f},"{location}",{numbers})'

    @scpi("FETCh:IBERate", query=True)
    def _instantaneous(self, s: tuple[int, ...], args: str) -> str:
        """Ratios over the last decisecond (not part of any gate)."""
        location = self._location(_split_identifier(args)[0], outputs=False)
        pam4 = self.line_coding[location] == "PAM4"
        status, _ = self._detector_state(location)
        if status & DATA_LOSS:
            ratios = [SCPI_NAN] * (6 if pam4 else 1)
        else:
            window = _Counters()
            self._count(location, 0.1, window)
            bits = window.ones + window.zeros
            ratios = [f"{(window.errored_ones + window.errored_zeros) / bits:.6E}"]
            if pam4:
                ratios.append(f"{sum(window.level_errors) / sum(window.level_symbols):.6E}")
                ratios += [
                    f"{e / n:.6E}"
                    for e, n in zip(window.level_errors, window.level_symbols, strict=True)
                ]
        return f'({time.time():.3f},"{location}",{",".join(ratios)})'

    @scpi("STATus:QUEStionable:INSTrument:CONDition", query=True)
    def _condition(self, s: tuple[int, ...], args: str) -> str:
        if args.strip():
            locations = [self._location(_split_identifier(args)[0], outputs=False)]
        else:
            locations = list(self.analyzers)
        bits = 0
        for location in locations:
            bits |= self._detector_state(location)[0]
        return str(bits)

    # --- instrument-specific faults -----------------------------------------------------------
    def clear_instrument_faults(self) -> None:
        with self.lock:
            self.forced_sync_loss.clear()
            self.error_bursts.clear()


class SimM8040A(SimM8070BBert):
    model = "M8040A"
    firmware = "8.5.140.7"
    min_baud_hz, max_baud_hz = MIN_BAUD_HZ, MAX_BAUD_HZ
