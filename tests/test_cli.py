"""The `station` command as a user runs it: a whole qualification on the simulated bench in a
separate process, exit codes, bad input, and `station sim serve` reached by a plain VISA client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pyvisa

from station.config import load_station_config
from station.results.store import ResultsStore

STATION = [sys.executable, "-m", "station.cli"]
FAST = ["--time-factor", "0.02"]
PASSING, FAILING = "SIM0001", "SIM0022"  # SIM0022 lane 4 has a degraded laser (README)


def station(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [*STATION, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_passing_module_exits_0_and_is_stored(tmp_path: Path, calibrated_db: Path) -> None:
    db = calibrated_db  # production runs through calibrated paths
    done = station(
        "run",
        "pluggable",
        "--product",
        "800G-DR8",
        "--serial",
        PASSING,
        "--sim",
        "--db",
        str(db),
        *FAST,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "tx_average_power" in done.stdout
    frame = ResultsStore(db).measurements()
    power = frame[frame["measurement"] == "tx_average_power"]
    assert sorted(power["lane"]) == list(range(1, 9))
    assert power["raw_value"].lt(power["value"]).all()  # corrected by the path loss
    run = ResultsStore(db).runs().iloc[0]
    assert (run["outcome"], run["dut_serial"], run["station_id"]) == (
        "PASS",
        PASSING,
        "sim-module-bench-1",
    )
    assert f"run {run['run_id']}" in done.stdout


def test_failing_module_exits_1_and_names_the_lane(tmp_path: Path, calibrated_db: Path) -> None:
    db = calibrated_db  # production runs through calibrated paths
    done = station(
        "run",
        "pluggable",
        "--product",
        "800G-DR8",
        "--serial",
        FAILING,
        "--sim",
        "--db",
        str(db),
        *FAST,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout
    frame = ResultsStore(db).measurements(measurement="tx_average_power")
    failed = frame[frame["outcome"] == "FAIL"]
    assert failed["lane"].tolist() == [4] and failed["value"].iloc[0] < -2.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pluggable", "--product", "800G-DR8", "--serial", "bad serial"], "does not match"),
        (["pluggable", "--product", "400G-FR4", "--serial", "SIM0001"], "known products"),
        (["nosuch", "--product", "800G-DR8", "--serial", "SIM0001"], "no such sequence"),
        (
            [
                "pluggable",
                "--product",
                "800G-DR8",
                "--serial",
                "SIM0001",
                "--station",
                "missing.toml",
            ],
            "missing.toml: file",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "results.sqlite"
    done = station("run", *args, "--sim", "--db", str(db), *FAST, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_sim_serve_answers_an_independent_pyvisa_client(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*STATION, "sim", "serve", *FAST],
        cwd=tmp_path,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        resources = {}
        for line in process.stdout:
            if line.strip() == "READY":
                break
            role, resource = line.split()
            resources[role] = resource
        # every role of the bench, exactly the roles its station config names
        assert set(resources) == set(load_station_config(bench="module").instruments)
        assert resources["module_host"].startswith("ASRL/dev/")
        session = pyvisa.ResourceManager("@py").open_resource(
            resources["power_meter"], read_termination="\n", write_termination="\n"
        )
        try:
            assert session.query("*IDN?").startswith("Keysight Technologies,N7744C")
            session.write("SENS1:POW:UNIT 1")
            assert abs(float(session.query("READ1:POW?"))) < 1e-9  # W, dark: module in low power
        finally:
            session.close()
    finally:
        process.terminate()
        process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


def test_sigterm_mid_run_ends_aborted_with_exit_2_and_safe_state_recorded(
    tmp_path: Path, calibrated_db: Path
) -> None:
    db = calibrated_db  # production runs through calibrated paths
    process = subprocess.Popen(
        [
            *STATION,
            "run",
            "pluggable",
            "--product",
            "800G-DR8",
            "--serial",
            PASSING,
            "--sim",
            "--db",
            str(db),
            "--time-factor",
            "1",
        ],  # real time: power-up takes ~3 s
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "power_up ..." in line:
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, out + err
    assert "ABORTED" in out
    store = ResultsStore(db)
    run = store.runs().iloc[0]
    assert run["outcome"] == "ABORTED" and bool(run["complete"])
    safe = store.attributes(run["run_id"])
    assert safe.loc[safe["name"] == "safe_state", "value"].iloc[0].startswith("module_host")


def test_three_sites_at_once_each_with_its_own_verdict(tmp_path: Path, calibrated_db: Path) -> None:
    db = calibrated_db  # production runs through calibrated paths
    done = station(
        "run",
        "pluggable",
        "--product",
        "800G-DR8",
        "--sites",
        "3",
        "--serial",
        PASSING,
        "--serial",
        FAILING,
        "--serial",
        "SIM0003",
        "--sim",
        "--db",
        str(db),
        *FAST,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # one site failed, none errored
    runs = ResultsStore(db).runs().sort_values("site")
    assert runs["dut_serial"].tolist() == [PASSING, FAILING, "SIM0003"]
    assert runs["outcome"].tolist() == ["PASS", "FAIL", "PASS"]
    assert f"site 2 {FAILING}" in done.stdout


def test_corners_reach_the_sequence_and_one_it_does_not_offer_is_bad_input(
    tmp_path: Path, calibrated_db: Path
) -> None:
    db = calibrated_db  # production runs through calibrated paths
    args = ["run", "pluggable", "--product", "800G-DR8", "--serial", PASSING, "--sim"]
    done = station(*args, "--db", str(db), "--corners", "25,85", *FAST, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "offers 25, 0, 70 degC" in done.stdout
    typo = station(*args, "--db", str(db), "--corners", "25,x", *FAST, cwd=tmp_path)
    assert typo.returncode == 2 and "is not a list like 0,25,70" in typo.stderr
