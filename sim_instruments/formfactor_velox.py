"""Simulated FormFactor wafer prober run by Velox, with a SiPh optical positioner: the subset of
Velox remote commands the station's driver uses, answered "<error code>: <data>" as Velox does.

Die stepping follows the wafer's map in its test order and ends with error 703 (end of wafer);
chuck contact and separation, die steps and fibre moves take their travel time. Instrument-specific
fault: `stick()` (the next move never completes, so its reply never comes).

Error codes other than 703 are this simulator's placeholders (no public list was found).
"""

from __future__ import annotations

import math

from sim_instruments.scpi import ScpiDevice
from sim_instruments.wafer_station import WaferStation
from sim_instruments.world import World

END_OF_WAFER = 703
UNKNOWN_COMMAND = 1  # placeholder
BAD_PARAMETER = 2  # placeholder
NOT_POSSIBLE = 3  # placeholder: no wafer, no current die, probe not configured
OUT_OF_RANGE = 4  # placeholder: a position outside the travel

CHUCK_Z_S = 0.15  # contact or separation at 100 % velocity
CHUCK_XY_MM_PER_S = 40.0
CHUCK_SETTLE_S = 0.15
PROBE_UM_PER_S = 1000.0
PROBE_SETTLE_S = 0.01
#: fibre positioner motor travel (um from its zero) and the motor position over the nominal
#: coupler position of the die under the probes
PROBE_TRAVEL_UM = (0.0, 10_000.0)
PROBE_NOMINAL_UM = (5_000.0, 5_000.0)
HOVER_CONTACT_UM, HOVER_SEPARATED_UM = 25.0, 325.0
MOVES = frozenset(
    {"MOVECHUCKCONTACT", "MOVECHUCKSEPARATION", "STEPFIRSTDIE", "STEPNEXTDIE", "MOVEOPTICALPROBE"}
)


class VeloxError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SimVelox(ScpiDevice):
    """Speaks Velox's remote command syntax, not SCPI: `<Command> <args>` -> `<code>: <data>`."""

    manufacturer = "FormFactor"
    model = "Velox"
    firmware = "3.2.0.10"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        assert world.wafer is not None
        self.station: WaferStation = world.wafer
        self.stuck_moves = 0
        self.motor_um = PROBE_NOMINAL_UM
        self.home_um = PROBE_NOMINAL_UM
        self._commands = {
            "*IDN?": self._idn,
            "REPORTSOFTWAREVERSION": self._version,
            "MOVECHUCKCONTACT": self._contact,
            "MOVECHUCKSEPARATION": self._separate,
            "STEPFIRSTDIE": self._step_first,
            "STEPNEXTDIE": self._step_next,
            "GETDIEDATAASNUM": self._die_data,
            "READCHUCKINDEX": self._chuck_index,
            "MOVEOPTICALPROBE": self._move_probe,
            "READOPTICALPROBEPOS": self._read_probe,
            "SETOPTICALPROBEHOME": self._set_home,
        }

    # --- instrument-specific fault -----------------------------------------------------------
    def stick(self, moves: int = 1) -> None:
        """The next `moves` moves never complete (a stalled axis, an interlock that never
        clears): no reply comes and nothing moves."""
        with self.lock:
            self.stuck_moves = moves

    # --- dispatch --------------------------------------------------------------------------------
    def handle(self, message: str) -> list[str | bytes]:
        words = message.split()
        if not words:
            return []
        name, args = words[0].upper(), words[1:]
        with self.lock:
            self.commands_seen += 1
            if name in MOVES and self.stuck_moves > 0:
                self.stuck_moves -= 1
                return []
            handler = self._commands.get(name)
            if handler is None:
                return [f"{UNKNOWN_COMMAND}: Unknown command {words[0]}"]
            try:
                data = handler(args)
            except VeloxError as err:
                return [f"{err.code}: {err.message}"]
        return [data if name == "*IDN?" else f"0: {data}".rstrip()]

    # --- identity ---------------------------------------------------------------------------------
    def _idn(self, args: list[str]) -> str:
        return f"{self.manufacturer},{self.model},{self.serial_number},{self.firmware}"

    def _version(self, args: list[str]) -> str:
        return self.firmware

    # --- chuck -----------------------------------------------------------------------------------
    def _velocity(self, args: list[str]) -> float:
        if not args:
            return 100.0
        velocity = _number(args[0])
        if not 0.1 <= velocity <= 100.0:
            raise VeloxError(BAD_PARAMETER, f"Velocity {args[0]} out of range")
        return velocity

    def _wafer_loaded(self) -> None:
        if self.station.wafer is None:
            raise VeloxError(NOT_POSSIBLE, "No wafer on chuck")

    def _contact(self, args: list[str]) -> str:
        velocity = self._velocity(args)
        self._wafer_loaded()
        if not self.station.in_contact:
            self.clock.sleep(CHUCK_Z_S * 100.0 / velocity)
        with self.station.lock:
            self.station.in_contact = True
        return ""

    def _separate(self, args: list[str]) -> str:
        velocity = self._velocity(args)
        if self.station.in_contact:
            self.clock.sleep(CHUCK_Z_S * 100.0 / velocity)
        with self.station.lock:
            self.station.in_contact = False
        return ""

    def _go_to(self, index: int) -> str:
        """Step to die `index` of the map: separate, travel, settle (ends at separation)."""
        wafer = self.station.wafer
        assert wafer is not None
        if self.station.in_contact:
            self._separate([])
        here = self.station.die_index
        if here is None:
            distance_mm = 100.0  # from the load position
        else:
            distance_mm = math.hypot(
                wafer.x_mm[index] - wafer.x_mm[here], wafer.y_mm[index] - wafer.y_mm[here]
            )
        self.clock.sleep(distance_mm / CHUCK_XY_MM_PER_S + CHUCK_SETTLE_S)
        with self.station.lock:
            self.station.die_index = index
        return f"{int(wafer.columns[index])} {int(wafer.rows[index])} 0 0"

    def _step_first(self, args: list[str]) -> str:
        self._wafer_loaded()
        return self._go_to(0)

    def _step_next(self, args: list[str]) -> str:
        self._wafer_loaded()
        wafer = self.station.wafer
        assert wafer is not None
        if args:
            if len(args) not in (2, 3):
                raise VeloxError(BAD_PARAMETER, "Expected column, row and optional subdie")
            column, row = int(_number(args[0])), int(_number(args[1]))
            if len(args) == 3 and int(_number(args[2])) != 0:
                raise VeloxError(BAD_PARAMETER, "Subdie out of range")
            index = wafer.index_of(column, row)
            if index is None:
                raise VeloxError(OUT_OF_RANGE, f"Die {column} {row} is not on the map")
            return self._go_to(index)
        here = self.station.die_index
        if here is None:
            return self._go_to(0)
        if here + 1 >= wafer.count:
            raise VeloxError(END_OF_WAFER, "End of wafer.")
        return self._go_to(here + 1)

    def _die_data(self, args: list[str]) -> str:
        self._wafer_loaded()
        wafer, index = self.station.wafer, self.station.die_index
        if wafer is None or index is None:
            raise VeloxError(NOT_POSSIBLE, "No current die")
        return f"{index + 1} {int(wafer.columns[index])} {int(wafer.rows[index])}"

    def _chuck_index(self, args: list[str]) -> str:
        if args and args[0].upper() not in ("Y", "MICRONS"):
            raise VeloxError(BAD_PARAMETER, f"Unit {args[0]} not supported")
        self._wafer_loaded()
        assert self.station.wafer is not None
        design = self.station.wafer.design
        return f"{design.pitch_x_mm * 1000:.1f} {design.pitch_y_mm * 1000:.1f}"

    # --- optical (SiPh) positioner ---------------------------------------------------------------
    def _probe(self, text: str) -> None:
        if text.upper() not in ("0", "E", "EAST"):
            raise VeloxError(NOT_POSSIBLE, f"Optical probe {text} is not configured")

    def _reference(self, args: list[str], position: int, allowed: str) -> str:
        ref = args[position].upper() if len(args) > position else "H"
        if ref not in allowed:
            raise VeloxError(BAD_PARAMETER, f"Position reference {ref} not supported")
        return ref

    def _move_probe(self, args: list[str]) -> str:
        if len(args) < 3:
            raise VeloxError(BAD_PARAMETER, "Expected probe, x and y")
        self._probe(args[0])
        x, y = _number(args[1]), _number(args[2])
        ref = self._reference(args, 3, "RHZ")
        base = {"R": self.motor_um, "H": self.home_um, "Z": (0.0, 0.0)}[ref]
        target = (base[0] + x, base[1] + y)
        low, high = PROBE_TRAVEL_UM
        if not (low <= target[0] <= high and low <= target[1] <= high):
            raise VeloxError(OUT_OF_RANGE, "Target outside the positioner travel")
        distance = math.hypot(target[0] - self.motor_um[0], target[1] - self.motor_um[1])
        self.clock.sleep(distance / PROBE_UM_PER_S + PROBE_SETTLE_S)
        self.motor_um = target
        with self.station.lock:
            self.station.fibre_um = (
                target[0] - PROBE_NOMINAL_UM[0],
                target[1] - PROBE_NOMINAL_UM[1],
            )
        return ""

    def _read_probe(self, args: list[str]) -> str:
        if not args:
            raise VeloxError(BAD_PARAMETER, "Expected probe")
        self._probe(args[0])
        ref = self._reference(args, 1, "HZ")
        base = self.home_um if ref == "H" else (0.0, 0.0)
        z = HOVER_CONTACT_UM if self.station.in_contact else HOVER_SEPARATED_UM
        x, y = self.motor_um[0] - base[0], self.motor_um[1] - base[1]
        return f"{x:.2f} {y:.2f} {z:.2f} 0.00 0.00 0.00"

    def _set_home(self, args: list[str]) -> str:
        if not args:
            raise VeloxError(BAD_PARAMETER, "Expected probe")
        self._probe(args[0])
        self.home_um = self.motor_um
        return ""


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise VeloxError(BAD_PARAMETER, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise VeloxError(BAD_PARAMETER, f"{text!r} is not a number")
    return value
