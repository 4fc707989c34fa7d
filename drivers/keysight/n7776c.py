"""Keysight N7776C tunable laser source (the 8164B mainframe lasers take the same commands).

Command set: Keysight N777xC Series Tunable Laser Family Programming Guide, chapter 4
"Measurement Operations & Settings" (also the 8163A/B, 8164A/B & 8166A/B Mainframes Programming
Guide, same chapter): `:SOURce0:WAVelength`, `:POWer[:LEVel]`, `:POWer:UNIT`, `:POWer:STATe`,
`:WAVelength:SWEep:STARt|STOP|STEP|SPEed|MODE|CYCLes|LLOGging|CHECkparams?`,
`:WAVelength:SWEep[:STATe]` (and `:FLAG?`), `:READout:POINts? LLOG`, `:READout:DATA? LLOG`
(8-byte doubles, Intel byte order, in m) and `:TRIGger0:OUTPut STF` (one trigger per step).
Not confirmed from the guide itself: the reply text of `:SWEep:CHECkparams?` (taken as
`<code>,<text>`, code 0 when consistent, as public drivers read it) and the exact meaning of the
sweep flag (public scripts read an odd flag as "a sweep is under way").
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError, InstrumentStateError, InstrumentTimeout


class N7776C(ScpiInstrument):
    """Keysight N7776C tunable laser; implements `TunableLaser`."""

    wavelength_range_nm: ClassVar[tuple[float, float]] = (1240.0, 1380.0)  # option 113
    #: longest a wavelength change may take to settle before `*OPC?` is given up
    settle_timeout_s: float = 10.0

    wavelength_setpoint_nm = ScpiProperty[float](
        "SOUR0:WAV?", "SOUR0:WAV {value}NM", unit="nm", scale=1e9, set_scale=1.0, fmt="{:.4f}"
    )
    power_dbm = ScpiProperty[float](
        "SOUR0:POW?", "SOUR0:POW {value}DBM", unit="dBm", limits=(-15.0, 10.0), fmt="{:.3f}"
    )
    power_unit_watt = ScpiProperty[bool]("SOUR0:POW:UNIT?", "SOUR0:POW:UNIT {value}", kind=bool)
    output = ScpiProperty[bool]("SOUR0:POW:STAT?", "SOUR0:POW:STAT {value}", kind=bool)
    sweep_start_nm = ScpiProperty[float](
        "SOUR0:WAV:SWE:STAR?",
        "SOUR0:WAV:SWE:STAR {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        fmt="{:.4f}",
    )
    sweep_stop_nm = ScpiProperty[float](
        "SOUR0:WAV:SWE:STOP?",
        "SOUR0:WAV:SWE:STOP {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        fmt="{:.4f}",
    )
    sweep_step_nm = ScpiProperty[float](
        "SOUR0:WAV:SWE:STEP?",
        "SOUR0:WAV:SWE:STEP {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        limits=(0.0001, 140.0),
        fmt="{:.4f}",
    )
    sweep_speed_nm_per_s = ScpiProperty[float](
        "SOUR0:WAV:SWE:SPE?",
        "SOUR0:WAV:SWE:SPE {value}NM/S",
        unit="nm/s",
        scale=1e9,
        set_scale=1.0,
        limits=(0.5, 200.0),
        fmt="{:.4g}",
    )
    sweep_mode = ScpiProperty[str](
        "SOUR0:WAV:SWE:MODE?",
        "SOUR0:WAV:SWE:MODE {value}",
        kind=str,
        choices=("CONT", "STEP", "MAN"),
    )
    sweep_cycles = ScpiProperty[int]("SOUR0:WAV:SWE:CYCL?", "SOUR0:WAV:SWE:CYCL {value}", kind=int)
    lambda_logging = ScpiProperty[bool](
        "SOUR0:WAV:SWE:LLOG?", "SOUR0:WAV:SWE:LLOG {value}", kind=bool
    )
    trigger_output = ScpiProperty[str](
        "TRIG0:OUTP?", "TRIG0:OUTP {value}", kind=str, choices=("DIS", "STF", "SWF", "SWST")
    )
    sweep_flag = ScpiProperty[int]("SOUR0:WAV:SWE:FLAG?", kind=int)
    logged_points = ScpiProperty[int]("SOUR0:READ:POIN? LLOG", kind=int)

    # --- static operation ------------------------------------------------------------------------
    def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Tune and wait until the wavelength has settled (`*OPC?`)."""
        low, high = self.wavelength_range_nm
        if not low <= wavelength_nm <= high:
            raise ValueError(f"wavelength {wavelength_nm} nm is outside [{low:g}, {high:g}]")
        with self.lock:
            self.wavelength_setpoint_nm = wavelength_nm
            self.wait_settled()

    def wait_settled(self) -> None:
        """Block until pending operations (tuning, power changes) have completed; a laser that
        never settles raises InstrumentTimeout after `settle_timeout_s`."""
        with self.timeout(self.settle_timeout_s):
            reply = self.query("*OPC?", idempotent=False)  # waiting again would not help
        if reply.strip() != "1":
            raise InstrumentReplyError("*OPC?", reply, "1", resource=self.resource)

    def wavelength_nm(self) -> float:
        return self.wavelength_setpoint_nm

    def set_power_dbm(self, power_dbm: float) -> None:
        with self.lock:
            self.power_unit_watt = False
            self.power_dbm = power_dbm
            self.wait_settled()

    def set_output(self, enabled: bool) -> None:
        with self.lock:
            self.output = enabled
            if enabled:
                self.wait_settled()

    def output_enabled(self) -> bool:
        return self.output

    def safe_state(self) -> None:
        with self.lock:
            if self.query("SOUR0:WAV:SWE?") != "0":
                self.write("SOUR0:WAV:SWE 0")
            self.output = False

    # --- swept operation with lambda logging ---------------------------------------------------
    def configure_sweep(
        self, start_nm: float, stop_nm: float, step_nm: float, speed_nm_per_s: float
    ) -> int:
        """Continuous one-way sweep with lambda logging and a trigger at every step; returns the
        number of points (triggers, logged wavelengths) it will produce."""
        low, high = self.wavelength_range_nm
        if not low <= start_nm < stop_nm <= high:
            raise ValueError(f"sweep {start_nm}-{stop_nm} nm is not inside [{low:g}, {high:g}]")
        with self.lock:
            self.sweep_mode = "CONT"
            self.sweep_cycles = 1
            self.sweep_start_nm = start_nm
            self.sweep_stop_nm = stop_nm
            self.sweep_step_nm = step_nm
            self.sweep_speed_nm_per_s = speed_nm_per_s
            self.trigger_output = "STF"
            self.lambda_logging = True
            self.check_sweep()
        return int((stop_nm - start_nm) / step_nm + 1e-9) + 1

    def check_sweep(self) -> None:
        """Ask the laser whether the sweep settings are consistent; raise if not."""
        command = "SOUR0:WAV:SWE:CHEC?"
        reply = self.query(command)
        code, _, text = reply.partition(",")
        try:
            value = int(float(code))
        except ValueError:
            raise InstrumentReplyError(
                command, reply, "'<code>,<text>'", resource=self.resource
            ) from None
        if value != 0:
            raise InstrumentStateError(
                f"sweep settings rejected: {value} {text.strip()}", resource=self.resource
            )

    def start_sweep(self) -> None:
        self.write("SOUR0:WAV:SWE 1")

    def stop_sweep(self) -> None:
        self.write("SOUR0:WAV:SWE 0")

    def sweep_complete(self) -> bool:
        reply = self.query("SOUR0:WAV:SWE?")
        if reply not in ("0", "1", "2"):
            raise InstrumentReplyError("SOUR0:WAV:SWE?", reply, "0, 1 or 2", resource=self.resource)
        return reply == "0"

    def wait_sweep(self, timeout_s: float) -> None:
        """Poll until the sweep has finished; a sweep that never ends raises InstrumentTimeout
        (and is stopped)."""
        deadline = time.monotonic() + timeout_s
        while not self.sweep_complete():
            if time.monotonic() > deadline:
                self.stop_sweep()
                raise InstrumentTimeout("SOUR0:WAV:SWE? (sweep)", timeout_s, resource=self.resource)
            time.sleep(min(0.02, timeout_s / 50))

    def logged_wavelengths_nm(self) -> np.ndarray:
        """Wavelength at every trigger of the last sweep, from the lambda log, in nm."""
        with self.lock:
            points = self.logged_points
            if points == 0:
                raise InstrumentStateError(
                    "no lambda log: run a sweep first", resource=self.resource
                )
            metres = self.query_block("SOUR0:READ:DATA? LLOG", "float64")
        if len(metres) != points:
            raise InstrumentReplyError(
                "SOUR0:READ:DATA? LLOG",
                f"{len(metres)} values",
                f"{points} values",
                resource=self.resource,
            )
        return metres * 1e9
