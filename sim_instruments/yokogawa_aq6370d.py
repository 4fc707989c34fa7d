"""Simulated Yokogawa AQ6370D optical spectrum analyser: sweeps, traces and its own analyses.

The spectrum comes from the light at the "osa" port: each emission's main and side mode, broadened
by the modulation when the port also carries a modulated signal, seen through the resolution
filter, over a noise floor set by the sensitivity. A sweep takes time in proportion to its points.
"""

from __future__ import annotations

import math

import numpy as np

from sim_instruments.light import Emission, Light
from sim_instruments.scpi import ScpiDevice, ScpiError, block, parse_number, scpi
from sim_instruments.transmitter import TxSignal
from sim_instruments.world import World

_LENGTH = {"NM": 1e-9, "UM": 1e-6, "M": 1.0, "PM": 1e-12}
RESOLUTIONS_M = (0.02e-9, 0.05e-9, 0.1e-9, 0.2e-9, 0.5e-9, 1e-9, 2e-9)
#: sensitivity names and codes (`:SENSe:SENSe`), their noise floor (dBm) and time per point (s)
SENSITIVITIES = {
    "NHLD": (0, -62.0, 1e-4),
    "NAUT": (1, -62.0, 1e-4),
    "MID": (2, -70.0, 5e-4),
    "HIGH1": (3, -78.0, 2e-3),
    "HIGH2": (4, -84.0, 5e-3),
    "HIGH3": (5, -90.0, 1.5e-2),
    "NORM": (6, -62.0, 1e-4),
}
_SPEED_OF_LIGHT = 299_792_458.0
_TRACES = ("TRA", "TRB", "TRC", "TRD", "TRE", "TRF", "TRG")
_MODE_DIFF_DB = 3.0  # a side mode must rise this far above the valley next to it


def _rbw_kernel(offset_m: np.ndarray, rbw_m: float) -> np.ndarray:
    """Resolution filter, peak 1: a Gaussian of FWHM `rbw_m` with weak Lorentzian wings
    (-50 dB at one RBW out), like a grating monochromator's slit image."""
    x = offset_m / rbw_m
    return np.exp(-4.0 * math.log(2.0) * x**2) + 1e-5 / (1.0 + 4.0 * x**2)


class SimAq6370d(ScpiDevice):
    manufacturer = "YOKOGAWA"
    model = "AQ6370D"
    firmware = "02.08"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        self.rng = np.random.default_rng()
        cal = world.bench_rng(f"osa-{serial_number}")
        self.level_error_db = float(cal.uniform(-0.15, 0.15))  # within the +-0.4 dB spec
        self.wavelength_error_m = float(cal.uniform(-0.008, 0.008)) * 1e-9
        self.reset()

    def reset(self) -> None:
        self.center_m, self.span_m = 1300e-9, 100e-9
        self.resolution_m = 0.1e-9
        self.points = 1001
        self.sensitivity = "NAUT"
        self.sweep_mode = 1
        self.binary = False
        self.sweep_done_at: float | None = None
        self.event = 0  # :STATus:OPERation:EVENt bit 0: a sweep has ended
        self.traces: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.category = "SMSR"
        self.smsr_mode = "SMSR1"
        self.analysis: list[float] | None = None
        self.marker_m: float | None = None

    # --- sweep timing ----------------------------------------------------------------------------
    def _sweeping(self) -> bool:
        return self.sweep_done_at is not None and self.clock.now_s() < self.sweep_done_at

    def _finish_if_due(self) -> None:
        if self.sweep_done_at is not None and self.clock.now_s() >= self.sweep_done_at:
            self.sweep_done_at = None
            self.event |= 1

    def wait_operations(self) -> None:
        if self.sweep_done_at is not None:
            self.clock.sleep(self.sweep_done_at - self.clock.now_s())
        self._finish_if_due()

    def sweep_time_s(self) -> float:
        per_point = SENSITIVITIES[self.sensitivity][2]
        return 0.1 + self.points * per_point * (1.0 + self.span_m * 1e9 / 200.0)

    # --- settings ---------------------------------------------------------------------------------
    def _length(self, args: str, low: float, high: float) -> float:
        value = parse_number(args, _LENGTH)
        if not low <= value <= high:
            raise ScpiError(-222, "Data out of range")
        return value

    @scpi("SENSe:WAVelength:CENTer")
    def _set_center(self, s: tuple[int, ...], args: str) -> None:
        self.center_m = self._length(args, 600e-9, 1700e-9)

    @scpi("SENSe:WAVelength:CENTer", query=True)
    def _center(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.center_m:+.8E}"

    @scpi("SENSe:WAVelength:SPAN")
    def _set_span(self, s: tuple[int, ...], args: str) -> None:
        self.span_m = self._length(args, 0.0, 1100e-9)

    @scpi("SENSe:WAVelength:SPAN", query=True)
    def _span(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.span_m:+.8E}"

    @scpi("SENSe:WAVelength:STARt")
    def _set_start(self, s: tuple[int, ...], args: str) -> None:
        start, stop = self._length(args, 600e-9, 1700e-9), self.center_m + self.span_m / 2
        self.center_m, self.span_m = (start + stop) / 2, max(0.0, stop - start)

    @scpi("SENSe:WAVelength:STARt", query=True)
    def _start(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.center_m - self.span_m / 2:+.8E}"

    @scpi("SENSe:WAVelength:STOP")
    def _set_stop(self, s: tuple[int, ...], args: str) -> None:
        start, stop = self.center_m - self.span_m / 2, self._length(args, 600e-9, 1700e-9)
        self.center_m, self.span_m = (start + stop) / 2, max(0.0, stop - start)

    @scpi("SENSe:WAVelength:STOP", query=True)
    def _stop(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.center_m + self.span_m / 2:+.8E}"

    @scpi("SENSe:BANDwidth:RESolution")
    @scpi("SENSe:BWIDth:RESolution")
    def _set_resolution(self, s: tuple[int, ...], args: str) -> None:
        value = self._length(args, 0.01e-9, 2.5e-9)
        # the monochromator has a fixed set of slits: the nearest one is used
        self.resolution_m = min(RESOLUTIONS_M, key=lambda r: abs(math.log(r / value)))

    @scpi("SENSe:BANDwidth:RESolution", query=True)
    @scpi("SENSe:BWIDth:RESolution", query=True)
    def _resolution(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.resolution_m:+.8E}"

    @scpi("SENSe:SWEep:POINts")
    def _set_points(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if value != int(value) or not 101 <= value <= 50001:
            raise ScpiError(-222, "Data out of range")
        self.points = int(value)

    @scpi("SENSe:SWEep:POINts", query=True)
    def _points(self, s: tuple[int, ...], args: str) -> str:
        return str(self.points)

    @scpi("SENSe:SENSe")
    def _set_sensitivity(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        by_code = {str(code): name for name, (code, _, _) in SENSITIVITIES.items()}
        word = {"NORMAL": "NORM"}.get(word, by_code.get(word, word))
        if word not in SENSITIVITIES:
            raise ScpiError(-224, "Illegal parameter value")
        self.sensitivity = word

    @scpi("SENSe:SENSe", query=True)
    def _sensitivity(self, s: tuple[int, ...], args: str) -> str:
        return str(SENSITIVITIES[self.sensitivity][0])

    @scpi("INITiate:SMODe")
    def _set_smode(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        names = {"SINGLE": 1, "SING": 1, "REPEAT": 2, "REP": 2, "AUTO": 3, "SEGMENT": 4, "SEGM": 4}
        mode = names.get(word) or (int(word) if word in {"1", "2", "3", "4"} else None)
        if mode is None:
            raise ScpiError(-224, "Illegal parameter value")
        self.sweep_mode = mode

    @scpi("INITiate:SMODe", query=True)
    def _smode(self, s: tuple[int, ...], args: str) -> str:
        return str(self.sweep_mode)

    @scpi("FORMat:DATA")
    def _set_format(self, s: tuple[int, ...], args: str) -> None:
        word = args.replace(" ", "").upper()
        if word in {"ASCII", "ASC"}:
            self.binary = False
        elif word in {"REAL", "REAL,64"}:
            self.binary = True
        else:
            raise ScpiError(-224, "Illegal parameter value")

    @scpi("FORMat:DATA", query=True)
    def _format(self, s: tuple[int, ...], args: str) -> str:
        return "REAL,64" if self.binary else "ASCII"

    # --- sweeping ---------------------------------------------------------------------------------
    @scpi("INITiate")
    @scpi("INITiate:IMMediate")
    def _initiate(self, s: tuple[int, ...], args: str) -> None:
        if self._sweeping():
            raise ScpiError(-213, "Init ignored")
        # Every sweep here is a single one; REPEAT/AUTO modes are not simulated.
        light = self.world.light_at("osa")
        signal = self.world.signals.get("osa")
        modulation = signal() if signal is not None else None
        self.traces["TRA"] = self._trace(light, modulation)
        self.sweep_done_at = self.clock.now_s() + self.sweep_time_s()
        self.event &= ~1
        self.analysis = None

    @scpi("ABORt")
    def _abort(self, s: tuple[int, ...], args: str) -> None:
        self.sweep_done_at = None

    @scpi("STATus:OPERation:EVENt", query=True)
    def _event(self, s: tuple[int, ...], args: str) -> str:
        self._finish_if_due()
        value, self.event = self.event, 0
        return str(value)

    @scpi("STATus:OPERation:CONDition", query=True)
    def _condition(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self._sweeping() else "0"

    def _trace_data(self, args: str, axis: int) -> str | bytes:
        name = args.strip().upper()
        if name not in _TRACES:
            raise ScpiError(-224, "Illegal parameter value")
        self._finish_if_due()
        if name not in self.traces or self._sweeping():
            raise ScpiError(-230, "Data corrupt or stale")
        values = self.traces[name][axis]
        if self.binary:
            return block(values.astype("<f8").tobytes())
        return ",".join(f"{v:+.8E}" if axis == 0 else f"{v:+.3f}" for v in values)

    @scpi("TRACe:X", query=True)
    @scpi("TRACe:DATA:X", query=True)
    def _trace_x(self, s: tuple[int, ...], args: str) -> str | bytes:
        return self._trace_data(args, 0)

    @scpi("TRACe:Y", query=True)
    @scpi("TRACe:DATA:Y", query=True)
    def _trace_y(self, s: tuple[int, ...], args: str) -> str | bytes:
        return self._trace_data(args, 1)

    # --- the spectrum -----------------------------------------------------------------------------
    def _trace(self, light: Light, modulation: TxSignal | None) -> tuple[np.ndarray, np.ndarray]:
        """Wavelength (m) and level (dBm) at each point, as this sweep displays them."""
        rbw = self.resolution_m
        x = np.linspace(
            self.center_m - self.span_m / 2, self.center_m + self.span_m / 2, self.points
        )
        step = min(rbw / 8.0, self.span_m / max(1, self.points - 1) or rbw / 8.0)
        margin = 25.0 * rbw
        n_fine = min(int((x[-1] - x[0] + 2 * margin) / step) + 1, 400_001)
        fine = np.linspace(x[0] - margin, x[-1] + margin, n_fine)
        step = fine[1] - fine[0] if n_fine > 1 else step
        power = np.zeros(n_fine)  # W per fine bin
        for emission in light:
            for wavelength_nm, mode_w in self._modes(emission):
                self._deposit(
                    power, fine, wavelength_nm * 1e-9 + self.wavelength_error_m, mode_w, modulation
                )
        half = int(25.0 * rbw / step) + 1
        kernel = _rbw_kernel(np.arange(-half, half + 1) * step, rbw)
        displayed = np.convolve(power, kernel, mode="same")
        seen = np.interp(x, fine, displayed) * 10 ** (self.level_error_db / 10.0)
        floor_w = 1e-3 * 10 ** (SENSITIVITIES[self.sensitivity][1] / 10.0)
        seen += floor_w * np.exp(self.rng.normal(0.0, 0.2, self.points))
        return x, 10.0 * np.log10(seen / 1e-3)

    @staticmethod
    def _modes(emission: Emission) -> list[tuple[float, float]]:
        ratio = 10 ** (emission.smsr_db / 10.0)
        side_w = emission.power_w / (1.0 + ratio)
        return [
            (emission.wavelength_nm, emission.power_w - side_w),
            (emission.wavelength_nm + emission.side_mode_offset_nm, side_w),
        ]

    @staticmethod
    def _deposit(
        power: np.ndarray,
        fine: np.ndarray,
        wavelength_m: float,
        mode_w: float,
        modulation: TxSignal | None,
    ) -> None:
        """Add one mode's light to the fine bins: the carrier as a line, the modulation
        sidebands as a smooth band (|H_tx|^2 under a PAM4 envelope, no spectral nulls)."""
        carrier = 1.0 if modulation is None else modulation.carrier_fraction
        position = np.interp(wavelength_m, fine, np.arange(fine.size))
        low = int(np.clip(np.floor(position), 0, fine.size - 2))
        weight = position - low
        power[low] += carrier * mode_w * (1.0 - weight)
        power[low + 1] += carrier * mode_w * weight
        if modulation is None or carrier >= 1.0:
            return
        frequency = (fine - wavelength_m) * _SPEED_OF_LIGHT / wavelength_m**2
        baud = modulation.baud_rate_hz
        density = np.abs(modulation.response(frequency)) ** 2 / (
            1.0 + (np.pi * frequency / baud) ** 2
        )
        density[np.abs(frequency) > 4.0 * baud] = 0.0
        if density.sum() > 0:
            power += (1.0 - carrier) * mode_w * density / density.sum()

    # --- analyses ---------------------------------------------------------------------------------
    def _trace_or_error(self) -> tuple[np.ndarray, np.ndarray]:
        self._finish_if_due()
        if "TRA" not in self.traces or self._sweeping():
            raise ScpiError(-230, "Data corrupt or stale")
        return self.traces["TRA"]

    @scpi("CALCulate:CATegory")
    def _set_category(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        # Only the SMSR and POWER analyses are simulated; other categories are refused.
        names = {"SMSR": "SMSR", "POWER": "POWER", "POW": "POWER"}
        if word not in names:
            raise ScpiError(-224, "Illegal parameter value")
        self.category = names[word]
        self.analysis = None

    @scpi("CALCulate:CATegory", query=True)
    def _category(self, s: tuple[int, ...], args: str) -> str:
        return self.category

    @scpi("CALCulate:PARameter:SMSR:MODE")
    def _set_smsr_mode(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        if word not in {"SMSR1", "SMSR2"}:
            raise ScpiError(-224, "Illegal parameter value")
        self.smsr_mode = word

    @scpi("CALCulate")
    @scpi("CALCulate:IMMediate")
    def _calculate(self, s: tuple[int, ...], args: str) -> None:
        x, y = self._trace_or_error()
        if self.category == "POWER":
            # integrate the trace: each point holds the power in one equivalent noise bandwidth
            linear = 1e-3 * 10 ** (y / 10.0)
            enbw = 1.0645 * self.resolution_m
            step = (x[-1] - x[0]) / max(1, x.size - 1)
            self.analysis = [10.0 * math.log10(max(linear.sum() * step / enbw, 1e-15) / 1e-3)]
            return
        main = int(np.argmax(y))
        side = self._side_mode(y, main)
        delta_db = float(y[main] - y[side])
        self.analysis = [x[main], y[main], x[side], y[side], x[side] - x[main], delta_db]

    def _side_mode(self, y: np.ndarray, main: int) -> int:
        """SMSR1: the highest mode peak other than the main mode; SMSR2: the highest of the two
        mode peaks next to it. A mode peak is a local maximum rising _MODE_DIFF_DB above the
        lowest point between it and the main mode. None found: the main mode itself."""
        interior = (y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:])
        peaks = np.flatnonzero(interior) + 1
        peaks = peaks[peaks != main]
        if peaks.size == 0:
            return main
        # lowest level between each peak and the main mode, from running minima outward from it
        right_min = np.minimum.accumulate(y[main:])
        left_min = np.minimum.accumulate(y[: main + 1][::-1])[::-1]
        valley = np.where(peaks > main, right_min[np.clip(peaks - main, 0, None)], 0.0)
        valley = np.where(peaks < main, left_min[np.clip(peaks, 0, main)], valley)
        modes = peaks[y[peaks] - valley >= _MODE_DIFF_DB]
        if modes.size == 0:
            return main
        if self.smsr_mode == "SMSR2":
            left, right = modes[modes < main], modes[modes > main]
            modes = np.array([*left[-1:], *right[:1]])
        return int(modes[np.argmax(y[modes])])

    @scpi("CALCulate:DATA", query=True)
    def _data(self, s: tuple[int, ...], args: str) -> str:
        if self.analysis is None:
            raise ScpiError(-230, "Data corrupt or stale")
        if self.category == "POWER":
            return f"{self.analysis[0]:+.3f}"
        wl, level, side_wl, side_level, delta_wl, smsr = self.analysis
        return (
            f"{wl:+.8E},{level:+.3f},{side_wl:+.8E},{side_level:+.3f},{delta_wl:+.8E},{smsr:+.3f}"
        )

    @scpi("CALCulate:MARKer:MAXimum")
    def _marker_max(self, s: tuple[int, ...], args: str) -> None:
        x, y = self._trace_or_error()
        self.marker_m = float(x[int(np.argmax(y))])

    def _marker_index(self, args: str) -> int:
        x, _ = self._trace_or_error()
        if args.strip() not in {"0", ""} or self.marker_m is None:
            raise ScpiError(-221, "Settings conflict")
        return int(np.argmin(np.abs(x - self.marker_m)))

    @scpi("CALCulate:MARKer:X", query=True)
    def _marker_x(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.traces['TRA'][0][self._marker_index(args)]:+.8E}"

    @scpi("CALCulate:MARKer:Y", query=True)
    def _marker_y(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.traces['TRA'][1][self._marker_index(args)]:+.3f}"
