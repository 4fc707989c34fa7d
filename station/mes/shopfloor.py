"""The station's part in a route: before a unit is tested, check the station lock, the retest
policy against the station's own history and the user's role, then check in with the MES; after
it, queue the check-out durably and try to deliver it at once.

Without a check-in no unit is tested (an MES outage stops new units, not finished ones); a
finished unit's check-out waits in the outbox until the MES is back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from station.mes import CHECK_OUT, check_out_sender, queue_check_out
from station.mes.outbox import PENDING, DeliveryReport, Outbox, Sender
from station.mes.protocol import CheckIn, CheckInDecision, CheckOut, Mes, checkout_key
from station.mes.retest import RetestPolicy, decide
from station.results.schema import runs
from station.results.store import ResultsStore
from station.security.audit import AuditLog
from station.security.lock import require_unlocked
from station.security.users import User, require

#: (serial, operation) -> dispositions of the unit's finished attempts, oldest first
History = Callable[[str, str], list[str]]


def store_history(store: ResultsStore) -> History:
    """Attempts as the results store knows them: finished runs of the serial whose traveller
    names the operation (on a line database, every station's runs), in one query on the run
    columns."""

    def history(serial: str, operation: str) -> list[str]:
        store.flush()  # the runs this process handed to the store count too
        query = (
            sa.select(runs.c.outcome)
            .where(runs.c.dut_serial == serial, runs.c.route_operation == operation)
            .where(runs.c.complete.is_(True), runs.c.outcome.is_not(None))
            .order_by(runs.c.started_at, runs.c.run_id)
        )
        with store.engine.connect() as conn:
            return [str(outcome) for outcome in conn.execute(query).scalars()]

    return history


class ShopFloor:
    def __init__(
        self,
        mes: Mes,
        outbox: Outbox,
        policy: RetestPolicy,
        *,
        station_id: str,
        history: History,
        audit: AuditLog | None = None,
    ) -> None:
        self.mes = mes
        self.outbox = outbox
        self.policy = policy
        self.station_id = station_id
        self.history = history
        self.audit = audit
        self._senders = {CHECK_OUT: check_out_sender(mes)}

    def check_in(
        self,
        serial: str,
        product: str,
        operation: str,
        user: User,
        *,
        action: str | None = None,
        reason_code: str | None = None,
    ) -> CheckInDecision:
        """May `user` test `serial` here now. Refusals come back as a decision with reasons;
        StationLocked, PermissionDenied and MesUnavailable are raised."""
        require(user, "run")
        if action is not None:
            require(user, action)  # reseat / clean: a technician's job
        if self.audit is not None:
            require_unlocked(self.audit, self.station_id)
        local = decide(
            self.policy.rule(product, operation),
            self.history(serial, operation),
            action=action,
            reason_code=reason_code,
        )
        if not local.allowed:
            return CheckInDecision(serial, operation, False, local.attempt, local.reasons)
        self.deliver()  # the MES must know the unit's earlier attempts before it decides
        queued = [
            e.payload["run_id"]
            for e in self.outbox.entries(state=PENDING, kind=CHECK_OUT)
            if e.payload["serial"] == serial
        ]
        if queued:
            reason = f"check-out of run {queued[0]} is still queued for the MES"
            return CheckInDecision(serial, operation, False, local.attempt, (reason,))
        remote = self.mes.check_in(CheckIn(serial, operation, self.station_id, action, reason_code))
        if remote.allowed and remote.attempt < local.attempt:  # the MES lost an attempt
            reason = f"MES counts attempt {remote.attempt}, this station's store {local.attempt}"
            return CheckInDecision(serial, operation, False, remote.attempt, (reason,))
        return remote

    def check_out(
        self,
        decision: CheckInDecision,
        run_id: str,
        disposition: str,
        bin_number: int,
        summary: dict[str, Any] | None = None,
        *,
        action: str | None = None,
        reason_code: str | None = None,
    ) -> tuple[CheckOut, DeliveryReport]:
        """Queue the attempt's check-out (durable before this returns), then deliver what is due."""
        if not decision.allowed:
            raise ValueError(f"{decision.serial} was not checked in: nothing to check out")
        checkout = CheckOut(
            idempotency_key=checkout_key(self.station_id, run_id),
            serial=decision.serial,
            operation=decision.operation,
            station=self.station_id,
            run_id=run_id,
            disposition=disposition,
            bin=bin_number,
            summary=summary or {},
            action=action,
            reason_code=reason_code,
        )
        queue_check_out(self.outbox, checkout)
        return checkout, self.deliver()

    def senders(self) -> dict[str, Sender]:
        """The outbox senders of this shop floor's kinds (to deliver alongside other kinds)."""
        return dict(self._senders)

    def deliver(self) -> DeliveryReport:
        return self.outbox.deliver_due(self._senders)
