"""Tests of station.analysis.eye: known answers on synthetic PAM4/NRZ captures, and invariants.

The synthetic captures have analytic answers: flat levels with raised-cosine edges, Gaussian noise
and Gaussian/bounded/sinusoidal edge jitter of known size, started at a random phase of the UI.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import ndtri

from station.analysis.errors import AnalysisError
from station.analysis.eye import (
    Jitter,
    bathtub,
    nrz_eye,
    nrz_jitter,
    pam4_eye,
    rlm_annex_120d,
    rlm_clause_94,
)

# Unequal PAM4 spacing (mW). Vmid = 1.2, ES1 = 0.4, ES2 = 0.3: RLM(120D) = min(1.2, 0.9, 0.8, 1.1)
# = 0.8; spacings 0.6, 0.7, 0.7 over a mean of 2/3: level-spacing ratio 0.9.
PAM4_LEVELS_MW = np.array([0.2, 0.8, 1.5, 2.2])
NRZ_LEVELS_MW = np.array([0.1, 1.0])


def _edge(u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Raised-cosine step from 0 (u <= -1/2) to 1 (u >= 1/2)."""
    return 0.5 * (1.0 + np.sin(np.pi * np.clip(u, -0.5, 0.5)))


def waveform(
    values: NDArray[np.float64],
    samples_per_ui: int,
    rise_ui: float,
    *,
    noise: float | NDArray[np.float64] = 0.0,
    edge_shift_ui: NDArray[np.float64] | None = None,
    shift_samples: int = 0,
    seed: int = 0,
    dtype: type = np.float64,
) -> NDArray[np.floating]:
    """Periodic capture of ``values`` (one per UI), sample k at time k / samples_per_ui UI.

    UI n spans [n, n + 1) UI with its flat centre at n + 1/2; the edge into UI n is centred at
    n + edge_shift_ui[n] and lasts ``rise_ui``. ``noise`` is the Gaussian sigma, a scalar or one
    per UI. The result is circularly shifted by ``shift_samples``, so the eye centre sits at
    phase (1/2 + shift_samples / samples_per_ui) mod 1.
    """
    n_ui = values.size
    k = np.arange(n_ui * samples_per_ui)
    t = k / samples_per_ui
    ui = k // samples_per_ui
    nxt = (ui + 1) % n_ui
    shift = np.zeros(n_ui) if edge_shift_ui is None else edge_shift_ui
    prev, cur, after = values[ui - 1], values[ui], values[nxt]
    x = (
        prev
        + (cur - prev) * _edge((t - ui - shift[ui]) / rise_ui)
        + (after - cur) * _edge((t - ui - 1 - shift[nxt]) / rise_ui)
    )
    sigma = np.broadcast_to(np.asarray(noise, dtype=np.float64), (n_ui,))[ui]
    if np.any(sigma > 0):
        x = x + sigma * np.random.default_rng(seed).standard_normal(x.size)
    return np.roll(x, shift_samples).astype(dtype)


def expected_widths(levels: NDArray[np.float64], sigma: float, rise_ui: float) -> NDArray:
    """Analytic sigma-method eye widths for i.i.d. equiprobable symbols and raised-cosine edges.

    A fraction s into the next edge, a UI at level a reads a + (b - a) s + noise with b the next
    symbol, so each level has mean a + (mean(L) - a) s and variance s^2 var(L) + sigma^2; eye i
    shuts where dL_i (1 - s) = 6 sqrt(s^2 var(L) + sigma^2), at time
    1/2 + rise asin(2 s - 1)/pi from the centre, on both sides.
    """
    var = float(np.var(levels))
    widths = []
    for gap in np.diff(levels):

        def height(s: float, gap: float = gap) -> float:
            return gap * (1 - s) - 6.0 * np.sqrt(s * s * var + sigma * sigma)

        s_shut = brentq(height, 0.0, 1.0)
        widths.append(1.0 + 2.0 * rise_ui * np.arcsin(2.0 * s_shut - 1.0) / np.pi)
    return np.array(widths)


def circular_distance(a: float, b: float) -> float:
    return abs((a - b + 0.5) % 1.0 - 0.5)


# --- PAM4 known answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "shift", "seed"),
    [(np.float64, 0, 1), (np.float64, 21, 2), (np.float32, 7, 3), (np.float32, 30, 4)],
)
def test_pam4_levels_noise_rlm_at_random_phase(dtype: type, shift: int, seed: int) -> None:
    spu, rise, sigma = 32, 0.4, 0.02
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, 4, 2**15)
    x = waveform(
        PAM4_LEVELS_MW[symbols],
        spu,
        rise,
        noise=sigma,
        shift_samples=shift,
        seed=seed,
        dtype=dtype,
    )

    eye = pam4_eye(x, spu)

    # 8k UIs x 7 window samples per level: standard error of a mean ~ sigma / 240 = 8e-5 mW.
    np.testing.assert_allclose(eye.levels, PAM4_LEVELS_MW, atol=4e-4)
    np.testing.assert_allclose(eye.level_sigmas, sigma, rtol=0.02)
    np.testing.assert_allclose(eye.eye_heights, np.diff(PAM4_LEVELS_MW) - 6 * sigma, atol=1.5e-3)
    assert eye.rlm == pytest.approx(0.8, abs=2e-3)
    assert eye.rlm_clause94 == pytest.approx(0.9, abs=2e-3)
    assert eye.oma_outer == pytest.approx(2.0, abs=5e-4)
    assert eye.er_outer_db == pytest.approx(10 * np.log10(2.2 / 0.2), abs=0.01)
    assert eye.average_power == pytest.approx(float(np.mean(x, dtype=np.float64)), rel=1e-6)
    assert circular_distance(eye.centre_phase_ui, 0.5 + shift / spu) < 0.01
    np.testing.assert_allclose(
        eye.eye_widths, expected_widths(PAM4_LEVELS_MW, sigma, rise), atol=0.01
    )
    assert eye.samples_per_ui == spu
    # Every whole UI is decided correctly; the UI cut by the capture start is not used.
    missing = np.bincount(symbols, minlength=4) - eye.symbol_counts
    assert np.all((missing >= 0) & (missing <= 1)) and missing.sum() <= 1


def test_pam4_noise_free_is_exact() -> None:
    spu, rise = 16, 0.5
    symbols = np.random.default_rng(5).integers(0, 4, 2**12)
    x = waveform(PAM4_LEVELS_MW[symbols], spu, rise, shift_samples=11)

    eye = pam4_eye(x, spu)

    np.testing.assert_allclose(eye.levels, PAM4_LEVELS_MW, rtol=1e-12)
    # Sigma = sqrt(E[x^2] - mu^2): float64 cancellation leaves ~1e-7 of a 2 mW level.
    np.testing.assert_allclose(eye.level_sigmas, 0.0, atol=1e-6)
    np.testing.assert_allclose(eye.eye_heights, np.diff(PAM4_LEVELS_MW), atol=1e-5)
    assert eye.rlm == pytest.approx(0.8, abs=1e-12)
    assert eye.rlm_clause94 == pytest.approx(0.9, abs=1e-12)
    assert circular_distance(eye.centre_phase_ui, 0.5 + 11 / spu) < 1e-3
    np.testing.assert_allclose(
        eye.eye_widths, expected_widths(PAM4_LEVELS_MW, 0.0, rise), atol=0.01
    )


def test_pam4_repeating_pattern_is_not_aliased() -> None:
    """An 8191-symbol pattern (the PRBS13Q period) repeated: the subset must see all levels."""
    spu = 16
    pattern = np.random.default_rng(6).integers(0, 4, 8191)
    symbols = np.tile(pattern, 20)
    x = waveform(PAM4_LEVELS_MW[symbols], spu, 0.3, noise=0.01, shift_samples=3, seed=6)

    eye = pam4_eye(x, spu)

    np.testing.assert_allclose(eye.levels, PAM4_LEVELS_MW, atol=3e-4)
    np.testing.assert_allclose(eye.level_sigmas, 0.01, rtol=0.02)


def test_pam4_zero_level_at_or_below_zero_gives_infinite_er() -> None:
    levels = np.array([0.0, 1.0, 2.0, 3.0])
    symbols = np.random.default_rng(7).integers(0, 4, 2**11)
    eye = pam4_eye(waveform(levels[symbols], 8, 0.3), 8)
    assert eye.er_outer_db == np.inf
    assert eye.rlm == pytest.approx(1.0)


def test_pam4_window_ui_selects_samples() -> None:
    """A wider window reaches into the edges; the narrowest uses the centre sample only."""
    spu, rise = 16, 0.8
    symbols = np.random.default_rng(8).integers(0, 4, 2**12)
    x = waveform(PAM4_LEVELS_MW[symbols], spu, rise, shift_samples=2)
    narrow = pam4_eye(x, spu, window_ui=0.01)
    wide = pam4_eye(x, spu, window_ui=0.5)
    np.testing.assert_allclose(narrow.level_sigmas, 0.0, atol=1e-6)
    assert np.all(wide.level_sigmas > 0.01)


def test_rlm_formulas_known_values() -> None:
    assert rlm_annex_120d([0, 1, 2, 3]) == pytest.approx(1.0)
    assert rlm_clause_94([0, 1, 2, 3]) == pytest.approx(1.0)
    # V1 pulled down: ES1 = (0.8 - 1.5) / -1.5, 2 - 3 ES1 = 0.6; spacings 0.8, 1.2, 1.0.
    assert rlm_annex_120d([0, 0.8, 2, 3]) == pytest.approx(0.6)
    assert rlm_clause_94([0, 0.8, 2, 3]) == pytest.approx(0.8)
    with pytest.raises(AnalysisError, match="levels"):
        rlm_annex_120d([0, 2, 1, 3])


# --- NRZ known answers ---------------------------------------------------------------------------


def test_nrz_levels_sigmas_q_er() -> None:
    spu, rise = 32, 0.3
    bits = np.random.default_rng(10).integers(0, 2, 2**15)
    sigma_by_bit = np.array([0.01, 0.02])
    x = waveform(NRZ_LEVELS_MW[bits], spu, rise, noise=sigma_by_bit[bits], shift_samples=9, seed=10)

    eye = nrz_eye(x, spu)

    assert eye.zero_level == pytest.approx(0.1, abs=3e-4)
    assert eye.one_level == pytest.approx(1.0, abs=5e-4)
    assert eye.zero_sigma == pytest.approx(0.01, rel=0.02)
    assert eye.one_sigma == pytest.approx(0.02, rel=0.02)
    assert eye.eye_height == pytest.approx(0.9 - 3 * 0.01 - 3 * 0.02, abs=2e-3)
    assert eye.q_factor == pytest.approx(0.9 / 0.03, rel=0.02)
    assert eye.oma == pytest.approx(0.9, abs=6e-4)
    assert eye.er_db == pytest.approx(10.0, abs=0.015)
    assert eye.crossing_percent == pytest.approx(50.0, abs=0.5)
    assert circular_distance(eye.centre_phase_ui, 0.5 + 9 / spu) < 0.01
    assert eye.average_power == pytest.approx(float(np.mean(x)), rel=1e-9)


def test_nrz_eye_width_matches_analytic() -> None:
    spu, rise, sigma = 32, 0.5, 0.02
    bits = np.random.default_rng(11).integers(0, 2, 2**15)
    x = waveform(NRZ_LEVELS_MW[bits], spu, rise, noise=sigma, shift_samples=5, seed=11)
    eye = nrz_eye(x, spu)
    assert eye.eye_width == pytest.approx(expected_widths(NRZ_LEVELS_MW, sigma, rise)[0], abs=0.01)


@pytest.mark.parametrize("pwd_ui", [0.0, 0.05, -0.08])
def test_nrz_crossing_percent_with_pulse_width_distortion(pwd_ui: float) -> None:
    """Rising edges early and falling edges late by d: they cross at 50 (1 + sin(pi d / rise))."""
    spu, rise = 32, 0.3
    bits = np.random.default_rng(12).integers(0, 2, 2**14)
    step = bits - np.roll(bits, 1)
    edge_shift = np.where(step > 0, -pwd_ui, np.where(step < 0, pwd_ui, 0.0))
    x = waveform(
        NRZ_LEVELS_MW[bits],
        spu,
        rise,
        noise=0.005,
        edge_shift_ui=edge_shift,
        shift_samples=17,
        seed=12,
    )
    eye = nrz_eye(x, spu)
    assert eye.crossing_percent == pytest.approx(
        50.0 * (1.0 + np.sin(np.pi * pwd_ui / rise)), abs=0.5
    )


# --- Jitter --------------------------------------------------------------------------------------
# 2**17 UI of random bits give ~65k edges. Measured spread of the tail fits at that size (20
# seeds): RJ +-2 %, DJ +-0.002 UI (1 sigma). Tolerances: RJ 10 %, DJ 0.006 UI; sinusoidal DJ is
# not dual-Dirac, so its DJ(dd) sits below the peak-to-peak value (expected 0.85-0.9 of it) and
# its RJ reads a few % high: DJ within [0.75, 1.0] x pp, RJ within [0.9, 1.2] x RJ.

JITTER_UI = 2**17
RJ_UI = 0.01


def _jittered(edge_shift_ui: NDArray[np.float64], seed: int, noise: float = 0.0) -> NDArray:
    bits = np.random.default_rng(seed).integers(0, 2, JITTER_UI)
    return waveform(
        NRZ_LEVELS_MW[bits],
        32,
        0.3,
        noise=noise,
        edge_shift_ui=edge_shift_ui,
        shift_samples=seed % 32,
        seed=seed,
    )


def test_jitter_gaussian_only() -> None:
    rng = np.random.default_rng(20)
    x = _jittered(rng.normal(0.0, RJ_UI, JITTER_UI), seed=20)
    jit = nrz_jitter(x, 32)
    assert jit.rj_rms_ui == pytest.approx(RJ_UI, rel=0.1)
    assert abs(jit.dj_pp_ui) < 0.006
    assert jit.tj_ui == pytest.approx(jit.dj_pp_ui + 2 * 7.0345 * jit.rj_rms_ui, rel=1e-4)
    assert 64_000 < jit.n_edges < 67_000  # half of 2**17 random bits change


def test_jitter_dual_dirac_with_amplitude_noise() -> None:
    """Bounded +-0.03 UI jitter (two Diracs) plus RJ; small amplitude noise adds chatter only."""
    rng = np.random.default_rng(21)
    dirac = 0.03 * rng.choice([-1.0, 1.0], JITTER_UI)
    x = _jittered(dirac + rng.normal(0.0, RJ_UI, JITTER_UI), seed=21, noise=0.002)
    jit = nrz_jitter(x, 32, ber=1e-12)
    # Amplitude noise 0.002 over a slope of pi/(2 * 0.3) per UI adds ~0.0004 UI in quadrature.
    assert jit.rj_rms_ui == pytest.approx(RJ_UI, rel=0.1)
    assert jit.dj_pp_ui == pytest.approx(0.06, abs=0.006)
    assert jit.tj_ui == pytest.approx(0.06 + 14.069 * RJ_UI, rel=0.1)


def test_jitter_sinusoidal() -> None:
    rng = np.random.default_rng(22)
    n = np.arange(JITTER_UI)
    sj = 0.04 * np.sin(2 * np.pi * n / 97.31 + 0.4)
    x = _jittered(sj + rng.normal(0.0, RJ_UI, JITTER_UI), seed=22)
    jit = nrz_jitter(x, 32)
    assert 0.75 * 0.08 <= jit.dj_pp_ui <= 0.08
    assert 0.9 * RJ_UI <= jit.rj_rms_ui <= 1.2 * RJ_UI


def test_q_inverse_constant() -> None:
    assert -ndtri(1e-12) == pytest.approx(7.0345, abs=1e-4)


def test_bathtub_meets_ber_at_one_minus_tj() -> None:
    jit = Jitter(
        rj_rms_ui=0.01,
        dj_pp_ui=0.1,
        tj_ui=0.1 + 14.069 * 0.01,
        ber=1e-12,
        left_mean_ui=-0.05,
        left_sigma_ui=0.01,
        right_mean_ui=0.05,
        right_sigma_ui=0.01,
        n_edges=10_000,
    )
    phase = np.linspace(0.0, 1.0, 100_001)
    tub = bathtub(jit, phase)
    open_at_1e12 = phase[tub.ber <= 1e-12]
    width = open_at_1e12[-1] - open_at_1e12[0]
    assert width == pytest.approx(1.0 - jit.tj_ui, abs=1e-4)
    assert tub.ber[0] == pytest.approx(0.5)
    assert tub.ber[50_000] < 1e-100
    np.testing.assert_allclose(tub.ber, tub.ber[::-1], rtol=1e-9, atol=1e-300)
    assert bathtub(jit).phase_ui.shape == (201,)


# --- Bad input -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _base_pam4() -> NDArray[np.float64]:
    symbols = np.random.default_rng(30).integers(0, 4, 2**13)
    x = waveform(PAM4_LEVELS_MW[symbols], 16, 0.4, noise=0.02, seed=30)
    x.setflags(write=False)
    return x


def test_bad_input_raises_analysis_error() -> None:
    x = _base_pam4()
    with pytest.raises(AnalysisError, match="1-D"):
        pam4_eye(x.reshape(-1, 16), 16)
    with pytest.raises(AnalysisError, match="samples_per_ui"):
        pam4_eye(x, 2)
    with pytest.raises(AnalysisError, match="samples_per_ui"):
        pam4_eye(x, 16.5)  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="need at least"):
        pam4_eye(x[: 16 * 50], 16)
    with pytest.raises(AnalysisError, match="real"):
        pam4_eye(x.astype(complex), 16)
    with pytest.raises(AnalysisError, match="modulation"):
        pam4_eye(np.ones(16 * 1000), 16)
    with pytest.raises(AnalysisError, match="window_ui"):
        pam4_eye(x, 16, window_ui=0.0)
    with pytest.raises(AnalysisError, match="ber"):
        nrz_jitter(x, 16, ber=0.7)
    assert issubclass(AnalysisError, ValueError)


@pytest.mark.parametrize("where", [5, 16 * 4000 + 3, 16 * 2**13 - 1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise(where: int, bad: float) -> None:
    x = _base_pam4().copy()
    x[where] = bad
    with pytest.raises(AnalysisError, match="NaN or infinite"):
        pam4_eye(x, 16)


def test_too_few_edges_for_jitter() -> None:
    bits = np.repeat(np.random.default_rng(31).integers(0, 2, 40), 40)
    x = waveform(NRZ_LEVELS_MW[bits], 16, 0.3)
    with pytest.raises(AnalysisError, match="edges"):
        nrz_jitter(x, 16)


def test_results_are_frozen() -> None:
    eye = pam4_eye(_base_pam4(), 16)
    with pytest.raises(AttributeError):
        eye.rlm = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        eye.levels[0] = 0.0


# --- Invariants (hypothesis) -------------------------------------------------------------------

FAST = settings(max_examples=15, deadline=None, derandomize=True)


@FAST
@given(factor=st.floats(min_value=1e-3, max_value=1e3))
def test_scaling_power_scales_levels_and_keeps_er_rlm(factor: float) -> None:
    x = _base_pam4()
    ref = pam4_eye(x, 16)
    eye = pam4_eye(x * factor, 16)
    np.testing.assert_allclose(eye.levels, ref.levels * factor, rtol=1e-9)
    np.testing.assert_allclose(eye.level_sigmas, ref.level_sigmas * factor, rtol=1e-6)
    assert eye.oma_outer == pytest.approx(ref.oma_outer * factor, rel=1e-9)
    assert eye.average_power == pytest.approx(ref.average_power * factor, rel=1e-9)
    assert eye.er_outer_db == pytest.approx(ref.er_outer_db, abs=1e-9)
    assert eye.rlm == pytest.approx(ref.rlm, abs=1e-9)
    assert eye.rlm_clause94 == pytest.approx(ref.rlm_clause94, abs=1e-9)
    np.testing.assert_allclose(eye.eye_widths, ref.eye_widths, atol=1e-6)


@FAST
@given(offset=st.floats(min_value=-3.0, max_value=10.0))
def test_offset_shifts_levels_and_keeps_oma(offset: float) -> None:
    x = _base_pam4()
    ref = pam4_eye(x, 16)
    eye = pam4_eye(x + offset, 16)
    np.testing.assert_allclose(eye.levels, ref.levels + offset, atol=1e-9)
    np.testing.assert_allclose(eye.level_sigmas, ref.level_sigmas, rtol=1e-5)
    assert eye.oma_outer == pytest.approx(ref.oma_outer, abs=1e-9)
    assert eye.rlm == pytest.approx(ref.rlm, abs=1e-8)
    np.testing.assert_allclose(eye.eye_heights, ref.eye_heights, atol=1e-7)


@FAST
@given(shift=st.integers(min_value=1, max_value=16 * 2**13 - 1))
def test_result_does_not_depend_on_capture_phase(shift: int) -> None:
    x = _base_pam4()
    ref = pam4_eye(x, 16)
    eye = pam4_eye(np.roll(x, shift), 16)
    oma = ref.oma_outer
    np.testing.assert_allclose(eye.levels, ref.levels, atol=1e-3 * oma)
    np.testing.assert_allclose(eye.level_sigmas, ref.level_sigmas, rtol=0.03)
    np.testing.assert_allclose(eye.eye_widths, ref.eye_widths, atol=0.02)
    assert eye.rlm == pytest.approx(ref.rlm, abs=2e-3)
    assert eye.average_power == pytest.approx(ref.average_power, rel=1e-12)
    assert circular_distance(eye.centre_phase_ui, ref.centre_phase_ui + shift / 16) < 0.02


@FAST
@given(factor=st.floats(min_value=1e-2, max_value=1e2), shift=st.integers(0, 15))
def test_nrz_q_and_er_are_scale_invariant(factor: float, shift: int) -> None:
    bits = np.random.default_rng(32).integers(0, 2, 2**12)
    x = waveform(NRZ_LEVELS_MW[bits], 16, 0.3, noise=0.01, shift_samples=shift, seed=32)
    ref = nrz_eye(x, 16)
    eye = nrz_eye(x * factor, 16)
    assert eye.q_factor == pytest.approx(ref.q_factor, rel=1e-6)
    assert eye.er_db == pytest.approx(ref.er_db, abs=1e-9)
    assert eye.oma == pytest.approx(ref.oma * factor, rel=1e-9)
    assert eye.crossing_percent == pytest.approx(ref.crossing_percent, abs=1e-6)
