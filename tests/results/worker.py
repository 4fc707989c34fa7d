"""A separate process writing runs to a store, for the concurrency and kill -9 tests.

python -m tests.results.worker URL FOLDER write STATION RUNS STEPS MEASUREMENTS
python -m tests.results.worker URL FOLDER hang    (two steps, then blocks in the third)
python -m tests.results.worker URL FOLDER stream  (4000 steps of 2 ms: killed long before the end)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import sqlalchemy as sa

from station.engine import StepContext
from station.results import open_store
from station.results.store import database_url
from station.sequence import Step, step
from tests.results.helpers import limits_file, run

LIMITS: dict[str, dict[str, object]] = {
    "v": {"low": 0.0, "high": 10.0, "unit": "V", "per_lane": True}
}


def _measuring(index: int, count: int, announce: bool = False, io_s: float = 0.0) -> Step:
    def measure(ctx: StepContext) -> None:
        if announce:
            print("started", flush=True)
        if io_s:
            ctx.sleep(io_s)  # an instrument exchange: the writer commits meanwhile
        for k in range(count):
            ctx.measure("v", 1.0 + k * 1e-3, unit="V", lane=1 + k % 4)

    measure.__name__ = f"s{index}"
    return step(measures=("v",))(measure)


def _steps_visible(url: str, wanted: int) -> None:
    """Wait until `wanted` steps are committed, seen through another connection."""
    engine = sa.create_engine(database_url(url))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(sa.text("SELECT count(*) FROM steps")).scalar() >= wanted:
                    return
            time.sleep(0.01)
    finally:
        engine.dispose()


def main(argv: list[str]) -> None:
    url, folder, mode = argv[0], Path(argv[1]), argv[2]
    store = open_store(url)
    if mode == "write":
        station, runs, steps, measurements = argv[3], *map(int, argv[4:7])
        limits = limits_file(folder, f"P-{station}", LIMITS)
        plan = tuple(_measuring(i, measurements) for i in range(steps))
        for index in range(runs):
            run(store, limits, plan, f"{station}-{index}", station_id=station)
        store.close()
        return

    @step(measures=("v",))
    def blocks(ctx: StepContext) -> None:
        if mode == "hang":
            _steps_visible(url, 2)
            print("in step 3", flush=True)
            time.sleep(600)

    limits = limits_file(folder, "P-kill", LIMITS)
    plan = (_measuring(0, 100), _measuring(1, 100), blocks)
    if mode == "stream":
        plan = tuple(_measuring(i, 50, announce=i == 0, io_s=0.002) for i in range(4000))
    run(store, limits, plan, "K1")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
