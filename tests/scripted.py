"""A scripted transport for protocol tests: the driver must send exactly the expected bytes, and
gets the canned replies, in order (pymeasure's expected_protocol, for our transports)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.transport import TransportTimeout

TIMEOUT = object()  # a canned reply that never comes


@dataclass
class ScriptedTransport:
    script: list[tuple[bytes, list[bytes | object]]]
    resource: str = "SCRIPTED::1"
    timeout_s: float = 1.0
    termination: bytes = b"\n"
    resyncs: int = 0
    _replies: list[bytes | object] = field(default_factory=list)
    _buffer: bytes = b""

    def write(self, data: bytes) -> None:
        assert self.script, f"unexpected write {data!r}: the script is finished"
        expected, replies = self.script.pop(0)
        assert data == expected, f"sent {data!r}, the script expects {expected!r}"
        self._replies.extend(replies)

    def _next(self) -> bytes:
        if not self._buffer:
            assert self._replies, "read with no reply pending"
            reply = self._replies.pop(0)
            if reply is TIMEOUT:
                raise TransportTimeout
            assert isinstance(reply, bytes)
            self._buffer = reply
        return self._buffer

    def read_line(self) -> bytes:
        data = self._next()
        line, _, rest = data.partition(self.termination)
        self._buffer = rest
        return line

    def read_exact(self, count: int) -> bytes:
        data = self._next()
        if len(data) < count:
            raise TransportTimeout
        self._buffer = data[count:]
        return data[:count]

    def resynchronise(self) -> None:
        self.resyncs += 1
        self._buffer = b""
        self._replies.clear()

    def set_timeout(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def close(self) -> None:
        pass

    def done(self) -> bool:
        return not self.script and not self._replies and not self._buffer


def scpi(*pairs: tuple[str, str | object | None]) -> list[tuple[bytes, list[bytes | object]]]:
    """Build a SCPI script from (command, reply) pairs; reply None means no reply expected."""
    script = []
    for command, reply in pairs:
        if reply is None:
            replies: list[bytes | object] = []
        elif reply is TIMEOUT:
            replies = [TIMEOUT]
        else:
            assert isinstance(reply, str)
            replies = [reply.encode() + b"\n"]
        script.append((command.encode() + b"\n", replies))
    return script
