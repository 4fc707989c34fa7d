"""Keysight N7734A optical switch (1xN, single-mode).

Command set: Keysight 8163A/B, 8164A/B & 8166A/B Programming Guide, "Signal Routing" (ROUTe
subsystem, shared by the N77xx switches): `ROUTe[n][:CHANnel[m]] A,<k>`, `ROUTe[n][:CHANnel[m]]?`,
`ROUTe[n][:CHANnel[m]]:CONFig?` answering `<first left>,<last left>;<first right>,<last right>`.
"""

from __future__ import annotations

import re

from drivers.base import ScpiInstrument
from drivers.errors import InstrumentReplyError

_CONFIG = re.compile(r"^\s*([A-Z]),([A-Z]);(\d+),(\d+)\s*$")
_ROUTE = re.compile(r"^\s*([A-Z]),(\d+)\s*$")


class N7734A(ScpiInstrument):
    """Keysight N7734A 1xN optical switch; implements `OpticalSwitch`."""

    slot = 1
    channel = 1

    def __init__(self, transport: object) -> None:
        super().__init__(transport)  # type: ignore[arg-type]
        self._port_count: int | None = None

    @property
    def port_count(self) -> int:
        if self._port_count is None:
            command = f"ROUT{self.slot}:CHAN{self.channel}:CONF?"
            reply = self.query(command)
            match = _CONFIG.match(reply)
            if not match:
                raise InstrumentReplyError(command, reply, "'A,A;1,<n>'", resource=self.resource)
            self._port_count = int(match[4]) - int(match[3]) + 1
        return self._port_count

    def route(self, port: int) -> None:
        if not 1 <= port <= self.port_count:
            raise ValueError(f"port {port} is outside 1..{self.port_count}")
        self.write(f"ROUT{self.slot}:CHAN{self.channel} A,{port}")
        self.query("*OPC?")  # returns once the switch has settled

    def routed_port(self) -> int:
        command = f"ROUT{self.slot}:CHAN{self.channel}?"
        reply = self.query(command)
        match = _ROUTE.match(reply)
        if not match:
            raise InstrumentReplyError(command, reply, "'A,<port>'", resource=self.resource)
        return int(match[2])
