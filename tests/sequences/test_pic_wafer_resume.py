"""Durability of wafer runs through the real command line: `station run pic-wafer ... --sim` is
killed with SIGKILL at a random die (station and simulator process group, as a power cut or a
crashed PC would), then `--resume <run id>` finishes it. The dies tested must be exactly those of
an uninterrupted run of the same wafer, each recorded once (slow: three runs of 204 dies). And
`--resume` refuses, before touching an instrument, a run it cannot continue.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sequences.pic_wafer_map import die_key, load_die_map
from station import cli
from station.events import RunEnded, RunStarted
from station.limits import limits_path, load_limits
from station.outcome import Outcome
from station.results.store import ResultsStore

REPO = Path(__file__).resolve().parents[2]
PRODUCT = "CPO-PIC-A1"
WAFER = "W02"
TIME_FACTOR = "0.002"


def _command(db: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "station.cli", "run", "pic-wafer", "--product", PRODUCT,
        "--serial", WAFER, "--lot", "LOT9", "--sim", "--time-factor", TIME_FACTOR,
        "--db", str(db), *extra,
    ]  # fmt: skip


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def _units(db: Path) -> int:
    try:
        return int(_query(db, "SELECT count(*) FROM units")[0][0])
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_killed_at_a_random_die_resumes_to_the_dies_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    dies = load_die_map(PRODUCT).dies
    kill_after = random.Random().randint(5, len(dies) - 30)
    killed_db, whole_db = tmp_path / "killed.sqlite", tmp_path / "whole.sqlite"

    process = subprocess.Popen(
        _command(killed_db),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the simulator goes down with it
    )
    try:
        deadline = time.monotonic() + 300
        while _units(killed_db) < kill_after:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run does not progress"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    (run_id, complete), *others = _query(killed_db, "SELECT run_id, complete FROM runs")
    assert not others and not complete  # the process died in the middle of the wafer
    done_before = _units(killed_db)
    assert kill_after <= done_before < len(dies), f"killed after {kill_after} dies"

    resumed = subprocess.run(
        _command(killed_db, "--resume", run_id), cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert resumed.returncode in (0, 1), resumed.stdout + resumed.stderr
    assert f"{len(dies) - done_before} dies tested in this session" in resumed.stdout
    whole = subprocess.run(
        _command(whole_db), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert whole.returncode in (0, 1), whole.stdout + whole.stderr

    tested = [row[0] for row in _query(killed_db, "SELECT unit FROM units")]
    uninterrupted = [row[0] for row in _query(whole_db, "SELECT unit FROM units")]
    assert sorted(tested) == sorted(uninterrupted) == sorted(die_key(d) for d in dies)
    assert len(set(tested)) == len(tested)
    repeated = _query(
        killed_db,
        "SELECT die_x, die_y, name, count(*) FROM measurements "
        "GROUP BY die_x, die_y, name HAVING count(*) > 1",
    )
    assert repeated == [], f"killed after {kill_after} dies: measured twice: {repeated[:5]}"
    measured = "SELECT DISTINCT die_x, die_y FROM measurements ORDER BY die_x, die_y"
    assert _query(killed_db, measured) == _query(whole_db, measured)
    ((outcome, complete),) = _query(killed_db, "SELECT outcome, complete FROM runs")
    assert complete and outcome in ("PASS", "FAIL")


def _stored_run(db: Path, serial: str, *, ended: Outcome | None = None) -> str:
    """A pic-wafer run of `serial` in a new store, as a crashed (or an ended) run leaves it."""
    limits = load_limits(limits_path(PRODUCT))
    with ResultsStore(db) as store:
        started = RunStarted(
            "run0000000000001", "pic-wafer", PRODUCT, serial, 1, "sim-wafer-bench-1", "op",
            "0.1.0", str(limits.path), limits.sha256, "production", (), lot_id="LOT9",
            wafer_id=serial,
        )  # fmt: skip
        store(started)
        if ended is not None:
            store(RunEnded(started.run_id, ended, None))
    return started.run_id


@pytest.mark.parametrize(
    ("serial", "ended", "resume", "problem"),
    [
        (WAFER, None, "nosuchrun", "no such run"),
        ("W03", None, "run0000000000001", "dut_serial"),
        (WAFER, Outcome.FAIL, "run0000000000001", "the run is complete"),
    ],
)
def test_resume_refuses_a_run_it_cannot_continue(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    serial: str,
    ended: Outcome | None,
    resume: str,
    problem: str,
) -> None:
    db = tmp_path / "results.sqlite"
    _stored_run(db, serial, ended=ended)
    command = _command(db, "--resume", resume)[3:]  # argv after `-m station.cli`
    assert cli.main(command) == 2  # refused before any instrument is touched
    assert problem in capsys.readouterr().err
