"""OpenHTF baseline for the engine benchmark: run in an environment where only openhtf is added.

Measures OpenHTF's cost per phase (1,000 phases, one validated measurement each) and per
measurement (one phase, 10,000 validated measurements), with an output callback that writes the
record as JSON (OpenHTF writes its record at the end of the test). Prints one JSON line.
Run: python benchmarks/openhtf_baseline.py   (in a virtual env with `pip install openhtf`)
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import openhtf as htf
from openhtf.output.callbacks import json_factory

PHASES = 1000
MEASUREMENTS = 10_000


def _phase_factory(index: int):
    @htf.PhaseOptions(name=f"p{index}")
    @htf.measures(htf.Measurement("m").in_range(0.0, 10.0))
    def phase(test):
        test.measurements.m = 1.0

    return phase


def _many_measurements():
    names = [f"m{i}" for i in range(MEASUREMENTS)]

    @htf.measures(*[htf.Measurement(n).in_range(0.0, 10.0) for n in names])
    def big(test):
        for name in names:
            test.measurements[name] = 1.0

    return big


def _run(phases, folder: Path) -> float:
    test = htf.Test(*phases)
    test.add_output_callbacks(json_factory.OutputToJSON(str(folder / "{dut_id}.json")))
    started = time.perf_counter()
    test.execute(test_start=lambda: "DUT1")
    return time.perf_counter() - started


def main() -> int:
    logging.disable(logging.CRITICAL)
    htf.conf.load(capture_docstring=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _run([_phase_factory(0)], folder)  # warm-up: imports, plugs, first record
        phases_s = _run([_phase_factory(i) for i in range(PHASES)], folder)
        build = time.perf_counter()
        big = _many_measurements()
        build_s = time.perf_counter() - build
        measurements_s = _run([big], folder)
    print(json.dumps({
        "framework": f"openhtf {htf.__version__ if hasattr(htf, '__version__') else ''}".strip(),
        "phases": PHASES, "phases_s": phases_s, "per_phase_us": phases_s / PHASES * 1e6,
        "measurements": MEASUREMENTS, "measurements_s": measurements_s,
        "declare_measurements_s": build_s,
        "per_measurement_us": measurements_s / MEASUREMENTS * 1e6,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
