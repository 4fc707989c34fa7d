"""The real-hardware tier: `pytest -m hardware --hardware <station config>` runs these tests
against the instruments the config names; without the option they are skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.interfaces import Instrument
from station.bench import open_bench
from station.config import StationConfig, load_station_config


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per role of the station config (none when no config is given)."""
    if "role" in metafunc.fixturenames:
        path = metafunc.config.getoption("--hardware")
        roles = sorted(load_station_config(path).instruments) if path else []
        metafunc.parametrize("role", roles)


@pytest.fixture(scope="session")
def station_config(pytestconfig: pytest.Config) -> StationConfig:
    return load_station_config(pytestconfig.getoption("--hardware"))


@pytest.fixture
def instrument(station_config: StationConfig, role: str) -> Iterator[Instrument]:
    """The role's instrument, opened and identified against the config (serial number)."""
    with open_bench(station_config, [role]) as bench:
        device = bench.instruments[role]
        try:
            yield device
        finally:
            device.safe_state()
