"""What sits on the simulated wafer prober: the loaded wafer, the die under the probes, chuck
height, fibre array position, the tunable laser's light into the input fibre and the SMU's wiring.

Light is followed from the laser through the input patch cord and fibre, the input grating
coupler and the die's test cell to the output fibres and the power meter, so the meter, the SMU
(photocurrent) and an alignment search all see the same physics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim_instruments.light import DARK, Emission, Light
from sim_instruments.wafer import (
    OPEN_OHM,
    SPLIT_DETECTOR,
    SPLIT_LOOPBACK,
    SPLIT_RING,
    DieTruth,
    Wafer,
    alignment_factor,
    coupler_transmission,
    detector_current_a,
    make_wafer,
    ring_through,
)

#: Power meter channel -> what its output fibre looks at on the die.
LOOPBACK_CHANNEL = 1
RING_CHANNEL = 2
OUTPUT_CHANNELS = (LOOPBACK_CHANNEL, RING_CHANNEL)
#: Coupling left when the chuck is at separation (the fibre hovers hundreds of um above the die).
SEPARATED_COUPLING = 1e-7


@dataclass(frozen=True)
class ElectricalLoad:
    """What the SMU's terminals see: a function current(voltage), vectorised."""

    current_a: Callable[[np.ndarray], np.ndarray]

    @staticmethod
    def resistor(ohm: float) -> ElectricalLoad:
        return ElectricalLoad(lambda v: np.asarray(v, dtype=float) / ohm)


OPEN_CIRCUIT = ElectricalLoad.resistor(OPEN_OHM)


class WaferStation:
    """The chuck with its wafer, the fibre array and the DC probes.

    The SMU's front terminals are wired to the photodetector pads, its rear terminals to the ring
    heater pads; both reach the die only in contact.
    """

    def __init__(self, bench_rng: np.random.Generator) -> None:
        self.lock = threading.RLock()
        self.wafer: Wafer | None = None
        self.die_index: int | None = None
        self.in_contact = False
        self.fibre_um = (0.0, 0.0)  # fibre array relative to the die's nominal coupler position
        #: the tunable laser's light at its output now (set by the laser's twin); None when dark
        self.laser: Callable[[], Emission | None] = lambda: None
        #: electrical power in the ring heater now (set by whatever drives it: the SMU's twin)
        self.heater_power_w: Callable[[], float] = lambda: 0.0
        # Bench-fixed passive losses: laser -> patch cord -> input fibre; output fibres -> meter.
        self.input_loss_db = float(bench_rng.uniform(0.6, 1.0))
        self.output_loss_db = {ch: float(bench_rng.uniform(0.3, 0.6)) for ch in OUTPUT_CHANNELS}

    # --- the wafer and the die under the probes ----------------------------------------------
    def load(self, wafer_id: str, product: str) -> None:
        wafer = make_wafer(wafer_id, product)
        with self.lock:
            self.wafer, self.die_index, self.in_contact = wafer, None, False
            self.fibre_um = (0.0, 0.0)

    def unload(self) -> None:
        with self.lock:
            self.wafer, self.die_index, self.in_contact = None, None, False

    def die(self) -> DieTruth | None:
        """The die under the probes (None before the first step or without a wafer)."""
        with self.lock:
            if self.wafer is None or self.die_index is None:
                return None
            return self.wafer.die(self.die_index)

    def _coupling(self, die: DieTruth | None) -> float:
        """Alignment factor of one coupler; tiny when not in contact."""
        if die is None or not self.in_contact:
            return SEPARATED_COUPLING
        return alignment_factor(die, *self.fibre_um)

    # --- optics ----------------------------------------------------------------------------------
    def laser_transmission(self, channel: int, wavelength_nm: np.ndarray) -> np.ndarray:
        """Power transmission (linear) from the laser output to power meter `channel`, now."""
        wavelengths = np.asarray(wavelength_nm, dtype=float)
        with self.lock:
            die = self.die()
            align = self._coupling(die)
            heater_w = self.heater_power_w() if die is not None and self.in_contact else 0.0
        if die is None or channel not in OUTPUT_CHANNELS:
            return np.zeros_like(wavelengths)
        couplers = coupler_transmission(die, wavelengths) ** 2 * align**2
        if channel == LOOPBACK_CHANNEL:
            cell = SPLIT_LOOPBACK * np.ones_like(wavelengths)
        else:
            cell = SPLIT_RING * ring_through(die, wavelengths, heater_w)
        fibres_db = self.input_loss_db + self.output_loss_db[channel]
        return couplers * cell * 10 ** (-fibres_db / 10)

    def meter_light(self, channel: int) -> Light:
        """The light arriving at power meter `channel` now."""
        emission = self.laser()
        if emission is None or emission.power_w <= 0:
            return DARK
        through = float(self.laser_transmission(channel, np.array([emission.wavelength_nm]))[0])
        if through <= 0:
            return DARK
        return (Emission(emission.wavelength_nm, emission.power_w * through),)

    def detector_power_w(self) -> float:
        """Optical power reaching the photodetector now (its reference plane: at the detector)."""
        emission = self.laser()
        with self.lock:
            die = self.die()
            align = self._coupling(die)
        if emission is None or die is None:
            return 0.0
        coupler = float(coupler_transmission(die, np.array([emission.wavelength_nm]))[0])
        return (
            emission.power_w * 10 ** (-self.input_loss_db / 10) * coupler * align * SPLIT_DETECTOR
        )

    # --- electrical ------------------------------------------------------------------------------
    def load_on(self, terminals: str) -> ElectricalLoad:
        """What the SMU's `terminals` ("FRONT": photodetector, "REAR": heater) see now."""
        with self.lock:
            die = self.die()
            if die is None or not self.in_contact:
                return OPEN_CIRCUIT
        if terminals == "REAR":
            return ElectricalLoad.resistor(die.heater_resistance_ohm)
        optical_w = self.detector_power_w()
        return ElectricalLoad(lambda v: detector_current_a(die, v, optical_w))
