"""Simulated Keysight N7776C tunable laser source (O-band option): set wavelength and power with
settling, continuous swept mode with lambda logging and one step trigger per sweep step.

Tuning takes time (`*OPC?` waits for it); a sweep takes span/speed plus the move to its start;
the light really is at a slightly different wavelength from the nominal ramp, and the lambda log
records where it was. Instrument-specific fault: `fail_to_settle()` (the wavelength never reaches
its setpoint: `*OPC?` never answers and sweeps never finish).
"""

from __future__ import annotations

import math

import numpy as np

from sim_instruments.light import Emission
from sim_instruments.scpi import (
    ScpiDevice,
    ScpiError,
    block,
    parse_bool,
    parse_number,
    scpi,
)
from sim_instruments.world import TriggerBurst, World

_WAVELENGTH_UNITS = {"NM": 1e-9, "UM": 1e-6, "M": 1.0, "PM": 1e-12}
_SPEED_NM_PER_S = {"NM/S": 1.0, "UM/S": 1e3, "PM/S": 1e-3, "M/S": 1e9}  # longest match first
WAVELENGTH_RANGE_NM = (1240.0, 1380.0)  # option 113
POWER_RANGE_DBM = (-15.0, 10.0)
SPEED_RANGE_NM_PER_S = (0.5, 200.0)
MIN_STEP_NM = 0.0001
MAX_LOGGED_POINTS = 1_000_000
MAX_TRIGGER_RATE_HZ = 1e6
TUNE_OVERHEAD_S = 0.08  # per wavelength change, on top of the slew
TUNE_SLEW_NM_PER_S = 50.0
POWER_SETTLE_S = 0.05
TRIGGER_MODES = {
    "DIS": "DIS",
    "DISABLED": "DIS",
    "STF": "STF",
    "STFINISHED": "STF",
    "SWF": "SWF",
    "SWFINISHED": "SWF",
    "SWST": "SWST",
    "SWSTARTED": "SWST",
}
SWEEP_MODES = {
    "STEP": "STEP",
    "STEPPED": "STEP",
    "MAN": "MAN",
    "MANUAL": "MAN",
    "CONT": "CONT",
    "CONTINUOUS": "CONT",
}


class SimN7776C(ScpiDevice):
    manufacturer = "Keysight Technologies"
    model = "N7776C"
    firmware = "V1.0.3"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        rng = world.bench_rng("tunable-laser")
        self.offset_nm = float(rng.normal(0.0, 0.002))  # static accuracy of this unit
        self.log_offset_nm = float(rng.normal(0.0, 0.0008))  # its wavemeter's accuracy
        self.ripple_nm = float(rng.uniform(0.0005, 0.0015))  # sweep nonlinearity
        self.rng = np.random.default_rng()
        self.settle_failure = False
        self.reset()

    # --- instrument-specific fault -----------------------------------------------------------
    def fail_to_settle(self, failing: bool = True) -> None:
        """Make the wavelength control loop fail (or recover): the wavelength wanders off its
        setpoint, `*OPC?` never answers and sweeps never finish."""
        with self.lock:
            self.settle_failure = failing

    def handle(self, message: str) -> list[str | bytes]:
        if self.settle_failure and "*OPC" in message.upper():
            return []  # the operation never completes, so the query never answers
        return super().handle(message)

    # --- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        now = self.clock.now_s()
        if getattr(self, "sweep", None) is not None and self._sweep_running(now):
            self.sweep.stop_s = now  # type: ignore[union-attr]  # a sweep cut short: no more triggers
        self.target_nm = 1310.0
        self.from_nm = 1310.0
        self.tune_start_s, self.tune_end_s = now, now
        self.power_dbm = 0.0
        self.power_unit_watt = False
        self.output_on = False
        self.output_settled_s = now
        self.sweep_start_nm, self.sweep_stop_nm = 1260.0, 1360.0
        self.sweep_step_nm, self.sweep_speed = 0.01, 10.0
        self.sweep_mode, self.sweep_cycles = "CONT", 1
        self.lambda_logging = False
        self.trigger_out, self.trigger_in = "DIS", "IGN"
        self.flag = 0
        self.sweep: TriggerBurst | None = None
        self.sweep_nominal_nm: np.ndarray | None = None
        self.logged_nm: np.ndarray | None = None

    def wait_operations(self) -> None:
        self.clock.sleep(max(self.tune_end_s, self.output_settled_s) - self.clock.now_s())

    def _sweep_running(self, now: float) -> bool:
        return self.sweep is not None and now < min(self.sweep.times_s[-1], self.sweep.stop_s)

    def wavelength_now_nm(self) -> float:
        """Where the light really is now (lock-free: other instruments call it)."""
        now = self.clock.now_s()
        sweep = self.sweep
        if sweep is not None and sweep.times_s[0] <= now < min(sweep.times_s[-1], sweep.stop_s):
            return float(np.interp(now, sweep.times_s, sweep.wavelengths_nm))
        if self.settle_failure:
            return self.target_nm + 0.05 + 0.02 * math.sin(now)
        if now >= self.tune_end_s:
            return self.target_nm + self.offset_nm
        progress = (now - self.tune_start_s) / max(self.tune_end_s - self.tune_start_s, 1e-9)
        return self.from_nm + (self.target_nm - self.from_nm) * progress

    def emission(self) -> Emission | None:
        """The light at the output now, or None when the output is off."""
        if not self.output_on:
            return None
        power_w = 1e-3 * 10 ** (self.power_dbm / 10)
        if self.clock.now_s() < self.output_settled_s:
            power_w *= 0.5  # still ramping up
        return Emission(self.wavelength_now_nm(), power_w, smsr_db=60.0, linewidth_pm=0.0001)

    def _tune_to(self, target_nm: float) -> None:
        now = self.clock.now_s()
        self.from_nm = self.wavelength_now_nm()
        self.target_nm = target_nm
        self.tune_start_s = now
        self.tune_end_s = now + TUNE_OVERHEAD_S + abs(target_nm - self.from_nm) / TUNE_SLEW_NM_PER_S

    def _check_wavelength(self, args: str) -> float:
        value_nm = round(parse_number(args, _WAVELENGTH_UNITS) * 1e9, 9)
        if not WAVELENGTH_RANGE_NM[0] <= value_nm <= WAVELENGTH_RANGE_NM[1]:
            raise ScpiError(-222, "Data out of range")
        return value_nm

    def _port(self, suffixes: tuple[int, ...]) -> None:
        if any(n not in (0, 1) for n in suffixes):
            raise ScpiError(-114, "Header suffix out of range")

    # --- static wavelength and power ------------------------------------------------------------
    @scpi("SOURce#:WAVelength")
    def _set_wavelength(self, s: tuple[int, ...], args: str) -> None:
        self._port(s)
        if self._sweep_running(self.clock.now_s()):
            raise ScpiError(-221, "Settings conflict")
        self._tune_to(self._check_wavelength(args))

    @scpi("SOURce#:WAVelength", query=True)
    def _get_wavelength(self, s: tuple[int, ...], args: str) -> str:
        self._port(s)
        return f"{self.target_nm * 1e-9:+.10E}"

    @scpi("SOURce#:POWer")
    @scpi("SOURce#:POWer:LEVel")
    def _set_power(self, s: tuple[int, ...], args: str) -> None:
        self._port(s)
        text = args.strip().upper().replace(" ", "")
        unit = next((u for u in ("DBM", "MW", "UW", "W") if text.endswith(u)), "")
        value = parse_number(text[: len(text) - len(unit)])
        if (unit == "" and self.power_unit_watt) or unit in ("W", "MW", "UW"):
            scale = {"W": 1.0, "MW": 1e-3, "UW": 1e-6, "": 1.0}[unit]
            if value <= 0:
                raise ScpiError(-222, "Data out of range")
            value = 10 * math.log10(value * scale / 1e-3)
        if not POWER_RANGE_DBM[0] <= value <= POWER_RANGE_DBM[1]:
            raise ScpiError(-222, "Data out of range")
        self.power_dbm = value
        self.output_settled_s = self.clock.now_s() + POWER_SETTLE_S

    @scpi("SOURce#:POWer", query=True)
    @scpi("SOURce#:POWer:LEVel", query=True)
    def _get_power(self, s: tuple[int, ...], args: str) -> str:
        self._port(s)
        if self.power_unit_watt:
            return f"{1e-3 * 10 ** (self.power_dbm / 10):+.6E}"
        return f"{self.power_dbm:+.6E}"

    @scpi("SOURce#:POWer:UNIT")
    def _set_unit(self, s: tuple[int, ...], args: str) -> None:
        text = args.strip().upper()
        if text in ("0", "DBM"):
            self.power_unit_watt = False
        elif text in ("1", "W", "WATT"):
            self.power_unit_watt = True
        else:
            raise ScpiError(-224, "Illegal parameter value")

    @scpi("SOURce#:POWer:UNIT", query=True)
    def _get_unit(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.power_unit_watt else "0"

    @scpi("SOURce#:POWer:STATe")
    @scpi("OUTPut#:STATe")
    @scpi("OUTPut#")
    def _set_output(self, s: tuple[int, ...], args: str) -> None:
        on = parse_bool(args)
        if on and not self.output_on:
            self.output_settled_s = self.clock.now_s() + POWER_SETTLE_S
        self.output_on = on

    @scpi("SOURce#:POWer:STATe", query=True)
    @scpi("OUTPut#:STATe", query=True)
    @scpi("OUTPut#", query=True)
    def _get_output(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.output_on else "0"

    # --- sweep parameters -----------------------------------------------------------------------
    @scpi("SOURce#:WAVelength:SWEep:STARt")
    def _set_start(self, s: tuple[int, ...], args: str) -> None:
        self.sweep_start_nm = self._check_wavelength(args)

    @scpi("SOURce#:WAVelength:SWEep:STARt", query=True)
    def _get_start(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.sweep_start_nm * 1e-9:+.10E}"

    @scpi("SOURce#:WAVelength:SWEep:STOP")
    def _set_stop(self, s: tuple[int, ...], args: str) -> None:
        self.sweep_stop_nm = self._check_wavelength(args)

    @scpi("SOURce#:WAVelength:SWEep:STOP", query=True)
    def _get_stop(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.sweep_stop_nm * 1e-9:+.10E}"

    @scpi("SOURce#:WAVelength:SWEep:STEP")
    @scpi("SOURce#:WAVelength:SWEep:STEP:WIDTh")
    def _set_step(self, s: tuple[int, ...], args: str) -> None:
        value_nm = round(parse_number(args, _WAVELENGTH_UNITS) * 1e9, 9)
        if not MIN_STEP_NM <= value_nm <= WAVELENGTH_RANGE_NM[1] - WAVELENGTH_RANGE_NM[0]:
            raise ScpiError(-222, "Data out of range")
        self.sweep_step_nm = value_nm

    @scpi("SOURce#:WAVelength:SWEep:STEP", query=True)
    @scpi("SOURce#:WAVelength:SWEep:STEP:WIDTh", query=True)
    def _get_step(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.sweep_step_nm * 1e-9:+.10E}"

    @scpi("SOURce#:WAVelength:SWEep:SPEed")
    def _set_speed(self, s: tuple[int, ...], args: str) -> None:
        text = args.strip().upper().replace(" ", "")
        unit = next((u for u in _SPEED_NM_PER_S if text.endswith(u)), "M/S")
        if not text.endswith(unit):
            text += unit  # a bare number is in m/s
        value = round(parse_number(text[: -len(unit)]) * _SPEED_NM_PER_S[unit], 9)
        if not SPEED_RANGE_NM_PER_S[0] <= value <= SPEED_RANGE_NM_PER_S[1]:
            raise ScpiError(-222, "Data out of range")
        self.sweep_speed = value

    @scpi("SOURce#:WAVelength:SWEep:SPEed", query=True)
    def _get_speed(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.sweep_speed * 1e-9:+.10E}"

    @scpi("SOURce#:WAVelength:SWEep:MODE")
    def _set_mode(self, s: tuple[int, ...], args: str) -> None:
        mode = SWEEP_MODES.get(args.strip().upper())
        if mode is None:
            raise ScpiError(-224, "Illegal parameter value")
        self.sweep_mode = mode

    @scpi("SOURce#:WAVelength:SWEep:MODE", query=True)
    def _get_mode(self, s: tuple[int, ...], args: str) -> str:
        return self.sweep_mode

    @scpi("SOURce#:WAVelength:SWEep:CYCLes")
    def _set_cycles(self, s: tuple[int, ...], args: str) -> None:
        cycles = int(parse_number(args))
        if cycles != 1:
            raise ScpiError(-222, "Data out of range")  # only single sweeps are simulated
        self.sweep_cycles = cycles

    @scpi("SOURce#:WAVelength:SWEep:CYCLes", query=True)
    def _get_cycles(self, s: tuple[int, ...], args: str) -> str:
        return str(self.sweep_cycles)

    @scpi("SOURce#:WAVelength:SWEep:LLOGging")
    def _set_llog(self, s: tuple[int, ...], args: str) -> None:
        self.lambda_logging = parse_bool(args)

    @scpi("SOURce#:WAVelength:SWEep:LLOGging", query=True)
    def _get_llog(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.lambda_logging else "0"

    @scpi("TRIGger#:OUTPut")
    def _set_trigger_out(self, s: tuple[int, ...], args: str) -> None:
        mode = TRIGGER_MODES.get(args.strip().upper())
        if mode is None:
            raise ScpiError(-224, "Illegal parameter value")
        self.trigger_out = mode

    @scpi("TRIGger#:OUTPut", query=True)
    def _get_trigger_out(self, s: tuple[int, ...], args: str) -> str:
        return self.trigger_out

    @scpi("TRIGger#:INPut")
    def _set_trigger_in(self, s: tuple[int, ...], args: str) -> None:
        if args.strip().upper() not in ("IGN", "IGNORE"):
            raise ScpiError(-224, "Illegal parameter value")  # only free-running is simulated
        self.trigger_in = "IGN"

    @scpi("TRIGger#:INPut", query=True)
    def _get_trigger_in(self, s: tuple[int, ...], args: str) -> str:
        return self.trigger_in

    def _points(self) -> int:
        span = self.sweep_stop_nm - self.sweep_start_nm
        return math.floor(span / self.sweep_step_nm + 1e-9) + 1

    def _check(self) -> tuple[int, str]:
        """The sweep consistency check (`:SWEep:CHECkparams?`)."""
        span = self.sweep_stop_nm - self.sweep_start_nm
        if span <= 0:
            return 368, "End Wavelength <= Start Wavelength"
        if span / self.sweep_speed < 0.01:
            return 369, "Sweep time too small"
        if self.sweep_speed / self.sweep_step_nm > MAX_TRIGGER_RATE_HZ:
            return 371, "Trigger Frequency too large"
        if self._points() > MAX_LOGGED_POINTS:
            return 373, "Number of triggers exceeds allowed limit"
        if self.lambda_logging and self.trigger_out != "STF":
            return 375, "Lambda logging only works Step Finished output trigger configuration"
        if self.lambda_logging and self.sweep_mode != "CONT":
            return 376, "Lambda logging can only be done in continuous sweep mode"
        return 0, "OK"

    @scpi("SOURce#:WAVelength:SWEep:CHECkparams", query=True)
    def _check_query(self, s: tuple[int, ...], args: str) -> str:
        code, text = self._check()
        return f"{code},{text}"

    @scpi("SOURce#:WAVelength:SWEep:EXPectedtriggernum", query=True)
    def _expected(self, s: tuple[int, ...], args: str) -> str:
        return str(self._points())

    # --- running a sweep ------------------------------------------------------------------------
    @scpi("SOURce#:WAVelength:SWEep")
    @scpi("SOURce#:WAVelength:SWEep:STATe")
    def _sweep_state(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        now = self.clock.now_s()
        if word in ("0", "STOP"):
            if self.sweep is not None and self._sweep_running(now):
                self.sweep.stop_s = now
                self.flag += 1
            return
        if word not in ("1", "STAR", "START"):
            raise ScpiError(-224, "Illegal parameter value")
        if self._sweep_running(now):
            raise ScpiError(-221, "Settings conflict")
        code, _ = self._check()
        if code or self.sweep_mode != "CONT":
            raise ScpiError(-221, "Settings conflict")  # only continuous sweeps are simulated
        self._start_sweep(now)

    def _start_sweep(self, now: float) -> None:
        points = self._points()
        nominal = self.sweep_start_nm + self.sweep_step_nm * np.arange(points)
        # Getting to the start wavelength takes a tuning move; then the ramp runs at the speed.
        self._tune_to(self.sweep_start_nm)
        t0 = self.tune_end_s + 0.02
        times = t0 + (nominal - self.sweep_start_nm) / self.sweep_speed
        true = (
            nominal
            + self.offset_nm
            + self.ripple_nm * np.sin(2 * np.pi * (nominal - self.sweep_start_nm) / 0.73)
            + self.rng.normal(0.0, 0.0002, points)
        )
        if self.settle_failure:
            times = times + math.inf  # the ramp never starts: no trigger ever comes
        power_w = 1e-3 * 10 ** (self.power_dbm / 10) if self.output_on else 0.0
        self.sweep = TriggerBurst(times, true, power_w, self.sweep_speed)
        self.sweep_nominal_nm = nominal
        self.logged_nm = None
        self.flag += 1  # odd: a sweep is under way
        if self.trigger_out == "STF":
            self.world.fire_triggers(self.sweep)

    def _finish(self, now: float) -> None:
        """Book-keeping once a sweep has run out: the flag and the lambda log."""
        sweep = self.sweep
        if sweep is None or self._sweep_running(now) or self.logged_nm is not None:
            return
        if not np.isfinite(sweep.times_s[-1]):
            return
        done = sweep.times_s < sweep.stop_s
        if self.flag % 2 == 1 and math.isinf(sweep.stop_s):
            self.flag += 1
        noise = self.rng.normal(0.0, 0.0001, int(done.sum()))
        self.logged_nm = sweep.wavelengths_nm[done] + self.log_offset_nm + noise

    @scpi("SOURce#:WAVelength:SWEep", query=True)
    @scpi("SOURce#:WAVelength:SWEep:STATe", query=True)
    def _sweep_query(self, s: tuple[int, ...], args: str) -> str:
        now = self.clock.now_s()
        self._finish(now)
        return "1" if self._sweep_running(now) else "0"

    @scpi("SOURce#:WAVelength:SWEep:FLAG", query=True)
    def _flag(self, s: tuple[int, ...], args: str) -> str:
        self._finish(self.clock.now_s())
        return str(self.flag)

    @scpi("SOURce#:READout:POINts", query=True)
    def _points_query(self, s: tuple[int, ...], args: str) -> str:
        if args.strip().upper() not in ("LLOG", "LLOGGING"):
            raise ScpiError(-224, "Illegal parameter value")
        self._finish(self.clock.now_s())
        if not self.lambda_logging or self.logged_nm is None:
            return "0"
        return str(len(self.logged_nm))

    @scpi("SOURce#:READout:DATA", query=True)
    def _data_query(self, s: tuple[int, ...], args: str) -> bytes:
        if args.strip().upper() not in ("LLOG", "LLOGGING"):
            raise ScpiError(-224, "Illegal parameter value")
        self._finish(self.clock.now_s())
        if not self.lambda_logging or self.logged_nm is None:
            raise ScpiError(-230, "Data corrupt or stale")
        # Transfer time of the block over the instrument's LAN port, about 10 MB/s.
        self.clock.sleep(len(self.logged_nm) * 8 / 10e6)
        return block((self.logged_nm * 1e-9).astype("<f8").tobytes())
