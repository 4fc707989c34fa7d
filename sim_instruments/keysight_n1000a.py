"""Simulated Keysight N1000A DCA-X with a 4-channel optical module in slot 1, run by FlexDCA.

Channel 1A sees the modulated light at the "scope:1" port (1B-1D: "scope:2".."scope:4"). A
pattern-locked acquisition takes time; the pattern waveform is generated from the lane's truth
(band limit, noise, jitter, random phase), and the eye measurements are this firmware's own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from sim_instruments import waveforms as wf
from sim_instruments.scpi import Reply, ScpiDevice, ScpiError, block, parse_bool, parse_number, scpi
from sim_instruments.transmitter import TxSignal
from sim_instruments.world import World

INVALID = 9.91e37  # FlexDCA's value for a measurement it cannot make
SCOPE_NOISE_W = 2.5e-6  # rms optical noise of the sampling channel at full bandwidth
SCOPE_BANDWIDTH_HZ = 80e9  # O/E and sampler, Gaussian
SAMPLE_RATE_HZ = 250e3  # real-time rate of the sampler: sets how long a pattern takes
EYE_PATTERN_S = 0.3  # one pattern-locked pass of the eye (color grade) acquisition
TDECQ_COMPUTE_S = 0.4  # the firmware's TDECQ computation after an acquisition
CALIBRATED_WAVELENGTHS_NM = {1: 850.0, 2: 1310.0, 3: 1550.0}  # WAVelength1..3 of the module
MEASUREMENTS = ("APOWER", "OOMA", "OER", "TDEQ")
_CHANNEL = re.compile(r"(?<=:)(CHAN(?:NEL)?)(\d)([A-D])(?=:|\?|$)", re.IGNORECASE)
_CHANNEL_ARG = re.compile(r"^\s*CHAN(?:NEL)?(\d)([A-D])\s*$", re.IGNORECASE)
# :MEASure:EYE:<measurement>[:SOURce[1]|:UNITs|:STATus][?] (:CGRade is FlexDCA's alias of :EYE)
_MEASURE = re.compile(
    r"^:MEAS(?:URE)?:(?:EYE|CGR(?:ADE)?):(APOW(?:ER)?|OOMA|OER|TDEQ)"
    r"(?::(SOUR(?:CE)?1?|UNITS?|STAT(?:US)?))?(\?)?$",
    re.IGNORECASE,
)


def _responsivity(wavelength_nm: float) -> float:
    return 1.0 + 0.00054 * (wavelength_nm - 1550.0)  # InGaAs, relative to 1550 nm


@dataclass
class Channel:
    display: bool = False
    wavelength_index: int = 2


@dataclass
class Acquisition:
    """What one acquisition saw: the light's snapshot and the settings it ran with."""

    mode: str
    signal: TxSignal | None
    locked: bool  # pattern lock on, with the rate and length matching the signal
    patterns: int
    samples_per_ui: int
    wavelength_nm: float
    start_ui: float
    waveform: np.ndarray | None = None
    outer_levels_w: tuple[float, float] | None = None  # (P0, P3) of the firmware's OOMA
    results: dict[str, tuple[str, float]] = field(default_factory=dict)


class SimN1000A(ScpiDevice):
    manufacturer = "Keysight Technologies"
    model = "N1000A"
    firmware = "A.07.60.208"
    channels_per_slot = 4

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        self.rng = np.random.default_rng()
        cal = world.bench_rng(f"dca-{serial_number}")
        # calibration residuals of the sampler gain and of the average-power monitor, per channel
        self.gain_error_db = cal.uniform(-0.08, 0.08, self.channels_per_slot)
        self.power_error_db = cal.uniform(-0.08, 0.08, self.channels_per_slot)
        self.reset()

    def reset(self) -> None:
        self.mode = "EYE"
        self.channels = [Channel() for _ in range(self.channels_per_slot)]
        self.channels[0].display = True
        self.symbol_rate_hz = 9.95328e9
        self.pattern_length = 127
        self.pattern_lock = False
        self.entire_pattern = False
        self.spb_manual = False
        self.samples_per_ui = 16
        self.limit_test = False
        self.limit_patterns = 1
        self.little_endian = True
        self.waveform_source = 0
        self.sources = dict.fromkeys(MEASUREMENTS, 0)
        self.units = {"APOWER": "WATT", "OOMA": "WATT", "OER": "DEC", "TDEQ": "DEC"}
        self.acquisitions: list[Acquisition | None] = [None] * self.channels_per_slot
        self.done_at: float | None = None

    # --- headers like :CHAN1A: carry a slot digit and a channel letter ----------------------------
    def _dispatch(self, header: str, args: str) -> Reply:
        header = _CHANNEL.sub(
            lambda m: f"{m[1]}{int(m[2]) * 10 + 'ABCD'.index(m[3].upper()) + 1}",
            ":" + header.lstrip(":"),
        )
        measure = _MEASURE.match(header)
        if measure:
            name = "APOWER" if measure[1].upper().startswith("APOW") else measure[1].upper()
            part = (measure[2] or "VALUE").upper().rstrip("1")
            part = {"SOUR": "SOURCE", "UNIT": "UNITS", "STAT": "STATUS"}.get(part, part)
            return self._dispatch_measure(name, part, args, bool(measure[3]))
        return super()._dispatch(header, args)

    def _channel(self, suffixes: tuple[int, ...]) -> int:
        code = suffixes[0] if suffixes else 11
        slot, letter = divmod(code, 10)
        if slot != 1 or not 1 <= letter <= self.channels_per_slot:
            raise ScpiError(-114, "Header suffix out of range")
        return letter - 1

    def _channel_arg(self, args: str) -> int:
        match = _CHANNEL_ARG.match(args)
        if not match:
            raise ScpiError(-224, "Illegal parameter value")
        return self._channel((int(match[1]) * 10 + "ABCD".index(match[2].upper()) + 1,))

    @staticmethod
    def _on_off(value: bool) -> str:
        return "1" if value else "0"

    # --- system -----------------------------------------------------------------------------------
    @scpi("SYSTem:DEFault")
    def _default(self, s: tuple[int, ...], args: str) -> None:
        self.reset()

    @scpi("SYSTem:MODE")
    def _set_mode(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        modes = {"EYE": "EYE", "OSC": "OSC", "OSCILLOSCOPE": "OSC"}
        if word not in modes:
            raise ScpiError(-224, "Illegal parameter value")
        if modes[word] != self.mode:
            self.mode = modes[word]
            self._clear()

    @scpi("SYSTem:MODE", query=True)
    def _mode(self, s: tuple[int, ...], args: str) -> str:
        return self.mode

    @scpi("SYSTem:BORDer")
    def _set_border(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        if word not in {"LEND", "LENDIAN", "BEND", "BENDIAN"}:
            raise ScpiError(-224, "Illegal parameter value")
        self.little_endian = word.startswith("L")

    @scpi("SYSTem:BORDer", query=True)
    def _border(self, s: tuple[int, ...], args: str) -> str:
        return "LEND" if self.little_endian else "BEND"

    # --- channels, timebase, trigger --------------------------------------------------------------
    @scpi("CHANnel#:DISPlay")
    def _set_display(self, s: tuple[int, ...], args: str) -> None:
        self.channels[self._channel(s)].display = parse_bool(args)

    @scpi("CHANnel#:DISPlay", query=True)
    def _display(self, s: tuple[int, ...], args: str) -> str:
        return self._on_off(self.channels[self._channel(s)].display)

    @scpi("CHANnel#:WAVelength")
    def _set_wavelength(self, s: tuple[int, ...], args: str) -> None:
        match = re.fullmatch(r"\s*WAV(?:ELENGTH)?([123])\s*", args, re.IGNORECASE)
        if not match:
            raise ScpiError(-224, "Illegal parameter value")
        self.channels[self._channel(s)].wavelength_index = int(match[1])

    @scpi("CHANnel#:WAVelength", query=True)
    def _wavelength(self, s: tuple[int, ...], args: str) -> str:
        return f"WAV{self.channels[self._channel(s)].wavelength_index}"

    @scpi("TIMebase:BRATe")
    def _set_rate(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, {"HZ": 1.0, "GHZ": 1e9, "BD": 1.0})
        if not 50e6 <= value <= 250e9:
            raise ScpiError(-222, "Data out of range")
        self.symbol_rate_hz = value
        self._clear()

    @scpi("TIMebase:BRATe", query=True)
    def _rate(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.symbol_rate_hz:+.10E}"

    @scpi("TRIGger:PLENgth")
    def _set_length(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if value != int(value) or not 1 <= value <= 2**23:
            raise ScpiError(-222, "Data out of range")
        self.pattern_length = int(value)
        self._clear()

    @scpi("TRIGger:PLENgth", query=True)
    def _length(self, s: tuple[int, ...], args: str) -> str:
        return str(self.pattern_length)

    @scpi("TRIGger:PLENgth:AUTodetect")
    @scpi("TRIGger:BRATe:AUTodetect")
    def _autodetect(self, s: tuple[int, ...], args: str) -> None:
        parse_bool(args)  # accepted; this firmware always uses the rate and length it is given

    @scpi("TRIGger:PLOCk")
    def _set_lock(self, s: tuple[int, ...], args: str) -> None:
        self.pattern_lock = parse_bool(args)
        self.clock.sleep(0.5 if self.pattern_lock else 0.0)  # finding the pattern takes a moment
        self._clear()

    @scpi("TRIGger:PLOCk", query=True)
    def _lock(self, s: tuple[int, ...], args: str) -> str:
        return self._on_off(self.pattern_lock)

    # --- acquisition ------------------------------------------------------------------------------
    @scpi("ACQuire:EPATtern")
    def _set_epattern(self, s: tuple[int, ...], args: str) -> None:
        self.entire_pattern = parse_bool(args)

    @scpi("ACQuire:EPATtern", query=True)
    def _epattern(self, s: tuple[int, ...], args: str) -> str:
        return self._on_off(self.entire_pattern)

    @scpi("ACQuire:SPBit:MODe")
    def _set_spb_mode(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        if word not in {"MAN", "MANUAL", "AUT", "AUTOMATIC"}:
            raise ScpiError(-224, "Illegal parameter value")
        self.spb_manual = word.startswith("MAN")

    @scpi("ACQuire:SPBit:MODe", query=True)
    def _spb_mode(self, s: tuple[int, ...], args: str) -> str:
        return "MAN" if self.spb_manual else "AUT"

    @scpi("ACQuire:SPBit")
    def _set_spb(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if value != int(value) or not 1 <= value <= 256:
            raise ScpiError(-222, "Data out of range")
        if not self.spb_manual:
            raise ScpiError(-221, "Settings conflict")
        self.samples_per_ui = int(value)

    @scpi("ACQuire:SPBit", query=True)
    def _spb(self, s: tuple[int, ...], args: str) -> str:
        return str(self.samples_per_ui)

    @scpi("LTESt:ACQuire:STATe")
    def _set_limit(self, s: tuple[int, ...], args: str) -> None:
        self.limit_test = parse_bool(args)

    @scpi("LTESt:ACQuire:STATe", query=True)
    def _limit(self, s: tuple[int, ...], args: str) -> str:
        return self._on_off(self.limit_test)

    @scpi("LTESt:ACQuire:CTYPe")
    def _set_limit_type(self, s: tuple[int, ...], args: str) -> None:
        if args.strip().upper() not in {"PATT", "PATTERNS"}:
            raise ScpiError(-224, "Illegal parameter value")  # only pattern counts simulated

    @scpi("LTESt:ACQuire:CTYPe:PATTerns")
    def _set_limit_patterns(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if value != int(value) or not 1 <= value <= 1000:
            raise ScpiError(-222, "Data out of range")
        self.limit_patterns = int(value)

    @scpi("LTESt:ACQuire:CTYPe:PATTerns", query=True)
    def _limit_patterns(self, s: tuple[int, ...], args: str) -> str:
        return str(self.limit_patterns)

    @scpi("ACQuire:CDISplay")
    def _clear_display(self, s: tuple[int, ...], args: str) -> None:
        self._clear()

    @scpi("ACQuire:STOP")
    def _stop(self, s: tuple[int, ...], args: str) -> None:
        self.done_at = None

    @scpi("ACQuire:RUN")
    def _run(self, s: tuple[int, ...], args: str) -> None:
        self._start(self.limit_patterns if self.limit_test else 1)

    @scpi("ACQuire:SINGle")
    def _single(self, s: tuple[int, ...], args: str) -> None:
        self._start(1)

    def wait_operations(self) -> None:
        if self.done_at is not None:
            self.clock.sleep(self.done_at - self.clock.now_s())
            self.done_at = None

    def _clear(self) -> None:
        self.acquisitions = [None] * self.channels_per_slot
        self.done_at = None

    def _start(self, patterns: int) -> None:
        """Acquire on every displayed channel: snapshot the light now, finish later."""
        duration = 0.0
        for index, channel in enumerate(self.channels):
            if not channel.display:
                continue
            source = self.world.signals.get(f"scope:{index + 1}")
            signal = source() if source is not None else None
            locked = self.pattern_lock and (
                signal is None
                or (
                    abs(signal.baud_rate_hz - self.symbol_rate_hz) <= 1e-4 * signal.baud_rate_hz
                    and self.pattern_length == wf.pattern_symbols(signal.pattern).size
                )
            )
            spb = self.samples_per_ui if self.spb_manual else 16
            wavelength = CALIBRATED_WAVELENGTHS_NM[channel.wavelength_index]
            start = float(self.rng.uniform(0.0, self.pattern_length))
            acquisition = Acquisition(self.mode, signal, locked, patterns, spb, wavelength, start)
            self.acquisitions[index] = acquisition
            if self.mode == "OSC":
                duration = max(duration, patterns * (self.pattern_length * spb / SAMPLE_RATE_HZ))
            else:
                duration = max(duration, patterns * EYE_PATTERN_S)
        self.done_at = self.clock.now_s() + duration + 0.02

    def _finished(self, index: int) -> Acquisition:
        self.wait_operations()
        acquisition = self.acquisitions[index]
        if acquisition is None:
            raise ScpiError(-230, "Data corrupt or stale")
        return acquisition

    # --- the light as this channel samples it -----------------------------------------------------
    def _gain(self, index: int, acquisition: Acquisition, errors_db: np.ndarray) -> float:
        signal = acquisition.signal
        if signal is None:
            return 1.0
        ratio = _responsivity(signal.wavelength_nm) / _responsivity(acquisition.wavelength_nm)
        return ratio * 10 ** (errors_db[index] / 10.0)

    def _capture(self, index: int, acquisition: Acquisition, spb: int, average: int) -> np.ndarray:
        """One pattern period at `spb` samples per UI from the acquisition's start phase: the
        lane through the sampler's bandwidth, with jitter, RIN and scope noise (the noise of
        `average` patterns averaged)."""
        signal = acquisition.signal
        count = self.pattern_length * spb
        if signal is None:
            return self.rng.normal(0.0, SCOPE_NOISE_W / math.sqrt(average), count)
        fine = wf.periodic_waveform(
            signal.symbol_levels_w(),
            signal.baud_rate_hz,
            lambda f: signal.response(f) * wf.gaussian_response(f, SCOPE_BANDWIDTH_HZ),
        )
        times = wf.sample_times_ui(
            count, spb, acquisition.start_ui, signal.rj_ui, signal.pj_ui, self.rng
        )
        if not acquisition.locked:  # triggered, but not on the pattern: the phase wanders
            times += self.rng.uniform(0.0, self.pattern_length, count)
        values = wf.interpolate_periodic(fine, times)
        sigma = np.sqrt((signal.rin_sigma(SCOPE_BANDWIDTH_HZ) * values) ** 2 + SCOPE_NOISE_W**2)
        values = values + self.rng.normal(0.0, 1.0, count) * sigma / math.sqrt(average)
        return values * self._gain(index, acquisition, self.gain_error_db)

    # --- waveform transfer ------------------------------------------------------------------------
    @scpi("WAVeform:SOURce")
    def _set_source(self, s: tuple[int, ...], args: str) -> None:
        self.waveform_source = self._channel_arg(args)

    @scpi("WAVeform:SOURce", query=True)
    def _source(self, s: tuple[int, ...], args: str) -> str:
        return f"CHAN1{'ABCD'[self.waveform_source]}"

    def _pattern_waveform(self) -> tuple[Acquisition, np.ndarray]:
        acquisition = self._finished(self.waveform_source)
        if acquisition.mode != "OSC" or not self.entire_pattern or not acquisition.locked:
            raise ScpiError(-221, "Settings conflict")  # only a pattern waveform is simulated
        if acquisition.waveform is None:
            acquisition.waveform = self._capture(
                self.waveform_source, acquisition, acquisition.samples_per_ui, acquisition.patterns
            )
        return acquisition, acquisition.waveform

    @scpi("WAVeform:XYFormat:POINts", query=True)
    def _points(self, s: tuple[int, ...], args: str) -> str:
        return str(self._pattern_waveform()[1].size)

    @scpi("WAVeform:XYFormat:FLOat:YDATa", query=True)
    def _ydata(self, s: tuple[int, ...], args: str) -> bytes:
        return block(
            self._pattern_waveform()[1].astype("<f4" if self.little_endian else ">f4").tobytes()
        )

    @scpi("WAVeform:XYFormat:FLOat:XDATa", query=True)
    def _xdata(self, s: tuple[int, ...], args: str) -> bytes:
        acquisition, values = self._pattern_waveform()
        times = np.arange(values.size) / (acquisition.samples_per_ui * self.symbol_rate_hz)
        return block(times.astype("<f4" if self.little_endian else ">f4").tobytes())

    # --- eye measurements -------------------------------------------------------------------------
    def _dispatch_measure(self, name: str, part: str, args: str, query: bool) -> Reply:
        if part == "SOURCE":
            if query:
                return f"CHAN1{'ABCD'[self.sources[name]]}"
            self.sources[name] = self._channel_arg(args)
            return None
        if part == "UNITS":
            allowed = (
                {"WATT", "DBM"}
                if name in {"APOWER", "OOMA"}
                else {"DEC", "DECIBEL", "RAT", "RATIO"}
            )
            word = args.strip().upper()
            if query:
                return self.units[name]
            if word not in allowed:
                raise ScpiError(-224, "Illegal parameter value")
            self.units[name] = word[:4] if word.startswith(("DEC", "RAT")) else word
            return None
        status, value = self._result(name)
        if part == "STATUS":
            if not query:
                raise ScpiError(-113, "Undefined header")
            return status
        if not query:
            return None  # installing the measurement on the results table
        return f"{value:+.6E}"

    def _result(self, name: str) -> tuple[str, float]:
        index = self.sources[name]
        if self.mode != "EYE":
            return "INV", INVALID
        acquisition = self.acquisitions[index]
        if acquisition is None:
            return "INV", INVALID
        acquisition = self._finished(index)
        if acquisition.mode != "EYE":
            return "INV", INVALID
        if name not in acquisition.results:
            acquisition.results[name] = self._firmware(index, acquisition, name)
        status, value = acquisition.results[name]
        if status == "CORR" and self.units[name] == "DBM":
            value = 10.0 * math.log10(value / 1e-3) if value > 0 else INVALID
        if status == "CORR" and self.units[name] == "RAT":
            value = 10 ** (value / 10.0)
        return status, value

    def _firmware(self, index: int, acquisition: Acquisition, name: str) -> tuple[str, float]:
        """This firmware's eye algorithms (see waveforms.outer_levels and firmware_tdecq_db)."""
        signal = acquisition.signal
        if name == "APOWER":
            gain = self._gain(index, acquisition, self.power_error_db)
            true_w = signal.average_power_w if signal is not None else 0.0
            return "CORR", true_w * gain * (1 + self.rng.normal(0.0, 5e-4)) + self.rng.normal(
                0.0, 2e-8
            )
        if signal is None or not acquisition.locked:
            return "QUES", INVALID  # no modulation to measure, or no pattern lock
        if name in {"OOMA", "OER"}:
            if acquisition.outer_levels_w is None:  # one capture gives both readings
                capture = self._capture(index, acquisition, 16, acquisition.patterns)
                acquisition.outer_levels_w = wf.outer_levels(
                    capture, 16, acquisition.start_ui, signal.pattern
                )
            p0, p3 = acquisition.outer_levels_w
            if name == "OOMA":
                return ("CORR", p3 - p0) if p3 > p0 else ("QUES", INVALID)
            return ("CORR", 10.0 * math.log10(p3 / p0)) if p3 > p0 > 0 else ("QUES", INVALID)
        self.clock.sleep(TDECQ_COMPUTE_S)
        levels = np.asarray(signal.levels_w)
        tdecq = wf.firmware_tdecq_db(
            signal.symbol_levels_w(),
            wf.pattern_symbols(signal.pattern),
            signal.baud_rate_hz,
            signal.response,
            signal.rin_sigma(signal.baud_rate_hz / 2.0) * levels,
            signal.rj_ui,
        )
        if not math.isfinite(tdecq):
            return "QUES", INVALID
        return "CORR", tdecq + self.rng.normal(0.0, 0.05)
