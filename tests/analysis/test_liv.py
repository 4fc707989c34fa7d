"""Known-answer and property tests of the L-I(-V) analysis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

from station.analysis.errors import AnalysisError
from station.analysis.liv import analyze_liv

CURRENT_A = np.linspace(0.0, 0.1, 1001)  # 0.1 mA step
STEP_A = 1e-4
THRESHOLD_A = 0.02
SLOPE_W_PER_A = 0.3


def hinge(current_a: np.ndarray) -> np.ndarray:
    """Ideal laser: no light below threshold, a straight line above it."""
    return SLOPE_W_PER_A * np.clip(current_a - THRESHOLD_A, 0.0, None)


def soft_knee(current_a: np.ndarray, knee_a: float = 2e-3) -> np.ndarray:
    """Softplus knee: d2P/dI2 peaks exactly at threshold and the asymptote meets zero there."""
    return SLOPE_W_PER_A * knee_a * np.logaddexp(0.0, (current_a - THRESHOLD_A) / knee_a)


def noisy(power_w: np.ndarray, sigma_w: float, seed: int = 7) -> np.ndarray:
    return power_w + np.random.default_rng(seed).normal(0.0, sigma_w, power_w.size)


def test_ideal_hinge_with_noise_gives_threshold_and_slope() -> None:
    result = analyze_liv(CURRENT_A, noisy(hinge(CURRENT_A), 1e-5))

    assert result.threshold_method == "linear_fit"
    assert result.threshold_a == result.threshold_linear_fit_a
    assert result.threshold_linear_fit_a == pytest.approx(THRESHOLD_A, abs=5e-5)
    assert result.threshold_second_derivative_a == pytest.approx(THRESHOLD_A, abs=2 * STEP_A)
    assert result.slope_w_per_a == pytest.approx(SLOPE_W_PER_A, rel=2e-3)
    assert result.kink_currents_a.size == 0
    assert result.rollover_current_a is None
    assert result.series_resistance_ohm is None
    # Fit window is 20 % to 80 % of the maximum power (24 mW): 4.8 mW at 36 mA, 19.2 mW at 84 mA.
    assert result.fit_window_a[0] == pytest.approx(0.036, abs=2 * STEP_A)
    assert result.fit_window_a[1] == pytest.approx(0.084, abs=2 * STEP_A)
    assert result.fit_rms_residual_w == pytest.approx(1e-5, rel=0.2)


def test_smooth_knee_both_methods_give_the_threshold() -> None:
    result = analyze_liv(CURRENT_A, soft_knee(CURRENT_A), threshold_method="second_derivative")

    assert result.threshold_method == "second_derivative"
    assert result.threshold_a == result.threshold_second_derivative_a
    assert result.threshold_second_derivative_a == pytest.approx(THRESHOLD_A, rel=1e-5)
    assert result.threshold_linear_fit_a == pytest.approx(THRESHOLD_A, rel=1e-4)
    assert result.slope_w_per_a == pytest.approx(SLOPE_W_PER_A, rel=1e-5)


def test_spontaneous_emission_separates_the_two_methods() -> None:
    # P = soft knee + a I: the line above threshold has slope eta + a and meets zero at
    # eta I_th / (eta + a); d2P/dI2 still peaks at I_th.
    spontaneous_w_per_a = 0.03
    power_w = soft_knee(CURRENT_A) + spontaneous_w_per_a * CURRENT_A

    result = analyze_liv(CURRENT_A, power_w)

    expected_linear = SLOPE_W_PER_A * THRESHOLD_A / (SLOPE_W_PER_A + spontaneous_w_per_a)
    assert result.threshold_linear_fit_a == pytest.approx(expected_linear, rel=1e-4)
    assert result.threshold_second_derivative_a == pytest.approx(THRESHOLD_A, rel=1e-5)
    assert result.slope_w_per_a == pytest.approx(SLOPE_W_PER_A + spontaneous_w_per_a, rel=1e-5)


def test_kink_is_found_at_its_current() -> None:
    # dL/dI dips by half over ~1 mA around 60 mA (a mode hop).
    kink_a, width_a = 0.06, 1e-3
    lost = 0.5 * SLOPE_W_PER_A * width_a * np.sqrt(np.pi) / 2.0
    power_w = np.where(
        CURRENT_A > THRESHOLD_A,
        hinge(CURRENT_A)
        - lost * (erf((CURRENT_A - kink_a) / width_a) - erf((THRESHOLD_A - kink_a) / width_a)),
        0.0,
    )

    result = analyze_liv(CURRENT_A, noisy(power_w, 5e-6))

    np.testing.assert_allclose(result.kink_currents_a, [kink_a], atol=3 * STEP_A)
    # The kink removes 0.27 mW above 60 mA, which tilts the fitted line by about 3 %.
    assert result.slope_w_per_a == pytest.approx(SLOPE_W_PER_A, rel=0.05)
    assert result.threshold_linear_fit_a == pytest.approx(THRESHOLD_A, rel=0.05)


def test_s_shaped_kink_counts_once() -> None:
    # A Gaussian bump of power: dL/dI swings 40 % above then below the slope around 60 mA and
    # passes through it in between; the short gap must not split the kink in two.
    kink_a, width_a = 0.06, 1e-3
    bump_w = 0.4 * width_a * SLOPE_W_PER_A / (np.sqrt(2.0) * np.exp(-0.5))
    power_w = hinge(CURRENT_A) + bump_w * np.exp(-(((CURRENT_A - kink_a) / width_a) ** 2))

    result = analyze_liv(CURRENT_A, power_w)

    assert result.kink_currents_a.size == 1
    # Reported at the larger lobe, width / sqrt(2) either side of the centre.
    assert abs(result.kink_currents_a[0] - kink_a) == pytest.approx(width_a / np.sqrt(2), abs=3e-4)


def test_fit_window_in_current_avoids_the_kink() -> None:
    kink_a = 0.07
    power_w = hinge(CURRENT_A) - np.clip(CURRENT_A - kink_a, 0.0, 2e-3) * 0.5 * SLOPE_W_PER_A

    result = analyze_liv(CURRENT_A, power_w, fit_window_current_a=(0.03, 0.06))

    assert result.threshold_linear_fit_a == pytest.approx(THRESHOLD_A, rel=1e-9)
    assert result.slope_w_per_a == pytest.approx(SLOPE_W_PER_A, rel=1e-9)
    # The window holds the samples inside the range: 60 mA may round just outside.
    assert result.fit_window_a == pytest.approx((0.03, 0.06), abs=1.01 * STEP_A)
    assert result.kink_currents_a.size == 1
    assert 0.07 <= result.kink_currents_a[0] <= 0.072


def test_thermal_rollover_is_reported_not_taken_for_a_kink() -> None:
    # P = eta x (1 - (x / x0)^4), x = I - I_th: maximum at x = x0 / 5^(1/4).
    x0_a = 0.09
    excess_a = np.clip(CURRENT_A - THRESHOLD_A, 0.0, None)
    power_w = SLOPE_W_PER_A * excess_a * (1.0 - (excess_a / x0_a) ** 4)

    result = analyze_liv(CURRENT_A, power_w, threshold_method="second_derivative")

    peak_a = THRESHOLD_A + x0_a / 5.0**0.25
    assert result.rollover_current_a == pytest.approx(peak_a, abs=1e-6)
    assert result.max_power_w == pytest.approx(np.max(power_w))
    assert result.kink_currents_a.size == 0
    assert result.threshold_second_derivative_a == pytest.approx(THRESHOLD_A, abs=STEP_A / 2)
    # The line over 20-80 % of the maximum already sees the bending: a few % off.
    assert result.threshold_linear_fit_a == pytest.approx(THRESHOLD_A, rel=0.05)


def test_series_resistance_and_power_at_operating_current() -> None:
    resistance_ohm, v0_v = 4.5, 1.15
    # Diode below threshold, junction voltage clamped above: V = V0 + R I there.
    diode_v = 0.05 * np.log1p(CURRENT_A / 1e-9)
    voltage_v = np.where(
        CURRENT_A > THRESHOLD_A,
        v0_v + resistance_ohm * CURRENT_A,
        np.minimum(diode_v, v0_v) + resistance_ohm * CURRENT_A,
    )
    power_w = soft_knee(CURRENT_A)

    result = analyze_liv(CURRENT_A, power_w, voltage_v, operating_current_a=0.05005)

    assert result.series_resistance_ohm == pytest.approx(resistance_ohm, rel=1e-9)
    expected = np.interp(0.05005, CURRENT_A, power_w)
    assert result.power_at_operating_w == pytest.approx(expected, rel=1e-12)
    assert result.power_at_operating_w == pytest.approx(SLOPE_W_PER_A * 0.03005, rel=1e-4)
    assert result.operating_current_a == 0.05005


def test_series_resistance_with_voltage_noise() -> None:
    voltage_v = noisy(1.2 + 5.0 * CURRENT_A, 2e-4, seed=3)

    result = analyze_liv(CURRENT_A, soft_knee(CURRENT_A), voltage_v)

    # 480 points over 48 mA with 0.2 mV noise: standard error about 0.03 ohm.
    assert result.series_resistance_ohm == pytest.approx(5.0, abs=0.15)


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(min_value=1e-6, max_value=1e4), knee_a=st.floats(1e-4, 4e-3))
def test_threshold_is_invariant_to_power_scale(scale: float, knee_a: float) -> None:
    power_w = noisy(soft_knee(CURRENT_A, knee_a), 1e-5, seed=11)

    base = analyze_liv(CURRENT_A, power_w)
    scaled = analyze_liv(CURRENT_A, scale * power_w)

    assert scaled.threshold_linear_fit_a == pytest.approx(base.threshold_linear_fit_a, rel=1e-9)
    assert scaled.threshold_second_derivative_a == pytest.approx(
        base.threshold_second_derivative_a, rel=1e-9
    )
    assert scaled.slope_w_per_a == pytest.approx(scale * base.slope_w_per_a, rel=1e-9)
    np.testing.assert_allclose(scaled.kink_currents_a, base.kink_currents_a)


@pytest.mark.parametrize(
    ("current", "power", "message"),
    [
        (CURRENT_A[:5], hinge(CURRENT_A[:5]), "need at least"),
        (CURRENT_A, hinge(CURRENT_A)[:-1], "shape"),
        (CURRENT_A[::-1], hinge(CURRENT_A), "strictly increasing"),
        (CURRENT_A**2, hinge(CURRENT_A), "not uniform"),
        (CURRENT_A, np.where(CURRENT_A > 0.05, np.nan, 0.0), "NaN"),
        (CURRENT_A, np.zeros_like(CURRENT_A), "no light"),
    ],
)
def test_bad_input_is_rejected(current: np.ndarray, power: np.ndarray, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        analyze_liv(current, power)


def test_bad_options_are_rejected() -> None:
    with pytest.raises(AnalysisError, match="threshold_method"):
        analyze_liv(CURRENT_A, hinge(CURRENT_A), threshold_method="fit")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="operating_current_a"):
        analyze_liv(CURRENT_A, hinge(CURRENT_A), operating_current_a=0.2)
    with pytest.raises(AnalysisError, match="fit_window_power_fraction"):
        analyze_liv(CURRENT_A, hinge(CURRENT_A), fit_window_power_fraction=(0.8, 0.2))
