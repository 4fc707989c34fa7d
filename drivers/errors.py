"""Typed errors raised by instrument drivers.

Every error carries the resource it came from; each also inherits the matching builtin so callers
can catch `TimeoutError` or `ConnectionError` without knowing this package.
"""

from __future__ import annotations


class InstrumentError(Exception):
    """Root of every error a driver raises."""

    def __init__(self, message: str, *, resource: str = "") -> None:
        super().__init__(f"{resource}: {message}" if resource else message)
        self.resource = resource


class InstrumentTimeout(InstrumentError, TimeoutError):
    """The instrument did not answer within the session timeout."""

    def __init__(self, command: str, timeout_s: float, *, resource: str = "") -> None:
        super().__init__(f"no reply to {command!r} within {timeout_s:g} s", resource=resource)
        self.command = command
        self.timeout_s = timeout_s


class InstrumentConnectionError(InstrumentError, ConnectionError):
    """The transport could not be opened or was lost."""


class InstrumentCommandError(InstrumentError):
    """The instrument reported an error in its error queue after a command."""

    def __init__(self, command: str, code: int, text: str, *, resource: str = "") -> None:
        super().__init__(f"{command!r} -> error {code}, {text!r}", resource=resource)
        self.command = command
        self.code = code
        self.text = text


class InstrumentReplyError(InstrumentError, ValueError):
    """The instrument answered something that cannot be parsed as the expected reply."""

    def __init__(
        self, command: str, reply: str | bytes, expected: str, *, resource: str = ""
    ) -> None:
        shown: str | bytes = reply
        if len(reply) > 80:
            shown = reply[:77] + b"..." if isinstance(reply, bytes) else reply[:77] + "..."
        super().__init__(f"{command!r} -> {shown!r} is not {expected}", resource=resource)
        self.command = command
        self.reply = reply
        self.expected = expected


class InstrumentStateError(InstrumentError, RuntimeError):
    """The instrument (or the device behind it) is not in the state a command needs."""
