"""The report of a simulated shift and the acceptance checks it must pass: yields, UPH,
downtime, outbox deliveries and SPC charts per station; every serial's one final disposition
equal in the MES and the line database, retest limits kept, deliveries exactly once, and the
audit log verifying and reconstructing every change. `verify_shift` is what both the command and
the tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from station.errors import StationError
from station.limits import limits_path, load_limits
from station.mes.outbox import DELIVERED, PENDING
from station.mes.retest import load_retest_policy
from station.results import queries
from station.results.downtime import downtime_frame
from station.security.audit import verify_log
from station.security.changes import (
    limit_fields,
    reconstruct_limits,
)
from station.shift_station import (
    OPERATION,
    PRODUCT,
    SEQUENCE,
    SPC_PARAMETER,
    Line,
    StationWorker,
)


# --- the report -----------------------------------------------------------------------------------
def _records(frame: Any) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def shift_summary(
    line: Line,
    workers: list[StationWorker],
    serials: list[str],
    events: list[dict[str, Any]],
    wall_s: float,
) -> dict[str, Any]:
    plan, lot = line.plan, line.plan.lot_id
    filters = {"sequence": SEQUENCE, "lot_id": lot}
    with line.line_db.engine.connect() as conn:
        by_station = queries.retest_yields(conn, filters, by=("lot_id", "station_id"))
        by_lot = queries.retest_yields(conn, filters, by=("lot_id",))
    stations = {}
    for worker in workers:
        with worker.store.engine.connect() as conn:
            uph = queries.uph(conn, {"sequence": SEQUENCE, "lot_id": lot}, by=("station_id",))
            down = downtime_frame(conn, [worker.station_id])
        down_s = (
            (down["ended_at"].fillna(down["started_at"]) - down["started_at"]).dt.total_seconds()
            if not down.empty
            else down.get("started_at")
        )
        by_reason = (
            down.assign(seconds=down_s).groupby("reason")["seconds"].sum().to_dict()
            if not down.empty
            else {}
        )
        entries = worker.outbox.entries()
        stations[worker.station_id] = {
            "uph": _records(uph),
            "downtime_s": {k: float(v) for k, v in by_reason.items()},
            "outbox": {
                kind: {
                    "delivered": sum(e.state == DELIVERED for e in entries if e.kind == kind),
                    "pending": sum(e.state == PENDING for e in entries if e.kind == kind),
                    "retried": sum(e.attempts > 1 for e in entries if e.kind == kind),
                }
                for kind in sorted({e.kind for e in entries})
            },
            "events": worker.events,
            "failure": worker.failure,
            "spc_chart": str(_spc_chart(worker)),
        }
    return {
        "lot_id": lot,
        "units": plan.units,
        "stations": plan.stations,
        "sites": plan.sites,
        "wall_s": wall_s,
        "lot_uph": len(serials) / (wall_s / 3600.0),
        "yields_by_station": _records(by_station),
        "yields_lot": _records(by_lot),
        "per_station": stations,
        "events": events,
        "line_db": line.line_db.url,
        "audit_log": str(line.audit.path),
        "limits_file": str(line.limits_file) if line.limits_file else None,
        "mes_units": line.mes_units,
        "mes_check_outs": line.mes_check_outs,
    }


def _spc_chart(worker: StationWorker) -> Path | None:
    from station.results.spc_plots import imr_chart  # matplotlib: only when a chart is drawn

    values, _runs = worker.golden_series()
    if worker.spc_limits is None or values.size == 0:
        return None
    figure = imr_chart(values, worker.spc_limits, f"{worker.station_id} {SPC_PARAMETER}", "dBm")
    path = worker.folder / "spc-golden.png"
    figure.savefig(path)
    return path


# --- the acceptance checks --------------------------------------------------------------------
def verify_shift(
    line: Line, workers: list[StationWorker], serials: list[str], summary: dict[str, Any]
) -> list[str]:
    """Every acceptance claim of the shift checked against the MES, the line database, the
    stations' stores and outboxes and the audit log; returns the problems (none: all hold)."""
    problems: list[str] = []
    units = {u["serial"]: u for u in line.mes.lot_view(line.plan.lot_id)["units"]}
    applied = line.mes.check_outs()
    line.mes_units, line.mes_check_outs = list(units.values()), applied
    summary["mes_units"], summary["mes_check_outs"] = line.mes_units, applied
    with line.line_db.engine.connect() as conn:
        runs = queries.runs_frame(conn, {})
    lot_runs = runs[(runs["lot_id"] == line.plan.lot_id) & (runs["sequence"] == SEQUENCE)]
    lot_runs = lot_runs.sort_values(["started_at", "run_id"], kind="stable")
    max_attempts = load_retest_policy().rule(PRODUCT, OPERATION).max_attempts
    for serial in serials:
        mes_final = units.get(serial, {}).get("final_disposition")
        mine = lot_runs[lot_runs["dut_serial"] == serial]
        if mes_final is None:
            problems.append(f"{serial}: no final disposition in the MES")
            continue
        if mine.empty or str(mine["outcome"].iloc[-1]) != mes_final:
            last = None if mine.empty else mine["outcome"].iloc[-1]
            problems.append(f"{serial}: MES final {mes_final}, line database last run {last}")
        if len(mine) > max_attempts:
            problems.append(f"{serial}: {len(mine)} attempts, the limit is {max_attempts}")
    problems += _exactly_once(workers, runs, lot_runs, applied)
    problems += _audit_problems(line, workers)
    problems += _figure_problems(summary, len(serials))
    problems += [f"{w.station_id}: {w.failure}" for w in workers if w.failure]
    problems += [f"event not reached: {e['what']}" for e in summary["events"] if "what" in e]
    problems += [
        f"{e['event']}: {e.get('failure', 'refused')}"
        for e in summary["events"]
        if "failure" in e or e["event"] == "limits_change_refused"
    ]
    return problems


def _downtime_problems(workers: list[StationWorker]) -> list[str]:
    """Every downtime a station ended is in the line database once."""
    problems = []
    for worker in workers:
        with worker.store.engine.connect() as conn:
            local = downtime_frame(conn, [worker.station_id])
        with worker.line.line_db.engine.connect() as conn:
            line = downtime_frame(conn, [worker.station_id])
        ended = local[local["ended_at"].notna()]
        keys = ["reason", "site", "detail", "started_at"]
        mine = sorted(map(str, ended[keys].itertuples(index=False)))
        theirs = sorted(map(str, line[keys].itertuples(index=False)))
        if mine != theirs:
            problems.append(
                f"{worker.station_id}: {len(ended)} downtimes ended, the line database holds "
                f"{len(line)} of them"
            )
    return problems


def _exactly_once(
    workers: list[StationWorker], runs: Any, lot_runs: Any, applied: list[dict[str, Any]]
) -> list[str]:
    problems = []
    keys = [a["idempotency_key"] for a in applied]
    if len(keys) != len(set(keys)):
        problems.append("the MES applied a check-out key more than once")
    if len(applied) != len(lot_runs):
        problems.append(f"MES applied {len(applied)} check-outs for {len(lot_runs)} lot runs")
    station_runs: list[str] = []
    for worker in workers:
        local = worker.store.runs()
        station_runs += local.loc[local["ended_at"].notna(), "run_id"].tolist()
        left = [e.key for e in worker.outbox.entries() if e.state != DELIVERED]
        if left:
            problems.append(f"{worker.station_id}: outbox entries not delivered: {left[:3]}")
    problems += _downtime_problems(workers)
    if sorted(station_runs) != sorted(runs["run_id"]):
        problems.append(
            f"line database holds {len(runs)} runs, the stations finished {len(station_runs)}"
        )
    if sorted(a["run_id"] for a in applied) != sorted(lot_runs["run_id"]):
        problems.append("MES check-outs and the line database's lot runs differ")
    return problems


def _audit_problems(line: Line, workers: list[StationWorker]) -> list[str]:
    problems = []
    try:
        verify_log(line.audit.path)
    except StationError as err:
        return [f"audit log does not verify: {err}"]
    entries = line.audit.entries()
    if line.limits_file is not None:
        base = limit_fields(load_limits(limits_path(PRODUCT)))
        rebuilt = reconstruct_limits(base, entries, PRODUCT)
        if rebuilt != limit_fields(load_limits(line.limits_file)):
            problems.append("the audit log does not reconstruct the limits in force")
    for worker in workers:
        subject = f"station:{worker.station_id}"
        kinds = [e["action"] for e in entries if e["subject"] == subject]
        if kinds.count("lock") != kinds.count("unlock"):
            problems.append(f"{worker.station_id}: locks and unlocks do not pair up: {kinds}")
    if not any(e["action"] == "lock" for e in entries):
        problems.append("no station was locked by SPC")
    return problems


def _figure_problems(summary: dict[str, Any], units: int) -> list[str]:
    problems = []
    lot = summary["yields_lot"]
    if len(lot) != 1 or lot[0]["units"] != units:
        problems.append(f"lot yields cover {lot[0]['units'] if lot else 0} of {units} units")
    for row in summary["yields_by_station"] + lot:
        fpy, final = row["first_pass_yield"], row["final_yield"]
        if not 0.0 <= fpy <= final <= 1.0:
            problems.append(f"yields out of order: first pass {fpy}, final {final}")
    for station, figures in summary["per_station"].items():
        if not figures["uph"] or not figures["uph"][0]["uph"] > 0:
            problems.append(f"{station}: no UPH")
    return problems


def print_report(summary: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"shift report: lot {summary['lot_id']}, {summary['wall_s']:.0f} s")
    for column in ("group", "units", "runs", "first pass", "final", "retest rate", "UPH"):
        table.add_column(column)
    rows = [(r["station_id"], r) for r in summary["yields_by_station"]]
    rows += [("lot", r) for r in summary["yields_lot"]]
    for name, row in rows:
        figures = summary["per_station"].get(name, {}).get("uph") or [{}]
        uph = figures[0].get("uph", summary["lot_uph"] if name == "lot" else float("nan"))
        table.add_row(
            name, str(row["units"]), str(row["runs"]), f"{row['first_pass_yield']:.1%}",
            f"{row['final_yield']:.1%}", f"{row['retest_rate']:.1%}", f"{uph:.1f}",
        )  # fmt: skip
    console.print(table)
    for station, figures in summary["per_station"].items():
        down = ", ".join(f"{k} {v:.1f} s" for k, v in figures["downtime_s"].items()) or "none"
        console.print(f"{station}: downtime {down}; outbox {figures['outbox']}", markup=False)
        console.print(f"{station}: SPC chart {figures['spc_chart']}", markup=False)
    for event in summary["events"]:
        console.print(f"event: {event}", markup=False)
