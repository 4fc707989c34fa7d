"""Keysight N7764A 4-channel variable optical attenuator (N7760A family; also 8157xA modules).

Command set: Keysight 8163A/B, 8164A/B & 8166A/B Mainframes Programming Guide, chapter 4
"Measurement Operations & Settings", section "Signal Conditioning" (the INPut and OUTput commands
the 8156x/8157x attenuators and the N77xx VOAs share): `:INPut[n][:CHANnel[m]]:ATTenuation
<value>[DB]|MIN|DEF|MAX` and its query (with MIN|DEF|MAX for the limits),
`:INPut[n]:WAVelength`, `:OUTPut[n][:STATe]` (the shutter). `*OPC?` returns once the filter has
settled. Not confirmed for the N7764A itself: that its channel is addressed as the slot number
`n` (as on the N7744C power meter) and that the attenuation range is 0-60 dB (the 81577A's).
"""

from __future__ import annotations

from typing import Any, ClassVar

from drivers.base import ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentReplyError


class N7764A(ScpiInstrument):
    """One channel of a Keysight N7764A; implements `Attenuator`.

    Safe state: shutter closed, maximum attenuation.
    """

    #: longest the filter takes to travel the whole range and settle
    settling_budget_s: ClassVar[float] = 1.0

    attenuation_set_db = ScpiProperty[float](
        "INP{channel}:ATT?",
        None,
        unit="dB",
        doc="the attenuation factor set (insertion loss not included)",
    )
    wavelength_nm = ScpiProperty[float](
        "INP{channel}:WAV?",
        "INP{channel}:WAV {value}NM",
        unit="nm",
        scale=1e9,
        set_scale=1.0,
        limits=(1260.0, 1640.0),
        fmt="{:.3f}",
    )
    shutter_open = ScpiProperty[bool](
        "OUTP{channel}:STAT?", "OUTP{channel}:STAT {value}", kind=bool
    )

    def __init__(self, transport: Any, channel: int = 1) -> None:
        super().__init__(transport)
        if not 1 <= channel <= 4:
            raise ValueError(f"channel {channel} is outside 1..4")
        self.channel = channel
        self._max_db: float | None = None

    def scpi_args(self) -> dict[str, Any]:
        return {"channel": self.channel}

    @property
    def max_attenuation_db(self) -> float:
        if self._max_db is None:
            command = f"INP{self.channel}:ATT? MAX"
            reply = self.query(command)
            try:
                self._max_db = float(reply)
            except ValueError:
                raise InstrumentReplyError(
                    command, reply, "an attenuation in dB", resource=self.resource
                ) from None
        return self._max_db

    def set_wavelength_nm(self, wavelength_nm: float) -> None:
        self.wavelength_nm = wavelength_nm

    def set_attenuation_db(self, attenuation_db: float) -> None:
        if not 0.0 <= attenuation_db <= self.max_attenuation_db:
            raise ValueError(
                f"attenuation {attenuation_db} dB is outside 0..{self.max_attenuation_db:g} dB"
            )
        with self.lock:
            self.write(f"INP{self.channel}:ATT {attenuation_db:.3f}DB")
            self._wait_settled()

    def attenuation_db(self) -> float:
        return self.attenuation_set_db

    def set_output(self, enabled: bool) -> None:
        self.shutter_open = enabled

    def _wait_settled(self) -> None:
        with self.timeout(self.transport.timeout_s + self.settling_budget_s):
            self.query("*OPC?")

    def safe_state(self) -> None:
        with self.lock:
            self.shutter_open = False
            self.write(f"INP{self.channel}:ATT MAX")
            self._wait_settled()
