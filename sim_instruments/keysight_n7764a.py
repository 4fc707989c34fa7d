"""Simulated Keysight N7764A 4-channel variable optical attenuator (INPut / OUTPut subsystems).

Channel 1 is the bench's RX-path attenuator in the world; every move of the filter takes time
(`*OPC?` waits for it), the calibration holds at the wavelength it is told, the shutter is real.
"""

from __future__ import annotations

import math
import re

from sim_instruments.rx_path import AttenuatorState
from sim_instruments.scpi import ScpiDevice, ScpiError, parse_bool, parse_number, scpi
from sim_instruments.world import World

CHANNELS = 4
MIN_WAVELENGTH_M, MAX_WAVELENGTH_M = 1260e-9, 1640e-9
_WAVELENGTH_UNITS = {"NM": 1e-9, "UM": 1e-6, "M": 1.0, "PM": 1e-12}
_DB = {"DB": 1.0, "MDB": 1e-3}
_LIMIT = re.compile(r"^\s*(MIN|MINIMUM|DEF|DEFAULT|MAX|MAXIMUM)\s*$", re.IGNORECASE)


class SimN7764A(ScpiDevice):
    manufacturer = "Keysight Technologies"
    model = "N7764A"
    firmware = "1.310"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        assert world.rx is not None, "channel 1 is the receive path's attenuator"
        self.world = world
        # Channel 1 sits in the RX path; channels 2-4 have no fibre on this bench.
        self.channels = [world.rx.attenuator] + [AttenuatorState() for _ in range(CHANNELS - 1)]

    def reset(self) -> None:
        now = self.clock.now_s()
        with self.world.lock:
            for channel in self.channels:
                channel.shutter_open = False
                channel.wavelength_set_nm = 1550.0
                channel.set_attenuation(0.0, now)

    def wait_operations(self) -> None:
        now = self.clock.now_s()
        self.clock.sleep(max(channel.settling_s(now) for channel in self.channels))

    def _channel(self, suffixes: tuple[int, ...]) -> AttenuatorState:
        slot = suffixes[0] if suffixes else 1
        if not 1 <= slot <= CHANNELS or any(n != 1 for n in suffixes[1:]):
            raise ScpiError(-114, "Header suffix out of range")
        return self.channels[slot - 1]

    @staticmethod
    def _limit(channel: AttenuatorState, word: str) -> float:
        return channel.max_db if word.upper().startswith("MAX") else 0.0

    @scpi("INPut#:ATTenuation")
    @scpi("INPut#:CHANnel#:ATTenuation")
    def _set_attenuation(self, s: tuple[int, ...], args: str) -> None:
        channel = self._channel(s)
        limit = _LIMIT.match(args)
        value = self._limit(channel, limit[1]) if limit else parse_number(args, _DB)
        if not 0.0 <= value <= channel.max_db:
            raise ScpiError(-222, "Data out of range")
        with self.world.lock:
            channel.set_attenuation(round(value, 3), self.clock.now_s())

    @scpi("INPut#:ATTenuation", query=True)
    @scpi("INPut#:CHANnel#:ATTenuation", query=True)
    def _get_attenuation(self, s: tuple[int, ...], args: str) -> str:
        channel = self._channel(s)
        if args.strip():
            limit = _LIMIT.match(args)
            if not limit:
                raise ScpiError(-224, "Illegal parameter value")
            return f"{self._limit(channel, limit[1]):+.6E}"
        return f"{channel.set_db:+.6E}"

    @scpi("INPut#:WAVelength")
    @scpi("INPut#:CHANnel#:WAVelength")
    def _set_wavelength(self, s: tuple[int, ...], args: str) -> None:
        channel = self._channel(s)
        value = parse_number(args, _WAVELENGTH_UNITS)
        if not math.isfinite(value) or not MIN_WAVELENGTH_M <= value <= MAX_WAVELENGTH_M:
            raise ScpiError(-222, "Data out of range")
        with self.world.lock:
            channel.wavelength_set_nm = value * 1e9

    @scpi("INPut#:WAVelength", query=True)
    @scpi("INPut#:CHANnel#:WAVelength", query=True)
    def _get_wavelength(self, s: tuple[int, ...], args: str) -> str:
        return f"{self._channel(s).wavelength_set_nm * 1e-9:+.6E}"

    @scpi("OUTPut#:STATe")
    @scpi("OUTPut#")
    @scpi("OUTPut#:CHANnel#:STATe")
    def _set_shutter(self, s: tuple[int, ...], args: str) -> None:
        channel = self._channel(s)
        with self.world.lock:
            channel.shutter_open = parse_bool(args)

    @scpi("OUTPut#:STATe", query=True)
    @scpi("OUTPut#", query=True)
    @scpi("OUTPut#:CHANnel#:STATe", query=True)
    def _get_shutter(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self._channel(s).shutter_open else "0"

    # --- instrument-specific fault ------------------------------------------------------------
    def stick_filter(self, channel: int = 1, stuck: bool = True) -> None:
        """The filter motor stops: settings are accepted and read back, the light is not moved."""
        with self.lock:
            self.channels[channel - 1].stuck = stuck
