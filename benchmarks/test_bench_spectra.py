"""Resonance finding over 1,000 spectra of 10,001 points, against a per-spectrum scipy loop.

Run: pytest benchmarks/test_bench_spectra.py -m benchmark --benchmark-enable
The reference (find_peaks + curve_fit per dip) runs on the first 20 spectra; multiply its time by
50 for the full stack (it is linear in the number of spectra).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.signal import find_peaks, peak_widths

from station.analysis.spectra import find_resonances

pytestmark = pytest.mark.benchmark

SPECTRA = 1000
REFERENCE_SPECTRA = 20
WAVELENGTH_NM = np.linspace(1260.0, 1360.0, 10_001)  # 10 pm step
RINGS = 13


@pytest.fixture(scope="module")
def stack() -> tuple[np.ndarray, np.ndarray]:
    """(SPECTRA, points) ring spectra on coupler envelopes, 0.01 dB noise; and the true Q."""
    rng = np.random.default_rng(0)
    centres = np.linspace(1265.0, 1355.0, RINGS) + rng.uniform(-2.0, 2.0, (SPECTRA, 1))
    q = rng.uniform(5e3, 1e4, (SPECTRA, RINGS))  # 13 to 26 points per FWHM at 10 pm
    depth = 1.0 - 10.0 ** (-rng.uniform(5.0, 20.0, (SPECTRA, RINGS)) / 10.0)
    linear = np.ones((SPECTRA, WAVELENGTH_NM.size))
    for ring in range(RINGS):  # a handful of rings, each vectorised over the stack
        half = centres[:, ring] / q[:, ring] / 2.0
        detuning = (WAVELENGTH_NM - centres[:, ring, None]) / half[:, None]
        linear *= 1.0 - depth[:, ring, None] / (1.0 + detuning**2)
    peak_nm = 1310.0 + rng.uniform(-5.0, 5.0, (SPECTRA, 1))
    envelope_db = -rng.uniform(3.0, 5.0, (SPECTRA, 1)) - ((WAVELENGTH_NM - peak_nm) / 15.0) ** 2
    noise_db = rng.normal(0.0, 0.01, linear.shape)
    return envelope_db + 10.0 * np.log10(linear) + noise_db, q


def _lorentzian(x: np.ndarray, x0: float, gamma: float, depth: float, base: float) -> np.ndarray:
    return base * (1.0 - depth / (1.0 + ((x - x0) / gamma) ** 2))


def reference_find_resonances(
    wavelength_nm: np.ndarray, spectra_db: np.ndarray, min_extinction_db: float = 3.0
) -> list[tuple[int, float, float]]:
    """The obvious way: per spectrum a polyfit baseline, find_peaks, then curve_fit per dip."""
    found = []
    u = 2.0 * (wavelength_nm - wavelength_nm[0]) / np.ptp(wavelength_nm) - 1.0
    for index, spectrum in enumerate(spectra_db):
        keep = np.ones(u.size, dtype=bool)
        for _ in range(10):
            coef = np.polyfit(u[keep], spectrum[keep], 4)
            residual = spectrum - np.polyval(coef, u)
            sigma = max(np.std(residual[keep]), 0.01)
            keep = residual > -3.0 * sigma
        relative_db = spectrum - np.polyval(coef, u)
        peaks, _ = find_peaks(-relative_db, prominence=min_extinction_db)
        widths = peak_widths(-relative_db, peaks, rel_height=0.5)[0]
        linear = 10.0 ** (relative_db / 10.0)
        for peak, width in zip(peaks, widths, strict=True):
            half = max(int(2.0 * width), 5)
            lo, hi = max(peak - half, 0), min(peak + half + 1, u.size)
            step = wavelength_nm[1] - wavelength_nm[0]
            start = (wavelength_nm[peak], width * step / 2.0, 1.0 - linear[peak], 1.0)
            params, _ = curve_fit(_lorentzian, wavelength_nm[lo:hi], linear[lo:hi], p0=start)
            found.append((index, params[0], params[0] / (2.0 * abs(params[1]))))
    return found


def test_find_resonances_1000_spectra(benchmark, stack) -> None:
    spectra, q = stack
    benchmark.group = "resonances: 1000 spectra x 10001 points"
    table = benchmark.pedantic(
        find_resonances, args=(WAVELENGTH_NM, spectra), rounds=5, iterations=1, warmup_rounds=1
    )
    assert len(table) == SPECTRA * RINGS
    np.testing.assert_allclose(table["q_loaded"], q.ravel(), rtol=0.05)


def test_reference_loop_20_spectra_scale_by_50(benchmark, stack) -> None:
    spectra, _ = stack
    benchmark.group = "resonances: 1000 spectra x 10001 points"
    benchmark.extra_info["spectra"] = REFERENCE_SPECTRA
    benchmark.extra_info["scale_to_full_stack"] = SPECTRA / REFERENCE_SPECTRA
    found = benchmark.pedantic(
        reference_find_resonances,
        args=(WAVELENGTH_NM, spectra[:REFERENCE_SPECTRA]),
        rounds=3,
        iterations=1,
    )
    assert len(found) == REFERENCE_SPECTRA * RINGS
    ours = find_resonances(WAVELENGTH_NM, spectra[:REFERENCE_SPECTRA])
    np.testing.assert_allclose(ours["q_loaded"], [f[2] for f in found], rtol=0.02)
