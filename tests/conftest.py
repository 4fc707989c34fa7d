"""Shared fixtures: an in-process simulated bench on loopback and a pty, fast time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sim_instruments.bench import SimBench

FAST = 0.02  # wall seconds per simulated second


@pytest.fixture
def bench() -> Iterator[SimBench]:
    with SimBench.build(time_factor=FAST) as sim:
        sim.insert("SIM0001", "800G-DR8")
        yield sim
