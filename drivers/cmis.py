"""CMIS (Common Management Interface Specification, OIF CMIS 5.x) module management over I2C.

Memory map offsets from CMIS 5.2 (lower page, pages 00h, 01h, 10h, 11h); the bridge underneath is
any object with `read_registers`, `write_registers`, `identify` and `close` (e.g. a USB-ISS).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from drivers.base import InstrumentIdentity
from drivers.errors import InstrumentStateError
from drivers.interfaces import DataPathState, ModuleIdentity, ModuleMonitors, ModuleState

MODULE_ADDRESS = 0x50  # 7-bit; 0xA0/0xA1 on the wire

# Lower page
IDENTIFIER = 0
REVISION = 1
MODULE_STATE = 3
TEMPERATURE = 14
VCC = 16
MODULE_CONTROL = 26
LOW_PWR_REQUEST_SW = 1 << 4
LOW_PWR_ALLOW_REQUEST_HW = 1 << 6
ACTIVE_FIRMWARE = 39
BANK_SELECT = 126
PAGE_SELECT = 127
# Page 00h
VENDOR_NAME = (129, 16)
PART_NUMBER = (148, 16)
VENDOR_REVISION = (164, 2)
SERIAL_NUMBER = (166, 16)
DATE_CODE = (182, 8)
# Page 01h
DP_DURATIONS = 144  # bits 3-0 MaxDurationDPInit, 7-4 MaxDurationDPDeinit
BIAS_MULTIPLIER = 160  # bits 4-3
MODULE_DURATIONS = 167  # bits 3-0 ModulePwrUpDuration, 7-4 ModulePwrDnDuration
TX_DURATIONS = 168  # bits 3-0 MaxDurationDPTxTurnOn, 7-4 ...TurnOff
# Page 10h
DP_DEINIT = 128
TX_DISABLE = 130
APPLY_DP_INIT = 143
DP_CONFIG = 145  # 145..152, one byte per lane: AppSel << 4 | DataPathID << 1 | ExplicitControl
# Page 11h
DP_STATE = 128  # 128..131, lane 1 in the low nibble of 128
TX_POWER = 154
TX_BIAS = 170
RX_POWER = 186
CONFIG_STATUS = 202  # 202..205, same nibble order
CONFIG_SUCCESS = 1
CONFIG_IN_PROGRESS = 0xC

# CMIS table 8-? "State duration encoding": the upper bound of each code, in seconds.
_DURATION_UPPER_S = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    50.0,
    100.0,
    500.0,
    1000.0,
    5000.0,
    10000.0,
    60000.0,
)

POLL_INTERVAL_S = 0.005


class I2cBridge(Protocol):
    resource: str

    def read_registers(self, address: int, register: int, length: int) -> bytes: ...
    def write_registers(self, address: int, register: int, data: bytes) -> None: ...
    def identify(self) -> InstrumentIdentity: ...
    def close(self) -> None: ...


def _nibbles(data: bytes, lanes: int) -> list[int]:
    values = []
    for lane in range(lanes):
        byte = data[lane // 2]
        values.append(byte & 0x0F if lane % 2 == 0 else byte >> 4)
    return values


def _ascii(data: bytes) -> str:
    return data.decode("ascii", "replace").strip()


class CmisHost:
    """CMIS management of one module through an I2C bridge; implements `ModuleHost`."""

    lane_count = 8

    def __init__(self, bridge: I2cBridge) -> None:
        self.bridge = bridge
        self.resource = bridge.resource
        self.lock = threading.RLock()  # page select and the access after it belong together

    def close(self) -> None:
        self.bridge.close()

    def __enter__(self) -> CmisHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def identify(self) -> InstrumentIdentity:
        return self.bridge.identify()

    # --- raw memory -------------------------------------------------------------------------
    def _select(self, page: int, bank: int) -> None:
        if bank:
            self.bridge.write_registers(MODULE_ADDRESS, BANK_SELECT, bytes([bank, page]))
        else:
            self.bridge.write_registers(MODULE_ADDRESS, PAGE_SELECT, bytes([page]))

    def read_memory(self, page: int, offset: int, length: int, *, bank: int = 0) -> bytes:
        if not (offset >= 0 and offset + length <= 256 and length > 0):
            raise ValueError(f"offset {offset} + length {length} is outside 0..256")
        with self.lock:
            if offset + length > 128:
                self._select(page, bank)
            return self.bridge.read_registers(MODULE_ADDRESS, offset, length)

    def write_memory(self, page: int, offset: int, data: bytes, *, bank: int = 0) -> None:
        if not (offset >= 0 and offset + len(data) <= 256 and data):
            raise ValueError(f"offset {offset} + length {len(data)} is outside 0..256")
        with self.lock:
            if offset + len(data) > 128:
                self._select(page, bank)
            self.bridge.write_registers(MODULE_ADDRESS, offset, data)

    # --- identity and state -------------------------------------------------------------------
    def module_identity(self) -> ModuleIdentity:
        lower = self.read_memory(0, 0, 41)
        upper = self.read_memory(0x00, 128, 64)

        def field(spec: tuple[int, int]) -> str:
            start = spec[0] - 128
            return _ascii(upper[start : start + spec[1]])

        return ModuleIdentity(
            identifier=lower[IDENTIFIER],
            cmis_revision=f"{lower[REVISION] >> 4}.{lower[REVISION] & 0x0F}",
            vendor_name=field(VENDOR_NAME),
            part_number=field(PART_NUMBER),
            serial_number=field(SERIAL_NUMBER),
            vendor_revision=field(VENDOR_REVISION),
            date_code=field(DATE_CODE),
            firmware_version=f"{lower[ACTIVE_FIRMWARE]}.{lower[ACTIVE_FIRMWARE + 1]}",
        )

    def module_state(self) -> ModuleState:
        raw = (self.read_memory(0, MODULE_STATE, 1)[0] >> 1) & 0x07
        try:
            return ModuleState(raw)
        except ValueError:
            raise InstrumentStateError(
                f"module state code {raw} is reserved", resource=self.resource
            ) from None

    def set_low_power(self, low_power: bool) -> None:
        with self.lock:
            control = self.read_memory(0, MODULE_CONTROL, 1)[0]
            if low_power:
                control |= LOW_PWR_REQUEST_SW
            else:
                # Release both the software request and the host board's LPMode pin.
                control &= ~(LOW_PWR_REQUEST_SW | LOW_PWR_ALLOW_REQUEST_HW) & 0xFF
            self.write_memory(0, MODULE_CONTROL, bytes([control]))

    def advertised_durations_s(self) -> dict[str, float]:
        """Maximum state-change durations the module advertises on page 01h."""
        page1 = self.read_memory(0x01, 128, 48)
        dp, module, tx = (
            page1[DP_DURATIONS - 128],
            page1[MODULE_DURATIONS - 128],
            page1[TX_DURATIONS - 128],
        )
        return {
            "module_power_up": _DURATION_UPPER_S[module & 0x0F],
            "module_power_down": _DURATION_UPPER_S[module >> 4],
            "data_path_init": _DURATION_UPPER_S[dp & 0x0F],
            "data_path_deinit": _DURATION_UPPER_S[dp >> 4],
            "tx_turn_on": _DURATION_UPPER_S[tx & 0x0F],
            "tx_turn_off": _DURATION_UPPER_S[tx >> 4],
        }

    def wait_module_state(self, state: ModuleState, timeout_s: float | None = None) -> float | None:
        if timeout_s is None:
            durations = self.advertised_durations_s()
            timeout_s = durations["module_power_up"] + durations["module_power_down"]
        start = time.monotonic()
        while True:
            current = self.module_state()
            elapsed = time.monotonic() - start
            if current == state:
                return elapsed
            if current == ModuleState.FAULT or elapsed > timeout_s:
                return None
            time.sleep(POLL_INTERVAL_S)

    def data_path_states(self) -> tuple[DataPathState, ...]:
        raw = self.read_memory(0x11, DP_STATE, 4)
        try:
            return tuple(DataPathState(v) for v in _nibbles(raw, self.lane_count))
        except ValueError as err:
            raise InstrumentStateError(
                f"reserved data path state in {raw.hex()}", resource=self.resource
            ) from err

    def activate_data_paths(
        self, application: int = 1, timeout_s: float | None = None
    ) -> float | None:
        if not 1 <= application <= 15:
            raise ValueError(f"application {application} is outside 1..15")
        if timeout_s is None:
            durations = self.advertised_durations_s()
            timeout_s = durations["data_path_init"] + durations["tx_turn_on"]
        start = time.monotonic()
        with self.lock:
            config = bytes([application << 4] * self.lane_count)  # one data path from lane 1
            self.write_memory(0x10, DP_CONFIG, config)
            self.write_memory(0x10, APPLY_DP_INIT, bytes([0xFF]))
            self.write_memory(0x10, DP_DEINIT, bytes([0x00]))
        while True:
            status = _nibbles(self.read_memory(0x11, CONFIG_STATUS, 4), self.lane_count)
            rejected = [
                lane + 1
                for lane, s in enumerate(status)
                if s not in (CONFIG_SUCCESS, CONFIG_IN_PROGRESS, 0)
            ]
            if rejected:
                return None
            states = self.data_path_states()
            elapsed = time.monotonic() - start
            if all(s == DataPathState.ACTIVATED for s in states):
                return elapsed
            if elapsed > timeout_s:
                return None
            time.sleep(POLL_INTERVAL_S)

    def set_tx_disable(self, lanes_disabled: tuple[bool, ...]) -> None:
        if len(lanes_disabled) != self.lane_count:
            raise ValueError(f"need {self.lane_count} lane flags, got {len(lanes_disabled)}")
        mask = sum(1 << lane for lane, off in enumerate(lanes_disabled) if off)
        self.write_memory(0x10, TX_DISABLE, bytes([mask]))

    def monitors(self) -> ModuleMonitors:
        lower = self.read_memory(0, TEMPERATURE, 4)
        multiplier = 1 << ((self.read_memory(0x01, BIAS_MULTIPLIER, 1)[0] >> 3) & 0x03)
        page11 = self.read_memory(0x11, TX_POWER, 48)

        def words(start: int) -> list[int]:
            return [
                int.from_bytes(page11[start + 2 * i : start + 2 * i + 2], "big")
                for i in range(self.lane_count)
            ]

        return ModuleMonitors(
            temperature_c=int.from_bytes(lower[0:2], "big", signed=True) / 256.0,
            vcc_v=int.from_bytes(lower[2:4], "big") * 100e-6,
            tx_power_w=tuple(w * 1e-7 for w in words(0)),
            tx_bias_a=tuple(w * 2e-6 * multiplier for w in words(16)),
            rx_power_w=tuple(w * 1e-7 for w in words(32)),
        )

    def safe_state(self) -> None:
        """Transmitters off, then low-power mode."""
        with self.lock:
            self.set_tx_disable((True,) * self.lane_count)
            self.set_low_power(True)
