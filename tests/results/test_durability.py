"""Durability on SQLite and PostgreSQL: eight processes writing at once lose no rows; kill -9 in
the middle of a run leaves a store that opens, holds every completed step whole, and shows the
run incomplete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from station.results import open_store
from station.results.store import database_url

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, RUNS, STEPS, MEASUREMENTS = 8, 4, 3, 150


def _worker(url: str, folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.results.worker", url, str(folder), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    finally:
        engine.dispose()


def test_eight_processes_writing_at_once_lose_no_rows(store_url: str, tmp_path: Path) -> None:
    # no store exists yet: the eight also race to create the schema
    workers = [
        _worker(store_url, tmp_path, "write", f"st-{i}", str(RUNS), str(STEPS), str(MEASUREMENTS))
        for i in range(PROCESSES)
    ]
    for worker in workers:
        _out, err = worker.communicate(timeout=110)
        assert worker.returncode == 0, err
    with open_store(store_url) as store:
        runs = store.runs()
        assert len(runs) == PROCESSES * RUNS and runs["complete"].all()
        assert set(runs["outcome"]) == {"PASS"}
        assert len(store.stations()) == PROCESSES
    assert _count(store_url, "steps") == PROCESSES * RUNS * STEPS
    assert _count(store_url, "measurements") == PROCESSES * RUNS * STEPS * MEASUREMENTS


def test_kill_9_mid_run_keeps_the_completed_steps_and_marks_the_run_incomplete(
    store_url: str, tmp_path: Path
) -> None:
    worker = _worker(store_url, tmp_path, "hang")
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "in step 3"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    with open_store(store_url) as store:
        run = store.runs().iloc[0]
        assert not run["complete"] and pd.isna(run["outcome"]) and pd.isna(run["ended_at"])
        steps = store.steps(run["run_id"])
        assert steps["name"].tolist() == ["s0", "s1"]
        frame = store.measurements(run_id=run["run_id"])
        assert frame.groupby("step").size().to_dict() == {"s0": 100, "s1": 100}


def test_kill_9_at_any_moment_leaves_whole_steps_only(store_url: str, tmp_path: Path) -> None:
    worker = _worker(store_url, tmp_path, "stream")
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while _count(store_url, "steps") < 20 and time.monotonic() < deadline:
            time.sleep(0.02)  # kill while steps are still being committed
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        _out, err = worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL, err  # killed mid-run, not finished
    with open_store(store_url) as store:
        run = store.runs().iloc[0]
        assert not run["complete"]
        steps = store.steps(run["run_id"])
        assert len(steps) >= 20
        assert steps["step_index"].tolist() == list(range(len(steps)))  # a prefix, no gaps
        per_step = store.measurements(run_id=run["run_id"]).groupby("step").size()
        assert set(per_step) == {50} and len(per_step) == len(steps)  # each step whole
