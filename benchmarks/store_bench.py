"""Results-store benchmarks: ingest into SQLite side by side with raw sqlite3.executemany on the
same rows, a 1,000-die x 30-measurement wafer query into a DataFrame, and a run report.

Run: python benchmarks/store_bench.py [--repeat 5]   (pytest: benchmarks/test_bench_store.py)
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from station.events import LimitRecord, MeasurementRecorded, RunStarted, StepEnded, StepStarted
from station.outcome import Outcome
from station.results import ResultsStore

MEASUREMENTS = 200_000
BATCH = 10_000  # measurements per step: one executemany per step
DIES, PER_DIE = 1_000, 30
_INSERT = (
    "INSERT INTO measurements (run_id, step, name, lane, attempt, value, outcome, marginal, "
    "raw_value, correction_db, die_x, die_y, recorded_at_ns) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _raw_row(m: MeasurementRecorded) -> tuple[object, ...]:
    """The row of `_INSERT` for one event, in plain types (the baseline binds no adapters)."""
    return (m.run_id, m.step, m.name, m.lane, m.attempt, m.value, m.outcome.value,
            int(m.marginal), m.raw_value, m.correction_db, m.die_x, m.die_y, m.at_ns)  # fmt: skip


def _events(run_id: str, count: int) -> list[MeasurementRecorded]:
    """The events the engine would emit for `count` judged per-lane wafer measurements."""
    return [
        MeasurementRecorded(
            run_id,
            f"s{i // BATCH}",
            f"m{i % PER_DIE:02d}",
            1.0 + i * 1e-6,
            "V",
            1 + i % 8,
            Outcome.PASS,
            False,
            0.0,
            10.0,
            None,
            1,
            None,
            None,
            i // PER_DIE % 40,
            i // PER_DIE // 40,
            1_700_000_000_000_000_000 + i,
        )
        for i in range(count)
    ]


def _run_started(run_id: str) -> RunStarted:
    limits = tuple(
        LimitRecord(f"m{j:02d}", "V", 0.0, 10.0, None, True, None, "bench") for j in range(PER_DIE)
    )
    return RunStarted(run_id, "bench", "BENCH", "W1", 1, "bench", "op", "0", "b.toml", "0" * 64,
                      "production", (), limits, lot_id="L1", wafer_id=run_id)  # fmt: skip


def ingest_ours(folder: Path, events: list[MeasurementRecorded], tag: str) -> float:
    """Seconds to persist the events through the store (as subscriber), committed."""
    store = ResultsStore(folder / f"ours-{tag}.sqlite")
    run_id = events[0].run_id
    store(_run_started(run_id))
    store.flush()
    started = time.perf_counter()
    for first in range(0, len(events), BATCH):
        index = first // BATCH
        store(StepStarted(run_id, f"s{index}", index))
        for event in events[first : first + BATCH]:
            store(event)
        store(StepEnded(run_id, f"s{index}", index, Outcome.PASS, None, 0.0))
    store.flush()
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def ingest_raw(folder: Path, events: list[MeasurementRecorded], tag: str) -> float:
    """Seconds for raw sqlite3.executemany of the same rows into the same schema, same pragmas,
    one commit per batch (the rows are built before the clock starts)."""
    path = folder / f"raw-{tag}.sqlite"
    ResultsStore(path).close()  # the same tables and indexes
    rows = [_raw_row(event) for event in events]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "INSERT INTO runs (run_id, sequence, product, dut_serial, site, station_id, operator, "
        "software_version, mode, limits_path, limits_sha256, started_at, complete) "
        "VALUES (?, 'b', 'B', 'W', 1, 's', 'o', '0', 'p', 'l', 'h', '2026-01-01 00:00:00', 0)",
        (events[0].run_id,),
    )
    conn.commit()
    started = time.perf_counter()
    for first in range(0, len(rows), BATCH):
        conn.executemany(_INSERT, rows[first : first + BATCH])
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def wafer_store(folder: Path) -> ResultsStore:
    """A store holding one 1,000-die x 30-measurement wafer run ("WQ")."""
    store = ResultsStore(folder / "wafer.sqlite")
    events = _events("WQ", DIES * PER_DIE)
    store(_run_started("WQ"))
    for first in range(0, len(events), BATCH):
        index = first // BATCH
        for event in events[first : first + BATCH]:
            store(event)
        store(StepEnded("WQ", f"s{index}", index, Outcome.PASS, None, 0.0))
    store.flush()
    return store


def query_s(store: ResultsStore) -> float:
    started = time.perf_counter()
    frame = store.measurements(wafer_id="WQ")
    elapsed = time.perf_counter() - started
    assert len(frame) == DIES * PER_DIE
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = _events("R1", MEASUREMENTS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours = [ingest_ours(folder, events, str(i)) for i in range(args.repeat)]
        raw = [ingest_raw(folder, events, str(i)) for i in range(args.repeat)]
        store = wafer_store(folder)
        queries = [query_s(store) for _ in range(max(10, args.repeat))]
        store.close()
    o, r = statistics.median(ours), statistics.median(raw)
    print(
        f"ingest of {MEASUREMENTS:,} measurements in steps of {BATCH:,} (median of {args.repeat})"
    )
    print(f"{'':32}{'seconds':>10}{'rows/s':>14}")
    print(f"{'ResultsStore (event -> commit)':32}{o:10.3f}{MEASUREMENTS / o:14,.0f}")
    print(f"{'raw sqlite3.executemany':32}{r:10.3f}{MEASUREMENTS / r:14,.0f}")
    print(f"ratio ours / raw time: {o / r:.2f}")
    print(f"wafer query {DIES} dies x {PER_DIE}: median {1e3 * statistics.median(queries):.1f} ms,"
          f" best {1e3 * min(queries):.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
