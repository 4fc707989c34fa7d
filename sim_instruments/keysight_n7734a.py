"""Simulated Keysight N7734A 1x12 optical switch (ROUTe subsystem).

Switching takes time (*OPC? waits for it) and each route repeats its loss only within a few
hundredths of a dB.
"""

from __future__ import annotations

import re

from sim_instruments.scpi import ScpiDevice, ScpiError, scpi
from sim_instruments.world import World

SWITCHING_TIME_S = 0.012
_ROUTE = re.compile(r"^\s*A\s*,\s*(\d+)\s*$", re.IGNORECASE)


class SimN7734A(ScpiDevice):
    manufacturer = "Keysight Technologies"
    model = "N7734A"
    firmware = "2.010"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        assert world.switch is not None
        self.port_count = world.switch.port_count

    def reset(self) -> None:
        self.world.route_switch(1, SWITCHING_TIME_S)

    def wait_operations(self) -> None:
        self.clock.sleep(self.world.switch_settling_s())

    @scpi("ROUTe#:CHANnel#")
    @scpi("ROUTe#")
    def _route(self, s: tuple[int, ...], args: str) -> None:
        self._check_address(s)
        match = _ROUTE.match(args)
        if not match:
            raise ScpiError(-224, "Illegal parameter value")
        port = int(match[1])
        if not 1 <= port <= self.port_count:
            raise ScpiError(-222, "Data out of range")
        self.world.route_switch(port, SWITCHING_TIME_S)

    @scpi("ROUTe#:CHANnel#", query=True)
    @scpi("ROUTe#", query=True)
    def _route_query(self, s: tuple[int, ...], args: str) -> str:
        self._check_address(s)
        assert self.world.switch is not None
        return f"A,{self.world.switch.routed}"

    @scpi("ROUTe#:CHANnel#:CONFig", query=True)
    @scpi("ROUTe#:CONFig", query=True)
    def _config(self, s: tuple[int, ...], args: str) -> str:
        self._check_address(s)
        return f"A,A;1,{self.port_count}"

    def _check_address(self, suffixes: tuple[int, ...]) -> None:
        if any(n != 1 for n in suffixes):
            raise ScpiError(-114, "Header suffix out of range")
