"""Simulated time: instruments take realistic durations, scaled by one time factor.

A time factor of 1 is real time (demos); CI uses a small factor so a 3 s module power-up takes
150 ms of wall time while the module still sees 3 s pass.
"""

from __future__ import annotations

import time


class SimClock:
    def __init__(self, time_factor: float = 1.0) -> None:
        if not time_factor > 0:
            raise ValueError(f"time_factor must be > 0, got {time_factor}")
        self.time_factor = time_factor
        self._origin = time.monotonic()

    def now_s(self) -> float:
        """Simulated seconds since the bench started."""
        return (time.monotonic() - self._origin) / self.time_factor

    def sleep(self, simulated_s: float) -> None:
        """Block for `simulated_s` of simulated time."""
        if simulated_s > 0:
            time.sleep(simulated_s * self.time_factor)
