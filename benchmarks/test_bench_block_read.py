"""Moving a 4 MB float32 block (1,000,000 logged power samples) over a loopback SCPI socket.

Side by side: the driver's block read (header, then exactly the announced byte count with the
read termination off) and pyvisa's `query_binary_values`. The simulated meter runs in its own
process, as a real instrument would.
Run: pytest benchmarks/test_bench_block_read.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import pyvisa

from drivers.keysight.n7744c import N7744C
from drivers.transport import VisaTransport
from station.simbench import SimBenchProcess

pytestmark = pytest.mark.benchmark

POINTS = 1_000_000  # 4 MB of float32
COMMAND = "SENS1:FUNC:RES?"


@pytest.fixture(scope="module")
def meter_resource() -> Iterator[str]:
    with SimBenchProcess(time_factor=0.001) as bench:
        resource = bench.resources["power_meter"]
        with N7744C.open(resource, timeout_s=30) as meter:
            meter.log_power_w(1, POINTS, 1e-6)  # fill the meter's log once
        yield resource


def test_driver_block_read(benchmark, meter_resource: str) -> None:
    benchmark.group = "4 MB float32 block"
    with N7744C.open(meter_resource, timeout_s=30) as meter:
        data = benchmark(meter.fetch_logged_power_w, 1)
    assert data.shape == (POINTS,) and data.dtype == np.float32
    benchmark.extra_info["MB_per_s"] = 4.0 / benchmark.stats.stats.mean


def test_driver_block_read_default_receive_size(
    benchmark, meter_resource: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same read with pyvisa-py's default 4 KiB receives, to show what each change buys."""
    benchmark.group = "4 MB float32 block"
    monkeypatch.setattr(VisaTransport, "large_receive_bytes", 4096)
    with N7744C.open(meter_resource, timeout_s=30) as meter:
        data = benchmark(meter.fetch_logged_power_w, 1)
    assert data.shape == (POINTS,)
    benchmark.extra_info["MB_per_s"] = 4.0 / benchmark.stats.stats.mean


def test_pyvisa_query_binary_values(benchmark, meter_resource: str) -> None:
    benchmark.group = "4 MB float32 block"
    session = pyvisa.ResourceManager("@py").open_resource(
        meter_resource, read_termination="\n", write_termination="\n", timeout=30000
    )
    try:
        data = benchmark.pedantic(
            session.query_binary_values,
            args=(COMMAND,),
            kwargs={"datatype": "f", "container": np.array},
            rounds=5,
            iterations=1,
        )
    finally:
        session.close()
    assert data.shape == (POINTS,)
    benchmark.extra_info["MB_per_s"] = 4.0 / benchmark.stats.stats.mean
