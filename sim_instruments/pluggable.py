"""A simulated pluggable module: lasers, monitors and the CMIS memory map with its state machine.

The module starts in ModuleLowPwr (the host board holds LPMode asserted); software must release
low power, select an application and initialise the data paths before any laser emits.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from sim_instruments.clock import SimClock
from sim_instruments.population import ModuleTruth
from sim_instruments.transmitter import TxSignal, make_module_tx

VENDOR_NAME = "SIMOPTICS"
IDENTIFIER_OSFP = 0x19
CMIS_REVISION = 0x52  # 5.2

# Advertised durations (CMIS duration codes) and what this unit really takes, in seconds.
POWER_UP_CODE, POWER_UP_S = 7, 2.5  # 1-5 s
POWER_DOWN_CODE, POWER_DOWN_S = 5, 0.2
DP_INIT_CODE, DP_INIT_S = 6, 0.6  # 0.5-1 s
DP_DEINIT_CODE, DP_DEINIT_S = 4, 0.05
TX_ON_CODE, TX_ON_S = 5, 0.15
TX_OFF_CODE, TX_OFF_S = 3, 0.01

STATE_LOW_POWER, STATE_POWER_UP, STATE_READY, STATE_POWER_DOWN = 1, 2, 3, 4
DP_DEACTIVATED, DP_INIT, DP_ACTIVATED, DP_TX_TURN_ON = 1, 2, 4, 5
CONFIG_SUCCESS, CONFIG_REJECTED_INVALID_APPSEL = 1, 3
ADVERTISED_APPLICATION = 1


def _put_ascii(page: bytearray, offset: int, length: int, text: str) -> None:
    page[offset - 128 : offset - 128 + length] = text.ljust(length)[:length].encode("ascii")


class SimulatedModule:
    """One module in the host board's cage."""

    def __init__(self, truth: ModuleTruth, clock: SimClock, ambient_c: float = 25.0) -> None:
        self.truth = truth
        self.clock = clock
        self.ambient_c = ambient_c
        self.lanes = truth.design.lanes
        self.lock = threading.RLock()
        self.lpmode_pin = True
        self._rng = np.random.default_rng()  # monitor noise differs from read to read
        self._lower = bytearray(128)
        self._pages: dict[int, bytearray] = {
            p: bytearray(128) for p in (0x00, 0x01, 0x02, 0x10, 0x11)
        }
        self._state = STATE_LOW_POWER
        self._state_since = clock.now_s()
        self._dp_start: float | None = None  # when the current data path init began
        self._dp_ok = False
        self._ready_since: float | None = None
        self.rx_input_w = np.zeros(self.lanes)  # light arriving at each receiver, set by the world
        #: set by a world with a receive path: the average power at each receiver now, W
        self.rx_input_source: Callable[[], np.ndarray] | None = None
        #: the transmitters' modulation truth (ER, bandwidth, noise, jitter, SMSR)
        self.tx = make_module_tx(truth.serial, truth.design.name)
        #: the case temperature now; a world with a thermal head replaces it
        self.case_temperature_c: Callable[[], float] = lambda: self.ambient_c
        self._build_static()

    # --- static content -------------------------------------------------------------------
    def _build_static(self) -> None:
        truth = self.truth
        low = self._lower
        low[0] = IDENTIFIER_OSFP
        low[1] = CMIS_REVISION
        low[2] = 0x00  # paged memory, stepped config supported
        low[26] = 0x40  # LowPwrAllowRequestHW: the LPMode pin keeps the module in low power
        low[39], low[40] = truth.firmware
        low[85] = 0x02  # media type: single-mode fibre
        # Application descriptor 1 (bytes 86-89): host interface, media interface, lane counts.
        low[86], low[87], low[88], low[89] = 0x51, 0x1C, 0x88, 0x01
        p0 = self._pages[0x00]
        p0[0] = IDENTIFIER_OSFP
        _put_ascii(p0, 129, 16, VENDOR_NAME)
        _put_ascii(p0, 148, 16, truth.design.part_number)
        _put_ascii(p0, 164, 2, "A1")
        _put_ascii(p0, 166, 16, truth.serial)
        _put_ascii(p0, 182, 8, truth.date_code)
        p1 = self._pages[0x01]
        p1[144 - 128] = (DP_DEINIT_CODE << 4) | DP_INIT_CODE
        p1[160 - 128] = 0x01 << 3  # bias multiplier x2
        p1[167 - 128] = (POWER_DOWN_CODE << 4) | POWER_UP_CODE
        p1[168 - 128] = (TX_OFF_CODE << 4) | TX_ON_CODE

    # --- state machine ------------------------------------------------------------------------
    def _low_power_requested(self) -> bool:
        control = self._lower[26]
        return bool(control & 0x10) or (bool(control & 0x40) and self.lpmode_pin)

    def _advance(self) -> None:
        now = self.clock.now_s()
        wants_low = self._low_power_requested()
        if self._state == STATE_LOW_POWER and not wants_low:
            self._set_state(STATE_POWER_UP, now)
        elif self._state == STATE_POWER_UP and now - self._state_since >= POWER_UP_S:
            self._set_state(STATE_READY, now)
            self._ready_since = now
        elif self._state in (STATE_READY, STATE_POWER_UP) and wants_low:
            self._set_state(STATE_POWER_DOWN, now)
            self._dp_start = None
        elif self._state == STATE_POWER_DOWN and now - self._state_since >= POWER_DOWN_S:
            self._set_state(STATE_LOW_POWER, now)
            self._ready_since = None
        self._lower[3] = self._state << 1
        p10 = self._pages[0x10]
        if self._state == STATE_READY and self._dp_ok and p10[0] == 0x00:
            if self._dp_start is None:
                self._dp_start = now
        else:
            self._dp_start = None

    def _set_state(self, state: int, now: float) -> None:
        self._state, self._state_since = state, now

    def data_path_states(self) -> list[int]:
        if self._dp_start is None:
            return [DP_DEACTIVATED] * self.lanes
        elapsed = self.clock.now_s() - self._dp_start
        if elapsed < DP_INIT_S:
            return [DP_INIT] * self.lanes
        if elapsed < DP_INIT_S + TX_ON_S:
            return [DP_TX_TURN_ON] * self.lanes
        return [DP_ACTIVATED] * self.lanes

    def _apply_dp_init(self) -> None:
        config = self._pages[0x10][145 - 128 : 153 - 128]
        valid = all(byte >> 4 == ADVERTISED_APPLICATION for byte in config)
        status = CONFIG_SUCCESS if valid else CONFIG_REJECTED_INVALID_APPSEL
        p11 = self._pages[0x11]
        for i in range(4):
            p11[202 - 128 + i] = status | (status << 4)
            p11[206 - 128 + 2 * i] = config[2 * i]
            p11[206 - 128 + 2 * i + 1] = config[2 * i + 1]
        self._dp_ok = valid
        self._dp_start = None  # re-initialise with the new configuration

    # --- physics --------------------------------------------------------------------------------
    def internal_temperature_c(self) -> float:
        case_c = self.case_temperature_c()
        if self._ready_since is None:
            return case_c + 2.0
        heated = self.clock.now_s() - self._ready_since
        return case_c + 2.0 + self.truth.self_heating_c * (1.0 - math.exp(-heated / 20.0))

    def lane_signal(self, lane: int) -> TxSignal | None:
        """The modulated light lane `lane` (0-based) launches now, or None when it is dark."""
        with self.lock:
            power = float(self.emitted_power_w()[lane])
            if power <= 0:
                return None
            temperature = self.internal_temperature_c()
            wavelength = float(self.lane_wavelengths_nm()[lane])
            baud = self.truth.design.baud_rate_gbd * 1e9
            return self.tx.lanes[lane].signal(power, wavelength, temperature, baud)

    def emitted_power_w(self) -> np.ndarray:
        """Average launch power of every lane now, in W (0 for a dark lane)."""
        with self.lock:
            self._advance()
            states = self.data_path_states()
            disabled = self._pages[0x10][130 - 128]
            temperature = self.internal_temperature_c()
            out = np.zeros(self.lanes)
            for lane, truth in enumerate(self.truth.lanes):
                if states[lane] == DP_ACTIVATED and not disabled & (1 << lane):
                    dbm = truth.tx_power_dbm - 0.006 * (temperature - 40.0)
                    out[lane] = 10 ** (dbm / 10.0) * 1e-3
            return out

    def rx_outputs_active(self) -> list[bool]:
        """Which lanes' receivers drive their host-side outputs (their data path is Activated)."""
        with self.lock:
            self._advance()
            return [state == DP_ACTIVATED for state in self.data_path_states()]

    def lane_wavelengths_nm(self) -> np.ndarray:
        temperature = self.internal_temperature_c()
        return np.array(
            [lane.wavelength_nm + 0.09 * (temperature - 40.0) for lane in self.truth.lanes]
        )

    def _refresh_monitors(self) -> None:
        temperature = self.internal_temperature_c() + self.truth.ddm_temperature_offset_c
        self._lower[14:16] = round(temperature * 256).to_bytes(2, "big", signed=True)
        vcc = 3.300 + self._rng.normal(0.0, 0.004)
        self._lower[16:18] = round(vcc / 100e-6).to_bytes(2, "big")
        p11 = self._pages[0x11]
        states = self.data_path_states()
        for i in range(4):
            p11[i] = states[2 * i] | (states[2 * i + 1] << 4)
        power = self.emitted_power_w()
        if self.rx_input_source is not None:
            self.rx_input_w = self.rx_input_source()
        for lane, truth in enumerate(self.truth.lanes):
            tx = power[lane] * 10 ** (truth.ddm_tx_error_db / 10.0)
            bias = truth.threshold_a + power[lane] / truth.slope_w_per_a if power[lane] > 0 else 0.0
            rx = self.rx_input_w[lane] * 10 ** (truth.ddm_rx_error_db / 10.0)
            rx += abs(self._rng.normal(0.0, 2e-7))  # monitor noise near 0.1 uW resolution
            for offset, value in ((154, tx / 1e-7), (170, bias / 4e-6), (186, rx / 1e-7)):
                word = min(max(round(value), 0), 0xFFFF)
                p11[offset - 128 + 2 * lane : offset - 128 + 2 * lane + 2] = word.to_bytes(2, "big")

    # --- I2C access -------------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            self._advance()
            self._refresh_monitors()
            out = bytearray()
            for address in range(offset, offset + length):
                out.append(self._byte(address & 0xFF))
            return bytes(out)

    def _byte(self, address: int) -> int:
        if address < 128:
            return self._lower[address]
        page = self._pages.get(self._lower[127])
        return page[address - 128] if page is not None else 0

    def write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self._advance()
            for i, value in enumerate(data):
                address = (offset + i) & 0xFF
                if address < 128:
                    if address in (26, 126, 127):  # writable lower-page controls
                        self._lower[address] = value
                    continue
                page = self._lower[127]
                if page == 0x10:
                    self._pages[0x10][address - 128] = value
                    if address == 143 and value:
                        self._apply_dp_init()
                        self._pages[0x10][143 - 128] = 0  # ApplyDPInit self-clears
            self._advance()
