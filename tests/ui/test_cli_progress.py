"""`station run`'s progress: live bars per site on a terminal (steps done, the step in progress,
steps that did not pass printed above them), plain lines elsewhere, and the closing summary."""

from __future__ import annotations

import io

from rich.console import Console

from station.console import (
    LiveProgress,
    ProgressPrinter,
    live_progress,
    result_tables,
    summary_table,
)
from station.engine import RunResult
from station.events import MeasurementRecorded, RunEnded, RunStarted, StepEnded, StepStarted
from station.multisite import SiteResult
from station.outcome import Outcome

STEPS = ("identify_module", "power_up", "tx_optical_25c")


def started(run_id: str, site: int, serial: str) -> RunStarted:
    return RunStarted(
        run_id, "pluggable", "800G-DR8", serial, site, "bench", "op", "0", "l.toml", "sha", "p", ()
    )


def fail(run_id: str) -> MeasurementRecorded:
    return MeasurementRecorded(
        run_id,
        "tx_optical_25c",
        "tx_average_power",
        -3.5,
        "dBm",
        4,
        Outcome.FAIL,
        False,
        -2.9,
        4.0,
        None,
    )


def events() -> list[object]:
    return [
        started("a", 1, "SIM0001"),
        started("b", 2, "SIM0022"),
        StepStarted("a", "identify_module", 0),
        StepStarted("b", "identify_module", 0),
        StepEnded("a", "identify_module", 0, Outcome.PASS, None, 0.1),
        StepEnded("b", "identify_module", 0, Outcome.PASS, None, 0.1),
        StepStarted("b", "tx_optical_25c", 2),
        fail("b"),
        StepEnded("b", "tx_optical_25c", 2, Outcome.FAIL, None, 9.0),
        RunEnded("b", Outcome.FAIL, None),
    ]


def test_a_terminal_gets_live_bars_per_site_and_the_steps_that_did_not_pass() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    progress = live_progress(console, STEPS, 2)
    assert isinstance(progress, LiveProgress)
    with progress:
        for event in events():
            progress(event)
        bars = {task.description: task for task in progress.progress.tasks}
        assert bars["site 1 SIM0001"].completed == 1 and bars["site 1 SIM0001"].total == 3
        assert bars["site 2 SIM0022"].completed == 2
        assert bars["site 2 SIM0022"].fields["measured"] == 1
        assert "FAIL" in bars["site 2 SIM0022"].fields["step"]
    text = out.getvalue()
    assert "site 2 SIM0022 [3] tx_optical_25c FAIL" in text  # printed above the bars
    assert "site 1 SIM0001" in text and "1 measured" in text
    assert "site 1 SIM0001 [1] identify_module PASS" not in text  # passing steps stay quiet


def test_plain_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=140)
    progress = live_progress(console, STEPS, 2)
    assert isinstance(progress, ProgressPrinter)
    with progress:
        for event in events():
            progress(event)
    lines = out.getvalue().splitlines()
    assert "  site 2 [3] tx_optical_25c FAIL (9.00 s)" in lines
    assert not any("\x1b" in line for line in lines)  # no cursor movement, no colour codes


def test_the_summary_has_a_row_per_site_with_its_verdict() -> None:
    measurements = (fail("b"), fail("b"))  # a retried measurement counts once
    results = [
        SiteResult(1, "SIM0001", RunResult("a", Outcome.PASS, None, (), 12.0), None),
        SiteResult(2, "SIM0022", RunResult("b", Outcome.FAIL, None, measurements, 9.5), None),
        SiteResult(3, "SIM0003", None, "RuntimeError('engine')"),
    ]
    out = io.StringIO()
    Console(file=out, width=140).print(summary_table(results))
    rows = {line.split("│")[1].strip(): line for line in out.getvalue().splitlines() if "│" in line}
    assert "PASS" in rows["1"] and "12.0 s" in rows["1"]
    assert "FAIL" in rows["2"] and " 1 " in rows["2"] and "b" in rows["2"]
    assert "ERROR" in rows["3"]


def _lane(step: str, name: str, lane: int | None, value: float | str, attempt: int = 1,
          outcome: Outcome = Outcome.PASS) -> MeasurementRecorded:  # fmt: skip
    return MeasurementRecorded(
        "r1", step, name, value, "dB", lane, outcome, False, None, 3.4, None, attempt=attempt
    )


def test_result_tables_give_each_step_its_own_lanes() -> None:
    measurements = (
        _lane("power_up", "module_vcc", None, 3.3),
        *(_lane("inspect", "jumper_zone_a_defects", n, 0) for n in range(1, 17)),
        *(_lane("tx_optical_25c", "tx_tdecq", n, 1.0 + n / 10) for n in range(1, 9)),
        _lane("tx_optical_25c", "tx_tdecq_scope_delta", 3, 0.2),
        *(_lane("tx_optical_70c", "tx_tdecq", n, 2.0) for n in range(1, 9)),
        _lane("tx_optical_70c", "tx_tdecq", 5, 3.9, attempt=1, outcome=Outcome.FAIL),
        _lane("tx_optical_70c", "tx_tdecq", 5, 2.5, attempt=2),  # the retry's value counts
    )
    tables = result_tables(measurements)
    assert [str(t.title) for t in tables] == [
        "Module",
        "inspect, per lane (* = within the marginal band)",
        "tx_optical_25c, per lane (* = within the marginal band)",
        "tx_optical_70c, per lane (* = within the marginal band)",
    ]
    headers = [[str(c.header) for c in t.columns] for t in tables[1:]]
    assert headers[0][3:] == [*(f"L{n}" for n in range(1, 17)), "result"]
    assert headers[1][3:] == headers[2][3:] == [*(f"L{n}" for n in range(1, 9)), "result"]
    out = io.StringIO()
    Console(file=out, width=140).print(tables[2], tables[3])
    text = out.getvalue()
    assert "tx_tdecq_scope_delta" in text and "1.80" in text  # lane 8 at 25 C
    row = next(line for line in text.splitlines() if "tx_tdecq " in line and "2.50" in line)
    assert "3.90" not in row and "PASS" in row
    assert "…" not in text  # an 8-lane table fits a 140-column terminal without cutting cells
