"""Keysight N7744C 4-port optical power meter (also N7745C with 8 ports).

Command set: Keysight N77xx Series Optical Power Meters Programming Guide, SENSe / READ / FETCh
subsystems (`SENSe[n]:POWer:WAVelength`, `:ATIMe`, `:UNIT`, `READ[n]:POWer?`) and the logging
function (`SENSe[n]:FUNCtion:PARameter:LOGGing`, `:FUNCtion:STATe`, `:FUNCtion:RESult?`, a
binary block of little-endian float32 in W), with the trigger input (`TRIGger[n]:INPut SME|IGN`:
one logged sample per input trigger, or free-running).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError, InstrumentTimeout


class N7744CChannel(ScpiInstrument):
    """One detector port; shares the meter's transport and lock."""

    wavelength_nm = ScpiProperty[float](
        "SENS{channel}:POW:WAV?",
        "SENS{channel}:POW:WAV {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        limits=(1250.0, 1650.0),
        fmt="{:.4f}",
    )
    averaging_time_s = ScpiProperty[float](
        "SENS{channel}:POW:ATIM?",
        "SENS{channel}:POW:ATIM {value}",
        unit="s",
        limits=(1e-6, 10.0),
        fmt="{:.6g}",
    )
    power_unit_watt = ScpiProperty[bool](
        "SENS{channel}:POW:UNIT?",
        "SENS{channel}:POW:UNIT {value}",
        kind=bool,
        doc="True when readings are in W (1), False in dBm (0)",
    )
    auto_range = ScpiProperty[bool](
        "SENS{channel}:POW:RANG:AUTO?",
        "SENS{channel}:POW:RANG:AUTO {value}",
        kind=bool,
    )

    def __init__(self, meter: N7744C, channel: int) -> None:
        super().__init__(meter.transport)
        self.lock = meter.lock
        self.channel = channel

    def scpi_args(self) -> dict[str, Any]:
        return {"channel": self.channel}


class N7744C(ScpiInstrument):
    """Keysight N7744C optical power meter; implements `PowerMeter`."""

    ports: ClassVar[int] = 4

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self._channels = [N7744CChannel(self, n) for n in range(1, self.ports + 1)]
        self._watt_unit_set: set[int] = set()

    @property
    def channel_count(self) -> int:
        return self.ports

    def channel(self, channel: int) -> N7744CChannel:
        if not 1 <= channel <= self.ports:
            raise ValueError(f"channel {channel} is outside 1..{self.ports}")
        return self._channels[channel - 1]

    def reset(self) -> None:
        super().reset()
        self._watt_unit_set.clear()

    def set_wavelength_nm(self, channel: int, wavelength_nm: float) -> None:
        self.channel(channel).wavelength_nm = wavelength_nm

    def set_averaging_time_s(self, channel: int, averaging_time_s: float) -> None:
        self.channel(channel).averaging_time_s = averaging_time_s

    def read_power_w(self, channel: int) -> float:
        port = self.channel(channel)
        with self.lock:
            if channel not in self._watt_unit_set:
                port.power_unit_watt = True
                self._watt_unit_set.add(channel)
            # READ triggers a new measurement that lasts one averaging time.
            averaging_s = port.averaging_time_s
            with self.timeout(self.transport.timeout_s + averaging_s):
                reply = self.query(f"READ{channel}:POW?")
        try:
            return float(reply)
        except ValueError:
            raise InstrumentReplyError(
                f"READ{channel}:POW?", reply, "a power in W", resource=self.resource
            ) from None

    # --- logging: many samples at a fixed averaging time, read back as one block ----------------
    max_logging_points: ClassVar[int] = 1_000_000

    def start_logging(
        self, channel: int, points: int, averaging_time_s: float, *, triggered: bool = False
    ) -> None:
        """Log `points` samples; with `triggered`, one sample per trigger input (`TRIG:INP SME`,
        a tunable laser's step trigger), else free-running (`IGN`)."""
        if not 1 <= points <= self.max_logging_points:
            raise ValueError(f"points {points} is outside 1..{self.max_logging_points}")
        self.channel(channel)
        self.write(f"TRIG{channel}:INP {'SME' if triggered else 'IGN'}")
        self.write(f"SENS{channel}:FUNC:PAR:LOGG {points},{averaging_time_s:.6g}")
        self.write(f"SENS{channel}:FUNC:STAT LOGG,STAR")

    def logging_complete(self, channel: int) -> bool:
        reply = self.query(f"SENS{channel}:FUNC:STAT?")
        _function, _, state = reply.partition(",")
        if state not in ("PROGRESS", "COMPLETE"):
            raise InstrumentReplyError(
                f"SENS{channel}:FUNC:STAT?",
                reply,
                "'<function>,PROGRESS|COMPLETE'",
                resource=self.resource,
            )
        return state == "COMPLETE"

    def fetch_logged_power_w(self, channel: int) -> np.ndarray:
        """The logged samples, in W, as float32 (the instrument's own resolution)."""
        self.channel(channel)
        return self.query_block(f"SENS{channel}:FUNC:RES?", "float32")

    def log_power_w(self, channel: int, points: int, averaging_time_s: float) -> np.ndarray:
        """Log `points` samples of `averaging_time_s` each and return them, in W."""
        self.start_logging(channel, points, averaging_time_s)
        budget_s = points * averaging_time_s * 1.5 + self.transport.timeout_s
        deadline = time.monotonic() + budget_s
        while not self.logging_complete(channel):
            if time.monotonic() > deadline:
                raise InstrumentTimeout(
                    f"SENS{channel}:FUNC:STAT? (logging)", budget_s, resource=self.resource
                )
            time.sleep(min(0.05, points * averaging_time_s / 10))
        return self.fetch_logged_power_w(channel)
