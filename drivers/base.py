"""Base instrument classes: session ownership, locking, SCPI query/write with error-queue checks,
IEEE 488.2 binary blocks, resynchronisation after timeouts, and declarative SCPI properties.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

import numpy as np

from drivers.errors import (
    InstrumentCommandError,
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from drivers.transport import Transport, TransportTimeout, open_transport

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InstrumentIdentity:
    """What `*IDN?` (or a model's equivalent) says about the instrument."""

    manufacturer: str
    model: str
    serial_number: str
    firmware: str

    @classmethod
    def parse_idn(cls, reply: str) -> InstrumentIdentity:
        parts = [p.strip() for p in reply.split(",")]
        if len(parts) < 4:
            raise InstrumentReplyError("*IDN?", reply, "four comma-separated fields")
        return cls(parts[0], parts[1], parts[2], ",".join(parts[3:]))

    def __str__(self) -> str:
        return f"{self.manufacturer} {self.model} s/n {self.serial_number} fw {self.firmware}"


class Instrument:
    """An instrument reached through one transport, shared safely between threads.

    Subclasses add their command set; every instrument that can emit light or current overrides
    `safe_state()`.
    """

    #: Default session timeout; a model overrides it when its slowest command needs longer.
    default_timeout_s: ClassVar[float] = 2.0
    termination: ClassVar[bytes] = b"\n"
    baud_rate: ClassVar[int] = 115200
    #: Longest the device may take to answer; after a timeout a serial line is drained until it
    #: has been quiet this long (a socket is reconnected instead).
    late_reply_window_s: ClassVar[float] = 0.05

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.resource = transport.resource
        # One lock per session: a query is a write and its read, and nothing may come between.
        self.lock = threading.RLock()

    @classmethod
    def open(cls, resource: str, *, timeout_s: float | None = None) -> Self:
        """Open `resource` (a VISA resource string or `ASRL<device>::INSTR`)."""
        transport = open_transport(
            resource,
            timeout_s=timeout_s if timeout_s is not None else cls.default_timeout_s,
            termination=cls.termination,
            baud_rate=cls.baud_rate,
        )
        if hasattr(transport, "quiet_s"):
            transport.quiet_s = cls.late_reply_window_s
        return cls(transport)

    def close(self) -> None:
        with self.lock:
            self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def identify(self) -> InstrumentIdentity:
        raise NotImplementedError

    def safe_state(self) -> None:
        """Put the instrument where it can harm nothing: outputs off, sources at zero.

        Passive instruments (meters, switches) have nothing to do; sources override this.
        """

    @contextmanager
    def timeout(self, timeout_s: float) -> Iterator[None]:
        """Use a longer (or shorter) timeout for the commands inside the block."""
        with self.lock:
            saved = self.transport.timeout_s
            self.transport.set_timeout(timeout_s)  # type: ignore[attr-defined]
            try:
                yield
            finally:
                self.transport.set_timeout(saved)  # type: ignore[attr-defined]

    def _timed_out(self, command: str) -> InstrumentTimeout:
        error = InstrumentTimeout(command, self.transport.timeout_s, resource=self.resource)
        try:
            self.transport.resynchronise()
        except InstrumentConnectionError as err:
            raise err from error
        return error


_BLOCK_DTYPES = {"float32": "<f4", "float64": "<f8", "int16": "<i2", "int32": "<i4", "uint8": "u1"}


class ScpiInstrument(Instrument):
    """An instrument speaking SCPI / IEEE 488.2 text commands.

    Every write is followed by `SYST:ERR?` (unless `check_errors` is off) and a queued error is
    raised as InstrumentCommandError naming the command. Queries marked idempotent are retried
    once after a timeout; writes never are.
    """

    check_errors: ClassVar[bool] = True
    error_query: ClassVar[str] = "SYST:ERR?"
    query_retries: ClassVar[int] = 1
    _NO_ERROR = re.compile(r"^\s*[+]?0\s*,")

    def identify(self) -> InstrumentIdentity:
        return InstrumentIdentity.parse_idn(self.query("*IDN?"))

    def reset(self) -> None:
        self.write("*RST")
        self.query("*OPC?")

    def clear_status(self) -> None:
        self.write("*CLS", check=False)

    def write(self, command: str, *, check: bool | None = None) -> None:
        """Send a command and, unless told otherwise, raise the first error it queued."""
        with self.lock:
            self.transport.write(command.encode("ascii") + self.termination)
            if self.check_errors if check is None else check:
                self.raise_queued_errors(command)

    def query(self, command: str, *, idempotent: bool = True) -> str:
        """Send a query and return its reply line, stripped."""
        attempts = 1 + (self.query_retries if idempotent else 0)
        with self.lock:
            for attempt in range(attempts):
                self.transport.write(command.encode("ascii") + self.termination)
                try:
                    return self.transport.read_line().decode("ascii", "replace").strip()
                except TransportTimeout:
                    error = self._timed_out(command)
                    if attempt == attempts - 1:
                        raise error from None
        raise AssertionError("unreachable")

    def raise_queued_errors(self, command: str) -> None:
        """Read the error queue; raise the first error, after draining the rest."""
        errors: list[tuple[int, str]] = []
        for _ in range(32):  # the queue is finite; never loop forever on a broken reply
            reply = self.query(self.error_query)
            if self._NO_ERROR.match(reply):
                break
            code_text, _, message = reply.partition(",")
            try:
                code = int(code_text)
            except ValueError:
                raise InstrumentReplyError(
                    self.error_query, reply, "'<code>,\"<message>\"'", resource=self.resource
                ) from None
            errors.append((code, message.strip().strip('"')))
        if errors:
            code, message = errors[0]
            raise InstrumentCommandError(command, code, message, resource=self.resource)

    def query_block(self, command: str, dtype: str = "float32") -> np.ndarray:
        """Query an IEEE 488.2 definite-length binary block (`#<n><len><bytes>`) as an array.

        Reads the header, then exactly the announced byte count with the read termination off,
        then the trailing terminator: several times faster than parsing the block as a terminated
        message.
        """
        if dtype not in _BLOCK_DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {sorted(_BLOCK_DTYPES)}")
        with self.lock:
            self.transport.write(command.encode("ascii") + self.termination)
            try:
                head = self.transport.read_exact(2)
                if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
                    rest = head
                    with contextlib.suppress(TransportTimeout):
                        rest += self.transport.read_line()
                    self.transport.resynchronise()
                    raise InstrumentReplyError(
                        command, rest, "a definite-length block", resource=self.resource
                    )
                digits = self.transport.read_exact(int(head[1:2]))
                if not digits.isdigit():
                    self.transport.resynchronise()
                    raise InstrumentReplyError(
                        command, head + digits, "a block length", resource=self.resource
                    )
                payload = self.transport.read_exact(int(digits))
                self.transport.read_line()  # the terminator after the block
            except TransportTimeout:
                raise self._timed_out(command) from None
        item = np.dtype(_BLOCK_DTYPES[dtype])
        if len(payload) % item.itemsize:
            raise InstrumentReplyError(
                command, payload[:16], f"a whole number of {dtype}", resource=self.resource
            )
        return np.frombuffer(payload, dtype=item).astype(item.newbyteorder("="), copy=False)

    def scpi_args(self) -> dict[str, Any]:
        """Values a property's command template may use, e.g. `{channel}`."""
        return {}


Parser = Callable[[str], Any]
Formatter = Callable[[Any], str]


def _parse_float(reply: str) -> float:
    return float(reply)


def _parse_bool(reply: str) -> bool:
    text = reply.strip().upper()
    if text in {"1", "ON"}:
        return True
    if text in {"0", "OFF"}:
        return False
    raise ValueError(reply)


class ScpiProperty(Generic[T]):
    """One SCPI setting or reading, declared in one line with its unit and validation.

    `get` and `set` are command templates: `{value}` is the formatted value and any name from the
    instrument's `scpi_args()` (such as `{channel}`) is filled in. `scale` converts the instrument's
    reply to the property's unit (`wavelength_nm` reads metres, so `scale=1e9`); `set_scale` does
    the same for the value sent, when the set command carries its own unit suffix (`...NM`).
    """

    def __init__(
        self,
        get: str | None,
        set: str | None = None,
        *,
        kind: type = float,
        unit: str = "",
        scale: float = 1.0,
        set_scale: float | None = None,
        limits: tuple[float, float] | None = None,
        choices: tuple[Any, ...] | None = None,
        fmt: str = "{:.6g}",
        doc: str = "",
    ) -> None:
        self.get_template = get
        self.set_template = set
        self.kind = kind
        self.unit = unit
        self.scale = scale
        self.set_scale = scale if set_scale is None else set_scale
        self.limits = limits
        self.choices = choices
        self.fmt = fmt
        self.name = "?"
        self.__doc__ = doc or f"{get or set} [{unit}]"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instrument: None, owner: type) -> ScpiProperty[T]: ...
    @overload
    def __get__(self, instrument: ScpiInstrument, owner: type) -> T: ...

    def __get__(self, instrument: ScpiInstrument | None, owner: type) -> Any:
        if instrument is None:
            return self
        if self.get_template is None:
            raise AttributeError(f"{self.name} can only be set")
        command = self.get_template.format(**instrument.scpi_args())
        reply = instrument.query(command)
        try:
            if self.kind is bool:
                return _parse_bool(reply)
            if self.kind is float:
                return _parse_float(reply) * self.scale
            if self.kind is int:
                return int(float(reply))
            return self.kind(reply.strip('"'))
        except ValueError:
            raise InstrumentReplyError(
                command,
                reply,
                f"a {self.kind.__name__} ({self.name})",
                resource=instrument.resource,
            ) from None

    def __set__(self, instrument: ScpiInstrument, value: Any) -> None:
        if self.set_template is None:
            raise AttributeError(f"{self.name} is read-only")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} = {value!r} is not one of {self.choices}")
        if self.limits is not None:
            low, high = self.limits
            if not low <= float(value) <= high:
                raise ValueError(
                    f"{self.name} = {value!r} {self.unit} is outside [{low:g}, {high:g}]"
                )
        if self.kind is bool:
            text = "1" if value else "0"
        elif self.kind is float:
            text = self.fmt.format(float(value) / self.set_scale)
        else:
            text = str(value)
        instrument.write(self.set_template.format(value=text, **instrument.scpi_args()))
