"""Reports: plot renderers on synthetic artefacts of every kind, the run and lot HTML with PNGs
next to it, escaping of database text, and `station report` / `station yield`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.lines import Line2D

from station.cli import main
from station.engine import StepContext
from station.results import ResultsStore, plots
from station.results.report import lot_report, run_report
from station.sequence import step
from tests.results.helpers import (
    eye_arrays,
    limits_file,
    liv_arrays,
    module_run,
    run,
    spectrum_arrays,
    wafer_run,
    waterfall_arrays,
)

PNG = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script>&"
SYNTHETIC = {
    "eye": eye_arrays(),
    "waterfall": waterfall_arrays(),
    "liv": liv_arrays(),
    "spectrum": spectrum_arrays(),
    "wafer_map": {
        "die_x": np.array([0, 1, 0, 1]),
        "die_y": np.array([0, 0, 1, 1]),
        "value": np.array([1.0, 2.0, 3.0, 4.0]),
    },
    "waveform": {"time_s": np.linspace(0, 1e-9, 50), "amplitude": np.sin(np.arange(50))},
    "endface": {  # a fibre's face, as sequences/inspection.py stores it, with one defect
        "image": np.full((128, 128), 200, dtype=np.uint8),
        "defect_mask": np.pad(np.ones((4, 4), dtype=np.uint8), ((60, 64), (70, 54))),
        "centre_px": np.array([63.5, 63.5]),
        "um_per_pixel": np.float64(1.0),
        "zone_radius_um": np.array([12.5, 57.5]),
    },
}


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")


@pytest.mark.parametrize("kind", sorted(SYNTHETIC))
def test_every_kind_renders_a_png(kind: str, tmp_path: Path) -> None:
    panels = [("lane 1", SYNTHETIC[kind], {"ber_target": "2.4e-4", "threshold_a": "0.02"})] * 2
    figure = plots.artefact_figure(kind, panels, f"synthetic {kind}")
    visible = [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(visible) >= (1 if kind == "waterfall" else 2)
    path = plots.save(figure, tmp_path / f"{kind}.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000


def test_the_spectrum_marks_the_resonances_and_the_waterfall_draws_its_fit() -> None:
    figure = plots.artefact_figure("spectrum", [("die", spectrum_arrays(), {})], "s")
    markers = [line for line in figure.axes[0].lines if line.get_marker() == "v"]
    assert len(markers) == 1 and len(markers[0].get_xdata()) == 3
    np.testing.assert_allclose(markers[0].get_xdata(), spectrum_arrays()["resonance_nm"])
    figure = plots.artefact_figure(
        "waterfall", [("lane 1", waterfall_arrays(), {}), ("lane 2", waterfall_arrays(1), {})], "w"
    )
    lines: list[Line2D] = figure.axes[0].lines
    assert [len(line.get_xdata()) for line in lines] == [8, 50, 8, 50]  # points, fit, per lane


@step(measures=("threshold",))
def liv_step(ctx: StepContext) -> None:
    ctx.artefact("liv", liv_arrays(), kind="liv", threshold_a="0.02")
    ctx.artefact("spectrum", spectrum_arrays(), kind="spectrum")
    ctx.artefact("raw", {"x": np.arange(3)}, kind="mystery")
    ctx.attribute("note", HOSTILE)
    ctx.measure("threshold", 0.02, unit="A")


@step(measures=())
def hostile_step(ctx: StepContext) -> None:
    raise RuntimeError(HOSTILE)


def test_a_run_report_has_its_plots_next_to_it_and_escapes_database_text(
    store: ResultsStore, tmp_path: Path
) -> None:
    limits = limits_file(tmp_path, "ELS-1", {"threshold": {"high": 0.05, "unit": "A"}})
    result = run(store, limits, (liv_step, hostile_step), HOSTILE)
    report = run_report(store, result.run_id, tmp_path / "out")
    text = report.path.read_text()
    assert report.path.name == f"run-{result.run_id}.html"
    assert [p.name for p in report.images] == [
        f"run-{result.run_id}-liv_step-liv.png",
        f"run-{result.run_id}-liv_step-spectrum.png",
    ]
    assert all(p.parent == report.path.parent and p.read_bytes()[:8] == PNG for p in report.images)
    assert all(f'src="{p.name}"' in text for p in report.images)
    assert (
        "<script>" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in text
    )
    assert "kind mystery, not plotted" in text
    assert 'class="verdict ERROR"' in text
    assert "http" not in text  # nothing fetched from a network


def test_a_module_report_shows_eyes_and_waterfalls(store: ResultsStore, tmp_path: Path) -> None:
    result = module_run(store, tmp_path)
    report = run_report(store, result.run_id, tmp_path)
    assert [p.name.removeprefix(f"run-{result.run_id}-") for p in report.images] == [
        "eyes-eye.png",
        "sensitivity-waterfall.png",
    ]
    text = report.path.read_text()
    assert 'class="verdict PASS"' in text and "rx_sensitivity_oma" in text


def test_wafer_and_lot_reports_draw_bin_and_parameter_maps_and_the_pareto(
    sqlite_store: ResultsStore, tmp_path: Path
) -> None:
    first = wafer_run(sqlite_store, tmp_path, radius=3, lot_id="LOT9", wafer_id="W1")
    wafer_run(sqlite_store, tmp_path, radius=2, lot_id="LOT9", wafer_id="W2")
    report = run_report(sqlite_store, first.run_id, tmp_path / "r", maps=["responsivity"])
    names = [p.name.removeprefix(f"run-{first.run_id}-") for p in report.images]
    assert names == ["W1-bins.png", "W1-responsivity_1.png", "W1-responsivity_2.png"]
    lot = lot_report(sqlite_store, "LOT9", tmp_path / "r")
    names = [p.name for p in lot.images]
    assert names[0] == "lot-LOT9-pareto.png"
    assert "lot-LOT9-W1-bins.png" in names and "lot-LOT9-W2-bins.png" in names
    assert "lot-LOT9-W1-coupler_il.png" in names  # the failing measurement is mapped first
    text = lot.path.read_text()
    assert "yield" in text and "W2" in text


def test_report_and_yield_commands(
    sqlite_store: ResultsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = wafer_run(sqlite_store, tmp_path, radius=1, lot_id="L-CLI")
    sqlite_store.flush()
    out = tmp_path / "reports"
    assert main(["report", result.run_id, "--db", sqlite_store.url, "--out", str(out)]) == 0
    assert main(["yield", "--lot", "L-CLI", "--db", sqlite_store.url, "--out", str(out)]) == 0
    assert (out / f"run-{result.run_id}.html").exists() and (out / "lot-L-CLI.html").exists()
    capsys.readouterr()
    assert main(["report", "nosuchrun", "--db", sqlite_store.url, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no run 'nosuchrun'" in err and len(err.strip().splitlines()) == 1


def test_an_end_face_panel_draws_its_zones_outlines_its_defects_and_names_its_grade() -> None:
    meta = {"grade": "FAIL", "zones": "A,B"}
    figure = plots.artefact_figure("endface", [("lane 3", SYNTHETIC["endface"], meta)], "faces")
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    assert ax.get_title() == "fibre 3: FAIL" and figure.get_suptitle() == "faces"
    zones = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    radii = sorted(float(np.hypot(*line.get_xydata()[0])) for line in zones)
    assert radii == pytest.approx([12.5, 57.5])
    assert len(ax.collections) == 1  # the defect's outline (a contour)
    assert [text.get_text() for text in ax.texts] == ["A", "B"]
