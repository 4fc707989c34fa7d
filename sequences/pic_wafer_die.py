"""Measuring one PIC die through the capability interfaces: probe it, the electrical devices
(heater, photodetector dark current), fibre alignment, photocurrent, and the swept spectra.

Everything here talks to instruments and returns raw readings (`DieReadings`); analysis and
judging happen elsewhere (pic_wafer_analysis), off the measurement's critical path.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.interfaces import InstrumentError, PowerMeter, SourceMeter, TunableLaser, WaferProber
from sequences.pic_wafer_map import Die, DieMap
from station.errors import StationError

POLL_FIRST_S = 0.001  # instrument polls start fast and back off: a simulated bench is quick ...
POLL_MAX_S = 0.02  # ... and a real sweep of seconds costs at most ~150 polls
MAX_JUMP_STEPS = 3.0  # the alignment trusts a parabola's vertex this many steps away


class DieFault(StationError):
    """The station could not measure the die (the die is retried once, then binned ERROR)."""


class ContactLost(DieFault):
    """No light reaches the output fibre anywhere in the alignment search: the probes or the fibre
    array have lost the die (or the prober put us on the wrong die)."""


class ProberMismatch(DieFault):
    """The prober stepped to a different die from the one asked for."""


@dataclass
class AlignmentResult:
    x_um: float
    y_um: float
    power_w: float  # at the alignment channel's meter, after the search
    moves: int
    trace: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, power_w)


@dataclass
class DieReadings:
    """Raw readings of one die (what `pic_wafer_analysis.analyse` turns into measurements)."""

    die: Die
    index: int  # position in the map's test order
    error: str | None = None  # the station could not measure the die (after its retry)
    retried: str | None = None  # what went wrong on the first attempt, if anything did
    alignment: AlignmentResult | None = None
    laser_power_w: float = math.nan
    wavelength_nm: np.ndarray | None = None  # the laser's lambda log, one per trigger
    power_w: dict[int, np.ndarray] = field(default_factory=dict)  # meter channel -> samples
    photocurrent_wavelength_nm: float = math.nan
    light_current_a: float = math.nan  # photodetector at bias, lit
    dark_current_a: float = math.nan  # photodetector at bias, laser off
    heater_voltage_v: float = math.nan
    heater_current_a: float = math.nan


@dataclass
class WaferBench:
    """The instruments of the wafer station and what the die loop remembers between dies."""

    prober: WaferProber
    laser: TunableLaser
    meter: PowerMeter
    smu: SourceMeter
    die_map: DieMap
    check: Callable[[], None]  # raises when the run is aborted or the die ran out of time
    sleep: Callable[[float], None]
    rear_terminals: bool | None = None  # what the instruments were last set to (None: unknown)
    laser_on: bool | None = None

    # --- setup ------------------------------------------------------------------------------------
    def prepare(self) -> int:
        """Laser, meter and SMU for this map's test; returns the points of every sweep."""
        sweep, align = self.die_map.sweep, self.die_map.alignment
        self.set_laser(False)
        self.laser.set_power_dbm(sweep.power_dbm)
        self.laser.set_wavelength_nm(align.wavelength_nm)
        points = self.laser.configure_sweep(
            sweep.start_nm, sweep.stop_nm, sweep.step_nm, sweep.speed_nm_per_s
        )
        centre_nm = 0.5 * (sweep.start_nm + sweep.stop_nm)
        for device in self.die_map.devices:
            if device.meter_channel is not None:
                self.meter.set_wavelength_nm(device.meter_channel, centre_nm)
        self.meter.set_averaging_time_s(align.meter_channel, align.averaging_time_s)
        self.smu.set_output(False)
        return points

    def set_laser(self, on: bool) -> None:
        if self.laser_on is not on:
            self.laser.set_output(on)
            self.laser_on = on

    def quiet(self) -> None:
        """After a fault: SMU output off before the probes move again (best effort: the engine
        makes every instrument safe at the end anyway); what the instruments are set to is now
        unknown."""
        with contextlib.suppress(InstrumentError):
            self.smu.set_output(False)
        self.laser_on = self.rear_terminals = None

    def terminals(self, rear: bool) -> None:
        if self.rear_terminals is not rear:
            self.smu.set_output(False)  # the SMU switches terminals only with its output off
            self.smu.use_rear_terminals(rear)
            self.rear_terminals = rear

    # --- one die ----------------------------------------------------------------------------------
    def probe(self, die: Die) -> None:
        """Separate, step to `die`, check the prober is there, and contact."""
        self.prober.separate()
        position = self.prober.step_to_die(*die)
        if (position.column, position.row) != die:
            raise ProberMismatch(
                f"asked for die {die}, the prober stepped to ({position.column}, {position.row})"
            )
        self.prober.contact()

    def measure(self, readings: DieReadings, points: int) -> None:
        """Every reading of the die under the probes (in contact), into `readings`."""
        heater = self.die_map.device("heater")
        detector = self.die_map.device("photodetector")
        self.set_laser(False)
        if heater is not None:  # rear terminals: the ring heater's pads
            self.terminals(rear=heater.terminals == "rear")
            self.smu.source_voltage(heater.bias_v, heater.compliance_a)
            self.smu.set_output(True)
            readings.heater_voltage_v = heater.bias_v
            readings.heater_current_a = self.smu.measure_current_a()
            self.smu.set_output(False)
        if detector is not None:  # dark current with the laser off; then kept biased
            self.terminals(rear=detector.terminals == "rear")
            self.smu.source_voltage(detector.bias_v, detector.compliance_a)
            self.smu.set_output(True)
            readings.dark_current_a = self.smu.measure_current_a()
        align = self.die_map.alignment
        self.laser.set_wavelength_nm(align.wavelength_nm)
        self.set_laser(True)
        readings.laser_power_w = 1e-3 * 10 ** (self.die_map.sweep.power_dbm / 10)
        readings.alignment = self.align()
        if detector is not None:
            readings.photocurrent_wavelength_nm = align.wavelength_nm
            readings.light_current_a = self.smu.measure_current_a()
            self.smu.set_output(False)
        self.sweep(readings, points)
        self.set_laser(False)  # dark for the next die's dark current

    # --- alignment --------------------------------------------------------------------------------
    def _power_at(self, result: AlignmentResult, x_um: float, y_um: float) -> float:
        self.check()
        self.prober.move_fibre_um(x_um, y_um)
        power = self.meter.read_power_w(self.die_map.alignment.meter_channel)
        result.moves += 1
        result.trace.append((x_um, y_um, power))
        if power > result.power_w:
            result.x_um, result.y_um, result.power_w = x_um, y_um, power
        return power

    def align(self) -> AlignmentResult:
        """Spiral out from the nominal coupler position until first light, then climb: along
        each axis in turn, a parabola through three readings in dB (exact for the Gaussian
        overlap of a fibre and a grating coupler) gives the next position. Rounds repeat with
        a step the size of the last correction until no axis moves by more than the minimum
        step. Ends at the brightest position seen."""
        spec = self.die_map.alignment
        result = AlignmentResult(0.0, 0.0, -math.inf, 0)
        threshold_w = 1e-3 * 10 ** (spec.first_light_dbm / 10)
        for point in spiral(spec.spiral_step_um, spec.spiral_radius_um):
            if self._power_at(result, *point) >= threshold_w:
                break
        if result.power_w < threshold_w:
            raise ContactLost(
                f"no light above {spec.first_light_dbm:g} dBm within {spec.spiral_radius_um:g} um"
                f" (best {_dbm(result.power_w):.1f} dBm)"
            )
        step = spec.gradient_step_um
        while result.moves + 6 <= spec.max_moves:
            largest = 0.0
            for axis in (0, 1):
                centre = (result.x_um, result.y_um)
                levels = [_dbm(result.power_w)]
                for sign in (-1.0, 1.0):
                    levels.append(_dbm(self._power_at(result, *_moved(centre, axis, sign * step))))
                shift = _vertex(levels[1], levels[0], levels[2]) * step
                largest = max(largest, abs(shift))
                if abs(shift) > 0.05 * step:
                    self._power_at(result, *_moved(centre, axis, shift))
            if largest < spec.gradient_min_step_um:
                break
            step = min(max(largest, spec.gradient_min_step_um), spec.gradient_step_um)
        if result.trace[-1][:2] != (result.x_um, result.y_um):
            self.prober.move_fibre_um(result.x_um, result.y_um)
            result.moves += 1
        return result

    # --- sweep ------------------------------------------------------------------------------------
    def sweep(self, readings: DieReadings, points: int) -> None:
        """One laser sweep with lambda logging; every optical device's meter channel logs one
        sample per step trigger, so all spectra share the logged wavelengths."""
        spec = self.die_map.sweep
        channels = [d.meter_channel for d in self.die_map.devices if d.meter_channel is not None]
        for channel in channels:
            self.meter.start_logging(channel, points, spec.averaging_time_s, triggered=True)
        self.laser.start_sweep()
        # tuning to the start, the ramp, and margin: generous on a real bench
        budget_s = 3.0 * ((spec.stop_nm - spec.start_nm) / spec.speed_nm_per_s + 3.0) + 5.0
        self.wait(self.laser.sweep_complete, budget_s, "the laser sweep")
        for channel in channels:
            self.wait(functools.partial(self.meter.logging_complete, channel), 5.0, "logging")
        wavelength = np.asarray(self.laser.logged_wavelengths_nm(), dtype=float)
        readings.wavelength_nm = wavelength
        for channel in channels:
            samples = np.asarray(self.meter.fetch_logged_power_w(channel))
            if samples.shape != wavelength.shape:
                raise DieFault(
                    f"meter channel {channel} logged {samples.size} samples for "
                    f"{wavelength.size} laser triggers"
                )
            readings.power_w[channel] = samples

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll `done` with backoff until true; bounded by `timeout_s` and the step's deadline."""
        deadline = time.monotonic() + timeout_s
        pause = POLL_FIRST_S
        while not done():
            if time.monotonic() > deadline:
                raise DieFault(f"{what} did not finish within {timeout_s:g} s")
            self.sleep(pause)
            pause = min(2 * pause, POLL_MAX_S)


def spiral(step_um: float, radius_um: float) -> list[tuple[float, float]]:
    """Grid points within `radius_um` in spiral order: by ring (distance), then by angle."""
    n = int(radius_um // step_um)
    grid = np.arange(-n, n + 1) * step_um
    x, y = (a.ravel() for a in np.meshgrid(grid, grid))
    r = np.hypot(x, y)
    keep = r <= radius_um + 1e-9
    ring = np.round(r[keep] / step_um, 6)
    angle = np.arctan2(y[keep], x[keep])
    order = np.lexsort((angle, ring))
    return [(float(a), float(b)) for a, b in zip(x[keep][order], y[keep][order], strict=True)]


def _moved(point: tuple[float, float], axis: int, by: float) -> tuple[float, float]:
    return (point[0] + by, point[1]) if axis == 0 else (point[0], point[1] + by)


def _vertex(minus: float, centre: float, plus: float) -> float:
    """Vertex of the parabola through (-1, minus), (0, centre), (1, plus), in steps, kept within
    +-MAX_JUMP_STEPS (the Gaussian's parabola holds far out; noise and other shapes do not)."""
    curvature = minus + plus - 2.0 * centre
    if not curvature < 0.0:  # not a maximum: step towards the brighter side
        return float(np.sign(plus - minus))
    return float(np.clip(0.5 * (minus - plus) / curvature, -MAX_JUMP_STEPS, MAX_JUMP_STEPS))


def _dbm(power_w: float) -> float:
    return 10.0 * math.log10(max(power_w, 1e-15) / 1e-3)
