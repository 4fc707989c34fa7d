"""Simulated Keithley 2450 SourceMeter (native 2450 SCPI command set): source voltage or current
under a limit, measure, linear staircase sweeps into the default reading buffer.

The front terminals reach the die's photodetector pads, the rear terminals its ring-heater pads,
both only with the chuck in contact. The operating point is solved on the real load (a diode with
photocurrent, a resistor, an open circuit), so compliance behaves like an instrument's: the source
backs off until the load draws just the limit. A reading takes its integration time (NPLC).
"""

from __future__ import annotations

import math

import numpy as np

from sim_instruments.scpi import ScpiDevice, ScpiError, parse_bool, parse_number, scpi
from sim_instruments.wafer_station import OPEN_CIRCUIT, ElectricalLoad
from sim_instruments.world import World

LINE_FREQUENCY_HZ = 50.0
READING_OVERHEAD_S = 0.0005
AUTO_DELAY_S = 0.001  # source settling before each reading in a sweep (auto delay)
VOLTAGE_MAX_V = 210.0
CURRENT_MAX_A = 1.05
BUFFER = "DEFBUFFER1"


def _bisect(
    load: ElectricalLoad, target_a: np.ndarray | float, low: float, high: float
) -> np.ndarray:
    """Voltages in [low, high] where the (increasing) load current equals `target_a`."""
    lo = np.full(np.shape(target_a), low, dtype=float)
    hi = np.full(np.shape(target_a), high, dtype=float)
    for _ in range(70):
        mid = (lo + hi) / 2
        above = load.current_a(mid) > target_a
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return (lo + hi) / 2


class SimK2450(ScpiDevice):
    manufacturer = "KEITHLEY INSTRUMENTS"
    model = "MODEL 2450"
    firmware = "1.7.12b"

    def __init__(self, world: World, serial_number: str) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        self.rng = np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        self.source_function = "VOLT"
        self.voltage_v, self.current_a = 0.0, 0.0
        self.current_limit_a, self.voltage_limit_v = 105e-6, 21.0
        self.sense_function = "CURR"
        self.nplc = 1.0
        self.output_on = False
        self.terminals = "FRONT"
        self.tripped = False
        self.sweep: tuple[np.ndarray, float, bool] | None = None  # levels, delay, fail-abort
        self.busy_until_s = self.clock.now_s()
        # defbuffer1: time stamp (simulated s), source value, reading
        self.buffer_t: list[float] = []
        self.buffer_source: list[float] = []
        self.buffer_reading: list[float] = []

    def wait_operations(self) -> None:
        self.clock.sleep(self.busy_until_s - self.clock.now_s())

    # --- the circuit -------------------------------------------------------------------------
    def _load(self) -> ElectricalLoad:
        station = self.world.wafer
        if station is None or not self.output_on:
            return OPEN_CIRCUIT
        return station.load_on(self.terminals)

    def _operate(
        self, function: str, level: np.ndarray, load: ElectricalLoad
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voltage, current and compliance flag at each source `level` on `load`."""
        level = np.asarray(level, dtype=float)
        if function == "VOLT":
            current = load.current_a(level)
            limit = self.current_limit_a
            tripped = np.abs(current) > limit
            if tripped.any():
                clamped = np.clip(current, -limit, limit)
                backed_off = _bisect(load, clamped, -VOLTAGE_MAX_V, VOLTAGE_MAX_V)
                level = np.where(tripped, backed_off, level)
                current = np.where(tripped, clamped, current)
            return level, current, tripped
        limit = self.voltage_limit_v
        reachable_low, reachable_high = (
            load.current_a(np.array(-limit)),
            load.current_a(np.array(limit)),
        )
        voltage = _bisect(load, level, -limit, limit)
        tripped = (level > reachable_high) | (level < reachable_low)
        current = np.where(tripped, load.current_a(voltage), level)
        return voltage, current, tripped

    def _reading(self, voltage: np.ndarray, current: np.ndarray) -> np.ndarray:
        shrink = 1 / math.sqrt(self.nplc)
        if self.sense_function == "CURR":
            noise = 5e-12 + 2e-5 * np.abs(current)
            return current + self.rng.normal(0.0, 1.0, np.shape(current)) * noise * shrink
        noise = 5e-6 + 1e-5 * np.abs(voltage)
        return voltage + self.rng.normal(0.0, 1.0, np.shape(voltage)) * noise * shrink

    def heater_power_w(self) -> float:
        """Electrical power this SMU puts into the ring heater now (lock-free: the optics call
        it while the laser sweeps)."""
        station = self.world.wafer
        if station is None or not self.output_on or self.terminals != "REAR":
            return 0.0
        level = self.voltage_v if self.source_function == "VOLT" else self.current_a
        voltage, current, _ = self._operate(self.source_function, np.array([level]), self._load())
        return float(abs(voltage[0] * current[0]))

    def _measure(self) -> float:
        self.clock.sleep(self.nplc / LINE_FREQUENCY_HZ + READING_OVERHEAD_S)
        level = self.voltage_v if self.source_function == "VOLT" else self.current_a
        voltage, current, tripped = self._operate(
            self.source_function, np.array([level]), self._load()
        )
        if not self.output_on:
            voltage, current, tripped = np.zeros(1), np.zeros(1), np.zeros(1, dtype=bool)
        self.tripped = bool(tripped[0])
        reading = float(self._reading(voltage, current)[0])
        self._store(self.clock.now_s(), level, reading)
        return reading

    def _store(self, t: float, source: float, reading: float) -> None:
        self.buffer_t.append(t)
        self.buffer_source.append(source)
        self.buffer_reading.append(reading)

    # --- source --------------------------------------------------------------------------------
    @scpi("SOURce#:FUNCtion")
    @scpi("SOURce#:FUNCtion:MODE")
    def _set_function(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        if word in ("VOLT", "VOLTAGE"):
            self.source_function = "VOLT"
        elif word in ("CURR", "CURRENT"):
            self.source_function = "CURR"
        else:
            raise ScpiError(-224, "Illegal parameter value")

    @scpi("SOURce#:FUNCtion", query=True)
    @scpi("SOURce#:FUNCtion:MODE", query=True)
    def _get_function(self, s: tuple[int, ...], args: str) -> str:
        return self.source_function

    @scpi("SOURce#:VOLTage")
    @scpi("SOURce#:VOLTage:LEVel")
    def _set_voltage(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, {"V": 1.0, "MV": 1e-3})
        if abs(value) > VOLTAGE_MAX_V:
            raise ScpiError(-222, "Data out of range")
        self.voltage_v = value

    @scpi("SOURce#:VOLTage", query=True)
    @scpi("SOURce#:VOLTage:LEVel", query=True)
    def _get_voltage(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.voltage_v:+.6E}"

    @scpi("SOURce#:CURRent")
    @scpi("SOURce#:CURRent:LEVel")
    def _set_current(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, {"A": 1.0, "MA": 1e-3, "UA": 1e-6})
        if abs(value) > CURRENT_MAX_A:
            raise ScpiError(-222, "Data out of range")
        self.current_a = value

    @scpi("SOURce#:CURRent", query=True)
    @scpi("SOURce#:CURRent:LEVel", query=True)
    def _get_current(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.current_a:+.6E}"

    @scpi("SOURce#:VOLTage:ILIMit")
    @scpi("SOURce#:VOLTage:ILIMit:LEVel")
    def _set_current_limit(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, {"A": 1.0, "MA": 1e-3, "UA": 1e-6})
        if not 1e-9 <= value <= CURRENT_MAX_A:
            raise ScpiError(-222, "Data out of range")
        self.current_limit_a = value

    @scpi("SOURce#:VOLTage:ILIMit", query=True)
    @scpi("SOURce#:VOLTage:ILIMit:LEVel", query=True)
    def _get_current_limit(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.current_limit_a:+.6E}"

    @scpi("SOURce#:CURRent:VLIMit")
    @scpi("SOURce#:CURRent:VLIMit:LEVel")
    def _set_voltage_limit(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, {"V": 1.0, "MV": 1e-3})
        if not 0.02 <= value <= VOLTAGE_MAX_V:
            raise ScpiError(-222, "Data out of range")
        self.voltage_limit_v = value

    @scpi("SOURce#:CURRent:VLIMit", query=True)
    @scpi("SOURce#:CURRent:VLIMit:LEVel", query=True)
    def _get_voltage_limit(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.voltage_limit_v:+.6E}"

    @scpi("SOURce#:VOLTage:ILIMit:TRIPped", query=True)
    @scpi("SOURce#:CURRent:VLIMit:TRIPped", query=True)
    def _tripped(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.tripped else "0"

    @scpi("OUTPut#")
    @scpi("OUTPut#:STATe")
    def _set_output(self, s: tuple[int, ...], args: str) -> None:
        self.output_on = parse_bool(args)
        if not self.output_on:
            self.tripped = False

    @scpi("OUTPut#", query=True)
    @scpi("OUTPut#:STATe", query=True)
    def _get_output(self, s: tuple[int, ...], args: str) -> str:
        return "1" if self.output_on else "0"

    @scpi("ROUTe:TERMinals")
    def _set_terminals(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().upper()
        if word not in ("FRON", "FRONT", "REAR"):
            raise ScpiError(-224, "Illegal parameter value")
        if self.output_on:
            raise ScpiError(-221, "Settings conflict")  # the 2450 refuses with the output on
        self.terminals = "REAR" if word == "REAR" else "FRONT"

    @scpi("ROUTe:TERMinals", query=True)
    def _get_terminals(self, s: tuple[int, ...], args: str) -> str:
        return "REAR" if self.terminals == "REAR" else "FRON"

    # --- measure ---------------------------------------------------------------------------------
    @scpi("SENSe#:FUNCtion")
    @scpi("SENSe#:FUNCtion:ON")
    def _set_sense(self, s: tuple[int, ...], args: str) -> None:
        word = args.strip().strip("'\"").upper()
        if word.startswith("CURR"):
            self.sense_function = "CURR"
        elif word.startswith("VOLT"):
            self.sense_function = "VOLT"
        else:
            raise ScpiError(-224, "Illegal parameter value")

    @scpi("SENSe#:FUNCtion", query=True)
    @scpi("SENSe#:FUNCtion:ON", query=True)
    def _get_sense(self, s: tuple[int, ...], args: str) -> str:
        return f'"{self.sense_function}:DC"'

    @scpi("SENSe#:CURRent:NPLCycles")
    @scpi("SENSe#:VOLTage:NPLCycles")
    def _set_nplc(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if not 0.01 <= value <= 10:
            raise ScpiError(-222, "Data out of range")
        self.nplc = value

    @scpi("SENSe#:CURRent:NPLCycles", query=True)
    @scpi("SENSe#:VOLTage:NPLCycles", query=True)
    def _get_nplc(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.nplc:+.6E}"

    @scpi("READ", query=True)
    def _read(self, s: tuple[int, ...], args: str) -> str:
        self.wait_operations()
        return f"{self._measure():+.9E}"

    # --- sweeps and the reading buffer --------------------------------------------------------
    @scpi("SOURce#:SWEep:VOLTage:LINear")
    def _sweep_linear(self, s: tuple[int, ...], args: str) -> None:
        parts = [p.strip() for p in args.split(",")]
        if len(parts) < 3:
            raise ScpiError(-109, "Missing parameter")
        start, stop = parse_number(parts[0]), parse_number(parts[1])
        points = int(parse_number(parts[2]))
        delay = parse_number(parts[3]) if len(parts) > 3 else -1.0
        count = int(parse_number(parts[4])) if len(parts) > 4 else 1
        fail_abort = parse_bool(parts[6]) if len(parts) > 6 else True
        dual = parse_bool(parts[7]) if len(parts) > 7 else False
        if len(parts) > 8 and parts[8].strip("'\"").upper() != BUFFER:
            raise ScpiError(-224, "Illegal parameter value")  # only defbuffer1 is simulated
        if not 2 <= points <= 1_000_000 or max(abs(start), abs(stop)) > VOLTAGE_MAX_V:
            raise ScpiError(-222, "Data out of range")
        if count != 1 or dual:
            raise ScpiError(-222, "Data out of range")  # single one-way sweeps are simulated
        self.source_function = "VOLT"
        self.sweep = (np.linspace(start, stop, points), delay, fail_abort)

    @scpi("INITiate")
    @scpi("INITiate:IMMediate")
    def _initiate(self, s: tuple[int, ...], args: str) -> None:
        if self.sweep is None:
            self._measure()  # the default trigger model: one reading
            return
        levels, delay, fail_abort = self.sweep
        self.output_on = True  # the sweep's trigger model turns the output on
        voltage, current, tripped = self._operate("VOLT", levels, self._load())
        if fail_abort and tripped.any():  # the sweep stops at the first point in the limit
            keep = int(np.argmax(tripped)) + 1
            levels, voltage, current = levels[:keep], voltage[:keep], current[:keep]
        per_point = (AUTO_DELAY_S if delay < 0 else delay) + self.nplc / LINE_FREQUENCY_HZ
        per_point += READING_OVERHEAD_S
        start = self.clock.now_s()
        times = start + per_point * np.arange(1, len(levels) + 1)
        readings = self._reading(voltage, current)
        for t, level, reading in zip(times, levels, readings, strict=True):
            self._store(float(t), float(level), float(reading))
        self.voltage_v = float(levels[-1])
        self.tripped = bool(tripped[: len(levels)].any())
        self.busy_until_s = float(times[-1])

    @scpi("ABORt")
    def _abort(self, s: tuple[int, ...], args: str) -> None:
        now = self.clock.now_s()
        keep = sum(t <= now for t in self.buffer_t)
        del self.buffer_t[keep:], self.buffer_source[keep:], self.buffer_reading[keep:]
        self.busy_until_s = now

    def _available(self) -> int:
        now = self.clock.now_s()
        return int(np.searchsorted(np.asarray(self.buffer_t), now, side="right"))

    @scpi("TRACe:ACTual:END", query=True)
    def _actual_end(self, s: tuple[int, ...], args: str) -> str:
        self._check_buffer(args)
        return str(self._available())

    @scpi("TRACe:CLEar")
    def _clear(self, s: tuple[int, ...], args: str) -> None:
        self.buffer_t, self.buffer_source, self.buffer_reading = [], [], []

    @scpi("TRACe:DATA", query=True)
    def _data(self, s: tuple[int, ...], args: str) -> str:
        parts = [p.strip() for p in args.split(",")]
        if len(parts) < 2:
            raise ScpiError(-109, "Missing parameter")
        first, last = int(parse_number(parts[0])), int(parse_number(parts[1]))
        self._check_buffer(parts[2] if len(parts) > 2 else "")
        if not 1 <= first <= last <= self._available():
            raise ScpiError(-222, "Data out of range")
        elements = [p.upper() for p in parts[3:]] or ["READ"]
        columns = []
        for element in elements:
            if element.startswith("READ"):
                columns.append(self.buffer_reading)
            elif element.startswith("SOUR"):
                columns.append(self.buffer_source)
            elif element.startswith("REL"):
                t0 = self.buffer_t[0]
                columns.append([t - t0 for t in self.buffer_t])
            else:
                raise ScpiError(-224, "Illegal parameter value")
        values = [f"{col[i]:+.9E}" for i in range(first - 1, last) for col in columns]
        return ",".join(values)

    def _check_buffer(self, text: str) -> None:
        name = text.strip().strip("'\"").upper()
        if name and name != BUFFER:
            raise ScpiError(-224, "Illegal parameter value")
