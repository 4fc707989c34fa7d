"""A SCPI parser and dispatcher for simulated instruments.

Headers are declared as in the manuals ("SENSe#:POWer:WAVelength": upper case is the short form,
`#` an optional numeric suffix); both forms are accepted, any case. Unknown headers queue
-113 "Undefined header", like a real instrument, and never reply.
"""

from __future__ import annotations

import re
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sim_instruments.clock import SimClock
from sim_instruments.faults import FaultPlan

Reply = str | bytes | None
Handler = Callable[..., Reply]


class ScpiError(Exception):
    """Raised by a handler to queue an instrument error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},{message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    suffix: bool


def _parse_pattern(pattern: str) -> tuple[_Node, ...]:
    nodes = []
    for part in pattern.strip(":").split(":"):
        suffix = part.endswith("#")
        word = part.rstrip("#")
        short = "".join(ch for ch in word if ch.isupper() or ch == "*" or ch.isdigit() or ch == "?")
        nodes.append(_Node(short.upper(), word.upper(), suffix))
    return tuple(nodes)


_HEADER_PART = re.compile(r"^([A-Z*?]+?)(\d*)$")


def scpi(pattern: str, *, query: bool = False) -> Callable[[Handler], Handler]:
    """Declare a handler for `pattern` (a query when `query`, else a setting command).

    The handler receives `(self, suffixes: tuple[int, ...], args: str)` and returns the reply.
    """

    def mark(func: Handler) -> Handler:
        func.__dict__.setdefault("_scpi", []).append((_parse_pattern(pattern), query))
        return func

    return mark


def block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length block."""
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload


class ScpiDevice:
    """Base of every simulated SCPI instrument: error queue, common commands, dispatch."""

    manufacturer = "Simulated"
    model = "SCPI"
    firmware = "1.0"
    max_errors = 30

    def __init__(self, clock: SimClock, serial_number: str) -> None:
        self.clock = clock
        self.serial_number = serial_number
        self.lock = threading.RLock()
        self.faults = FaultPlan()
        self.errors: deque[tuple[int, str]] = deque()
        self.commands_seen = 0
        self._handlers: list[tuple[tuple[_Node, ...], bool, Handler]] = []
        for cls in reversed(type(self).__mro__):
            for value in vars(cls).values():
                for nodes, is_query in getattr(value, "_scpi", ()):
                    self._handlers.append((nodes, is_query, value.__get__(self)))

    # --- error queue -------------------------------------------------------------------------
    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= self.max_errors:
            self.errors[-1] = (-350, "Queue overflow")
        else:
            self.errors.append((code, message))

    # --- dispatch ------------------------------------------------------------------------------
    def handle(self, message: str) -> list[str | bytes]:
        """Execute one program message (commands separated by ';'); return its replies."""
        replies: list[Reply] = []
        with self.lock:
            for unit in _split_units(message):
                self.commands_seen += 1
                header, _, args = unit.strip().partition(" ")
                if not header:
                    continue
                try:
                    replies.append(self._dispatch(header, args.strip()))
                except ScpiError as err:
                    self.push_error(err.code, err.message)
                except Exception as err:  # a simulator bug shows as an instrument error
                    traceback.print_exc(file=sys.stderr)
                    self.push_error(-300, f"Device-specific error; {type(err).__name__}")
        return [r for r in replies if r is not None]

    def _dispatch(self, header: str, args: str) -> Reply:
        is_query = header.endswith("?")
        parts = header.rstrip("?").lstrip(":").upper().split(":")
        for nodes, handler_query, handler in self._handlers:
            if handler_query != is_query or len(nodes) != len(parts):
                continue
            suffixes = _match(nodes, parts)
            if suffixes is not None:
                return handler(suffixes, args)
        raise ScpiError(-113, "Undefined header")

    # --- IEEE 488.2 common commands -------------------------------------------------------------
    @scpi("*IDN", query=True)
    def _idn(self, suffixes: tuple[int, ...], args: str) -> Reply:
        return f"{self.manufacturer},{self.model},{self.serial_number},{self.firmware}"

    @scpi("*RST")
    def _rst(self, suffixes: tuple[int, ...], args: str) -> Reply:
        self.reset()
        return None

    @scpi("*CLS")
    def _cls(self, suffixes: tuple[int, ...], args: str) -> Reply:
        self.errors.clear()
        return None

    @scpi("*OPC", query=True)
    def _opc(self, suffixes: tuple[int, ...], args: str) -> Reply:
        self.wait_operations()
        return "1"

    @scpi("*WAI")
    def _wai(self, suffixes: tuple[int, ...], args: str) -> Reply:
        self.wait_operations()
        return None

    @scpi("SYSTem:ERRor", query=True)
    @scpi("SYSTem:ERRor:NEXT", query=True)
    def _err(self, suffixes: tuple[int, ...], args: str) -> Reply:
        if not self.errors:
            return '0,"No error"'
        code, message = self.errors.popleft()
        return f'{code},"{message}"'

    def reset(self) -> None:
        """Return to the power-on settings (`*RST`)."""

    def wait_operations(self) -> None:
        """Block until pending overlapped operations have finished (`*OPC?`, `*WAI`)."""


def _match(nodes: tuple[_Node, ...], parts: list[str]) -> tuple[int, ...] | None:
    suffixes: list[int] = []
    for node, part in zip(nodes, parts, strict=True):
        match = _HEADER_PART.match(part)
        if not match:
            return None
        word, digits = match[1], match[2]
        if word not in (node.short, node.long):
            return None
        if digits and not node.suffix:
            return None
        if node.suffix:
            suffixes.append(int(digits) if digits else 1)
    return tuple(suffixes)


def _split_units(message: str) -> list[str]:
    units, current, quoted = [], [], ""
    for ch in message:
        if quoted:
            current.append(ch)
            if ch == quoted:
                quoted = ""
        elif ch in "'\"":
            quoted = ch
            current.append(ch)
        elif ch == ";":
            units.append("".join(current))
            current = []
        else:
            current.append(ch)
    units.append("".join(current))
    return units


def parse_number(text: str, unit_scales: dict[str, float] | None = None) -> float:
    """A SCPI numeric argument with an optional unit suffix (`1310NM`, `1.31E-6`, `100MS`)."""
    match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match:
        raise ScpiError(-104, "Data type error")
    value = float(match[1])
    suffix = match[2].upper()
    if suffix:
        scales = unit_scales or {}
        if suffix not in scales:
            raise ScpiError(-131, "Invalid suffix")
        value *= scales[suffix]
    return value


def parse_bool(text: str) -> bool:
    value = text.strip().upper()
    if value in {"1", "ON"}:
        return True
    if value in {"0", "OFF"}:
        return False
    raise ScpiError(-104, "Data type error")
