"""The real-hardware tier runs: pointed at a station config it opens and checks every instrument
the config names. Here the config's resource strings are those of a simulated bench process, so
the tier itself is exercised on every run (it would otherwise only run beside real hardware)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from station.config import default_config_path
from station.simbench import SimBenchProcess

ROOT = Path(__file__).resolve().parents[1]


def _with_resources(config_text: str, resources: dict[str, str], serials: dict[str, str]) -> str:
    """The station config with each instrument's resource (and any serial in `serials`)
    replaced, as a line would edit it by hand."""
    lines, role = [], None
    for line in config_text.splitlines():
        header = re.match(r"\[instruments\.(\w+)\]", line)
        if header or line.startswith("["):
            role = header.group(1) if header else None
        elif role in resources and line.startswith("resource ="):
            line = f'resource = "{resources[role]}"'
        elif role in serials and line.startswith("serial_number ="):
            line = f'serial_number = "{serials[role]}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def _run_tier(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "hardware", "--hardware", str(config),
         "-p", "no:cacheprovider", "-q", "-rA", str(ROOT / "tests" / "hardware")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sim_resources() -> dict[str, str]:
    with SimBenchProcess(bench="module", dut_serial="SIM0001", time_factor=0.05) as sim:
        yield sim.resources


def test_the_tier_checks_every_instrument_of_the_config(
    sim_resources: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "station.toml"
    config.write_text(_with_resources(default_config_path().read_text(), sim_resources, {}))
    done = _run_tier(config)
    assert done.returncode == 0, done.stdout[-3000:]
    for role in sim_resources:
        assert f"test_identity_matches_the_config[{role}]" in done.stdout
        assert f"test_safe_state_and_plausible_readings[{role}]" in done.stdout
    assert f"{2 * len(sim_resources)} passed" in done.stdout


def test_the_tier_fails_on_an_instrument_that_is_not_the_configured_one(
    sim_resources: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "station.toml"
    text = _with_resources(
        default_config_path().read_text(), sim_resources, {"power_meter": "MY00000000"}
    )
    config.write_text(text)
    done = _run_tier(config)
    assert done.returncode == 1
    assert "test_identity_matches_the_config[power_meter]" in done.stdout
    assert "names serial MY00000000" in done.stdout


def test_without_the_option_hardware_tests_are_skipped() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "hardware", "-p", "no:cacheprovider", "-q", "-rs",
         str(ROOT / "tests" / "hardware")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert "2 skipped" in done.stdout and "passed" not in done.stdout  # no config: no roles
