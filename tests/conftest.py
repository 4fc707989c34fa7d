"""Shared fixtures: an in-process simulated bench on loopback and a pty, fast time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings

from sim_instruments.bench import SimBench

FAST = 0.02  # wall seconds per simulated second

# Property tests draw the same examples on every run, so that a run is repeatable and judges the
# change rather than the draw; `pytest --hypothesis-profile explore` draws afresh on each run.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")


@pytest.fixture
def bench() -> Iterator[SimBench]:
    with SimBench.build(time_factor=FAST) as sim:
        sim.insert("SIM0001", "800G-DR8")
        yield sim


@pytest.fixture(scope="session")
def path_calibrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database holding the simulated module bench's path calibrations for sites 1-3
    (what a production run through its optical paths needs), made once by `station run path-cal`
    on the command line; copy it before writing to it."""
    folder = tmp_path_factory.mktemp("path-cal")
    db = folder / "calibrated.sqlite"
    fixtures = [arg for n in (1, 2, 3) for arg in ("--serial", f"REF-LB8-000{n}")]
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", "run", "path-cal", "--product", "PATH-CAL-DR8",
         *fixtures, "--sim", "--db", str(db), "--time-factor", "0.01"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return db


@pytest.fixture
def calibrated_db(tmp_path: Path, path_calibrated_db: Path) -> Path:
    """A fresh results database in `tmp_path` with only those path calibrations in it."""
    from station.calibration.paths import load_path_calibrations, write_path_calibrations
    from station.results.store import ResultsStore, database_url

    records = load_path_calibrations(database_url(path_calibrated_db), "sim-module-bench-1")
    db = tmp_path / "results.sqlite"
    store = ResultsStore(db)
    with store.engine.begin() as conn:
        write_path_calibrations(conn, [replace(r, id=None) for r in records])
    store.close()
    return db


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
