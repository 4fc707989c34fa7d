"""HTML reports with PNG plots next to them: one per run (`station report`) and one per lot
(`station yield`). Every text taken from the database is HTML-escaped; nothing loads from a network.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from station.analysis.yields import pareto
from station.results import plots
from station.results.artefacts import missing_arrays
from station.results.bins import final_attempts, parts
from station.results.store import ResultsStore

MAX_TABLE_ROWS = 2000  # more measurements than this (a wafer) are summarised per name and lane
DEFAULT_MAPS = 3  # parameter maps per wafer when none are asked for
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%;text-align:left}
th{background:#f2f2f2} .PASS{color:#1b7f5f;font-weight:bold} .FAIL{color:#c0392b;font-weight:bold}
.ERROR,.ABORTED,.INCOMPLETE{color:#6c3fb5;font-weight:bold}
.verdict{font-size:200%} figure{display:inline-block;margin:0 1em 1em 0}
figcaption{font-size:90%;color:#555} img{max-width:100%;border:1px solid #ddd}
"""


#: what a reader needs to know to read a figure of a kind
_NOTES = {
    "endface": ": a panel a fibre, the graded zones dashed, detected defects and scratches "
    "outlined in red, the fibre's grade above it",
}


class ReportError(LookupError):
    """Nothing to report: the run or lot is not in the store."""


@dataclass
class Report:
    path: Path
    images: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _e(value: object) -> str:
    """Text for HTML: escaped; missing values empty; floats in a short form."""
    if value is None or (
        not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)
    ):
        return ""
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    return html.escape(str(value))


def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[:80] or "x"


def _table(
    frame: pd.DataFrame, columns: Sequence[str], outcome_column: str | None = "outcome"
) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in frame[list(columns)].itertuples(index=False):
        cells = []
        for column, value in zip(columns, row, strict=True):
            css = (
                f' class="{_e(value)}"'
                if column == outcome_column and isinstance(value, str)
                else ""
            )
            cells.append(f"<td{css}>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _key_values(pairs: Iterable[tuple[str, object]]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)
        + "</table>"
    )


def _page(title: str, sections: Iterable[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )


def _figure_html(image: Path, caption: str) -> str:
    return (
        f'<figure><img src="{html.escape(quote(image.name))}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


class _Images:
    """Saves figures as <prefix>-<name>.png in the report's folder and keeps their HTML."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder, self.prefix = folder, prefix
        self.paths: list[Path] = []
        self.html: list[str] = []

    def add(self, figure: plots.Figure, name: str, caption: str) -> None:
        path = self.folder / f"{self.prefix}-{_slug(name)}.png"
        plots.save(figure, path)
        self.paths.append(path)
        self.html.append(_figure_html(path, caption))


def _summary(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per measurement and lane: counts by outcome and the value spread (wafer runs)."""
    rows = final_attempts(tidy)
    grouped = rows.groupby(["step", "measurement", "lane"], sort=False, dropna=False)
    table = grouped.agg(
        n=("outcome", "size"),
        n_fail=("outcome", lambda o: int((o == "FAIL").sum())),
        n_error=("outcome", lambda o: int((o == "ERROR").sum())),
        min=("value", "min"),
        median=("value", "median"),
        max=("value", "max"),
        unit=("unit", "first"),
        low_limit=("low_limit", "first"),
        high_limit=("high_limit", "first"),
    )
    return table.reset_index()


def _artefact_plots(store: ResultsStore, run_id: str, images: _Images) -> list[str]:
    """Figures of the run's artefacts by kind; notes on those that cannot be plotted."""
    notes: list[str] = []
    listed = store.artefacts(run_id)
    if listed.empty:
        return notes
    for (step, name, kind), group in listed.groupby(
        ["step", "name", "kind"], sort=False, dropna=False
    ):
        if kind not in plots.KINDS_PLOTTED:
            notes.append(
                f"{step}: {name}: kind {kind if pd.notna(kind) else 'not given'}, not plotted"
            )
            continue
        panels = []
        for row in group.head(plots.MAX_PANELS).itertuples(index=False):
            arrays = store.artefact(artefact_id=int(row.id))
            lacking = missing_arrays(str(kind), arrays)
            if lacking:
                notes.append(f"{step}: {name} lacks arrays {', '.join(lacking)} for kind {kind}")
                continue
            where = [f"lane {row.lane}"] if pd.notna(row.lane) else []
            if pd.notna(row.die_x):
                where.append(f"die ({row.die_x}, {row.die_y})")
            panels.append((", ".join(where) or str(name), arrays, dict(row.metadata)))
        if panels:
            figure = plots.artefact_figure(str(kind), panels, f"{step}: {name}")
            caption = f"{step}: {name} ({kind}){_NOTES.get(str(kind), '')}"
            images.add(figure, f"{step}-{name}", caption)
        if len(group) > plots.MAX_PANELS:
            notes.append(f"{step}: {name}: {len(group) - plots.MAX_PANELS} more not shown")
    return notes


def _map_names(
    tidy: pd.DataFrame, asked: Sequence[str], failing: pd.DataFrame
) -> list[tuple[str, object]]:
    """(measurement, lane) pairs to map: those asked for, else the most failing, else the first."""
    numeric = tidy[tidy["die_x"].notna() & tidy["value"].notna()]
    pairs = list(dict.fromkeys(zip(numeric["measurement"], numeric["lane"], strict=True)))
    if asked:
        return [pair for pair in pairs if pair[0] in asked]
    ranked = [pair for name in failing["measurement"] for pair in pairs if pair[0] == name]
    return list(dict.fromkeys(ranked + pairs))[:DEFAULT_MAPS]


def _wafer_maps(
    tidy: pd.DataFrame, table: pd.DataFrame, images: _Images, wafer: str, maps: Sequence[str]
) -> None:
    dies = table[table["die_x"].notna()]
    if dies.empty:
        return
    images.add(
        plots.bin_map(dies, f"wafer {wafer}: hard bins"), f"{wafer}-bins", f"wafer {wafer}: bins"
    )
    failing = pareto(final_attempts(tidy), unit_keys=("run_id", "die_x", "die_y"))
    rows = final_attempts(tidy)
    for name, lane in _map_names(tidy, maps, failing):
        chosen = rows[(rows["measurement"] == name) & rows["die_x"].notna()]
        chosen = chosen[chosen["lane"].isna()] if pd.isna(lane) else chosen[chosen["lane"] == lane]
        label = name if pd.isna(lane) else f"{name}[{lane}]"
        images.add(
            plots.parameter_map(chosen, f"wafer {wafer}: {label}"),
            f"{wafer}-{label}",
            f"wafer {wafer}: {label}",
        )


def run_report(store: ResultsStore, run_id: str, folder: Path, maps: Sequence[str] = ()) -> Report:
    """Write <folder>/run-<run_id>.html and its PNGs."""
    started = time.perf_counter()
    found = store.runs(run_id=run_id)
    if found.empty:
        raise ReportError(f"no run {run_id!r} in the store")
    run = found.iloc[0]
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"run-{_slug(run_id)}"
    images = _Images(folder, prefix)
    tidy = store.measurements(run_id=run_id)
    notes = _artefact_plots(store, run_id, images)
    wafer = tidy["die_x"].notna().any()
    if wafer:
        _wafer_maps(
            tidy, parts(tidy, found), images, str(run["wafer_id"] or run["dut_serial"]), maps
        )
    verdict = run["outcome"] if run["complete"] else "INCOMPLETE"
    steps = store.steps(run_id)
    steps["duration_s"] = (steps["ended_at"] - steps["started_at"]).dt.total_seconds()
    sections = [
        f"<h1>Run {_e(run_id)}: {_e(run['dut_serial'])}</h1>",
        f'<p class="verdict {_e(verdict)}">{_e(verdict)}</p>',
        _key_values((c, run[c]) for c in found.columns),
        "<h2>Steps</h2>",
        _table(steps, ["step_index", "name", "outcome", "duration_s", "error"]),
        "<h2>Plots</h2>",
        "".join(images.html) or "<p>No plots: the run recorded no artefacts.</p>",
        "".join(f"<p>{_e(note)}</p>" for note in notes),
        "<h2>Measurements</h2>",
    ]
    if wafer or len(tidy) > MAX_TABLE_ROWS:
        summary = _summary(tidy)
        sections.append(_table(summary, list(summary.columns), outcome_column=None))
    else:
        columns = [
            "step",
            "measurement",
            "lane",
            "value",
            "text_value",
            "unit",
            "low_limit",
            "high_limit",
            "expected",
            "outcome",
            "attempt",
            "artefact_id",
        ]
        sections.append(_table(tidy, columns))
    instruments = store.instruments(run_id)
    sections += ["<h2>Instruments</h2>", _table(instruments, list(instruments.columns[1:]), None)]
    attributes = store.attributes(run_id)
    sections += ["<h2>Attributes</h2>", _table(attributes, ["step", "name", "value"], None)]
    path = folder / f"{prefix}.html"
    path.write_text(_page(f"Run {run_id}", sections), encoding="utf-8")
    return Report(path, images.paths, time.perf_counter() - started)


def lot_report(store: ResultsStore, lot_id: str, folder: Path, maps: Sequence[str] = ()) -> Report:
    """Write <folder>/lot-<lot_id>.html: yield per wafer (or product), Pareto, wafer maps."""
    started = time.perf_counter()
    found = store.runs(lot_id=lot_id)
    if found.empty:
        raise ReportError(f"no run of lot {lot_id!r} in the store")
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"lot-{_slug(lot_id)}"
    images = _Images(folder, prefix)
    tidy = store.measurements(lot_id=lot_id)
    table = parts(tidy, found)
    group = table["wafer_id"].where(table["wafer_id"].notna(), table["product"])
    outcomes = pd.crosstab(group.rename("wafer or product"), table["outcome"])
    outcomes["parts"] = outcomes.sum(axis=1)
    outcomes["yield_percent"] = 100.0 * outcomes.get("PASS", 0) / outcomes["parts"]
    outcomes = outcomes.reset_index()
    failing = pareto(final_attempts(tidy), unit_keys=("run_id", "die_x", "die_y"))
    if len(failing):
        images.add(
            plots.pareto_chart(failing, f"lot {lot_id}: failing units per measurement"),
            "pareto",
            f"lot {lot_id}: yield Pareto",
        )
    for wafer_id, rows in tidy[tidy["die_x"].notna()].groupby("wafer_id", sort=False):
        _wafer_maps(rows, table[table["wafer_id"] == wafer_id], images, str(wafer_id), maps)
    total = len(table)
    good = int((table["outcome"] == "PASS").sum())
    sections = [
        f"<h1>Lot {_e(lot_id)}</h1>",
        f"<p>{total} parts, {good} pass: yield {100.0 * good / total if total else 0:.1f} %</p>",
        "<h2>Yield</h2>",
        _table(outcomes, list(outcomes.columns), None),
        "<h2>Plots</h2>",
        "".join(images.html),
        "<h2>Pareto of failing measurements</h2>",
        _table(failing, list(failing.columns), None) if len(failing) else "<p>Nothing failed.</p>",
        "<h2>Runs</h2>",
        _table(
            found,
            [
                "run_id",
                "product",
                "dut_serial",
                "wafer_id",
                "station_id",
                "site",
                "started_at",
                "outcome",
                "complete",
            ],
        ),
    ]
    path = folder / f"{prefix}.html"
    path.write_text(_page(f"Lot {lot_id}", sections), encoding="utf-8")
    return Report(path, images.paths, time.perf_counter() - started)
