"""What the CLI shows: live step progress while a run goes, and the result table at its end.

Rich renders colour, live progress bars and tables on a terminal and plain text elsewhere (logs,
CI): one line per step as it starts and ends.
"""

from __future__ import annotations

import select
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from station.engine import Prompter
from station.events import (
    MeasurementRecorded,
    PromptAnswered,
    PromptRequested,
    RunEnded,
    RunStarted,
    StepEnded,
    StepStarted,
)
from station.multisite import SiteResult
from station.outcome import Outcome

STYLE = {
    Outcome.PASS: "green",
    Outcome.FAIL: "bold red",
    Outcome.ERROR: "bold magenta",
    Outcome.ABORTED: "bold yellow",
}


class ProgressPrinter:
    """Subscriber: one line per step as it starts and ends."""

    def __init__(self, console: Console, multi_site: bool = False) -> None:
        self.console = console
        self.multi_site = multi_site
        self._site: dict[str, str] = {}  # run id -> "site N " prefix

    def __call__(self, event: object) -> None:
        if isinstance(event, RunStarted):
            self._site[event.run_id] = f"site {event.site} " if self.multi_site else ""
            self.console.print(
                f"{self._site[event.run_id]}run {event.run_id}: {event.sequence} {event.product} "
                f"serial {event.dut_serial} on {event.station_id}"
            )
        elif isinstance(event, StepStarted):
            site = self._site.get(event.run_id, "")
            self.console.print(f"  {site}[{event.index + 1}] {event.step} ...", highlight=False)
        elif isinstance(event, StepEnded):
            site = self._site.get(event.run_id, "")
            text = Text(f"  {site}[{event.index + 1}] {event.step} ")
            text.append(str(event.outcome), style=STYLE[event.outcome])
            text.append(f" ({event.duration_s:.2f} s)")
            if event.error:
                text.append(f"  {event.error}", style="magenta")
            self.console.print(text)

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class ProgressDisplay(Protocol):
    """A bus subscriber that is also entered around the run (to start and stop its display)."""

    def __call__(self, event: object) -> None: ...
    def __enter__(self) -> ProgressDisplay: ...
    def __exit__(self, *exc: object) -> None: ...


class LiveProgress:
    """Subscriber for a terminal: one live bar per site (steps done of the run's steps, the step
    in progress, measurements so far); steps that do not pass are printed above the bars."""

    def __init__(self, console: Console, steps: Sequence[str]) -> None:
        self.console = console
        self.total = len(steps)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[step]}"),
            TextColumn("[dim]{task.fields[measured]} measured"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=8,
        )
        self._tasks: dict[str, TaskID] = {}  # run id -> its site's bar
        self._label: dict[str, str] = {}
        self._measured: dict[str, int] = {}

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: object) -> None:
        if isinstance(event, RunStarted):
            label = f"site {event.site} {event.dut_serial}"
            self._label[event.run_id] = label
            self._measured[event.run_id] = 0
            self._tasks[event.run_id] = self.progress.add_task(
                label, total=self.total, step="", measured=0
            )
            return
        task = self._tasks.get(getattr(event, "run_id", ""))
        if task is None:
            return
        if isinstance(event, StepStarted):
            self.progress.update(task, step=f"[{event.index + 1}] {event.step}")
        elif isinstance(event, MeasurementRecorded):
            self._measured[event.run_id] += 1
            self.progress.update(task, measured=self._measured[event.run_id])
        elif isinstance(event, StepEnded):
            self.progress.advance(task)
            if event.outcome != Outcome.PASS:
                text = Text(f"  {self._label[event.run_id]} [{event.index + 1}] {event.step} ")
                text.append(str(event.outcome), style=STYLE[event.outcome])
                if event.error:
                    text.append(f"  {event.error}", style="magenta")
                self.progress.console.print(text)
        elif isinstance(event, RunEnded):
            self.progress.update(task, step=f"[{STYLE[event.outcome]}]{event.outcome}[/]")
        elif isinstance(event, PromptRequested):
            self.progress.stop()  # the operator answers on this terminal: no redraws meanwhile
        elif isinstance(event, PromptAnswered):
            self.progress.start()


def live_progress(console: Console, steps: Sequence[str], sites: int) -> ProgressDisplay:
    """Live bars on a terminal; plain lines per step anywhere else (logs, pipes, CI)."""
    if console.is_terminal:
        return LiveProgress(console, steps)
    return ProgressPrinter(console, sites > 1)


def summary_table(results: Sequence[SiteResult]) -> Table:
    """One row per site: serial, verdict, measurements outside their limits, run, duration."""
    table = Table(title="Summary", title_justify="left")
    for column in ("site", "serial", "result", "not passed", "run", "duration"):
        table.add_column(column, justify="right" if column == "duration" else "left")
    for site in results:
        result = site.result
        if result is None:
            table.add_row(str(site.site), site.serial, verdict(Outcome.ERROR), "", "", "")
            continue
        final = {(m.step, m.name, m.lane): m.outcome for m in result.measurements}  # last try
        failing = [key for key, outcome in final.items() if outcome != Outcome.PASS]
        table.add_row(
            str(site.site),
            site.serial,
            verdict(result.outcome),
            str(len(failing)),
            result.run_id,
            f"{result.duration_s:.1f} s",
        )
    return table


def format_value(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"


def _cell(m: MeasurementRecorded) -> Text:
    value = format_value(m.value)
    style = STYLE[m.outcome] if m.outcome != Outcome.PASS else ("yellow" if m.marginal else "")
    return Text(str(value) + ("*" if m.marginal else ""), style=style)


def _limit(m: MeasurementRecorded) -> str:
    if m.expected is not None:
        return m.expected
    if m.low_limit is not None and m.high_limit is not None:
        return f"{m.low_limit:g} .. {m.high_limit:g}"
    return f">= {m.low_limit:g}" if m.low_limit is not None else f"<= {m.high_limit:g}"


def result_tables(measurements: tuple[MeasurementRecorded, ...]) -> list[Table]:
    """A table of scalar measurements, then one per step of its per-lane measurements (lanes as
    columns): a step's lanes are the module's optical lanes or, for an end-face inspection, the
    connector's fibres, and a measurement taken at several temperature corners appears once
    per corner step."""
    final: dict[tuple[str, str, int | None], MeasurementRecorded] = {}
    for m in measurements:  # a retried step's last attempt is the one that counts
        final[(m.step, m.name, m.lane)] = m
    scalars = [m for m in final.values() if m.lane is None]
    per_step: dict[str, dict[str, dict[int, MeasurementRecorded]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for m in final.values():
        if m.lane is not None:
            per_step[m.step][m.name][m.lane] = m
    tables = []
    if scalars:
        table = Table(title="Module", title_justify="left")
        for column in ("measurement", "value", "unit", "limit", "result"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for m in scalars:
            table.add_row(
                m.name, _cell(m), m.unit, _limit(m), Text(str(m.outcome), style=STYLE[m.outcome])
            )
        tables.append(table)
    tables += [_lane_table(step, rows) for step, rows in per_step.items()]
    return tables


def _lane_table(step: str, rows: dict[str, dict[int, MeasurementRecorded]]) -> Table:
    lanes = sorted({lane for row in rows.values() for lane in row})
    table = Table(title=f"{step}, per lane (* = within the marginal band)", title_justify="left")
    table.add_column("measurement", no_wrap=True)
    table.add_column("unit", no_wrap=True, min_width=4)
    table.add_column("limit", no_wrap=True)
    for lane in lanes:
        table.add_column(f"L{lane}", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True, min_width=7)
    for name, row in rows.items():
        first = next(iter(row.values()))
        outcome = max(
            (m.outcome for m in row.values()),
            key=[Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.ABORTED].index,
        )
        table.add_row(
            name,
            first.unit,
            _limit(first),
            *[_cell(row[lane]) if lane in row else Text("-") for lane in lanes],
            Text(str(outcome), style=STYLE[outcome]),
        )
    return table


def verdict(outcome: Outcome) -> Text:
    return Text(f" {outcome} ", style=f"{STYLE[outcome]} reverse")


def terminal_prompter(console: Console) -> Prompter:
    """Ask operator prompts on the terminal: Enter takes the first choice."""

    def ask(request: PromptRequested, abort: threading.Event) -> str | None:
        choices = "/".join(request.choices)
        console.print(f"[bold]OPERATOR:[/bold] {request.message} [{choices}] ", end="")
        deadline = time.monotonic() + request.timeout_s
        while not abort.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                ready, _, _ = select.select([sys.stdin], [], [], min(left, 0.2))
            except (OSError, ValueError):  # no usable standard input: nobody can answer
                abort.wait(left)
                break
            if not ready:
                continue
            line = sys.stdin.readline()
            if not line:  # end of input: nobody will answer
                break
            answer = line.strip() or request.choices[0]
            match = [c for c in request.choices if c.lower() == answer.lower()]
            if match:
                return match[0]
            console.print(f"  please answer one of {choices}: ", end="")
        console.print("(no answer)")
        return None

    return ask
