"""Engine cost per step and per measurement, side by side with OpenHTF.

Ours: 1,000 steps with one judged measurement each, and one step with 10,000 judged measurements,
persisted to SQLite as the run goes (the time includes waiting for the last commit). OpenHTF runs
the same workloads in its own virtual environment (benchmarks/openhtf_baseline.py), writing its
JSON record at the end of the test as it does.
Run: python benchmarks/engine_vs_openhtf.py [--openhtf-python PATH] [--repeat 5]
Without --openhtf-python a virtual environment with openhtf is made in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from station.config import StationConfig
from station.engine import RunEngine, StepContext
from station.events import EventBus
from station.limits import load_limits
from station.results.store import ResultsStore
from station.sequence import Sequence, Step, step

HERE = Path(__file__).resolve().parent
OPENHTF = "openhtf==1.6.3"
LIMITS = """
[product]
name = "BENCH"
revision = "1"
serial_pattern = "B\\\\d+"
part_number = "PN"
lanes = 1
wavelength_nm = 1310
baud_rate_gbd = 53.125

[limits.m]
low = 0.0
high = 10.0
unit = "V"
"""


def _one_measurement(index: int) -> Step:
    def measure_once(ctx: StepContext) -> None:
        ctx.measure("m", 1.0, unit="V")

    measure_once.__name__ = f"s{index}"
    return step(measures=("m",))(measure_once)


@step(measures=("m",))
def many_measurements(ctx: StepContext) -> None:
    for _ in range(10_000):
        ctx.measure("m", 1.0, unit="V")


def _ours(steps: tuple[Step, ...], folder: Path, index: int) -> tuple[float, int]:
    limits_path = folder / "BENCH.toml"
    limits_path.write_text(LIMITS)
    store = ResultsStore(folder / f"bench-{index}.sqlite")
    bus = EventBus()
    bus.subscribe(store)
    engine = RunEngine(
        sequence=Sequence("bench", "bench", ("BENCH",), steps),
        limits=load_limits(limits_path),
        station=StationConfig(folder / "station.toml", "bench", {}),
        instruments={},
        instrument_records=(),
        bus=bus,
    )
    started = time.perf_counter()
    result = engine.run("B1")
    store.flush()  # persisted, not just handed over
    elapsed = time.perf_counter() - started
    commits = store.commits
    store.close()
    assert result.outcome.value == "PASS"
    return elapsed, commits


def _openhtf(python: str | None) -> dict[str, Any]:
    """One OpenHTF run of both workloads; its figures and the python that ran it."""
    if python is None:
        venv = Path(tempfile.mkdtemp()) / "openhtf-venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", OPENHTF], check=True)
        python = str(venv / "bin" / "python")
    done = subprocess.run([python, str(HERE / "openhtf_baseline.py")], check=True,
                          capture_output=True, text=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "python": python}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openhtf-python", help="python of an environment with openhtf installed")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    steps_1000 = tuple(_one_measurement(i) for i in range(1000))
    per_step, per_measurement, commits = [], [], []
    htf = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _ours(steps_1000[:10], folder, -1)  # warm-up
        for i in range(args.repeat):  # interleaved, so that both see the same machine load
            elapsed, n = _ours(steps_1000, folder, 2 * i)
            per_step.append(elapsed / 1000 * 1e6)
            commits.append(n)
            elapsed, _ = _ours((many_measurements,), folder, 2 * i + 1)
            per_measurement.append(elapsed / 10_000 * 1e6)
            htf.append(_openhtf(args.openhtf_python))
            args.openhtf_python = args.openhtf_python or htf[-1]["python"]
    htf_step = statistics.median(h["per_phase_us"] for h in htf)
    htf_measurement = statistics.median(h["per_measurement_us"] for h in htf)
    ours_step, ours_measurement = statistics.median(per_step), statistics.median(per_measurement)
    print(f"{'':28}{'ours':>12}{'OpenHTF':>12}{'ratio':>10}")
    print(f"{'per step (us)':28}{ours_step:12.1f}{htf_step:12.1f}{htf_step / ours_step:10.1f}")
    print(f"{'per measurement (us)':28}{ours_measurement:12.2f}{htf_measurement:12.2f}"
          f"{htf_measurement / ours_measurement:10.1f}")
    print(f"median of {args.repeat} runs each, interleaved; SQLite commits per 1,000-step run: "
          f"{commits}; OpenHTF writes its JSON record at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
