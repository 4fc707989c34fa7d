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


# --- the real-hardware tier -----------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hardware",
        metavar="STATION_TOML",
        help="run the tests marked `hardware` against the real instruments this station config "
        "names (select them with -m hardware)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="real-hardware test: give --hardware <station config>")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
