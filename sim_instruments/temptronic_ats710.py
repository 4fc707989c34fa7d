"""Simulated Temptronic ThermoStream ATS-710 forcing head: its command set and its thermal physics.

The head blows temperature-controlled air over the DUT; in DUT mode it regulates the DUT
thermocouple (the module case) with first-order settling, and the case drifts back to ambient
when the flow is off. The world reads the case temperature from here.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from sim_instruments.clock import SimClock
from sim_instruments.scpi import ScpiDevice, ScpiError, parse_bool, parse_number, scpi
from sim_instruments.world import World

AMBIENT_C = 25.0
SETPOINTS = 18  # 0-17 on the Cycle screen (0 hot, 1 ambient, 2 cold on the Operator screen)
_STEP_S = 0.5  # integration step of the thermal model, simulated seconds

# TECR? bits (Interface & Applications Manual, "temperature event condition register")
AT_TEMPERATURE, NOT_AT_TEMPERATURE = 0x01, 0x02
# *ESR? bits
_QUERY_ERROR, _DEVICE_ERROR, _EXECUTION_ERROR, _COMMAND_ERROR = 0x04, 0x08, 0x10, 0x20


class ThermalHead:
    """The physics under the nozzle: air and DUT (module case) temperatures.

    DUT mode: the controller drives the air so that the case settles to the setpoint with one
    time constant `tau_dut_s` (bench-fixed, 35-75 s). Air mode: the air settles with `tau_air_s`
    and the case follows the air with `tau_dut_s`. Flow off (or head up): both relax to ambient,
    the case slowly (`tau_free_s`).
    """

    def __init__(self, clock: SimClock, rng: np.random.Generator) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.tau_dut_s = float(rng.uniform(35.0, 75.0))
        self.tau_air_s = float(rng.uniform(4.0, 8.0))
        self.tau_free_s = 300.0
        self.air_c = AMBIENT_C
        self.case_c = AMBIENT_C
        self.target_c = AMBIENT_C
        self.window_c = 1.0
        self.flow = False
        self.head_down = True
        self.dut_mode = False
        self.in_window_since: float | None = None
        self._t = clock.now_s()

    @property
    def driving(self) -> bool:
        return self.flow and self.head_down

    def controlled_c(self) -> float:
        return self.case_c if self.dut_mode else self.air_c

    def advance(self) -> None:
        """Integrate up to now (exact exponentials over steps of at most _STEP_S)."""
        with self.lock:
            now = self.clock.now_s()
            remaining = now - self._t
            if remaining > 3600.0:  # long idle: everything has settled; skip ahead in one go
                self._step(remaining - 600.0, self._t)
                self._t += remaining - 600.0
                remaining = 600.0
            while remaining > 1e-9:
                step = min(remaining, _STEP_S)
                self._t += step
                self._step(step, self._t)
                remaining -= step

    def _step(self, dt: float, t_end: float) -> None:
        def relax(value: float, target: float, tau: float) -> float:
            return target + (value - target) * math.exp(-dt / tau)

        if self.driving and self.dut_mode:
            self.case_c = relax(self.case_c, self.target_c, self.tau_dut_s)
            # the controller overdrives the air to pull the case along
            self.air_c = self.target_c + max(-60.0, min(60.0, 2.0 * (self.target_c - self.case_c)))
        elif self.driving:
            self.air_c = relax(self.air_c, self.target_c, self.tau_air_s)
            self.case_c = relax(self.case_c, self.air_c, self.tau_dut_s)
        else:
            self.air_c = relax(self.air_c, AMBIENT_C, 4.0 * self.tau_air_s)
            self.case_c = relax(self.case_c, AMBIENT_C, self.tau_free_s)
        inside = self.driving and abs(self.controlled_c() - self.target_c) <= self.window_c
        if not inside:
            self.in_window_since = None
        elif self.in_window_since is None:
            self.in_window_since = t_end

    def case_temperature_c(self) -> float:
        """The DUT case temperature now (true, no sensor noise)."""
        with self.lock:
            self.advance()
            return self.case_c


class SimAts710(ScpiDevice):
    """ThermoStream ATS-710 remote interface (GPIB/RS-232/LAN message set, LF-terminated)."""

    manufacturer = "Temptronic"
    model = "ATS-710"
    firmware = "2.09"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.head = ThermalHead(world.clock, world.bench_rng("thermal-head"))
        world.case_temperature_c = self.head.case_temperature_c
        self.rng = np.random.default_rng()
        # The head has no SCPI error queue and no *OPC/*WAI: errors set *ESR? bits instead, and
        # its own *CLS clears those.
        base = {ScpiDevice._err, ScpiDevice._opc, ScpiDevice._wai, ScpiDevice._cls}
        self._handlers = [h for h in self._handlers if getattr(h[2], "__func__", None) not in base]
        self.esr = 0
        self.tesr = 0
        self.reset()

    def reset(self) -> None:
        with self.head.lock:
            self.head.advance()
            self.setpoints_c = [AMBIENT_C] * SETPOINTS
            self.soak_s = [30.0] * SETPOINTS
            self.windows_c = [1.0] * SETPOINTS
            self.selected = 0
            self.lower_limit_c, self.upper_limit_c = -99.0, 225.0
            self.head.flow = False
            self.head.dut_mode = False
            self._apply()

    def push_error(self, code: int, message: str) -> None:
        if -199 <= code <= -100:
            self.esr |= _COMMAND_ERROR
        elif -299 <= code <= -200:
            self.esr |= _EXECUTION_ERROR
        elif -499 <= code <= -400:
            self.esr |= _QUERY_ERROR
        else:
            self.esr |= _DEVICE_ERROR

    def _apply(self) -> None:
        """Make the selected setpoint the head's target."""
        with self.head.lock:
            self.head.advance()
            self.head.target_c = self.setpoints_c[self.selected]
            self.head.window_c = self.windows_c[self.selected]
            self.head.in_window_since = None

    def _condition(self) -> int:
        with self.head.lock:
            self.head.advance()
            since = self.head.in_window_since
            soaked = since is not None and self.clock.now_s() - since >= self.soak_s[self.selected]
            bits = AT_TEMPERATURE if soaked else NOT_AT_TEMPERATURE
            self.tesr |= bits
            return bits

    # --- IEEE 488.2 status ---------------------------------------------------------------------
    @scpi("*ESR", query=True)
    def _esr(self, s: tuple[int, ...], args: str) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    @scpi("*CLS")
    def _cls(self, s: tuple[int, ...], args: str) -> None:
        self.esr = 0
        self.tesr = 0

    @scpi("EROR", query=True)
    def _eror(self, s: tuple[int, ...], args: str) -> str:
        return "0"  # device-specific error register: no hardware fault

    # --- setpoints -------------------------------------------------------------------------------
    @scpi("SETN")
    def _setn(self, s: tuple[int, ...], args: str) -> None:
        number = parse_number(args)
        if number != int(number) or not 0 <= number < SETPOINTS:
            raise ScpiError(-222, "Data out of range")
        self.selected = int(number)
        self._apply()

    @scpi("SETN", query=True)
    def _setn_q(self, s: tuple[int, ...], args: str) -> str:
        return str(self.selected)

    @scpi("SETP")
    def _setp(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not self.lower_limit_c <= value <= self.upper_limit_c or not -99.9 <= value <= 225.0:
            raise ScpiError(-222, "Data out of range")
        self.setpoints_c[self.selected] = round(value, 1)
        self._apply()

    @scpi("SETP", query=True)
    def _setp_q(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.setpoints_c[self.selected]:.1f}"

    @scpi("SOAK")
    def _soak(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not 0 <= value <= 9999:
            raise ScpiError(-222, "Data out of range")
        self.soak_s[self.selected] = float(int(value))

    @scpi("SOAK", query=True)
    def _soak_q(self, s: tuple[int, ...], args: str) -> str:
        return str(int(self.soak_s[self.selected]))

    @scpi("WNDW")
    def _wndw(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not 0.1 <= value <= 9.9:
            raise ScpiError(-222, "Data out of range")
        self.windows_c[self.selected] = round(value, 1)
        self._apply()

    @scpi("WNDW", query=True)
    def _wndw_q(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.windows_c[self.selected]:.1f}"

    @scpi("LLIM")
    def _llim(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not -99 <= value <= 25:
            raise ScpiError(-222, "Data out of range")
        self.lower_limit_c = value

    @scpi("LLIM", query=True)
    def _llim_q(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.lower_limit_c:g}"

    @scpi("ULIM")
    def _ulim(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not 25 <= value <= 225:
            raise ScpiError(-222, "Data out of range")
        self.upper_limit_c = value

    @scpi("ULIM", query=True)
    def _ulim_q(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.upper_limit_c:g}"

    # --- air flow, head, control mode ------------------------------------------------------------
    @scpi("FLOW")
    def _flow(self, s: tuple[int, ...], args: str) -> None:
        with self.head.lock:
            self.head.advance()
            self.head.flow = parse_bool(args)

    @scpi("FLOW", query=True)
    def _flow_q(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.head.flow else "0"

    @scpi("HEAD")
    def _head(self, s: tuple[int, ...], args: str) -> None:
        with self.head.lock:
            self.head.advance()
            self.head.head_down = parse_bool(args)

    @scpi("HEAD", query=True)
    def _head_q(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.head.head_down else "0"

    @scpi("DUTM")
    def _dutm(self, s: tuple[int, ...], args: str) -> None:
        with self.head.lock:
            self.head.advance()
            self.head.dut_mode = parse_bool(args)
            self.head.in_window_since = None

    @scpi("DUTM", query=True)
    def _dutm_q(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.head.dut_mode else "0"

    # --- readings ---------------------------------------------------------------------------------
    @scpi("TEMP", query=True)
    def _temp(self, s: tuple[int, ...], args: str) -> str:
        with self.head.lock:
            self.head.advance()
            reading = self.head.controlled_c() + self.rng.normal(0.0, 0.05)
        return f"{reading:.1f}"

    @scpi("TECR", query=True)
    def _tecr(self, s: tuple[int, ...], args: str) -> str:
        return str(self._condition())

    @scpi("TESR", query=True)
    def _tesr(self, s: tuple[int, ...], args: str) -> str:
        self._condition()
        value, self.tesr = self.tesr, 0
        return str(value)

    @scpi("AUXC", query=True)
    def _auxc(self, s: tuple[int, ...], args: str) -> str:
        head = self.head
        bits = 1 << 6  # ready
        bits |= (1 << 5) if head.flow else 0
        bits |= (1 << 4) if head.dut_mode else 0
        bits |= 0 if head.head_down else (1 << 2)
        return str(bits)
