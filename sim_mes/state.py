"""The simulated MES's shop-floor state: lots with a route of operations, units with holds and
attempts, open check-ins, and check-outs applied once per idempotency key. Thread-safe.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from station.mes.retest import DISPOSITIONS, Next, RetestPolicy, decide


class MesFault(Exception):
    """A request the MES refuses: HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Lot:
    lot_id: str
    product: str
    route: tuple[str, ...]
    work_order: str | None = None
    hold: str | None = None


@dataclass
class Unit:
    serial: str
    lot_id: str
    hold: str | None = None
    #: operation -> finished attempts, oldest first
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: operation -> the open check-in (station, attempt, action, reason code)
    open: dict[str, dict[str, Any]] = field(default_factory=dict)


def _passed(unit: Unit, operation: str) -> bool:
    done = unit.attempts.get(operation, [])
    return bool(done) and done[-1]["disposition"] == "PASS"


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class MesState:
    def __init__(self, policy: RetestPolicy) -> None:
        self.policy = policy
        self.lots: dict[str, Lot] = {}
        self.units: dict[str, Unit] = {}
        self.applied: list[dict[str, Any]] = []  # every check-out applied, in order
        self._by_key: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (body, receipt)
        self._lock = threading.RLock()

    # --- set-up and holds -----------------------------------------------------------------------
    def add_lot(
        self,
        lot_id: str,
        product: str,
        route: list[str] | tuple[str, ...],
        serials: list[str],
        work_order: str | None = None,
    ) -> None:
        if not lot_id or not route or not serials:
            raise MesFault(400, "a lot needs lot_id, a route and serials")
        with self._lock:
            if lot_id in self.lots:
                raise MesFault(409, f"lot {lot_id} exists")
            taken = [s for s in serials if s in self.units]
            if taken:
                raise MesFault(409, f"serial {taken[0]} already belongs to a lot")
            self.lots[lot_id] = Lot(lot_id, product, tuple(route), work_order)
            for serial in serials:
                self.units[serial] = Unit(serial, lot_id)

    def set_hold(self, target: str, reason: str | None) -> None:
        """Hold (reason given) or release (None) a unit or a whole lot."""
        with self._lock:
            if target in self.units:
                self.units[target].hold = reason
            elif target in self.lots:
                self.lots[target].hold = reason
            else:
                raise MesFault(404, f"no unit or lot {target!r}")

    # --- check-in -------------------------------------------------------------------------------
    def check_in(
        self,
        serial: str,
        operation: str,
        station: str,
        action: str | None = None,
        reason_code: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            unit = self.units.get(serial)
            if unit is None:
                return self._decision(serial, operation, False, 1, [f"unknown serial {serial}"])
            lot = self.lots[unit.lot_id]
            reasons = []
            if lot.hold:
                reasons.append(f"lot {lot.lot_id} on hold: {lot.hold}")
            if unit.hold:
                reasons.append(f"unit on hold: {unit.hold}")
            history = [a["disposition"] for a in unit.attempts.get(operation, [])]
            attempt = len(history) + 1
            if operation not in lot.route:
                reasons.append(f"operation {operation} is not on route {'>'.join(lot.route)}")
            else:
                for earlier in lot.route[: lot.route.index(operation)]:
                    done = unit.attempts.get(earlier, [])
                    if not done or done[-1]["disposition"] != "PASS":
                        reasons.append(f"previous operation {earlier} has not passed")
                        break
                try:
                    rule = self.policy.rule(lot.product, operation)
                except ValueError as err:
                    reasons.append(str(err))
                else:
                    decision = decide(rule, history, action=action, reason_code=reason_code)
                    reasons += decision.reasons
            elsewhere = unit.open.get(operation)
            if elsewhere and elsewhere["station"] != station:
                reasons.append(f"checked in at {elsewhere['station']}")
            allowed = not reasons
            if allowed:  # a repeated check-in on the same station replaces the open one
                unit.open[operation] = {
                    "station": station,
                    "attempt": attempt,
                    "action": action,
                    "reason_code": reason_code,
                    "at_ns": time.time_ns(),
                }
            return self._decision(serial, operation, allowed, attempt, reasons, lot)

    @staticmethod
    def _decision(
        serial: str,
        operation: str,
        allowed: bool,
        attempt: int,
        reasons: list[str],
        lot: Lot | None = None,
    ) -> dict[str, Any]:
        return {
            "serial": serial,
            "operation": operation,
            "allowed": allowed,
            "attempt": attempt,
            "reasons": reasons,
            "lot_id": lot.lot_id if lot else None,
            "product": lot.product if lot else None,
        }

    # --- check-out ------------------------------------------------------------------------------
    def check_out(self, body: dict[str, Any]) -> dict[str, Any]:
        key = body.get("idempotency_key")
        if not isinstance(key, str) or not key:
            raise MesFault(400, "idempotency_key missing")
        for name in ("serial", "operation", "station", "run_id"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise MesFault(400, f"{name} missing")
        if body.get("disposition") not in DISPOSITIONS:
            raise MesFault(400, f"disposition {body.get('disposition')!r} not in {DISPOSITIONS}")
        if type(body.get("bin")) is not int or not isinstance(body.get("summary", {}), dict):
            raise MesFault(400, "bin must be an integer and summary an object")
        text = _canonical(body)
        with self._lock:
            seen = self._by_key.get(key)
            if seen is not None:
                if seen[0] != text:
                    raise MesFault(409, f"idempotency key {key} reused with a different body")
                return {**seen[1], "duplicate": True}
            unit = self.units.get(body["serial"])
            if unit is None:
                raise MesFault(404, f"unknown serial {body['serial']}")
            operation = body["operation"]
            opened = unit.open.get(operation)
            if opened is None or opened["station"] != body["station"]:
                raise MesFault(
                    409, f"{body['serial']} is not checked in for {operation} at {body['station']}"
                )
            record = {
                **{k: body.get(k) for k in ("station", "run_id", "disposition", "bin", "summary")},
                "idempotency_key": key,
                "serial": body["serial"],
                "operation": operation,
                "attempt": opened["attempt"],
                "action": opened["action"],
                "reason_code": opened["reason_code"],
                "at_ns": time.time_ns(),
            }
            unit.attempts.setdefault(operation, []).append(record)
            del unit.open[operation]
            self.applied.append(record)
            receipt = {"idempotency_key": key, "duplicate": False, **self._state(unit)}
            self._by_key[key] = (text, receipt)
            return receipt

    def _state(self, unit: Unit) -> dict[str, Any]:
        """unit_state (in_route, complete, exhausted) and the final disposition, if any."""
        lot = self.lots[unit.lot_id]
        for operation in lot.route:
            history = [a["disposition"] for a in unit.attempts.get(operation, [])]
            if history and history[-1] == "PASS":
                continue
            try:
                rule = self.policy.rule(lot.product, operation)
            except ValueError:
                return {"unit_state": "in_route", "final_disposition": None}
            if history and decide(rule, history).next is Next.EXHAUSTED:
                return {"unit_state": "exhausted", "final_disposition": history[-1]}
            return {"unit_state": "in_route", "final_disposition": None}
        return {"unit_state": "complete", "final_disposition": "PASS"}

    # --- views ----------------------------------------------------------------------------------
    def unit_view(self, serial: str) -> dict[str, Any]:
        with self._lock:
            unit = self.units.get(serial)
            if unit is None:
                raise MesFault(404, f"unknown serial {serial}")
            return {
                "serial": serial,
                "lot_id": unit.lot_id,
                "hold": unit.hold,
                "attempts": {op: list(a) for op, a in unit.attempts.items()},
                "open": dict(unit.open),
                **self._state(unit),
            }

    def lot_view(self, lot_id: str) -> dict[str, Any]:
        with self._lock:
            lot = self.lots.get(lot_id)
            if lot is None:
                raise MesFault(404, f"unknown lot {lot_id}")
            units = [self.unit_view(s) for s, u in self.units.items() if u.lot_id == lot_id]
            return {
                "lot_id": lot_id,
                "product": lot.product,
                "route": list(lot.route),
                "work_order": lot.work_order,
                "hold": lot.hold,
                "units": units,
            }

    def lot_queue(self, lot_id: str, operation: str) -> list[str]:
        """Serials of the lot waiting for `operation`: on route, not on hold, not checked in
        anywhere, every earlier operation passed, this one neither passed nor exhausted."""
        with self._lock:
            lot = self.lots.get(lot_id)
            if lot is None:
                raise MesFault(404, f"unknown lot {lot_id}")
            if operation not in lot.route:
                raise MesFault(400, f"operation {operation} is not on route {'>'.join(lot.route)}")
            if lot.hold:
                return []
            earlier = lot.route[: lot.route.index(operation)]
            rule = self.policy.rule(lot.product, operation)
            waiting = []
            for serial, unit in self.units.items():
                if unit.lot_id != lot_id or unit.hold or operation in unit.open:
                    continue
                if any(not _passed(unit, op) for op in earlier):
                    continue
                history = [a["disposition"] for a in unit.attempts.get(operation, [])]
                if decide(rule, history).next in (Next.DONE, Next.EXHAUSTED):
                    continue
                waiting.append(serial)
            return waiting

    def applied_view(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.applied)
