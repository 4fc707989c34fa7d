"""Tests of station.analysis.ber: Q and BER, PAM4 SER, Poisson confidence, sensitivity, bathtub."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from station.analysis.ber import (
    bathtub,
    ber_interval,
    ber_to_q,
    bits_for_confidence,
    confidence_level,
    histogram_ser,
    pam4_ser,
    pam4_ser_to_q,
    q_of_ber,
    q_to_ber,
    sensitivity,
)
from station.analysis.errors import AnalysisError

KP4_BER = 2.4e-4


# --- Q and BER ------------------------------------------------------------------------------


def test_q_of_1e12_is_7_0345() -> None:
    assert ber_to_q(1e-12) == pytest.approx(7.0345, abs=1e-4)
    assert q_to_ber(7.0345) == pytest.approx(1e-12, rel=1e-3)
    assert q_to_ber(0.0) == pytest.approx(0.5)


def test_conversions_are_vectorised() -> None:
    q = np.array([[1.0, 2.0], [3.0, 4.0]])
    ber = q_to_ber(q)
    assert isinstance(ber, np.ndarray) and ber.shape == (2, 2)
    np.testing.assert_allclose(ber_to_q(ber), q, rtol=1e-12)
    assert isinstance(ber_to_q(1e-3), float)


@settings(max_examples=50, deadline=None)
@given(q=st.floats(min_value=-2.0, max_value=37.0))
def test_ber_to_q_inverts_q_to_ber(q: float) -> None:
    assert ber_to_q(q_to_ber(q)) == pytest.approx(q, rel=1e-9, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(ser=st.floats(min_value=1e-300, max_value=0.7))
def test_pam4_ser_to_q_inverts_pam4_ser(ser: float) -> None:
    q = pam4_ser_to_q(ser)
    assert pam4_ser(6.0 * q, 1.0) == pytest.approx(ser, rel=1e-9)


def test_pam4_ser_at_the_tdecq_operating_point() -> None:
    oma_mw = 1.0
    assert pam4_ser(oma_mw, oma_mw / (6 * 3.414)) == pytest.approx(4.8e-4, rel=1e-3)
    # PAM4 Q uses SER = 2 BER: the KP4 target 2.4e-4 sits at Q_t.
    assert q_of_ber(KP4_BER) == pytest.approx(3.414, abs=1e-3)
    assert q_of_ber(1e-12, "nrz") == pytest.approx(7.0345, abs=1e-4)


def test_histogram_ser_of_ideal_levels_is_the_pam4_formula() -> None:
    samples = np.repeat(np.array([0.0, 1.0, 2.0, 3.0]) / 3.0, 100)
    sigma = 0.05
    expected = 1.5 * 0.5 * math.erfc((1 / 6) / sigma / math.sqrt(2))
    assert histogram_ser(samples, [1 / 6, 0.5, 5 / 6], sigma) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (ber_to_q, (0.0,)),
        (ber_to_q, (1.5,)),
        (ber_to_q, (math.nan,)),
        (pam4_ser, (1.0, 0.0)),
        (pam4_ser_to_q, (0.8,)),
        (q_of_ber, (1e-3, "qam16")),
        (confidence_level, (1e9, 0.5, 1e-9)),
        (confidence_level, (-1.0, 0, 1e-9)),
        (bits_for_confidence, (1e-12, 1.0)),
        (ber_interval, (10, 11)),
        (bathtub, (0.5, 0.0, 0.1)),
    ],
)
def test_bad_input_raises(func: object, args: tuple[object, ...]) -> None:
    with pytest.raises(AnalysisError):
        func(*args)  # type: ignore[operator]


# --- confidence -----------------------------------------------------------------------------


@pytest.mark.parametrize(("errors", "n_times_ber"), [(0, 2.996), (1, 4.744), (2, 6.296)])
def test_95_percent_confidence_values(errors: int, n_times_ber: float) -> None:
    ber = 1e-12
    assert bits_for_confidence(ber, 0.95, errors) * ber == pytest.approx(n_times_ber, abs=1e-3)
    assert confidence_level(n_times_ber / ber, errors, ber) == pytest.approx(0.95, abs=1e-4)


def test_domain_facts_on_test_time() -> None:
    assert bits_for_confidence(KP4_BER) == pytest.approx(12.5e3, rel=0.01)  # about 12.5 kbit
    assert bits_for_confidence(1e-12) / 212.5e9 == pytest.approx(14.1, abs=0.05)  # seconds
    assert bits_for_confidence(1e-12) / 106.25e9 == pytest.approx(28.2, abs=0.05)


def test_confidence_level_is_the_poisson_sum() -> None:
    n, e, ber = 3e12, np.arange(5), 1e-12
    mu = n * ber
    direct = 1 - np.array(
        [sum(mu**k * math.exp(-mu) / math.factorial(k) for k in range(x + 1)) for x in e]
    )
    np.testing.assert_allclose(confidence_level(n, e, ber), direct, rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    bits=st.floats(min_value=1.0, max_value=1e15),
    factor=st.floats(min_value=1.0001, max_value=100.0),
    errors=st.integers(min_value=0, max_value=50),
)
def test_confidence_level_grows_with_bits(bits: float, factor: float, errors: int) -> None:
    ber = 1e-9
    assert confidence_level(bits * factor, errors, ber) >= confidence_level(bits, errors, ber)


@settings(max_examples=30, deadline=None)
@given(
    errors=st.integers(min_value=0, max_value=100),
    confidence=st.floats(min_value=0.5, max_value=0.999),
)
def test_bits_for_confidence_inverts_confidence_level(errors: int, confidence: float) -> None:
    bits = bits_for_confidence(1e-6, confidence, errors)
    assert confidence_level(bits, errors, 1e-6) == pytest.approx(confidence, rel=1e-9)


def test_ber_interval_matches_the_exact_poisson_interval_for_many_bits() -> None:
    n, errors = 1e12, np.array([0, 1, 2, 100])
    res = ber_interval(n, errors, 0.95)
    upper = stats.chi2.ppf(0.975, 2 * errors + 2) / 2 / n
    lower = np.where(errors > 0, stats.chi2.ppf(0.025, np.maximum(2 * errors, 1)) / 2 / n, 0.0)
    np.testing.assert_allclose(res.upper, upper, rtol=1e-5)
    np.testing.assert_allclose(res.lower, lower, rtol=1e-5)
    np.testing.assert_allclose(res.ber, errors / n)
    assert res.upper[0] * n == pytest.approx(-math.log(0.025), rel=1e-5)  # 3.689 for 0 errors
    # 100 errors: about +-20 % (DOMAIN.md section 3).
    assert res.upper[3] / res.ber[3] == pytest.approx(1.22, abs=0.01)
    assert res.lower[3] / res.ber[3] == pytest.approx(0.81, abs=0.01)


def test_ber_interval_covers_the_estimate() -> None:
    res = ber_interval(1000, 7, 0.9)
    assert res.lower < res.ber < res.upper
    assert isinstance(res.ber, float) and res.confidence == 0.9


# --- bathtub --------------------------------------------------------------------------------


def test_bathtub_eye_opening_follows_the_dual_dirac_formula() -> None:
    rj, dj, rho, target = 0.01, 0.2, 0.5, 1e-12
    left = optimize.brentq(lambda x: float(bathtub(x, rj, dj, rho)) - target, dj / 2, 0.5)
    total_jitter = 2 * left  # the eye is symmetric: open from left to 1 - left
    assert total_jitter == pytest.approx(dj + 2 * rj * ber_to_q(2 * target / rho), rel=1e-6)


def test_bathtub_shape() -> None:
    x = np.linspace(0.0, 1.0, 101)
    ber = bathtub(x, 0.02, 0.1)
    assert ber.shape == x.shape
    np.testing.assert_allclose(ber, ber[::-1], rtol=1e-12)  # symmetric about 0.5 UI
    assert ber[50] == ber.min() and ber[0] == pytest.approx(0.25, abs=1e-3)  # rho / 2 at an edge
    assert np.all(np.diff(ber[:51]) <= 0)


# --- sensitivity ----------------------------------------------------------------------------


def waterfall(
    sens_dbm: float, oma_dbm: np.ndarray, bits: float, floor_ber: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Expected error counts of a Gray PAM4 receiver with fixed Gaussian noise and a BER floor."""
    sigma_mw = 10 ** (sens_dbm / 10) / (6 * pam4_ser_to_q(2 * KP4_BER))
    ber = pam4_ser(10 ** (oma_dbm / 10), sigma_mw) / 2 + floor_ber
    errors = np.round(ber * bits)
    return errors / bits, errors


def test_sensitivity_recovers_a_known_value_and_leaves_out_zero_error_points() -> None:
    oma_dbm = np.arange(-9.0, -2.49, 0.5)
    ber, errors = waterfall(-6.0, oma_dbm, bits=1e10)
    assert np.count_nonzero(errors == 0) >= 2
    res = sensitivity(oma_dbm, ber, KP4_BER, errors=errors, bits=np.full(oma_dbm.size, 1e10))
    assert res.oma_dbm == pytest.approx(-6.0, abs=0.05)
    assert res.r_squared > 0.999 and res.slope_per_mw > 0
    zero = {p.index for p in res.excluded if p.reason.startswith("zero errors")}
    assert zero == set(np.nonzero(errors == 0)[0].tolist())
    assert res.n_points_used == oma_dbm.size - len(res.excluded)
    assert not res.used[list(zero)].any()


def test_sensitivity_leaves_out_the_error_floor() -> None:
    oma_dbm = np.arange(-9.0, -1.99, 0.5)
    ber, errors = waterfall(-6.5, oma_dbm, bits=1e12, floor_ber=1e-8)
    res = sensitivity(oma_dbm, ber, KP4_BER, errors=errors)
    assert res.oma_dbm == pytest.approx(-6.5, abs=0.05)
    floor = [p for p in res.excluded if p.reason.startswith("error floor")]
    # From -4.0 dBm up the noise-limited BER is below 5e-10: those points sit on the 1e-8 floor.
    assert [p.oma_dbm for p in floor] == [-4.0, -3.5, -3.0, -2.5, -2.0]
    naive_mw = np.polyfit(10 ** (oma_dbm / 10), q_of_ber(ber), 1)
    naive_dbm = 10 * math.log10((q_of_ber(KP4_BER) - naive_mw[1]) / naive_mw[0])
    assert abs(naive_dbm + 6.5) > 0.1  # keeping the floor would have biased the result


def test_sensitivity_from_bits_and_errors_nrz() -> None:
    oma_dbm = np.linspace(-12.0, -8.0, 9)
    sigma_mw = 10 ** (-10.0 / 10) / (2 * ber_to_q(1e-6))  # NRZ: Q = OMA / (2 sigma)
    q = 10 ** (oma_dbm / 10) / (2 * sigma_mw)
    bits = np.full(oma_dbm.size, 1e13)
    errors = np.round(q_to_ber(q) * bits)
    res = sensitivity(oma_dbm, None, 1e-6, bits=bits, errors=errors, modulation="nrz")
    assert res.oma_dbm == pytest.approx(-10.0, abs=0.05)
    assert res.modulation == "nrz"


def test_sensitivity_refuses_to_extrapolate() -> None:
    oma_dbm = np.array([-5.0, -4.5, -4.0])
    ber, errors = waterfall(-6.0, oma_dbm, bits=1e12)
    with pytest.raises(AnalysisError, match="outside"):
        sensitivity(oma_dbm, ber, KP4_BER, errors=errors)


def test_sensitivity_needs_two_usable_points() -> None:
    with pytest.raises(AnalysisError, match="at least 2"):
        sensitivity([-8.0, -7.0, -6.0], [1e-3, 0.0, 0.0], KP4_BER)


def test_sensitivity_rejects_a_falling_waterfall() -> None:
    with pytest.raises(AnalysisError):
        sensitivity([-8.0, -7.0, -6.0], [1e-5, 1e-4, 1e-3], KP4_BER)
