"""Wafer outputs of a pic-wafer run, from the results store: the bin map and maps of chosen
measurements (PNG and CSV), yield with the Pareto of failing measurements, Cpk per measurement.

Bins, yield, Pareto, Cpk and the die grid come from station.analysis.yields; the measurement maps
and the Pareto chart are station.results.plots'; the bin map (soft bins by name, which the
report's outcome-coloured map does not show) is drawn here, headless (matplotlib Agg).

    python -m station.wafer_outputs <run id> [--db station-results.sqlite] [--out wafer]
           [--map coupler_peak_il --map ring_resonance_wavelength ...]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from station.analysis.yields import assign_bins, capability, pareto, wafer_map, yield_by
from station.limits import LimitsFile, load_limits
from station.results import plots
from station.results.store import DEFAULT_DB, ResultsStore

DIE = ("die_x", "die_y")
DEFAULT_MAPS = ("coupler_peak_il", "ring_resonance_wavelength", "pd_dark_current")
#: soft-bin colours: PASS green, then one colour per failing or error bin (colour-blind safe set)
_PASS_COLOUR = "#1b9e77"
_OTHER_COLOURS = ("#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")


@dataclass
class WaferOutputs:
    dies: pd.DataFrame  # die_x, die_y, hard_bin, soft_bin, bin_name
    yield_summary: pd.DataFrame  # per wafer: n_units, n_pass, n_fail, n_error, yield_fraction
    bins: pd.DataFrame  # per bin: hard_bin, soft_bin, bin_name, dies, percent
    pareto: pd.DataFrame  # failing dies per measurement, largest first
    capability: pd.DataFrame  # per measurement: n, mean, sigma, limits, cpk, ppk
    files: list[Path] = field(default_factory=list)


def die_bins(tidy: pd.DataFrame, limits: LimitsFile) -> pd.DataFrame:
    """Every die's bins by the product's ordered bin table (assign_bins on wide outcomes: one
    column per limit, so a measurement a die never got counts as missing)."""
    wide = tidy.pivot_table(
        index=list(DIE), columns="measurement", values="outcome", aggfunc=_worst
    ).reindex(columns=list(limits.limits))
    wide = wide.astype(object).where(wide.notna(), None)
    binned = assign_bins(wide, limits.bins)
    return binned.reset_index()


def wafer_outputs(
    store: ResultsStore,
    run_id: str,
    out_dir: str | Path | None = None,
    maps: tuple[str, ...] = DEFAULT_MAPS,
    limits: LimitsFile | None = None,
) -> WaferOutputs:
    """The outputs of run `run_id`; with `out_dir`, also written there as PNG and CSV."""
    found = store.runs(run_id=run_id)
    if found.empty:
        raise LookupError(f"no run {run_id} in {store.url}")
    run = found.iloc[0]
    limits = limits or load_limits(run["limits_path"])
    if limits.sha256 != run["limits_sha256"]:
        raise ValueError(f"{limits.path} is not the limits file run {run_id} was judged by")
    tidy = store.measurements(run_id=run_id)
    tidy = tidy[tidy["die_x"].notna()].sort_values("recorded_at", kind="stable")
    dies = die_bins(tidy, limits)
    counts = dies.groupby(["hard_bin", "soft_bin", "bin_name"]).size().rename("dies")
    bins = counts.reset_index().sort_values(["hard_bin", "soft_bin"], ignore_index=True)
    bins["percent"] = 100.0 * bins["dies"] / len(dies)
    unit_keys = ("run_id", *DIE)
    outputs = WaferOutputs(
        dies=dies,
        yield_summary=yield_by(tidy, by=("wafer_id",), unit_keys=unit_keys),
        bins=bins,
        pareto=pareto(tidy, unit_keys=unit_keys),
        capability=capability_table(tidy),
    )
    if out_dir is not None:
        outputs.files = _write(outputs, tidy, Path(out_dir), run, maps)
    return outputs


def capability_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Cpk and Ppk of every measurement with numeric limits, over every die that got a finite
    value (failing dies included: a defect cluster is part of the process), within-sigma from
    the moving range in test order."""
    rows = []
    for name, group in tidy.groupby("measurement", sort=True):
        values = group["value"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        low, high = group["low_limit"].iloc[0], group["high_limit"].iloc[0]
        if values.size < 2 or (pd.isna(low) and pd.isna(high)):
            continue
        result = capability(values, None if pd.isna(low) else low, None if pd.isna(high) else high)
        rows.append(
            {
                "measurement": name,
                "unit": group["unit"].iloc[0],
                "n": values.size,
                "low_limit": low,
                "high_limit": high,
                "mean": float(result.mean),
                "sigma_within": float(result.sigma_within),
                "sigma_overall": float(result.sigma_overall),
                "cpk": float(result.cpk),
                "ppk": float(result.ppk),
            }
        )
    return pd.DataFrame(rows)


def _write(
    outputs: WaferOutputs, tidy: pd.DataFrame, out: Path, run: pd.Series, maps: tuple[str, ...]
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    wafer = run["wafer_id"] if pd.notna(run["wafer_id"]) else run["dut_serial"]
    title = f"{run['product']} {wafer}"
    files = []
    for name, frame in (
        ("dies", outputs.dies),
        ("bins", outputs.bins),
        ("yield", outputs.yield_summary),
        ("pareto", outputs.pareto),
        ("cpk", outputs.capability),
    ):
        files.append(out / f"{name}.csv")
        frame.to_csv(files[-1], index=False)
    files.append(plots.save(bin_map_figure(outputs.dies, f"{title}: soft bins"), out / "bins.png"))
    if not outputs.pareto.empty:
        figure = plots.pareto_chart(outputs.pareto, f"{title}: failing dies per measurement")
        files.append(plots.save(figure, out / "pareto.png"))
    for name in maps:
        rows = tidy[tidy["measurement"] == name]
        if rows.empty:
            continue
        rows[[*DIE, "value", "unit", "outcome"]].to_csv(out / f"map_{name}.csv", index=False)
        files.append(out / f"map_{name}.csv")
        figure = plots.parameter_map(rows, f"{title}: {name}")
        files.append(plots.save(figure, out / f"map_{name}.png"))
    return files


def bin_map_figure(dies: pd.DataFrame, title: str) -> Figure:
    """Soft bin of every die on the die grid, named in the legend."""
    names = dies.drop_duplicates("soft_bin").sort_values("soft_bin")
    order = names["soft_bin"].to_numpy(int).tolist()
    colours = [
        _PASS_COLOUR if name == "PASS" else _OTHER_COLOURS[i % len(_OTHER_COLOURS)]
        for i, name in enumerate(names["bin_name"])
    ]
    code = dies["soft_bin"].map({b: i for i, b in enumerate(order)}).to_numpy(float)
    grid = wafer_map(dies["die_x"].to_numpy(int), dies["die_y"].to_numpy(int), code)
    figure = Figure(figsize=(7.5, 6.0), dpi=plots.DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.imshow(
        grid.values,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=len(order) - 0.5,
        origin="lower",  # as station.results.plots draws its maps: one orientation for all
        extent=(grid.x[0] - 0.5, grid.x[-1] + 0.5, grid.y[0] - 0.5, grid.y[-1] + 0.5),
        interpolation="nearest",
    )
    counts = dies["soft_bin"].value_counts()
    for colour, (_, row) in zip(colours, names.iterrows(), strict=True):
        label = f"{row['soft_bin']} {row['bin_name']} ({counts[row['soft_bin']]})"
        ax.scatter([], [], marker="s", s=60, color=colour, label=label)
    figure.legend(loc="outside right upper", fontsize="small")
    ax.set_xlabel("die x")
    ax.set_ylabel("die y")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize="medium")
    return figure


def _worst(outcomes: pd.Series) -> str:
    present = set(outcomes)
    return next(o for o in ("ERROR", "FAIL", "PASS") if o in present or o == "PASS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m station.wafer_outputs")
    parser.add_argument("run_id")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--out", default="wafer")
    parser.add_argument("--map", action="append", dest="maps", metavar="MEASUREMENT")
    args = parser.parse_args(argv)
    with ResultsStore(args.db) as store:
        outputs = wafer_outputs(store, args.run_id, args.out, tuple(args.maps or DEFAULT_MAPS))
    print(outputs.yield_summary.to_string(index=False))
    print(outputs.bins.to_string(index=False))
    print(outputs.capability[["measurement", "n", "cpk", "ppk"]].to_string(index=False))
    print(f"{len(outputs.files)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
