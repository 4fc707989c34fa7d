"""The station's side of the shop floor: MES check-in/check-out, the durable outbox that carries
check-outs through outages, the retest policy and the lot traveller of a run."""

from __future__ import annotations

from typing import Any

from station.mes.outbox import Outbox, Sender
from station.mes.protocol import CheckOut, Mes

CHECK_OUT = "check_out"  # outbox kind of MES check-outs


def queue_check_out(outbox: Outbox, checkout: CheckOut) -> bool:
    """Queue a check-out durably under its idempotency key (True when it was not queued yet)."""
    return outbox.put(CHECK_OUT, checkout.idempotency_key, checkout.to_json())


def check_out_sender(mes: Mes) -> Sender:
    """The outbox sender delivering queued check-outs to `mes`."""

    def send(payload: dict[str, Any]) -> object:
        return mes.check_out(CheckOut.from_json(payload))

    return send
