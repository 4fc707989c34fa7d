"""PNG plots for the reports, drawn with matplotlib's Agg canvas (headless, no pyplot state):
PAM4 eye density, BER waterfall with its fit, LIV, spectra with resonances, wafer maps, Pareto,
connector end faces with their graded zones and detected defects.

Each renderer takes artefact arrays as station.results.artefacts.KINDS names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from station.analysis.yields import wafer_map

DPI = 100
MAX_PANELS = 16
#: colours of the hard bins (PASS, FAIL, ERROR, ABORTED, INCOMPLETE), colour-blind safe
BIN_COLOURS = {1: "#1b9e77", 2: "#d95f02", 3: "#7570b3", 4: "#666666", 5: "#bbbbbb"}

Panel = tuple[str, dict[str, np.ndarray], dict[str, Any]]  # (title, arrays, metadata)


_SHARED_AXES = ("eye", "spectrum", "waveform", "endface")  # panels of these kinds share their axes


def _figure(
    panels: int, width_in: float = 4.2, height_in: float = 3.2, shared: bool = False
) -> tuple[Figure, list[Axes]]:
    """A figure with a grid of `panels` axes (4 a row). Shared axes get a fixed layout with the
    tick labels on the outer panels only: constrained layout would double the drawing time."""
    columns = min(panels, 4)
    rows = -(-panels // columns)
    figure = Figure(
        figsize=(width_in * columns, height_in * rows),
        dpi=DPI,
        layout=None if shared else "constrained",
    )
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False, sharex=shared, sharey=shared)
    axes = grid.ravel().tolist()
    for unused in axes[panels:]:
        unused.set_visible(False)
    if shared:
        top = 1 - 0.55 / (height_in * rows)  # room for the title, whatever the rows
        bottom = 0.45 / (height_in * rows)
        figure.subplots_adjust(
            left=0.7 / (width_in * columns),
            right=0.99,
            bottom=bottom,
            top=top,
            wspace=0.08,
            hspace=0.3,
        )
    return figure, axes[:panels]


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})  # fast: size matters less
    return path


def eye(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    density = np.asarray(arrays["density"], dtype=float)
    time_ui, amplitude = arrays["time_ui"], arrays["amplitude"]
    shown = np.log10(1 + density)  # the rare transitions stay visible next to the levels
    ax.imshow(
        np.ma.masked_equal(shown, 0),
        origin="lower",
        aspect="auto",
        cmap="inferno",
        extent=(time_ui[0], time_ui[-1], amplitude[0], amplitude[-1]),
        interpolation="nearest",
    )
    for level in np.atleast_1d(arrays.get("levels", [])):
        ax.axhline(level, color="#4dd0e1", lw=0.8, ls="--")
    ax.set_facecolor("black")
    ax.set_xlabel("time (UI)")
    ax.set_ylabel(f"amplitude ({meta.get('amplitude_unit', 'a.u.')})")


def waterfall(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any], label: str) -> None:
    line = ax.semilogy(arrays["oma_dbm"], arrays["ber"], "o", ms=4, label=label)[0]
    if "fit_oma_dbm" in arrays and "fit_ber" in arrays:
        ax.semilogy(arrays["fit_oma_dbm"], arrays["fit_ber"], "-", lw=1, color=line.get_color())
    if "ber_target" in meta:
        ax.axhline(float(meta["ber_target"]), color="#888888", ls=":", lw=1)
    ax.set_xlabel("received OMA outer (dBm)")
    ax.set_ylabel("BER")
    ax.grid(True, which="both", alpha=0.3)


def liv(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    current_ma = np.asarray(arrays["current_a"]) * 1e3
    ax.plot(current_ma, np.asarray(arrays["power_w"]) * 1e3, color="#1f77b4", label="L")
    if "fit_current_a" in arrays and "fit_power_w" in arrays:
        ax.plot(
            np.asarray(arrays["fit_current_a"]) * 1e3,
            np.asarray(arrays["fit_power_w"]) * 1e3,
            "--",
            color="#d62728",
            lw=1,
            label="fit",
        )
    if "threshold_a" in meta:
        ax.axvline(float(meta["threshold_a"]) * 1e3, color="#d62728", ls=":", lw=1)
    ax.set_xlabel("current (mA)")
    ax.set_ylabel("optical power (mW)", color="#1f77b4")
    if "voltage_v" in arrays:
        twin = ax.twinx()
        twin.plot(current_ma, arrays["voltage_v"], color="#2ca02c", lw=1)
        twin.set_ylabel("voltage (V)", color="#2ca02c")
    ax.grid(True, alpha=0.3)


def spectrum(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    wavelength, transmission = arrays["wavelength_nm"], arrays["transmission_db"]
    ax.plot(wavelength, transmission, lw=0.8)
    found = np.atleast_1d(arrays.get("resonance_nm", []))
    if found.size:  # marked above the trace, so the dips themselves stay readable
        top = np.nanmax(transmission) + 0.04 * np.ptp(transmission[np.isfinite(transmission)])
        for centre in found:
            ax.axvline(centre, color="#d62728", lw=0.6, ls="--", alpha=0.5)
        ax.plot(found, np.full(found.size, top), "v", color="#d62728", ms=6)
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("transmission (dB)")
    ax.grid(True, alpha=0.3)


def waveform(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    ax.plot(np.asarray(arrays["time_s"]) * 1e9, arrays["amplitude"], lw=0.8)
    ax.set_xlabel("time (ns)")
    ax.set_ylabel(f"amplitude ({meta.get('amplitude_unit', 'a.u.')})")


_ZONE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b")  # zone A, B, ... boundaries


def endface(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """A fibre's end face (grey, axes in um from the fibre centre), the outer boundary of each
    graded zone, and the detected features outlined in red."""
    image = np.asarray(arrays["image"], dtype=float)
    scale = float(arrays["um_per_pixel"])
    row, col = np.asarray(arrays["centre_px"], dtype=float)
    rows, cols = image.shape
    extent = ((-0.5 - col) * scale, (cols - 0.5 - col) * scale, (rows - 0.5 - row) * scale,
              (-0.5 - row) * scale)  # fmt: skip
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
    names = str(meta.get("zones", "")).split(",")
    angle = np.linspace(0.0, 2.0 * np.pi, 181)
    for z, radius in enumerate(np.atleast_1d(arrays["zone_radius_um"])):
        colour = _ZONE_COLOURS[z % len(_ZONE_COLOURS)]
        ax.plot(radius * np.cos(angle), radius * np.sin(angle), color=colour, lw=0.8, ls="--")
        if z < len(names) and names[z]:
            ax.text(radius * 0.71, -radius * 0.71, names[z], color=colour, fontsize="small")
    mask = np.asarray(arrays["defect_mask"])
    if mask.any():
        x = (np.arange(cols) - col) * scale
        y = (np.arange(rows) - row) * scale
        ax.contour(x, y, mask.astype(float), levels=[0.5], colors="#d62728", linewidths=1.0)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.set_aspect("equal")


def _parameter_map(ax: Axes, die_x: Any, die_y: Any, values: Any, label: str) -> None:
    values = np.asarray(values, dtype=float)
    grid = wafer_map(np.asarray(die_x), np.asarray(die_y), values)
    finite = values[np.isfinite(values)]
    # a robust colour scale: one broken die must not flatten the rest of the wafer to one colour
    low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    image = ax.imshow(
        grid.values,
        origin="lower",
        cmap="viridis",
        vmin=low,
        vmax=high if high > low else low + 1e-12,
        extent=(grid.x[0] - 0.5, grid.x[-1] + 0.5, grid.y[0] - 0.5, grid.y[-1] + 0.5),
    )
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.85, extend="both")
    _die_axes(ax)


def _die_axes(ax: Axes) -> None:
    ax.set_xlabel("die x")
    ax.set_ylabel("die y")
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def wafer_artefact(ax: Axes, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    _parameter_map(ax, arrays["die_x"], arrays["die_y"], arrays["value"], meta.get("unit", ""))


_SINGLE: dict[str, Callable[[Axes, dict[str, np.ndarray], dict[str, Any]], None]] = {
    "eye": eye,
    "liv": liv,
    "spectrum": spectrum,
    "wafer_map": wafer_artefact,
    "waveform": waveform,
    "endface": endface,
}
KINDS_PLOTTED = (*_SINGLE, "waterfall")


def artefact_figure(kind: str, panels: Sequence[Panel], title: str) -> Figure:
    """One figure for artefacts of one kind: a panel each (up to MAX_PANELS); waterfalls share
    one axes so lanes compare at a glance."""
    if kind == "waterfall":
        figure, (ax,) = _figure(1, 6.0, 4.2)
        for label, arrays, meta in panels:
            waterfall(ax, arrays, meta, label)
        ax.legend(fontsize="small")
        ax.set_title(title)
        return figure
    shown = list(panels)[:MAX_PANELS]
    shared = kind in _SHARED_AXES and len(shown) > 1
    size = (3.0, 3.0) if kind == "endface" else (4.2, 3.2)  # square faces
    figure, axes = _figure(len(shown), *size, shared=shared)
    if shared and kind == "endface":  # room for the panels' titles under the figure's
        figure.subplots_adjust(top=1 - 0.8 / figure.get_figheight())
    for ax, (label, arrays, meta) in zip(axes, shown, strict=True):
        _SINGLE[kind](ax, arrays, meta)
        if shared:
            ax.label_outer()
        found = np.atleast_1d(arrays.get("resonance_nm", [])).size if kind == "spectrum" else 0
        if kind == "endface":  # a panel a fibre: its position and its grade, coloured
            grade = str(meta.get("grade", ""))
            colour = {"PASS": "#1b7f5f", "FAIL": "#c0392b"}.get(grade, "#222222")
            panel = f"{label.replace('lane', 'fibre')}: {grade}"
            ax.set_title(panel, fontsize="medium", color=colour)
            continue
        ax.set_title(label + (f" ({found} resonances)" if found else ""), fontsize="medium")
    figure.suptitle(title)
    return figure


def bin_map(parts: pd.DataFrame, title: str) -> Figure:
    """Hard bin of every die on the die grid."""
    figure, (ax,) = _figure(1, 6.0, 5.2)
    grid = wafer_map(
        parts["die_x"].to_numpy(int),
        parts["die_y"].to_numpy(int),
        parts["hard_bin"].to_numpy(float),
    )
    bins = sorted(BIN_COLOURS)
    colours = ListedColormap([BIN_COLOURS[b] for b in bins])
    norm = BoundaryNorm([b - 0.5 for b in bins] + [bins[-1] + 0.5], colours.N)
    extent = (grid.x[0] - 0.5, grid.x[-1] + 0.5, grid.y[0] - 0.5, grid.y[-1] + 0.5)
    ax.imshow(grid.values, origin="lower", cmap=colours, norm=norm, extent=extent)
    counts = parts["hard_bin"].value_counts()
    names = parts.drop_duplicates("hard_bin").set_index("hard_bin")["outcome"]
    handles = [
        ax.scatter(
            [], [], marker="s", s=60, color=BIN_COLOURS[b], label=f"{b} {names[b]} ({counts[b]})"
        )
        for b in bins
        if b in counts
    ]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    _die_axes(ax)
    ax.set_title(title)
    return figure


def parameter_map(rows: pd.DataFrame, title: str) -> Figure:
    """One measurement's value on the die grid (rows: tidy rows of one name and lane); dies
    outside the limits are crossed, dies that could not be measured ringed."""
    figure, (ax,) = _figure(1, 6.0, 5.2)
    unit = rows["unit"].dropna().iloc[0] if rows["unit"].notna().any() else ""
    unit = unit or "(no unit)"
    x, y = rows["die_x"].to_numpy(int), rows["die_y"].to_numpy(int)
    _parameter_map(ax, x, y, rows["value"].to_numpy(float), unit)
    styles: tuple[tuple[str, dict[str, Any]], ...] = (
        ("FAIL", {"marker": "x", "color": "#d62728"}),
        ("ERROR", {"marker": "o", "facecolors": "none", "edgecolors": "#7570b3"}),
    )
    for outcome, style in styles:
        chosen = (rows["outcome"] == outcome).to_numpy()
        if chosen.any():
            ax.scatter(x[chosen], y[chosen], s=40, label=f"{outcome} ({chosen.sum()})", **style)
    if ax.collections:
        ax.legend(loc="lower left", fontsize="small", framealpha=0.8)
    limits = [
        f"{name} {rows[column].dropna().iloc[0]:g}"
        for name, column in (("low", "low_limit"), ("high", "high_limit"))
        if rows[column].notna().any()
    ]
    ax.set_title(title + (f" (limits: {', '.join(limits)})" if limits else ""), fontsize="medium")
    return figure


def pareto_chart(table: pd.DataFrame, title: str) -> Figure:
    """Failing units per measurement, largest first, with the cumulative percentage."""
    figure, (ax,) = _figure(1, 7.0, 4.2)
    shown = table.head(20)
    positions = np.arange(len(shown))
    ax.bar(positions, shown["count"], color="#d95f02", width=0.6)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(positions, shown["measurement"], rotation=40, ha="right", fontsize="small")
    ax.set_ylabel("failing units")
    cumulative = ax.twinx()
    cumulative.plot(positions, shown["cumulative_percent"], "o-", color="#333333", ms=3)
    cumulative.set_ylim(0, 105)
    cumulative.set_ylabel("cumulative (%)")
    ax.set_title(title)
    return figure
