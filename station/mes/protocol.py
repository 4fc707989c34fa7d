"""What the station asks of the shop-floor system (MES): check a unit in before it is tested, check
it out with its disposition afterwards. Any MES client implements the `Mes` protocol.

Check-outs carry an idempotency key: the station may send one more than once (a lost reply, a
restart between send and acknowledgement) and the MES applies it once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from station.errors import StationError
from station.mes.retest import DISPOSITIONS


class MesError(StationError):
    """Root of the errors talking to a MES."""


class MesUnavailable(MesError, ConnectionError):
    """The MES could not be reached or said it is out of service: try again later."""


class MesRejected(MesError, ValueError):
    """The MES understood the request and refused it (bad request, conflict): do not resend."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"MES refused the request (HTTP {status}): {message}")
        self.status = status
        self.message = message


class MesProtocolError(MesError, RuntimeError):
    """The MES answered something that is not the expected JSON."""


@dataclass(frozen=True)
class CheckIn:
    serial: str
    operation: str
    station: str
    action: str | None = None  # FAIL retests: what was done (reseat, clean)
    reason_code: str | None = None


@dataclass(frozen=True)
class CheckInDecision:
    """May this unit be tested here now; `reasons` say why not."""

    serial: str
    operation: str
    allowed: bool
    attempt: int  # the number this attempt has at the operation, counted over all stations
    reasons: tuple[str, ...] = ()
    lot_id: str | None = None
    product: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckInDecision:
        return cls(
            serial=_text(data, "serial"),
            operation=_text(data, "operation"),
            allowed=_flag(data, "allowed"),
            attempt=_integer(data, "attempt"),
            reasons=tuple(str(r) for r in data.get("reasons", ())),
            lot_id=data.get("lot_id"),
            product=data.get("product"),
        )


@dataclass(frozen=True)
class CheckOut:
    """The disposition of one attempt. `idempotency_key` names the attempt for good: a resend
    with the same key is a duplicate, never a second attempt."""

    idempotency_key: str
    serial: str
    operation: str
    station: str
    run_id: str
    disposition: str  # PASS, FAIL, ERROR or ABORTED
    bin: int
    summary: dict[str, float | int | str] = field(default_factory=dict)
    action: str | None = None
    reason_code: str | None = None

    def __post_init__(self) -> None:
        if self.disposition not in DISPOSITIONS:
            raise ValueError(f"disposition {self.disposition!r} is not one of {DISPOSITIONS}")
        if not self.idempotency_key:
            raise ValueError("a check-out needs an idempotency key")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckOut:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class CheckOutReceipt:
    idempotency_key: str
    duplicate: bool  # the MES had already applied this key; nothing changed
    unit_state: str  # e.g. "in_route", "complete", "exhausted"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckOutReceipt:
        return cls(
            idempotency_key=_text(data, "idempotency_key"),
            duplicate=_flag(data, "duplicate"),
            unit_state=_text(data, "unit_state"),
        )


class Mes(Protocol):
    def check_in(self, request: CheckIn) -> CheckInDecision:
        """Ask whether the unit may be tested now. Raises MesUnavailable when unreachable."""
        ...

    def check_out(self, checkout: CheckOut) -> CheckOutReceipt:
        """Report an attempt's disposition; safe to repeat with the same idempotency key."""
        ...


def checkout_key(station: str, run_id: str) -> str:
    """The idempotency key of a run's check-out: a run is one attempt on one station."""
    return f"{station}/{run_id}"


def canonical(data: dict[str, Any]) -> str:
    """JSON of `data` with sorted keys and no spaces: equal payloads give equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise MesProtocolError(f"MES reply field {key!r} = {value!r}: expected text")
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise MesProtocolError(f"MES reply field {key!r} = {value!r}: expected true/false")
    return value


def _integer(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int:
        raise MesProtocolError(f"MES reply field {key!r} = {value!r}: expected an integer")
    return value
