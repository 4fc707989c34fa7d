"""Known-answer and property tests of coupler and ring resonance spectra analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.analysis.errors import AnalysisError
from station.analysis.spectra import coupler_peak, find_resonances

WAVELENGTH_1PM_NM = np.linspace(1260.0, 1360.0, 100_001)
WAVELENGTH_10PM_NM = np.linspace(1260.0, 1360.0, 10_001)


def envelope_db(
    wavelength_nm: np.ndarray,
    centre_nm: float = 1310.0,
    il_db: float = 4.0,
    bw_1db_nm: float = 30.0,
) -> np.ndarray:
    """Gaussian coupler response (in linear power), i.e. a parabola in dB: exactly -1 dB at
    +-bw_1db_nm / 2 and -3 dB at +-sqrt(3) bw_1db_nm / 2 from the peak."""
    return -il_db - ((wavelength_nm - centre_nm) / (bw_1db_nm / 2.0)) ** 2


def lorentz_rings_db(
    wavelength_nm: np.ndarray, centres_nm: np.ndarray, q: np.ndarray, extinction_db: np.ndarray
) -> np.ndarray:
    """Product of Lorentzian dips of FWHM centre / Q and the given depths, in dB."""
    half_width = np.asarray(centres_nm) / np.asarray(q) / 2.0
    depth = 1.0 - 10.0 ** (-np.asarray(extinction_db) / 10.0)
    detuning = (wavelength_nm - np.asarray(centres_nm)[:, None]) / half_width[:, None]
    return 10.0 * np.log10(np.prod(1.0 - depth[:, None] / (1.0 + detuning**2), axis=0))


CENTRES_NM = np.array([1290.3, 1298.1, 1305.9, 1313.7, 1321.5, 1329.3])
Q = np.array([5e3, 2e4, 5e4, 5e3, 2e4, 5e4])
EXTINCTION_DB = np.array([10.0, 15.0, 20.0, 5.0, 25.0, 8.0])


def test_coupler_peak_on_analytic_envelope() -> None:
    centre_nm = 1310.00437  # between samples
    result = coupler_peak(WAVELENGTH_1PM_NM, envelope_db(WAVELENGTH_1PM_NM, centre_nm, 4.2, 28.0))

    assert result.peak_wavelength_nm == pytest.approx(centre_nm, abs=1e-6)
    assert result.peak_il_db == pytest.approx(4.2, abs=1e-9)
    assert result.bandwidth_1db_nm == pytest.approx(28.0, abs=1e-5)
    assert result.bandwidth_3db_nm == pytest.approx(28.0 * np.sqrt(3.0), abs=1e-5)
    assert np.ndim(result.peak_il_db) == 0


def test_coupler_peak_over_a_stack_with_noise() -> None:
    rng = np.random.default_rng(5)
    centres = rng.uniform(1295.0, 1325.0, (4, 3))
    losses = rng.uniform(3.0, 5.0, (4, 3))
    widths = rng.uniform(20.0, 35.0, (4, 3))
    stack = envelope_db(
        WAVELENGTH_10PM_NM, centres[..., None], losses[..., None], widths[..., None]
    )
    stack = stack + rng.normal(0.0, 0.01, stack.shape)

    result = coupler_peak(WAVELENGTH_10PM_NM, stack)

    assert result.peak_wavelength_nm.shape == (4, 3)
    # 0.01 dB noise: the parabola over the top 0.5 dB (~2000 points) pins the peak well.
    np.testing.assert_allclose(result.peak_wavelength_nm, centres, atol=0.05)
    np.testing.assert_allclose(result.peak_il_db, losses, atol=0.005)
    # At the 1 dB point the slope is about 0.13 dB/nm, so 0.01 dB of noise moves a raw crossing by
    # 0.08 nm; the smoothed crossings land within 0.15 nm (0.5 %).
    np.testing.assert_allclose(result.bandwidth_1db_nm, widths, atol=0.15)
    np.testing.assert_allclose(result.bandwidth_3db_nm, np.sqrt(3.0) * widths, atol=0.15)


def test_coupler_bandwidth_outside_the_sweep_is_nan() -> None:
    wavelength = np.linspace(1300.0, 1320.0, 2001)
    result = coupler_peak(wavelength, envelope_db(wavelength, 1310.0, 4.0, 15.0))

    assert result.bandwidth_1db_nm == pytest.approx(15.0, abs=1e-5)
    assert np.isnan(result.bandwidth_3db_nm)


def test_lorentzian_rings_on_coupler_envelope() -> None:
    spectrum = envelope_db(WAVELENGTH_1PM_NM) + lorentz_rings_db(
        WAVELENGTH_1PM_NM, CENTRES_NM, Q, EXTINCTION_DB
    )

    table = find_resonances(WAVELENGTH_1PM_NM, spectrum)

    assert len(table) == len(CENTRES_NM)
    assert (table["spectrum"] == 0).all()
    assert "index_0" not in table.columns
    np.testing.assert_allclose(table["wavelength_nm"], CENTRES_NM, atol=1e-5)
    np.testing.assert_allclose(table["q_loaded"], Q, rtol=1e-4)
    np.testing.assert_allclose(table["fwhm_nm"], CENTRES_NM / Q, rtol=1e-4)
    np.testing.assert_allclose(table["extinction_db"], EXTINCTION_DB, atol=1e-3)
    np.testing.assert_allclose(table["fsr_nm"][:-1], np.diff(CENTRES_NM), atol=2e-5)
    assert np.isnan(table["fsr_nm"].iloc[-1])
    np.testing.assert_allclose(table["points_per_fwhm"], CENTRES_NM / Q / 1e-3, rtol=1e-3)
    assert not table["undersampled"].any()
    assert table["fit_ok"].all()
    assert (table["fit_rms"] < 1e-4).all()
    # The deepest 1 pm sample lies within 0.5 pm of the centre: at most 0.5 dB shallower here.
    assert (table["extinction_sample_db"] <= EXTINCTION_DB + 1e-6).all()
    assert (table["extinction_sample_db"] >= EXTINCTION_DB - 0.5).all()


def test_lorentzian_rings_with_noise() -> None:
    spectrum = envelope_db(WAVELENGTH_1PM_NM) + lorentz_rings_db(
        WAVELENGTH_1PM_NM, CENTRES_NM, Q, EXTINCTION_DB
    )
    spectrum = spectrum + np.random.default_rng(1).normal(0.0, 0.01, spectrum.size)

    table = find_resonances(WAVELENGTH_1PM_NM, spectrum)

    # 0.01 dB (0.23 %) noise per point.
    np.testing.assert_allclose(table["wavelength_nm"], CENTRES_NM, atol=2e-4)
    np.testing.assert_allclose(table["q_loaded"], Q, rtol=0.01)
    np.testing.assert_allclose(table["extinction_db"], EXTINCTION_DB, rtol=0.03)
    assert table["fit_ok"].all()


def test_stack_with_different_parameters_per_spectrum() -> None:
    rng = np.random.default_rng(2)
    shape = (2, 3)
    shifts = rng.uniform(-2.0, 2.0, shape)
    q = rng.uniform(5e3, 5e4, (*shape, 4))
    extinction = rng.uniform(5.0, 20.0, (*shape, 4))
    coupler_centres = rng.uniform(1300.0, 1320.0, shape)
    centres = np.linspace(1280.0, 1340.0, 4) + shifts[..., None]
    stack = np.stack(
        [
            envelope_db(WAVELENGTH_1PM_NM, coupler_centres[i, j])
            + lorentz_rings_db(WAVELENGTH_1PM_NM, centres[i, j], q[i, j], extinction[i, j])
            for i in range(shape[0])
            for j in range(shape[1])
        ]
    ).reshape(*shape, -1)

    table = find_resonances(WAVELENGTH_1PM_NM, stack)

    assert len(table) == 24
    np.testing.assert_array_equal(table["spectrum"], np.repeat(np.arange(6), 4))
    np.testing.assert_array_equal(table["index_0"], np.repeat([0, 1], 12))
    np.testing.assert_array_equal(table["index_1"], np.tile(np.repeat([0, 1, 2], 4), 2))
    np.testing.assert_allclose(table["wavelength_nm"], centres.ravel(), atol=1e-5)
    np.testing.assert_allclose(table["q_loaded"], q.ravel(), rtol=1e-4)
    np.testing.assert_allclose(table["extinction_db"], extinction.ravel(), atol=1e-3)
    expected_fsr = np.where(np.arange(24) % 4 == 3, np.nan, 20.0)
    np.testing.assert_allclose(table["fsr_nm"], expected_fsr, atol=1e-4)


def test_all_pass_ring_matches_its_closed_form() -> None:
    # All-pass ring, L = 2 pi 20 um, n_g = n = 4.2 (no dispersion), self-coupling r, loss a:
    # resonances at n L / m, Q_loaded = pi n L sqrt(r a) / (lambda (1 - r a)),
    # extinction = 1 / T_min, T_min = (a - r)^2 / (1 - a r)^2.
    index, length_nm, loss, self_coupling = 4.2, 2 * np.pi * 20e3, 0.995, 0.99
    phase = 2.0 * np.pi * index * length_nm / WAVELENGTH_1PM_NM
    cos = np.cos(phase)
    ring = (loss**2 - 2 * self_coupling * loss * cos + self_coupling**2) / (
        1 - 2 * loss * self_coupling * cos + (self_coupling * loss) ** 2
    )

    table = find_resonances(WAVELENGTH_1PM_NM, 10 * np.log10(ring) + envelope_db(WAVELENGTH_1PM_NM))

    orders = np.arange(
        np.ceil(index * length_nm / 1360.0), np.floor(index * length_nm / 1260.0) + 1
    )
    resonances = np.sort(index * length_nm / orders)
    resonances = resonances[(resonances > 1260.5) & (resonances < 1359.5)]
    np.testing.assert_allclose(table["wavelength_nm"], resonances, atol=1e-5)
    rl = self_coupling * loss
    q_closed = np.pi * index * length_nm * np.sqrt(rl) / (resonances * (1 - rl))
    np.testing.assert_allclose(table["q_loaded"], q_closed, rtol=1e-4)
    t_min = (loss - self_coupling) ** 2 / (1 - rl) ** 2
    np.testing.assert_allclose(table["extinction_db"], -10 * np.log10(t_min), atol=1e-3)
    np.testing.assert_allclose(table["fsr_nm"][:-1], np.diff(resonances), atol=1e-5)


def test_undersampled_resonances_are_flagged() -> None:
    spectrum = envelope_db(WAVELENGTH_10PM_NM) + lorentz_rings_db(
        WAVELENGTH_10PM_NM, CENTRES_NM, Q, EXTINCTION_DB
    )

    table = find_resonances(WAVELENGTH_10PM_NM, spectrum)

    # 10 pm step: Q 5e3 has 26 points per FWHM, 2e4 has 6.5, 5e4 only 2.6.
    np.testing.assert_array_equal(table["undersampled"], Q == 5e4)
    np.testing.assert_allclose(table["points_per_fwhm"], CENTRES_NM / Q / 0.01, rtol=1e-3)
    assert (
        find_resonances(WAVELENGTH_10PM_NM, spectrum, min_points_per_fwhm=10.0)[
            "undersampled"
        ].tolist()
        == (Q > 5e3).tolist()
    )


def test_shallow_dips_and_dips_cut_by_the_sweep_are_not_reported() -> None:
    centres = np.array([1260.01, 1300.0, 1320.0])
    spectrum = envelope_db(WAVELENGTH_1PM_NM) + lorentz_rings_db(
        WAVELENGTH_1PM_NM, centres, np.full(3, 1e4), np.array([10.0, 2.0, 6.0])
    )

    table = find_resonances(WAVELENGTH_1PM_NM, spectrum, min_extinction_db=3.0)

    np.testing.assert_allclose(table["wavelength_nm"], [1320.0], atol=1e-5)
    empty = find_resonances(WAVELENGTH_1PM_NM, envelope_db(WAVELENGTH_1PM_NM))
    assert empty.empty
    assert {"spectrum", "wavelength_nm", "q_loaded", "fsr_nm", "undersampled"} <= set(empty.columns)


@settings(max_examples=10, deadline=None)
@given(order=st.permutations(list(range(5))))
def test_spectrum_order_only_relabels_the_rows(order: list[int]) -> None:
    rng = np.random.default_rng(4)
    centres = np.linspace(1280.0, 1340.0, 3) + rng.uniform(-2.0, 2.0, (5, 1))
    stack = np.stack(
        [
            envelope_db(WAVELENGTH_10PM_NM)
            + lorentz_rings_db(WAVELENGTH_10PM_NM, centres[i], np.full(3, 8e3), np.full(3, 12.0))
            for i in range(5)
        ]
    )
    stack = stack + rng.normal(0.0, 0.02, stack.shape)

    base = find_resonances(WAVELENGTH_10PM_NM, stack)
    permuted = find_resonances(WAVELENGTH_10PM_NM, stack[order])

    relabelled = permuted.assign(spectrum=np.asarray(order)[permuted["spectrum"]])
    relabelled = relabelled.sort_values(["spectrum", "wavelength_nm"], ignore_index=True)
    # Equal to the solver's tolerance (BLAS rounding depends on a row's position in the stack).
    pd.testing.assert_frame_equal(
        relabelled.drop(columns="index_0"), base.drop(columns="index_0"), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("wavelength", "spectrum", "message"),
    [
        (WAVELENGTH_10PM_NM, np.zeros(100), "last axis"),
        (WAVELENGTH_10PM_NM[::-1], np.zeros(10_001), "strictly increasing"),
        (WAVELENGTH_10PM_NM[:4], np.zeros(4), "at least"),
        (WAVELENGTH_10PM_NM, np.full(10_001, np.nan), "NaN"),
        (np.zeros((2, 10_001)), np.zeros(10_001), "1-D"),
    ],
)
def test_bad_input_is_rejected(wavelength: np.ndarray, spectrum: np.ndarray, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        find_resonances(wavelength, spectrum)
    with pytest.raises(AnalysisError, match=message):
        coupler_peak(wavelength, spectrum)
