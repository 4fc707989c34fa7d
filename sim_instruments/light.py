"""Light as the simulated instruments see it: a few emission lines at an optical port.

A bench wires named ports (`"power_meter:1"`, `"osa"`, `"scope:1"`) to functions that follow the
light from its source through fibres, switches and splitters and return what arrives now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Emission:
    """One source's light at a port: its main mode and the strongest side mode."""

    wavelength_nm: float
    power_w: float
    smsr_db: float = 45.0  # main mode over the strongest side mode
    side_mode_offset_nm: float = 1.0  # where that side mode sits (about one mode spacing)
    linewidth_pm: float = 0.1

    def attenuated(self, loss_db: float) -> Emission:
        return replace(self, power_w=self.power_w * 10 ** (-loss_db / 10.0))


Light = tuple[Emission, ...]
DARK: Light = ()
Port = Callable[[], Light]


def total_power_w(light: Sequence[Emission]) -> float:
    return float(sum(e.power_w for e in light))


def mean_wavelength_nm(light: Sequence[Emission], default_nm: float = 1310.0) -> float:
    power = total_power_w(light)
    if power <= 0:
        return default_nm
    return float(sum(e.wavelength_nm * e.power_w for e in light) / power)
