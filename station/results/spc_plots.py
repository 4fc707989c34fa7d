"""I-MR control charts for the reports: individuals with centre line, 1/2/3-sigma zones and the
points that violate a Western Electric rule, and the moving range with its upper limit."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from station.analysis.spc import RULES, ImrLimits, western_electric
from station.results.plots import DPI


def imr_chart(values: np.ndarray, limits: ImrLimits, title: str, unit: str = "") -> Figure:
    """Two stacked panels over the points of `values` (shape (n,), oldest first)."""
    x = np.asarray(values, dtype=float)
    index = np.arange(x.size)
    found = western_electric(x, limits)
    figure = Figure(figsize=(8.0, 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    individuals, moving = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    individuals.plot(index, x, marker="o", markersize=3, linewidth=0.8, color="#1f77b4")
    individuals.axhline(limits.center, color="#333333", linewidth=0.8)
    for k, style in ((1, ":"), (2, "--"), (3, "-")):
        for sign in (1, -1):
            individuals.axhline(
                limits.center + sign * k * limits.sigma, color="#d62728", linestyle=style,
                linewidth=0.7 if k < 3 else 1.0,
            )  # fmt: skip
    bad = found.any
    if bad.any():
        individuals.plot(index[bad], x[bad], "o", color="#d62728", markersize=6, label="violation")
        for i in np.flatnonzero(bad):
            rules = ",".join(r.removeprefix("rule") for r in RULES if getattr(found, r)[i])
            individuals.annotate(rules, (i, x[i]), textcoords="offset points", xytext=(3, 5),
                                 fontsize=7, color="#d62728")  # fmt: skip
        individuals.legend(loc="upper left", fontsize=7)
    individuals.set_ylabel(f"value [{unit}]" if unit else "value")
    individuals.set_title(
        f"{title}  (centre {limits.center:.4g}, sigma {limits.sigma:.3g},"
        f" baseline {limits.baseline_n} points)",
        fontsize=9,
    )
    mr = np.abs(np.diff(x))
    moving.plot(index[1:], mr, marker="o", markersize=3, linewidth=0.8, color="#1f77b4")
    moving.axhline(limits.mr_center, color="#333333", linewidth=0.8)
    moving.axhline(limits.mr_ucl, color="#d62728", linewidth=1.0)
    out = found.mr_out[1:]
    if out.any():
        moving.plot(index[1:][out], mr[out], "o", color="#d62728", markersize=6)
    moving.set_ylabel("moving range")
    moving.set_xlabel("point (oldest first)")
    return figure
