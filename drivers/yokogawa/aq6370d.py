"""Yokogawa AQ6370D optical spectrum analyser.

Command set: Yokogawa AQ6370D Optical Spectrum Analyzer Remote Control User's Manual, chapter
"Remote Commands" (analysis algorithms: IM AQ6370D-01EN, appendix 3):
`:SENSe:WAVelength:CENTer|SPAN`, `:SENSe:BANDwidth:RESolution`, `:SENSe:SWEep:POINts`,
`:SENSe:SENSe`, `:INITiate:SMODe 1`, `:INITiate`, `:STATus:OPERation:EVENt?` (bit 0: sweep
complete), `:FORMat:DATA REAL,64`, `:TRACe:X? TRA` / `:TRACe:Y? TRA` (m, dBm),
`:CALCulate:MARKer:MAXimum`, `:CALCulate:MARKer:X? 0`, `:CALCulate:CATegory SMSR|POWer`,
`:CALCulate:PARameter:SMSR:MODE SMSR1`, `:CALCulate`, `:CALCulate:DATA?` (SMSR: peak wl, peak
level, side-mode wl, side-mode level, delta wl, SMSR).
Not confirmed: the numeric codes `:SENSe:SENSe?` answers (taken as 0 NHLD .. 6 NORM) and the POWer
analysis reply (taken as one value in dBm).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError, InstrumentTimeout
from drivers.interfaces import Spectrum

RESOLUTIONS_NM = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
SENSITIVITY = {"NHLD": 0, "NAUT": 1, "MID": 2, "HIGH1": 3, "HIGH2": 4, "HIGH3": 5, "NORM": 6}


@dataclass(frozen=True, slots=True)
class SmsrResult:
    """The analyser's SMSR analysis of one sweep."""

    peak_wavelength_nm: float
    peak_level_dbm: float
    side_mode_wavelength_nm: float
    side_mode_level_dbm: float
    smsr_db: float


class AQ6370D(ScpiInstrument):
    """Yokogawa AQ6370D; implements `OpticalSpectrumAnalyzer`."""

    default_timeout_s: ClassVar[float] = 5.0
    #: longest a single sweep may take (HIGH3 sensitivity, 50001 points, wide span)
    sweep_timeout_s: ClassVar[float] = 600.0

    center_wavelength_nm = ScpiProperty[float](
        ":SENSe:WAVelength:CENTer?",
        ":SENSe:WAVelength:CENTer {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        limits=(600.0, 1700.0),
        fmt="{:.4f}",
    )
    span_nm = ScpiProperty[float](
        ":SENSe:WAVelength:SPAN?",
        ":SENSe:WAVelength:SPAN {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        limits=(0.0, 1100.0),
        fmt="{:.4f}",
    )
    resolution_nm = ScpiProperty[float](
        ":SENSe:BANDwidth:RESolution?",
        ":SENSe:BANDwidth:RESolution {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        choices=RESOLUTIONS_NM,
        fmt="{:.3f}",
    )
    points = ScpiProperty[int](
        ":SENSe:SWEep:POINts?", ":SENSe:SWEep:POINts {value}", kind=int, limits=(101, 50001)
    )
    sensitivity_code = ScpiProperty[int](
        ":SENSe:SENSe?", ":SENSe:SENSe {value}", kind=int, choices=tuple(SENSITIVITY.values())
    )
    sweep_mode = ScpiProperty[int](
        ":INITiate:SMODe?",
        ":INITiate:SMODe {value}",
        kind=int,
        choices=(1, 2, 3, 4),
        doc="1 single, 2 repeat",
    )

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self._binary = False
        self._resolution_nm: float | None = None

    def reset(self) -> None:
        super().reset()
        self._binary = False
        self._resolution_nm = None

    def configure(
        self,
        center_nm: float,
        span_nm: float,
        resolution_nm: float,
        points: int,
        *,
        sensitivity: str = "MID",
    ) -> None:
        if sensitivity not in SENSITIVITY:
            raise ValueError(f"sensitivity {sensitivity!r} is not one of {sorted(SENSITIVITY)}")
        if resolution_nm not in RESOLUTIONS_NM:
            raise ValueError(f"resolution {resolution_nm} nm is not one of {RESOLUTIONS_NM}")
        with self.lock:
            self.center_wavelength_nm = center_nm
            self.span_nm = span_nm
            self.resolution_nm = resolution_nm
            self.points = points
            self.sensitivity_code = SENSITIVITY[sensitivity]
            self.sweep_mode = 1
            self._resolution_nm = resolution_nm

    def sweep(self) -> Spectrum:
        """Run one single sweep, wait for its end, and read trace A."""
        with self.lock:
            if not self._binary:
                self.write(":FORMat:DATA REAL,64")
                self._binary = True
            self.clear_status()
            self.write(":INITiate")
            deadline = time.monotonic() + self.sweep_timeout_s
            while not int(self._event_register()) & 1:
                if time.monotonic() > deadline:
                    raise InstrumentTimeout(
                        ":STATus:OPERation:EVENt? (sweep)",
                        self.sweep_timeout_s,
                        resource=self.resource,
                    )
                time.sleep(0.02)
            wavelength_m = self.query_block(":TRACe:X? TRA", "float64")
            level_dbm = self.query_block(":TRACe:Y? TRA", "float64")
            resolution = (
                self._resolution_nm if self._resolution_nm is not None else self.resolution_nm
            )
        if wavelength_m.shape != level_dbm.shape:
            raise InstrumentReplyError(
                ":TRACe:Y? TRA",
                f"{level_dbm.size} points",
                f"{wavelength_m.size}",
                resource=self.resource,
            )
        return Spectrum(
            wavelength_nm=wavelength_m * 1e9, power_dbm=level_dbm, resolution_nm=resolution
        )

    def _event_register(self) -> int:
        reply = self.query(":STATus:OPERation:EVENt?")
        try:
            return int(reply)
        except ValueError:
            raise InstrumentReplyError(
                ":STATus:OPERation:EVENt?", reply, "an integer", resource=self.resource
            ) from None

    def _number(self, command: str) -> float:
        reply = self.query(command)
        try:
            return float(reply)
        except ValueError:
            raise InstrumentReplyError(command, reply, "a number", resource=self.resource) from None

    def peak_wavelength_nm(self) -> float:
        """Marker to the highest point of the last sweep; its wavelength."""
        with self.lock:
            self.write(":CALCulate:MARKer:MAXimum")
            return self._number(":CALCulate:MARKer:X? 0") * 1e9

    def smsr_analysis(self) -> SmsrResult:
        """The analyser's SMSR analysis (SMSR1: the highest mode other than the main one)."""
        with self.lock:
            self.write(":CALCulate:CATegory SMSR")
            self.write(":CALCulate:PARameter:SMSR:MODE SMSR1")
            self.write(":CALCulate")
            reply = self.query(":CALCulate:DATA?")
        try:
            fields = [float(v) for v in reply.split(",")]
        except ValueError:
            fields = []
        if len(fields) != 6:
            raise InstrumentReplyError(
                ":CALCulate:DATA?", reply, "six SMSR values", resource=self.resource
            )
        return SmsrResult(fields[0] * 1e9, fields[1], fields[2] * 1e9, fields[3], fields[5])

    def smsr_db(self) -> float:
        return self.smsr_analysis().smsr_db

    def total_power_dbm(self) -> float:
        """The analyser's POWer analysis: the power integrated over the span."""
        with self.lock:
            self.write(":CALCulate:CATegory POWer")
            self.write(":CALCulate")
            return self._number(":CALCulate:DATA?")
