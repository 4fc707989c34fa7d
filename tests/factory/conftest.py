"""Fixtures of the factory tests: a simulated MES in this process on loopback, with one lot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sim_mes.server import MesServer
from sim_mes.state import MesState
from station.mes.http import HttpMes
from station.mes.retest import load_retest_policy

LOT = "LOT-A"
SERIALS = [f"SIM{n:04d}" for n in range(1, 11)]


@pytest.fixture
def mes_server() -> Iterator[MesServer]:
    state = MesState(load_retest_policy())
    state.add_lot(LOT, "800G-DR8", ["final_test"], SERIALS, work_order="WO-1")
    with MesServer(state) as server:
        yield server


@pytest.fixture
def mes(mes_server: MesServer) -> HttpMes:
    return HttpMes(mes_server.url, timeout_s=2.0)
