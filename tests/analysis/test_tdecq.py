"""Tests of station.analysis.tdecq and the PRBS13Q helpers in station.analysis.patterns.

Known answers on synthetic 53.125 GBd PRBS13Q captures (levels in mW, OMA 1 mW, ER 5 dB) and
hypothesis invariants (power scale, circular shift).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from station.analysis import tdecq as tdecq_module
from station.analysis.ber import histogram_ser
from station.analysis.errors import AnalysisError
from station.analysis.patterns import (
    align_pattern,
    decide_pam4,
    pam4_levels,
    prbs13,
    prbs13q,
    symbol_runs,
    symbol_waveform,
)
from station.analysis.tdecq import (
    TdecqResult,
    reference_receiver_response,
    tdecq,
    tecq,
)

BAUD_HZ = 53.125e9
SPUI = 32
P0_MW, P3_MW = 0.4625, 1.4625  # OMA 1 mW, outer ER 10 log10(1.4625 / 0.4625) = 5.0 dB
OMA_MW = P3_MW - P0_MW
Q_T = 3.414
SIGMA_IDEAL_MW = OMA_MW / (6 * Q_T)
IDENTITY = np.array([0.0, 1.0, 0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def symbols() -> np.ndarray:
    return prbs13q()


@pytest.fixture(scope="module")
def levels_mw(symbols: np.ndarray) -> np.ndarray:
    return pam4_levels(symbols, P0_MW, P3_MW)


@pytest.fixture(scope="module")
def impaired(levels_mw: np.ndarray) -> np.ndarray:
    """Smooth edges, a post-cursor, noise: the receiver and the FFE both have work to do."""
    channel = 0.85 * levels_mw + 0.15 * np.roll(levels_mw, 1)
    wave = symbol_waveform(channel, SPUI, transition_ui=0.3, delay_samples=11)
    return wave + np.random.default_rng(7).normal(0.0, 0.01, wave.size)


@pytest.fixture(scope="module")
def impaired_result(impaired: np.ndarray) -> TdecqResult:
    return tdecq(impaired, SPUI, BAUD_HZ, scope_noise_rms=0.002)


def analytic_noise_tdecq_db(sigma_n: float) -> float:
    return 10 * math.log10(SIGMA_IDEAL_MW / math.sqrt(SIGMA_IDEAL_MW**2 - sigma_n**2))


# --- patterns -------------------------------------------------------------------------------


def test_prbs13_obeys_its_recurrence_and_has_full_period() -> None:
    bits = prbs13(3 * 8191).astype(int)
    n = np.arange(13, bits.size)
    assert np.array_equal(bits[n], bits[n - 1] ^ bits[n - 2] ^ bits[n - 12] ^ bits[n - 13])
    assert np.array_equal(bits[:8191], bits[8191:16382])
    windows = (bits[(np.arange(8191)[:, None] + np.arange(13))] << np.arange(13)).sum(axis=1)
    assert np.unique(windows).size == 8191 and windows.min() > 0  # every non-zero state once


def test_prbs13q_levels_and_runs(symbols: np.ndarray) -> None:
    assert symbols.shape == (8191,)
    assert np.bincount(symbols).tolist() == [2047, 2048, 2048, 2048]
    _, lengths, values = symbol_runs(symbols)
    assert lengths[values == 3].max() == 7
    assert lengths[values == 0].max() == 6
    assert lengths.sum() == 8191


def test_decide_and_align_recover_a_rotated_pattern(symbols: np.ndarray) -> None:
    values = pam4_levels(np.roll(symbols, 1234), P0_MW, P3_MW)
    noisy = values + np.random.default_rng(1).normal(0, 0.02, values.size)
    assert np.array_equal(decide_pam4(noisy), np.roll(symbols, 1234))
    assert np.array_equal(align_pattern(noisy, symbols), np.roll(symbols, 1234))
    with pytest.raises(AnalysisError):
        align_pattern(noisy, np.random.default_rng(2).integers(0, 4, symbols.size))


# --- reference receiver ---------------------------------------------------------------------


def test_receiver_3db_point_is_at_half_the_baud_rate() -> None:
    h = reference_receiver_response([0.0, BAUD_HZ / 2], BAUD_HZ / 2)
    assert h[0] == pytest.approx(1.0, abs=1e-12)
    assert abs(h[1]) == pytest.approx(1 / math.sqrt(2), rel=1e-9)


def test_receiver_convolution_equals_the_capture_length_dft_product(levels_mw: np.ndarray) -> None:
    wave = symbol_waveform(levels_mw, SPUI, delay_samples=5)
    freq = np.fft.rfftfreq(wave.size, d=1 / (SPUI * BAUD_HZ))
    spectrum = np.fft.rfft(wave) * reference_receiver_response(freq, BAUD_HZ / 2)
    direct = np.fft.irfft(spectrum, n=wave.size)
    fast = tdecq_module._receiver(wave, SPUI * BAUD_HZ, BAUD_HZ / 2)
    np.testing.assert_allclose(fast, direct, rtol=0, atol=1e-7 * OMA_MW)


# --- known answers --------------------------------------------------------------------------


@pytest.mark.parametrize(("transition_ui", "delay_samples"), [(0.0, 0), (0.0, 19), (0.5, 7)])
def test_ideal_eye_without_receiver_reads_zero(
    levels_mw: np.ndarray, transition_ui: float, delay_samples: int
) -> None:
    wave = symbol_waveform(
        levels_mw, SPUI, transition_ui=transition_ui, delay_samples=delay_samples
    )
    res = tdecq(wave, SPUI, BAUD_HZ, reference_receiver=False)
    assert abs(res.tdecq_db) < 0.01  # acceptance: within 0.1 dB
    np.testing.assert_allclose(res.taps, IDENTITY, atol=1e-3)
    assert res.oma_outer == pytest.approx(OMA_MW, rel=1e-9)
    assert res.er_outer_db == pytest.approx(5.0, abs=0.01)
    np.testing.assert_allclose(res.thresholds, res.p_ave + np.array([-1, 0, 1]) * OMA_MW / 3)
    assert res.sigma_g == pytest.approx(SIGMA_IDEAL_MW, rel=1e-3)


def test_sparse_capture_is_interpolated(levels_mw: np.ndarray) -> None:
    wave = symbol_waveform(levels_mw, 16, transition_ui=0.5, delay_samples=3)
    res = tdecq(wave, 16, BAUD_HZ, reference_receiver=False)
    assert res.settings.analysis_samples_per_ui == 32
    assert abs(res.tdecq_db) < 0.02


@pytest.mark.parametrize("fraction", [0.5, 0.7])
def test_gaussian_noise_alone_gives_the_closed_form(levels_mw: np.ndarray, fraction: float) -> None:
    sigma_n = fraction * SIGMA_IDEAL_MW
    wave = symbol_waveform(levels_mw, SPUI, delay_samples=4)
    noisy = wave + np.random.default_rng(3).normal(0.0, sigma_n, wave.size)
    res = tdecq(noisy, SPUI, BAUD_HZ, reference_receiver=False)
    assert res.tdecq_db == pytest.approx(analytic_noise_tdecq_db(sigma_n), abs=0.1)
    assert res.c_eq == pytest.approx(1.0, abs=0.02)  # identity is optimal for white noise


def test_scope_noise_is_added_back_in_quadrature(levels_mw: np.ndarray) -> None:
    sigma_n = 0.5 * SIGMA_IDEAL_MW
    wave = symbol_waveform(levels_mw, SPUI, delay_samples=4)
    noisy = wave + np.random.default_rng(4).normal(0.0, sigma_n, wave.size)
    without = tdecq(noisy, SPUI, BAUD_HZ, reference_receiver=False)
    # All the noise attributed to the scope: the transmitter is ideal again.
    with_scope = tdecq(noisy, SPUI, BAUD_HZ, sigma_n, reference_receiver=False)
    assert with_scope.tdecq_db == pytest.approx(0.0, abs=0.1)
    assert with_scope.tdecq_db < without.tdecq_db - 0.4
    noise = math.hypot(with_scope.sigma_g, sigma_n)
    expected = 10 * math.log10(with_scope.oma_outer / (6 * Q_T * noise))
    assert with_scope.tdecq_db == pytest.approx(expected, rel=1e-9)
    assert with_scope.sigma_g == pytest.approx(without.sigma_g, rel=1e-9)  # sigma_G is unchanged


def test_ideal_eye_with_the_reference_receiver_reads_a_few_tenths(levels_mw: np.ndarray) -> None:
    wave = symbol_waveform(levels_mw, SPUI, delay_samples=9)
    res = tdecq(wave, SPUI, BAUD_HZ)
    # 0.368 dB with instantaneous edges (about 0.358 dB when the filtered waveform is first
    # interpolated to 256 samples per UI): the Bessel-Thomson ISI, mostly removed by the FFE
    # (main tap 1.067, neighbours -0.009 and -0.059) at a C_eq cost of 0.29 dB.
    assert 0.25 < res.tdecq_db < 0.45
    assert res.taps[1] > 1.0 and res.taps[2] < 0
    unequalised = tdecq(wave, SPUI, BAUD_HZ, taps=IDENTITY)
    assert unequalised.tdecq_db > res.tdecq_db + 0.5  # 1.13 dB
    assert res.settings.receiver_bandwidth_hz == BAUD_HZ / 2


def test_ffe_partly_inverts_a_post_cursor_channel(levels_mw: np.ndarray) -> None:
    channel = 0.8 * levels_mw + 0.2 * np.roll(levels_mw, 1)  # h = [0.8, 0.2], DC gain 1
    wave = symbol_waveform(channel, SPUI, delay_samples=6)
    res = tdecq(wave, SPUI, BAUD_HZ, reference_receiver=False)
    fixed = tdecq(wave, SPUI, BAUD_HZ, reference_receiver=False, taps=IDENTITY)
    assert fixed.tdecq_db > 10.0  # 18.0 dB: the worst ISI nearly closes the eye
    assert res.tdecq_db < 1.5  # 1.11 dB, almost all of it the C_eq noise enhancement
    inverse = np.array([1.0, -0.25, 0.0625]) / 0.8  # 1 / (0.8 + 0.2 z^-1), first terms
    np.testing.assert_allclose(res.taps[1:4], inverse, atol=0.03)
    assert abs(res.taps[0]) < 0.03
    assert res.oma_outer == pytest.approx(OMA_MW, rel=1e-6)  # settled levels of the long runs
    assert res.tdecq_minus_ceq_db == pytest.approx(res.tdecq_db - res.ceq_db)
    assert res.ceq_db == pytest.approx(10 * math.log10(np.sqrt(np.sum(res.taps**2))))


def test_known_pattern_rescues_an_eye_closed_before_equalisation(
    levels_mw: np.ndarray, symbols: np.ndarray
) -> None:
    channel = 0.65 * levels_mw + 0.35 * np.roll(levels_mw, 1)
    wave = symbol_waveform(channel, SPUI, transition_ui=0.3, delay_samples=11)
    res = tdecq(wave, SPUI, BAUD_HZ, symbols=symbols, pattern_name="PRBS13Q")
    assert res.oma_outer == pytest.approx(OMA_MW, rel=0.01)
    assert res.tdecq_db < 5.0
    assert res.settings.pattern_length_symbols == 8191
    assert res.settings.pattern_name == "PRBS13Q"


def test_result_names_its_settings(impaired_result: TdecqResult) -> None:
    s = impaired_result.settings
    assert s.reference_receiver and "Bessel" in s.receiver_filter and s.receiver_order == 4
    assert (s.n_taps, s.n_precursors, s.tap_spacing_ui) == (5, 1, 1.0)
    assert (s.ser_target, s.q_t) == (4.8e-4, 3.414)
    assert (s.histogram_width_ui, s.histogram_offset_ui) == (0.04, 0.05)
    assert s.scope_noise_rms == 0.002 and s.capture_length_ui == 8191
    assert "runs" in s.oma_method and s.taps_optimised
    assert impaired_result.taps.sum() == pytest.approx(1.0)


def test_tecq_is_the_same_measurement(impaired: np.ndarray, impaired_result: TdecqResult) -> None:
    assert tecq(impaired, SPUI, BAUD_HZ, 0.002).tdecq_db == impaired_result.tdecq_db


def test_binned_sigma_matches_the_exact_histogram_ser() -> None:
    rng = np.random.default_rng(5)
    y = rng.choice([-0.5, -1 / 6, 1 / 6, 0.5], 8000) + rng.normal(0, 0.03, 8000)
    weights = rng.uniform(0.2, 1.0, y.size)
    d, w = tdecq_module._binned_distances(y, np.tile(weights / weights.sum(), 2))
    sigma = tdecq_module._sigma_at_target(d, w, 4.8e-4, 0.05)
    exact = histogram_ser(y, [-1 / 3, 0, 1 / 3], sigma, weights)
    assert exact == pytest.approx(4.8e-4, rel=2e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": np.full(32 * 100, np.nan)}, "finite"),
        ({"samples": np.ones(32 * 100 + 1)}, "whole UIs"),
        ({"samples": np.ones((2, 3200))}, "1-D"),
        ({"taps": [0, 1, 0.1, 0, 0]}, "sum"),
        ({"n_precursors": 5}, "n_precursors"),
        ({"baud_rate_hz": -1.0}, "baud_rate_hz"),
        ({"symbols": np.zeros(7, dtype=int)}, "symbols"),
    ],
)
def test_bad_input_raises_analysis_error(
    levels_mw: np.ndarray, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {
        "samples": symbol_waveform(levels_mw[:100], SPUI),
        "samples_per_ui": SPUI,
        "baud_rate_hz": BAUD_HZ,
    }
    args.update(kwargs)
    with pytest.raises(AnalysisError, match=match):
        tdecq(**args)  # type: ignore[arg-type]
    assert issubclass(AnalysisError, ValueError)


def test_flat_waveform_is_not_an_eye() -> None:
    with pytest.raises(AnalysisError):
        tdecq(np.ones(32 * 100), SPUI, BAUD_HZ)


# --- invariants -----------------------------------------------------------------------------


@settings(max_examples=5, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e3))
def test_invariant_to_optical_power_scale(
    impaired: np.ndarray, impaired_result: TdecqResult, scale: float
) -> None:
    res = tdecq(impaired * scale, SPUI, BAUD_HZ, scope_noise_rms=0.002 * scale)
    assert res.tdecq_db == pytest.approx(impaired_result.tdecq_db, abs=1e-3)
    assert res.oma_outer == pytest.approx(impaired_result.oma_outer * scale, rel=1e-9)
    assert res.sigma_g == pytest.approx(impaired_result.sigma_g * scale, rel=1e-3)


@settings(max_examples=5, deadline=None)
@given(shift=st.integers(min_value=1, max_value=8191 * SPUI - 1))
@example(shift=14)  # moves the eye centre across the edge of the sample rows
def test_invariant_to_circular_shift(
    impaired: np.ndarray, impaired_result: TdecqResult, shift: int
) -> None:
    res = tdecq(np.roll(impaired, shift), SPUI, BAUD_HZ, scope_noise_rms=0.002)
    assert res.tdecq_db == pytest.approx(impaired_result.tdecq_db, abs=1e-3)
    moved = (impaired_result.centre_phase_ui + shift / SPUI) % 1.0
    assert min(abs(res.centre_phase_ui - moved), 1 - abs(res.centre_phase_ui - moved)) < 1e-3
