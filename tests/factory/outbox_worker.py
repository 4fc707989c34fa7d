"""Run in a child process by test_outbox: queue a check-out, send it, and die by SIGKILL after
the MES applied it but before the outbox recorded the acknowledgement."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from station.mes import check_out_sender, queue_check_out
from station.mes.http import HttpMes
from station.mes.outbox import Outbox
from station.mes.protocol import CheckOut


def main(path: str, url: str) -> None:
    outbox = Outbox(path)
    queue_check_out(
        outbox,
        CheckOut("ST1/run-9", "SIM0009", "final_test", "ST1", "run-9", "PASS", 1, {"n": 1}),
    )
    send = check_out_sender(HttpMes(url))

    def send_then_die(payload: dict[str, Any]) -> object:
        send(payload)
        os.kill(os.getpid(), signal.SIGKILL)  # acknowledged by the MES, not yet by the outbox
        return None

    outbox.deliver_due({"check_out": send_then_die})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
