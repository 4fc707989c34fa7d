"""FormFactor (Cascade) wafer prober controlled by Velox, with a SiPh optical positioner carrying
the fibre array; over Velox's remote command interface (GPIB, or a socket to the same commands).

Command set: FormFactor Velox "SCI" remote commands as Velox documents them per command
(Kernel: `MoveChuckContact`, `MoveChuckSeparation`, `ReadChuckIndex`; WaferMap: `StepFirstDie`,
`StepNextDie [<col> <row> [<subdie>]]`, `GetDieDataAsNum`; SiPh / optical interface:
`MoveOpticalProbe <probe> <x> <y> <R|H|Z>`, `ReadOpticalProbePos <probe> <H|Z>`). Every command
answers `<error code>: <data>`; 703 is the end of the wafer map (a status, not a failure).
Not confirmed from a primary source: the `*IDN?` reply format (taken as four comma fields), the
field order of `GetDieDataAsNum` (taken as `<die number> <col> <row>`, number 1-based in test
order), and `MoveOpticalProbe`'s reply data (ignored). Velox's TCP message server wraps the same
commands as `Cmd=<id>:<name>:<args>`; this driver sends them unwrapped, line by line.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers.base import Instrument, InstrumentIdentity
from drivers.errors import InstrumentCommandError, InstrumentReplyError
from drivers.interfaces import DiePosition
from drivers.transport import TransportTimeout

END_OF_WAFER = 703
_REPLY = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")


class Velox(Instrument):
    """FormFactor prober under Velox; implements `WaferProber`."""

    #: Velox documents command timeouts of 30-60 s for chuck moves; a die step can be slow
    default_timeout_s: ClassVar[float] = 60.0
    #: the optical positioner carrying the fibre array (0 = input/east, 1 = output/west)
    fibre_probe: ClassVar[int] = 0

    def command(self, text: str, *, idempotent: bool = False) -> str:
        """Send one command and return its data; a non-zero code raises InstrumentCommandError.

        Velox answers every command once it has finished (a move answers when it has arrived).
        Only reading commands are retried after a timeout, never moves.
        """
        attempts = 2 if idempotent else 1
        with self.lock:
            for attempt in range(attempts):
                self.transport.write(text.encode("ascii") + self.termination)
                try:
                    reply = self.transport.read_line().decode("ascii", "replace").strip()
                except TransportTimeout:
                    error = self._timed_out(text)
                    if attempt == attempts - 1:
                        raise error from None
                    continue
                match = _REPLY.match(reply)
                if not match:
                    raise InstrumentReplyError(
                        text, reply, "'<code>: <data>'", resource=self.resource
                    )
                code, data = int(match[1]), match[2]
                if code != 0:
                    raise InstrumentCommandError(text, code, data, resource=self.resource)
                return data
        raise AssertionError("unreachable")

    def identify(self) -> InstrumentIdentity:
        with self.lock:
            self.transport.write(b"*IDN?" + self.termination)
            try:
                reply = self.transport.read_line().decode("ascii", "replace").strip()
            except TransportTimeout:
                raise self._timed_out("*IDN?") from None
        return InstrumentIdentity.parse_idn(reply)

    def safe_state(self) -> None:
        """Lift the wafer off the probes (separation height)."""
        self.separate()

    # --- die map ----------------------------------------------------------------------------------
    def _position(self) -> DiePosition:
        data = self.command("GetDieDataAsNum", idempotent=True)
        fields = data.split()
        try:
            number, column, row = (int(f) for f in fields[:3])
        except ValueError:
            raise InstrumentReplyError(
                "GetDieDataAsNum", data, "'<number> <col> <row>'", resource=self.resource
            ) from None
        return DiePosition(column=column, row=row, index=number - 1)

    def _stepped(self, command: str, data: str) -> DiePosition:
        fields = data.split()
        if len(fields) < 2 or not all(f.lstrip("-").isdigit() for f in fields[:2]):
            raise InstrumentReplyError(command, data, "'<col> <row> ...'", resource=self.resource)
        position = self._position()
        if (position.column, position.row) != (int(fields[0]), int(fields[1])):
            raise InstrumentReplyError(
                "GetDieDataAsNum",
                f"{position.column} {position.row}",
                f"the die {fields[0]} {fields[1]} just stepped to",
                resource=self.resource,
            )
        return position

    def step_first_die(self) -> DiePosition:
        with self.lock:
            return self._stepped("StepFirstDie", self.command("StepFirstDie"))

    def step_next_die(self) -> DiePosition | None:
        """The next die of the map, or None after the last one (Velox error 703)."""
        with self.lock:
            try:
                data = self.command("StepNextDie")
            except InstrumentCommandError as err:
                if err.code == END_OF_WAFER:
                    return None
                raise
            return self._stepped("StepNextDie", data)

    def step_to_die(self, column: int, row: int) -> DiePosition:
        command = f"StepNextDie {int(column)} {int(row)}"
        with self.lock:
            return self._stepped(command, self.command(command))

    def die_pitch_um(self) -> tuple[float, float]:
        """The die size (index) stored in the prober, x and y in um."""
        data = self.command("ReadChuckIndex Y", idempotent=True)
        try:
            x, y = (float(v) for v in data.split()[:2])
        except ValueError:
            raise InstrumentReplyError(
                "ReadChuckIndex Y", data, "'<x> <y>'", resource=self.resource
            ) from None
        return x, y

    # --- chuck height ----------------------------------------------------------------------------
    def contact(self) -> None:
        self.command("MoveChuckContact")

    def separate(self) -> None:
        self.command("MoveChuckSeparation")

    # --- fibre array ---------------------------------------------------------------------------
    def move_fibre_um(self, x_um: float, y_um: float) -> None:
        """Move the fibre array to (x, y) um from its home: the nominal coupler position."""
        self.command(f"MoveOpticalProbe {self.fibre_probe} {x_um:.3f} {y_um:.3f} H")

    def fibre_position_um(self) -> tuple[float, float]:
        command = f"ReadOpticalProbePos {self.fibre_probe} H"
        data = self.command(command, idempotent=True)
        try:
            x, y = (float(v) for v in data.split()[:2])
        except ValueError:
            raise InstrumentReplyError(
                command, data, "'<x> <y> <z> ...'", resource=self.resource
            ) from None
        return x, y
