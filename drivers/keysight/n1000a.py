"""Keysight N1000A DCA-X wide-bandwidth sampling oscilloscope with an optical module, via FlexDCA.

Command set: Keysight FlexDCA Programmer's Guide (helpfiles.keysight.com/scopes/FlexDCA-PG):
`:SYSTem:MODE EYE|OSC`, `:CHANnel<slot><letter>:DISPlay|:WAVelength WAVelength<n>`,
`:TIMebase:BRATe`, `:TRIGger:PLENgth[:AUTodetect]`, `:TRIGger:BRATe:AUTodetect`, `:TRIGger:PLOCk`,
`:ACQuire:EPATtern`, `:ACQuire:SPBit:MODe MANual`, `:ACQuire:SPBit`,
`:LTESt:ACQuire:CTYPe:PATTerns`, `:LTESt:ACQuire:STATe`, `:ACQuire:CDISplay|:RUN`, `*OPC?`
(returns when the limit test is met),
`:WAVeform:SOURce`, `:SYSTem:BORDer`, `:WAVeform:XYFormat:FLOat:YDATa?` (float32 block of a pattern
waveform: whole pattern, `:ACQuire:SPBit` samples per UI), and the Eye-mode measurements
`:MEASure:EYE:APOWer|OOMA|OER|TDEQ` with `:SOURce`, `:UNITs` and `:STATus?` (CORR when valid;
9.91E+37 when not). Interface channel k is CHAN1A..CHAN1D (an optical module in slot 1).
Not confirmed: which calibrated wavelength WAVelength1..3 is (taken here as 850/1310/1550 nm, as on
modules with three), the `:UNITs` argument words (DBM/WATT, DECibel), and that TDEQ may take a
channel as its source (compliance setups put it on a TDECQ-equaliser function).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError
from drivers.interfaces import EyeReadouts, Waveform

PATTERN_LENGTHS = {"PRBS13Q": 8191, "SSPRQ": 65535}
CALIBRATED_WAVELENGTHS_NM = {1: 850.0, 2: 1310.0, 3: 1550.0}
INVALID = 9.9e37  # FlexDCA answers 9.91E+37 for a measurement it could not make


class N1000AChannel(ScpiInstrument):
    """One optical channel; shares the mainframe's transport and lock."""

    display = ScpiProperty[bool](
        ":CHANnel{channel}:DISPlay?", ":CHANnel{channel}:DISPlay {value}", kind=bool
    )
    wavelength_setting = ScpiProperty[str](
        ":CHANnel{channel}:WAVelength?",
        ":CHANnel{channel}:WAVelength {value}",
        kind=str,
        choices=("WAVelength1", "WAVelength2", "WAVelength3"),
    )

    def __init__(self, scope: N1000A, name: str) -> None:
        super().__init__(scope.transport)
        self.lock = scope.lock
        self.name = name

    def scpi_args(self) -> dict[str, Any]:
        return {"channel": self.name}


class N1000A(ScpiInstrument):
    """Keysight N1000A DCA-X (FlexDCA); implements `SamplingScope`."""

    default_timeout_s: ClassVar[float] = 10.0
    #: longest a pattern-locked acquisition may take before it counts as hung
    acquisition_timeout_s: ClassVar[float] = 60.0
    #: pattern repeats accumulated for the eye measurements
    eye_patterns: ClassVar[int] = 4
    slot: ClassVar[int] = 1
    channels: ClassVar[int] = 4

    mode = ScpiProperty[str](
        ":SYSTem:MODE?", ":SYSTem:MODE {value}", kind=str, choices=("EYE", "OSC")
    )
    symbol_rate_hz = ScpiProperty[float](
        ":TIMebase:BRATe?", ":TIMebase:BRATe {value}", unit="Bd", limits=(1e9, 250e9), fmt="{:.10e}"
    )
    pattern_length = ScpiProperty[int](":TRIGger:PLENgth?", ":TRIGger:PLENgth {value}", kind=int)
    pattern_lock = ScpiProperty[bool](":TRIGger:PLOCk?", ":TRIGger:PLOCk {value}", kind=bool)
    entire_pattern = ScpiProperty[bool](
        ":ACQuire:EPATtern?", ":ACQuire:EPATtern {value}", kind=bool
    )
    samples_per_ui = ScpiProperty[int](
        ":ACQuire:SPBit?", ":ACQuire:SPBit {value}", kind=int, limits=(1, 256)
    )
    limit_test = ScpiProperty[bool](
        ":LTESt:ACQuire:STATe?", ":LTESt:ACQuire:STATe {value}", kind=bool
    )
    limit_patterns = ScpiProperty[int](
        ":LTESt:ACQuire:CTYPe:PATTerns?",
        ":LTESt:ACQuire:CTYPe:PATTerns {value}",
        kind=int,
        limits=(1, 1000),
    )
    byte_order = ScpiProperty[str](
        ":SYSTem:BORDer?", ":SYSTem:BORDer {value}", kind=str, choices=("LEND", "BEND")
    )

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self._channels = [N1000AChannel(self, f"1{'ABCD'[i]}") for i in range(self.channels)]
        self._eye: tuple[float, str] | None = None  # (baud rate in Hz, pattern) configured

    def channel(self, channel: int) -> N1000AChannel:
        if not 1 <= channel <= self.channels:
            raise ValueError(f"channel {channel} is outside 1..{self.channels}")
        return self._channels[channel - 1]

    def source_name(self, channel: int) -> str:
        return f"CHAN{self.channel(channel).name}"

    def reset(self) -> None:
        super().reset()
        self._eye = None

    def configure_eye(
        self, channel: int, baud_rate_gbd: float, pattern: str, wavelength_nm: float
    ) -> None:
        """Display `channel` at the calibrated wavelength nearest `wavelength_nm`, set the symbol
        rate and pattern length by hand and lock to the pattern; Eye mode."""
        if pattern.upper() not in PATTERN_LENGTHS:
            raise ValueError(f"pattern {pattern!r} is not one of {sorted(PATTERN_LENGTHS)}")
        index, nearest = min(
            CALIBRATED_WAVELENGTHS_NM.items(), key=lambda kv: abs(kv[1] - wavelength_nm)
        )
        if abs(nearest - wavelength_nm) > 50.0:
            raise ValueError(f"no calibrated wavelength near {wavelength_nm} nm")
        port = self.channel(channel)
        with self.lock:
            port.display = True
            port.wavelength_setting = f"WAVelength{index}"
            self.write(":TRIGger:BRATe:AUTodetect 0")
            self.write(":TRIGger:PLENgth:AUTodetect 0")
            self.symbol_rate_hz = baud_rate_gbd * 1e9
            self.pattern_length = PATTERN_LENGTHS[pattern.upper()]
            with self.timeout(self.transport.timeout_s + 5.0):  # finding the pattern takes a moment
                self.pattern_lock = True
            self.mode = "EYE"
            for name, unit in (("APOWer", "WATT"), ("OOMA", "WATT"), ("OER", "DECibel")):
                self.write(f":MEASure:EYE:{name}:UNITs {unit}")
            self._eye = (baud_rate_gbd * 1e9, pattern.upper())

    def _configured(self) -> tuple[float, str]:
        if self._eye is None:
            raise ValueError("configure_eye() first: the symbol rate and pattern are not set")
        return self._eye

    def _acquire(self, patterns: int) -> None:
        """Clear, run until `patterns` pattern repeats are in, and wait for it."""
        self.limit_patterns = patterns
        self.limit_test = True
        self.write(":ACQuire:CDISplay")
        self.write(":ACQuire:RUN")
        with self.timeout(self.transport.timeout_s + self.acquisition_timeout_s):
            self.query("*OPC?", idempotent=False)

    def acquire_waveform(self, channel: int, samples: int) -> Waveform:
        """One pattern-locked pattern waveform of at least `samples` samples: the whole pattern at
        ceil(samples / pattern length) samples per UI (at least 4), starting wherever the pattern
        trigger puts it."""
        baud_hz, pattern = self._configured()
        length = PATTERN_LENGTHS[pattern]
        spb = max(4, math.ceil(samples / length))
        if spb > 256:
            raise ValueError(f"{samples} samples need {spb} samples per UI; at most 256")
        source = self.source_name(channel)
        with self.lock:
            self.mode = "OSC"
            self.entire_pattern = True
            self.write(":ACQuire:SPBit:MODe MANual")
            self.samples_per_ui = spb
            self._acquire(1)
            self.write(f":WAVeform:SOURce {source}")
            self.byte_order = "LEND"
            command = ":WAVeform:XYFormat:FLOat:YDATa?"
            with self.timeout(self.transport.timeout_s + 10.0):
                data = self.query_block(command, "float32")
        if data.size != length * spb:
            raise InstrumentReplyError(
                command, f"{data.size} samples", f"{length * spb} samples", resource=self.resource
            )
        return Waveform(samples_w=data, samples_per_ui=spb, baud_rate_hz=baud_hz, pattern=pattern)

    def measure(self, name: str, channel: int) -> float:
        """One Eye-mode measurement of the last acquisition; NaN when its status is not CORR."""
        header = f":MEASure:EYE:{name}"
        with self.lock:
            self.write(f"{header}:SOURce {self.source_name(channel)}")
            self.write(header)
            status = self.query(f"{header}:STATus?")
            reply = self.query(f"{header}?")
        try:
            value = float(reply)
        except ValueError:
            raise InstrumentReplyError(
                f"{header}?", reply, "a number", resource=self.resource
            ) from None
        return (
            value
            if status.strip().upper().startswith("CORR") and abs(value) < INVALID
            else math.nan
        )

    def eye_readouts(self, channel: int) -> EyeReadouts:
        """Average power, OMA outer, outer ER and TDECQ as this scope's firmware measures them
        over `eye_patterns` pattern repeats; NaN for a measurement the scope cannot make (a dark
        input, no pattern lock)."""
        self._configured()
        with self.lock:
            self.mode = "EYE"
            self._acquire(self.eye_patterns)
            with self.timeout(self.transport.timeout_s + 10.0):  # TDECQ is computed on demand
                return EyeReadouts(
                    average_power_w=self.measure("APOWer", channel),
                    oma_outer_w=self.measure("OOMA", channel),
                    er_outer_db=self.measure("OER", channel),
                    tdecq_db=self.measure("TDEQ", channel),
                )
