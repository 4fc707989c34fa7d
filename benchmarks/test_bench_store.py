"""Results store: ingest rate into SQLite against raw sqlite3.executemany on the same rows, the
1,000-die x 30-measurement wafer query, and a run report (HTML and PNGs) of a module run.

Run: pytest benchmarks/test_bench_store.py -m benchmark --benchmark-enable -s
(python benchmarks/store_bench.py prints the ingest comparison as a table)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.store_bench import (
    DIES,
    MEASUREMENTS,
    PER_DIE,
    _events,
    ingest_ours,
    ingest_raw,
    query_s,
    wafer_store,
)
from station.results import ResultsStore
from station.results.report import run_report
from tests.results.helpers import eye_arrays, run, waterfall_arrays

pytestmark = pytest.mark.benchmark

MIN_INGEST_PER_S = 200_000
MAX_QUERY_S = 0.100
MAX_REPORT_S = 2.0
ROOT = Path(__file__).resolve().parents[1]


def test_ingest_into_sqlite_against_raw_executemany(tmp_path: Path) -> None:
    """Best of five each (the machine is shared: the best run is the one least disturbed)."""
    events = _events("R1", MEASUREMENTS)
    ours = [ingest_ours(tmp_path, events, f"o{i}") for i in range(5)]
    raw = [ingest_raw(tmp_path, events, f"r{i}") for i in range(5)]
    print(
        f"\ningest {MEASUREMENTS:,} measurements, best (median) of 5: ours "
        f"{MEASUREMENTS / min(ours):,.0f}/s ({MEASUREMENTS / statistics.median(ours):,.0f}/s), "
        f"raw sqlite3.executemany {MEASUREMENTS / min(raw):,.0f}/s "
        f"({MEASUREMENTS / statistics.median(raw):,.0f}/s), time ratio ours/raw "
        f"{min(ours) / min(raw):.2f} ({statistics.median(ours) / statistics.median(raw):.2f})"
    )
    assert MEASUREMENTS / min(ours) >= MIN_INGEST_PER_S


@pytest.fixture(scope="module")
def wafer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResultsStore]:
    store = wafer_store(tmp_path_factory.mktemp("wafer"))
    yield store
    store.close()


def test_a_wafer_query_into_a_dataframe(benchmark, wafer: ResultsStore) -> None:  # type: ignore[no-untyped-def]
    query_s(wafer)  # warm: the first query also compiles the statements
    benchmark.pedantic(query_s, args=(wafer,), rounds=15, iterations=1)
    best, median = benchmark.stats.stats.min, benchmark.stats.stats.median
    print(f"\n{DIES} dies x {PER_DIE}: best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms")
    assert best < MAX_QUERY_S


def _module_run(store: ResultsStore, folder: Path) -> str:
    """An 8-lane module run with an eye and a BER waterfall per lane."""
    from station.engine import StepContext
    from station.sequence import step
    from tests.results.helpers import limits_file

    @step(measures=("tdecq", "rx_sensitivity_oma"))
    def lanes(ctx: StepContext) -> None:
        for lane in range(1, 9):
            ctx.artefact("eye", eye_arrays(lane % 4), lane=lane, kind="eye")
            ctx.artefact("waterfall", waterfall_arrays(0.2 * lane), lane=lane, kind="waterfall")
            ctx.measure("tdecq", 1.5, unit="dB", lane=lane)
            ctx.measure("rx_sensitivity_oma", -6.0, unit="dBm", lane=lane)

    limits = limits_file(
        folder,
        "MOD-B",
        {
            "tdecq": {"high": 3.4, "unit": "dB", "per_lane": True},
            "rx_sensitivity_oma": {"high": -4.4, "unit": "dBm", "per_lane": True},
        },
    )
    return run(store, limits, (lanes,), "M0001").run_id


def test_a_run_report(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = _module_run(store, tmp_path)
    store.flush()
    seconds = []
    for i in range(3):
        started = time.perf_counter()
        report = run_report(store, run_id, tmp_path / f"out{i}")
        seconds.append(time.perf_counter() - started)
    store.close()
    command = [
        sys.executable,
        "-m",
        "station.cli",
        "report",
        run_id,
        "--db",
        str(tmp_path / "r.sqlite"),
        "--out",
        str(tmp_path / "cli"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    cli_s = time.perf_counter() - started
    print(
        f"\nrun report ({len(report.images)} PNGs): in process median "
        f"{statistics.median(seconds):.2f} s; `station report` command {cli_s:.2f} s"
    )
    # the command adds the interpreter and its imports (pandas, SQLAlchemy, matplotlib and the
    # station package: about 1.2-1.5 s here), which no report can shorten: it is reported, not held
    assert statistics.median(seconds) < MAX_REPORT_S
