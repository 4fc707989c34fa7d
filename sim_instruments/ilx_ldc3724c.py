"""Simulated ILX Lightwave LDC-3724C laser diode controller (current source + TEC) on RS-232, and
the adapter that serves its line-based text protocol through a pty.

The laser it drives is the ELS laser the fixture relay selects (see `ElsFixture`). Measurements
refresh once per ADC scan (about every 600 ms, as the ILX manuals say of `LAS:LDI?` and
`LAS:MDI?`), so a reading can be up to one scan old; the current loop and the TEC plate settle
with first-order dynamics. Errors are kept in the ILX way: `ERR?` returns every queued error code
at once, comma-separated, and `0` when there is none. The numeric codes follow the ILX scheme
(1xx command, 2xx execution, 5xx LASER) but are not confirmed against the manual's Appendix D.

Instrument-specific fault: `fail_to_settle("tec")` makes the TEC loop oscillate around its
setpoint; `fail_to_settle("current")` stalls the current loop short of its setpoint.
"""

from __future__ import annotations

import math
import time

import numpy as np

from sim_instruments.els import ElsFixture
from sim_instruments.faults import FaultPlan
from sim_instruments.scpi import Reply, ScpiDevice, ScpiError, parse_bool, parse_number, scpi
from sim_instruments.world import World

MAX_CURRENT_MA = 500.0  # the LDC-3724C's higher current range
TEC_RANGE_C = (-20.0, 90.0)
SCAN_PERIOD_S = 0.6  # the measurement system visits each signal about this often
QUERY_TIME_S = 0.002  # parsing and formatting a reply
MAX_REPORTED_ERRORS = 10

# ILX-style error codes (numbers unconfirmed; see the module docstring)
ERRORS = {
    123: "Command not found",
    104: "Invalid numeric parameter",
    201: "Value out of range",
    300: "Device error",
    503: "LASER open circuit, output disabled",
    505: "LASER current setpoint above the current limit",
}
_FROM_SCPI = {-113: 123, -104: 104, -109: 104, -131: 104, -114: 123, -222: 201, -224: 201}


class SimLdc3724c(ScpiDevice):
    manufacturer = "ILX Lightwave"
    model = "LDC-3724C"
    firmware = "1.03-1.04"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        # This family has no SYSTem:ERRor?: its error list is read with ERR? only.
        self._handlers = [h for h in self._handlers if h[0][0].long != "SYSTEM"]
        self.world = world
        assert world.els is not None, "the ELS bench adds the fixture before its instruments"
        self.fixture: ElsFixture = world.els
        self.rng = np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        with self.world.lock:
            self.limit_ma = 100.0
            self.setpoint_ma = 0.0
            self.tec_setpoint_c = 25.0
            self.tec_on = False
            self._switch_output(False)
            self.fixture.regulate(None)
            self._scan_at = -math.inf
            self._scan: dict[str, float] = {}

    # --- errors: the ILX way ----------------------------------------------------------------------
    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= MAX_REPORTED_ERRORS:
            return  # the list holds the first ten
        code = _FROM_SCPI.get(code, 300) if code < 0 else code
        self.errors.append((code, ERRORS.get(code, message)))

    @scpi("ERRors", query=True)
    def _errors(self, s: tuple[int, ...], args: str) -> Reply:
        if not self.errors:
            return "0"
        codes = [str(code) for code, _ in self.errors]
        self.errors.clear()
        return ",".join(codes)

    # --- the instrument-specific fault ----------------------------------------------------------
    def fail_to_settle(self, loop: str) -> None:
        """Make the TEC loop ("tec") oscillate, or the current loop ("current") stall short."""
        with self.world.lock:
            if loop == "tec":
                self.fixture.tec_oscillation_k = 0.6
            elif loop == "current":
                self.fixture.current_shortfall = 0.08
                self._apply_current()
            else:
                raise ValueError(f"loop {loop!r} is not 'tec' or 'current'")

    def clear_settle_fault(self) -> None:
        with self.world.lock:
            self.fixture.tec_oscillation_k = 0.0
            self.fixture.current_shortfall = 0.0
            self._apply_current()

    # --- the laser output ------------------------------------------------------------------------
    def _selected_laser(self) -> int | None:
        switch = self.world.switch
        return None if switch is None else switch.routed - 1

    def _check_open_circuit(self) -> None:
        """The relay moved to another laser under current: the controller saw its load open."""
        fixture = self.fixture
        if fixture.output_on and (
            fixture.driven_laser != self._selected_laser() or fixture.part is None
        ):
            self._switch_output(False)
            self.push_error(503, "")

    def _switch_output(self, on: bool) -> None:
        fixture = self.fixture
        if on:
            laser = self._selected_laser()
            if laser is None or fixture.laser(laser) is None:
                raise ScpiError(503, "")
            fixture.driven_laser = laser
            fixture.current.retarget(self.clock.now_s(), 0.0)
            fixture.output_on = True
        else:
            fixture.output_on = False
            fixture.driven_laser = None
        self._apply_current()

    def _apply_current(self) -> None:
        # The hardware limit clamps the output whatever the setpoint says.
        target_ma = min(self.setpoint_ma, self.limit_ma) if self.fixture.output_on else 0.0
        self.fixture.drive(target_ma * 1e-3)

    def handle(self, message: str) -> list[str | bytes]:
        with self.world.lock:
            self._check_open_circuit()
            replies = super().handle(message)
        # Several queries in one message come back as one comma-separated line (ILX manuals).
        texts = [r.decode() if isinstance(r, bytes) else r for r in replies if r is not None]
        return [",".join(texts)] if texts else []

    @scpi("LASer:LDI")
    def _set_current(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not 0.0 <= value <= MAX_CURRENT_MA:
            raise ScpiError(201, "")
        if value > self.limit_ma:
            raise ScpiError(505, "")
        self.setpoint_ma = value
        self._apply_current()

    @scpi("LASer:SET:LDI", query=True)
    def _get_setpoint(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.setpoint_ma:.2f}"

    @scpi("LASer:LIMit:I")
    def _set_limit(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not 0.0 <= value <= MAX_CURRENT_MA:
            raise ScpiError(201, "")
        self.limit_ma = value
        self._apply_current()

    @scpi("LASer:LIMit:I", query=True)
    def _get_limit(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.limit_ma:.2f}"

    @scpi("LASer:OUTput")
    def _set_output(self, s: tuple[int, ...], args: str) -> None:
        self._switch_output(parse_bool(args))

    @scpi("LASer:OUTput", query=True)
    def _get_output(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.fixture.output_on else "0"

    # --- the TEC ----------------------------------------------------------------------------------
    @scpi("TEC:T")
    def _set_temperature(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not TEC_RANGE_C[0] <= value <= TEC_RANGE_C[1]:
            raise ScpiError(201, "")
        self.tec_setpoint_c = value
        if self.tec_on:
            self.fixture.regulate(value)

    @scpi("TEC:SET:T", query=True)
    def _get_temperature_setpoint(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.tec_setpoint_c:.2f}"

    @scpi("TEC:OUTput")
    def _set_tec_output(self, s: tuple[int, ...], args: str) -> None:
        self.tec_on = parse_bool(args)
        self.fixture.regulate(self.tec_setpoint_c if self.tec_on else None)

    @scpi("TEC:OUTput", query=True)
    def _get_tec_output(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.tec_on else "0"

    # --- measurements: one ADC scan every SCAN_PERIOD_S -------------------------------------------
    def _measured(self, name: str) -> float:
        self.clock.sleep(QUERY_TIME_S)
        now = self.clock.now_s()
        if now - self._scan_at >= SCAN_PERIOD_S:
            self._scan_at = now - (now % SCAN_PERIOD_S)
            self._scan = self._take_scan()
        return self._scan[name]

    def _take_scan(self) -> dict[str, float]:
        noise = self.rng.normal(0.0, 1.0, 4)
        point = self.fixture.operating_point()
        plate_c = self.fixture.plate_c()
        if point is None:  # output off: nothing flows, the sense lines read near zero
            current_a, voltage_v, monitor_a = 0.0, 0.0, 0.0
        else:
            current_a = float(point.current_a)
            voltage_v = float(point.voltage_v)
            monitor_a = float(point.monitor_a)
        return {
            "current_ma": current_a * 1e3 + 0.01 * noise[0],
            "voltage_v": voltage_v + 0.0005 * noise[1],
            "monitor_ua": monitor_a * 1e6 * (1.0 + 5e-4 * noise[2]) + 0.02 * noise[2],
            "temperature_c": plate_c + 0.004 * noise[3],
        }

    @scpi("LASer:LDI", query=True)
    def _get_current(self, s: tuple[int, ...], args: str) -> str:
        return f"{self._measured('current_ma'):.2f}"

    @scpi("LASer:LDV", query=True)
    def _get_voltage(self, s: tuple[int, ...], args: str) -> str:
        return f"{self._measured('voltage_v'):.3f}"

    @scpi("LASer:MDI", query=True)
    def _get_monitor(self, s: tuple[int, ...], args: str) -> str:
        return f"{self._measured('monitor_ua'):.2f}"

    @scpi("TEC:T", query=True)
    def _get_temperature(self, s: tuple[int, ...], args: str) -> str:
        return f"{self._measured('temperature_c'):.3f}"


class SerialLineDevice:
    """Serves a text-protocol device through `PtySerialServer`: lines in, reply lines out.

    Generic faults are committed here, where a serial instrument's would show. A serial line
    cannot be dropped, so "disconnect" makes the device lose its input buffer instead; "reset"
    also returns it to its power-on settings and keeps it silent while it boots.
    """

    def __init__(self, device: ScpiDevice) -> None:
        self.device = device
        self.faults: FaultPlan = device.faults
        self._buffer = b""
        self._booting_until = 0.0  # after a "reset" fault: monotonic time it answers again

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = line.decode("ascii", "replace").strip()  # CR LF or LF
            if message:
                out += self._execute(message)
        return bytes(out)

    def _execute(self, message: str) -> bytes:
        fault = self.faults.take(message)
        if fault is not None and fault.kind == "error":
            self.device.push_error(fault.code, fault.message)
            return b""
        if fault is not None and fault.kind in ("disconnect", "reset"):
            self._buffer = b""
            if fault.kind == "reset":  # power cycle: power-on settings, no answers while booting
                with self.device.lock:
                    self.device.errors.clear()
                    self.device.reset()
                self._booting_until = time.monotonic() + fault.seconds
            return b""
        if time.monotonic() < self._booting_until:
            return b""  # still booting: the command is lost
        replies = [
            r if isinstance(r, bytes) else r.encode() for r in self.device.handle(message) if r
        ]
        if not replies:
            return b""
        payload = b"".join(reply + b"\n" for reply in replies)
        if fault is None:
            return payload
        if fault.kind == "no_reply":
            return b""
        if fault.kind == "garble":
            body = bytes(b ^ 0x5A for b in payload.rstrip(b"\n")) or b"\x5a"
            return body[: max(1, len(body) // 2)] + b"\n"
        if fault.kind == "delay":
            time.sleep(fault.seconds)  # wall-clock: a fault is about the client's timeout
        return payload
