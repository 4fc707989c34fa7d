"""Simulated Keysight N7744C optical power meter: the subset of its SCPI set the driver uses.

InGaAs detector with wavelength-dependent responsivity (a wrong wavelength setting reads wrong),
noise that falls with averaging time, and a READ that takes its averaging time. With
`TRIG:INP SME`, logging takes one sample per trigger from a tunable laser wired through the world.

Like a real meter, its responsivity correction for the wavelength it is told (`SENS:POW:WAV`) is a
calibrated table that holds only to within its calibration uncertainty: at each wavelength setting
the reading is off by a small, smooth error (under +-0.1 dB), fixed by the serial number and the
same on every port (one table, identical InGaAs detectors). A station measures it against a
reference source of known power at its product's wavelength (`path-cal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim_instruments.light import DARK, Light
from sim_instruments.population import serial_rng
from sim_instruments.scpi import ScpiDevice, ScpiError, block, parse_bool, parse_number, scpi
from sim_instruments.world import TriggerBurst, World

_WAVELENGTH_UNITS = {"NM": 1e-9, "UM": 1e-6, "M": 1.0, "PM": 1e-12}
_TIME_UNITS = {"S": 1.0, "MS": 1e-3, "US": 1e-6}


def _responsivity(wavelength_nm: Any) -> Any:
    # Relative InGaAs responsivity, about 0.87 A/W at 1310 nm against 1.0 at 1550 nm.
    return 1.0 + 0.00054 * (wavelength_nm - 1550.0)


@dataclass(frozen=True)
class CorrectionTableError:
    """How far a meter's wavelength correction table is off, dB of reading, as a function of the
    wavelength setting: a slow ripple left by its calibration (the N774xC specification allows
    +-2.5 % at reference conditions)."""

    amplitude_db: float
    period_nm: float
    phase_rad: float

    @classmethod
    def of(cls, serial_number: str) -> CorrectionTableError:
        rng = serial_rng("power-meter-table", serial_number)
        return cls(
            float(rng.uniform(0.04, 0.10)),
            float(rng.uniform(120.0, 250.0)),
            float(rng.uniform(0.0, 2.0 * math.pi)),
        )

    def error_db(self, wavelength_nm: float) -> float:
        """The reading's error (dB, reading minus truth) at wavelength setting `wavelength_nm`."""
        phase = 2.0 * math.pi * (wavelength_nm - 1250.0) / self.period_nm + self.phase_rad
        return self.amplitude_db * math.sin(phase)


class SimN7744C(ScpiDevice):
    manufacturer = "Keysight Technologies"
    model = "N7744C"
    firmware = "1.200"
    ports = 4

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        self.rng = np.random.default_rng()
        self.table_error = CorrectionTableError.of(serial_number)
        self.reset()

    def reset(self) -> None:
        self.wavelength_m = [1550e-9] * self.ports
        self.averaging_s = [1e-4] * self.ports
        self.unit_watt = [False] * self.ports
        self.auto_range = [True] * self.ports
        self.last_w = [float("nan")] * self.ports
        self.logging: list[tuple[int, float]] = [(100, 1e-4)] * self.ports
        self.logging_started: list[float | None] = [None] * self.ports
        self.logging_light: list[Light] = [DARK] * self.ports
        self.logged: list[bytes | None] = [None] * self.ports  # the finished log, as stored
        self.trigger_mode = ["IGN"] * self.ports  # TRIG:INP: IGN free-running, SME per trigger
        # Triggered logging: the samples taken at each trigger so far, as (burst, times, watts).
        self.triggered: list[list[tuple[TriggerBurst, np.ndarray, np.ndarray]] | None] = [
            None
        ] * self.ports

    def _port(self, suffixes: tuple[int, ...]) -> int:
        port = suffixes[0] if suffixes else 1
        if not 1 <= port <= self.ports:
            raise ScpiError(-114, "Header suffix out of range")
        return port - 1

    @scpi("SENSe#:POWer:WAVelength")
    def _set_wavelength(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, _WAVELENGTH_UNITS)
        if not 1250e-9 <= value <= 1650e-9:
            raise ScpiError(-222, "Data out of range")
        self.wavelength_m[self._port(s)] = value

    @scpi("SENSe#:POWer:WAVelength", query=True)
    def _get_wavelength(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.wavelength_m[self._port(s)]:+.6E}"

    @scpi("SENSe#:POWer:ATIMe")
    def _set_atime(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, _TIME_UNITS)
        if not 1e-6 <= value <= 10.0:
            raise ScpiError(-222, "Data out of range")
        self.averaging_s[self._port(s)] = value

    @scpi("SENSe#:POWer:ATIMe", query=True)
    def _get_atime(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.averaging_s[self._port(s)]:+.6E}"

    @scpi("SENSe#:POWer:UNIT")
    def _set_unit(self, s: tuple[int, ...], args: str) -> None:
        text = args.strip().upper()
        if text in {"W", "WATT"}:
            self.unit_watt[self._port(s)] = True
        elif text in {"DBM"}:
            self.unit_watt[self._port(s)] = False
        else:
            self.unit_watt[self._port(s)] = parse_bool(args)

    @scpi("SENSe#:POWer:UNIT", query=True)
    def _get_unit(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.unit_watt[self._port(s)] else "0"

    @scpi("SENSe#:POWer:RANGe:AUTO")
    def _set_auto(self, s: tuple[int, ...], args: str) -> None:
        self.auto_range[self._port(s)] = parse_bool(args)

    @scpi("SENSe#:POWer:RANGe:AUTO", query=True)
    def _get_auto(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.auto_range[self._port(s)] else "0"

    def _told_responsivity(self, port: int) -> float:
        """The responsivity the meter divides by: its table's value at the wavelength it was
        told, as far off as the table is there."""
        told_nm = self.wavelength_m[port] * 1e9
        return _responsivity(told_nm) * 10 ** (-self.table_error.error_db(told_nm) / 10.0)

    def _detected_w(self, port: int, light: Light) -> float:
        """What the detector reports: each line weighted by the responsivity at its wavelength,
        divided by the responsivity the meter assumes at the wavelength it was told."""
        told = self._told_responsivity(port)
        return sum(e.power_w * _responsivity(e.wavelength_nm) for e in light) / told

    def _measure(self, port: int) -> float:
        averaging = self.averaging_s[port]
        self.clock.sleep(averaging + 0.001)
        power_w = self._detected_w(port, self.world.light_at(f"power_meter:{port + 1}"))
        shrink = math.sqrt(1e-3 / averaging)
        noise = self.rng.normal(0.0, 0.002 * shrink) * power_w + self.rng.normal(
            0.0, 2e-12 * shrink
        )
        self.last_w[port] = power_w + noise
        return self.last_w[port]

    def _format(self, port: int, watts: float) -> str:
        if self.unit_watt[port]:
            return f"{watts:+.6E}"
        return f"{10 * math.log10(watts / 1e-3):+.6E}" if watts > 0 else "-2.000000E+02"

    @scpi("READ#:POWer", query=True)
    def _read(self, s: tuple[int, ...], args: str) -> str:
        port = self._port(s)
        return self._format(port, self._measure(port))

    @scpi("FETCh#:POWer", query=True)
    def _fetch(self, s: tuple[int, ...], args: str) -> str:
        port = self._port(s)
        if math.isnan(self.last_w[port]):
            raise ScpiError(-230, "Data corrupt or stale")
        return self._format(port, self.last_w[port])

    # --- logging function -------------------------------------------------------------------------
    @scpi("SENSe#:FUNCtion:PARameter:LOGGing")
    def _set_logging(self, s: tuple[int, ...], args: str) -> None:
        parts = args.split(",")
        if len(parts) != 2:
            raise ScpiError(-109, "Missing parameter")
        points = int(parse_number(parts[0]))
        averaging = parse_number(parts[1], _TIME_UNITS)
        if not 1 <= points <= 1_000_000 or not 1e-6 <= averaging <= 10.0:
            raise ScpiError(-222, "Data out of range")
        self.logging[self._port(s)] = (points, averaging)

    @scpi("SENSe#:FUNCtion:PARameter:LOGGing", query=True)
    def _get_logging(self, s: tuple[int, ...], args: str) -> str:
        points, averaging = self.logging[self._port(s)]
        return f"{points},{averaging:+.6E}"

    @scpi("SENSe#:FUNCtion:STATe")
    def _function_state(self, s: tuple[int, ...], args: str) -> None:
        port = self._port(s)
        words = [w.strip().upper() for w in args.split(",")]
        if (
            len(words) != 2
            or words[0] not in ("LOGG", "LOGGING")
            or words[1] not in ("STAR", "START", "STOP")
        ):
            raise ScpiError(-224, "Illegal parameter value")
        if words[1] == "STOP":
            self.logging_started[port] = None
            return
        self.logging_started[port] = self.clock.now_s()
        self.logging_light[port] = self.world.light_at(f"power_meter:{port + 1}")
        self.logged[port] = None
        self.triggered[port] = [] if self.trigger_mode[port] == "SME" else None

    @scpi("SENSe#:FUNCtion:STATe", query=True)
    def _function_state_query(self, s: tuple[int, ...], args: str) -> str:
        port = self._port(s)
        started = self.logging_started[port]
        if started is None:
            return "NONE,COMPLETE"
        points, averaging = self.logging[port]
        done = self._logging_done(port, started, points, averaging)
        return "LOGGING_STABILITY," + ("COMPLETE" if done else "PROGRESS")

    def _logging_done(self, port: int, started: float, points: int, averaging: float) -> bool:
        if self.triggered[port] is None:
            return self.clock.now_s() - started >= points * averaging
        times, _ = self._triggered_samples(port, points)
        return len(times) == points and self.clock.now_s() >= times[-1] + averaging

    @scpi("SENSe#:FUNCtion:RESult", query=True)
    def _function_result(self, s: tuple[int, ...], args: str) -> bytes:
        port = self._port(s)
        started = self.logging_started[port]
        points, averaging = self.logging[port]
        if started is None or not self._logging_done(port, started, points, averaging):
            raise ScpiError(-230, "Data corrupt or stale")
        if self.logged[port] is None and self.triggered[port] is not None:
            _, watts = self._triggered_samples(port, points)
            self.logged[port] = block(watts.astype("<f4").tobytes())
        elif self.logged[port] is None:
            self.logged[port] = block(self._logged_samples(port, points, averaging))
        logged = self.logged[port]
        assert logged is not None
        return logged

    def _logged_samples(self, port: int, points: int, averaging: float) -> bytes:
        power_w = self._detected_w(port, self.logging_light[port])
        shrink = math.sqrt(1e-3 / averaging)
        samples = power_w * (1.0 + self.rng.normal(0.0, 0.002 * shrink, points))
        samples += self.rng.normal(0.0, 2e-12 * shrink, points)
        return samples.astype("<f4").tobytes()

    # --- trigger input: one logged sample per tunable-laser step trigger (TRIG:INP SME) ----------
    @scpi("TRIGger#:INPut")
    def _set_trigger_input(self, s: tuple[int, ...], args: str) -> None:
        mode = {"IGN": "IGN", "IGNORE": "IGN", "SME": "SME", "SMEASURE": "SME"}.get(
            args.strip().upper()
        )
        if mode is None:
            raise ScpiError(-224, "Illegal parameter value")  # CME, MME... not simulated
        self.trigger_mode[self._port(s)] = mode

    @scpi("TRIGger#:INPut", query=True)
    def _get_trigger_input(self, s: tuple[int, ...], args: str) -> str:
        return self.trigger_mode[self._port(s)]

    def trigger_input(self, burst: TriggerBurst) -> None:
        """The rear trigger input, wired to a tunable laser's step-trigger output: every port
        logging with `SME` takes one sample per trigger, of the light at that trigger's
        wavelength (the middle of its averaging window, as the laser keeps sweeping)."""
        with self.lock:
            for port in range(self.ports):
                chunks, started = self.triggered[port], self.logging_started[port]
                if chunks is None or started is None:
                    continue
                points, averaging = self.logging[port]
                need = points - len(self._triggered_samples(port, points)[0])
                take = np.flatnonzero(burst.times_s >= started)[: max(need, 0)]
                if len(take) == 0:
                    continue
                wavelengths = burst.wavelengths_nm[take] + burst.speed_nm_per_s * averaging / 2
                path = self.world.laser_paths.get(f"power_meter:{port + 1}")
                through = path(wavelengths) if path is not None else np.zeros(len(take))
                told = self._told_responsivity(port)
                power_w = burst.power_w * through * _responsivity(wavelengths) / told
                shrink = math.sqrt(1e-3 / averaging)
                power_w = power_w * (1.0 + self.rng.normal(0.0, 0.002 * shrink, len(take)))
                power_w += self.rng.normal(0.0, 2e-12 * shrink, len(take))
                chunks.append((burst, burst.times_s[take], power_w))

    def _triggered_samples(self, port: int, points: int) -> tuple[np.ndarray, np.ndarray]:
        """Times and powers of the triggered samples taken so far (a stopped sweep's later
        triggers never came), at most `points`."""
        chunks = self.triggered[port] or []
        valid = [(times < burst.stop_s, times, watts) for burst, times, watts in chunks]
        times = np.concatenate([t[ok] for ok, t, _ in valid] or [np.zeros(0)])
        watts = np.concatenate([w[ok] for ok, _, w in valid] or [np.zeros(0)])
        return times[:points], watts[:points]
