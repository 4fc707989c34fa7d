"""A simulated bench started by a station process does not outlive it: when the controlling
process dies without stopping the bench (killed, crashed), the bench's control pipe closes and
the bench process ends, freeing its ports instead of lingering as an orphan."""

from __future__ import annotations

import os
import subprocess
import sys
import time

CONTROLLER = """
import os, sys
from station.simbench import SimBenchProcess
bench = SimBenchProcess(time_factor=0.01)
bench.start()
print(bench.process.pid, flush=True)
os._exit(0)  # dies without stopping the bench, as a killed station would
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # a zombie has ended too
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_a_bench_ends_when_its_controlling_process_dies() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CONTROLLER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    bench_pid = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 20
    while _alive(bench_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(bench_pid)
    if alive:  # do not leave it behind even when the test fails
        os.kill(bench_pid, 9)
    assert not alive, f"bench process {bench_pid} outlived its controller"
