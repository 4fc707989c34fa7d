"""Issue 7's acceptance on the simulated bench: a whole CPO-PIC-B1 wafer (1,124 dies, spectra of
10,001 points per device) end to end. The maps show the simulated radial trends and the defect
clusters; the yield matches the simulated truth within sampling error; the outputs are written.

Slow (about two minutes): pytest -m slow tests/sequences/test_pic_wafer_acceptance.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sequences.pic_wafer_map import load_die_map
from sim_instruments.bench import SimBench
from station.limits import limits_path, load_limits
from station.outcome import Outcome
from station.results.store import ResultsStore
from station.wafer_outputs import wafer_outputs
from tests.sequences.test_pic_wafer import bench_paths, run_wafer, truth_bins, truth_values

PRODUCT = "CPO-PIC-B1"
WAFER = "W01"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_whole_wafer_shows_the_simulated_pattern_and_yield(tmp_path: Path) -> None:
    die_map = load_die_map(PRODUCT)
    limits = load_limits(limits_path(PRODUCT))
    store = ResultsStore(tmp_path / "wafer.sqlite")
    with SimBench.build("wafer", time_factor=0.001) as sim:
        sim.insert(WAFER, PRODUCT)
        run = run_wafer(sim, die_map, store=store)
        wafer = sim.world.wafer.wafer  # type: ignore[union-attr]
        paths = bench_paths(sim)
    assert run.result.outcome == Outcome.FAIL and run.result.error is None
    run_id = run.result.run_id
    units = store.units(run_id)
    assert len(units) == len(die_map.dies) == wafer.count >= 1000
    assert die_map.sweep.points == 10_001

    index = {
        (int(c), int(r)): i for i, (c, r) in enumerate(zip(wafer.columns, wafer.rows, strict=True))
    }
    truth = {die: truth_values(wafer.die(i), paths, die_map) for die, i in index.items()}
    tidy = store.measurements(run_id=run_id)
    measured = tidy.pivot_table(index=["die_x", "die_y"], columns="measurement", values="value")

    # the radial trends the wafer model put in: a coupler loss and a ring shift growing with r^2
    x_mm, y_mm = die_map.die_offsets_mm(measured.index)
    r2 = (np.hypot(x_mm, y_mm) / (die_map.diameter_mm / 2 - die_map.edge_exclusion_mm)) ** 2
    clean = ~np.array([wafer.defect[index[d]] for d in measured.index])
    for name, slope in (("coupler_peak_il", 0.6), ("ring_resonance_wavelength", 2.5)):
        values = measured[name].to_numpy()
        keep = clean & np.isfinite(values)
        fitted = np.polyfit(r2[keep], values[keep], 1)[0]
        assert fitted == pytest.approx(slope, abs=0.25 * slope), name

    # the defect clusters: every defect die lands in the coupler bin, with the dies the truth
    # puts there for other reasons (a coupler placed beyond the alignment limit); in clusters
    expected = truth_bins(truth, limits)
    coupler_bin = {
        (int(u.die_x), int(u.die_y)) for u in units.itertuples() if u.bin_name == "COUPLER"
    }
    defects = {die for die, i in index.items() if wafer.defect[i]}
    assert defects <= coupler_bin and len(defects) >= 10
    assert coupler_bin == set(expected.index[expected["bin_name"] == "COUPLER"])
    neighbours = sum(
        any((x + dx, y + dy) in defects for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)))
        for x, y in defects
    )
    assert neighbours >= 0.8 * len(defects)  # clusters, not scattered dies

    # the yield: the truth's, judged by the same limits, within sampling error; die by die too
    stored = units.set_index(["die_x", "die_y"])["bin_name"]
    agree = (stored.reindex(expected.index) == expected["bin_name"]).mean()
    n = len(units)
    truth_yield = float((expected["bin_name"] == "PASS").mean())
    measured_yield = float((units["bin_name"] == "PASS").mean())
    sampling = math.sqrt(truth_yield * (1 - truth_yield) / n)
    assert abs(measured_yield - truth_yield) <= 2 * sampling, (measured_yield, truth_yield)
    assert agree >= 0.98
    assert not (units["outcome"] == "ERROR").any()

    # the wafer outputs, and what storing the spectra cost
    outputs = wafer_outputs(store, run_id, tmp_path / "outputs")
    assert outputs.yield_summary["yield_fraction"].iloc[0] == pytest.approx(measured_yield)
    assert (tmp_path / "outputs" / "bins.png").stat().st_size > 10_000
    kept = store.artefacts(run_id)
    kept_dies = kept.drop_duplicates(["die_x", "die_y"])
    failing = int((units["bin_name"] != "PASS").sum())
    assert failing <= len(kept_dies) <= failing + n // die_map.storage.every_dies + 1
    store.close()
    size_mb = (tmp_path / "wafer.sqlite").stat().st_size / 1e6
    assert size_mb < 0.2 * len(kept_dies) + 10  # about 120 kB a kept die, not 160 kB a die
    print(
        f"\n{n} dies, yield {measured_yield:.3f} (truth {truth_yield:.3f} +- {sampling:.3f}), "
        f"{agree:.1%} of dies binned as the truth, {len(kept_dies)} dies' spectra kept, "
        f"store {size_mb:.1f} MB"
    )
    assert isinstance(outputs.capability, pd.DataFrame) and not outputs.capability.empty
