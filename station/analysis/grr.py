"""Gauge repeatability and reproducibility: the crossed two-way random-effects ANOVA of a study
(parts x appraisers x repeats), vectorised over many measurements at once (AIAG MSA 4th ed.).

Model: y = mu + P_i + A_j + (PA)_ij + e_ijk. The interaction is tested against the repeatability
(F = MS_PA / MS_E); when it is not significant (p > `alpha_interaction`, AIAG and common practice
use 0.05, some 0.25) it is pooled into the repeatability and the additive model is used:

    pooled:      var_E = (SS_PA + SS_E) / (df_PA + df_E)
                 var_A = (MS_A - var_E) / (n r),     var_P = (MS_P - var_E) / (k r)
    not pooled:  var_E = MS_E,   var_PA = (MS_PA - MS_E) / r
                 var_A = (MS_A - MS_PA) / (n r),     var_P = (MS_P - MS_PA) / (k r)

negative estimates set to zero. Reported as standard deviations: EV (repeatability), AV
(reproducibility), interaction, GRR = sqrt(EV^2 + AV^2 + interaction^2), PV (part), TV =
sqrt(GRR^2 + PV^2); %GRR of tolerance = 100 x 6 GRR / (USL - LSL); %GRR of study variation =
100 x GRR / TV; ndc = 1.41 PV / GRR (AIAG: at least 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from station.analysis.errors import AnalysisError

STUDY_SIGMAS = 6.0  # %GRR of tolerance uses a 6-sigma spread (AIAG MSA 4th ed.)
NDC_FACTOR = 1.41  # sqrt(2): ndc = 1.41 PV / GRR


@dataclass(frozen=True)
class GrrResult:
    """One study's ANOVA and variance components, every field of shape (m,): one per
    measurement. Sums and mean squares are of the full (interaction) model; standard deviations
    are those of the model used (`pooled` says which)."""

    df_part: int
    df_appraiser: int
    df_interaction: int
    df_error: int
    ss_part: np.ndarray
    ss_appraiser: np.ndarray
    ss_interaction: np.ndarray
    ss_error: np.ndarray
    ms_part: np.ndarray
    ms_appraiser: np.ndarray
    ms_interaction: np.ndarray
    ms_error: np.ndarray
    f_interaction: np.ndarray
    p_interaction: np.ndarray
    pooled: np.ndarray  # bool: the interaction was pooled into the repeatability
    ev: np.ndarray  # repeatability (equipment variation), sigma
    av: np.ndarray  # reproducibility (appraiser variation), sigma
    interaction: np.ndarray  # part x appraiser interaction, sigma
    grr: np.ndarray
    pv: np.ndarray  # part variation, sigma
    tv: np.ndarray  # total variation, sigma
    pct_grr_tolerance: np.ndarray  # NaN where no tolerance was given
    pct_grr_study: np.ndarray
    ndc: np.ndarray  # not truncated; AIAG reports the integer part


def crossed_grr(
    values: np.ndarray,
    tolerance: np.ndarray | float | None = None,
    *,
    alpha_interaction: float = 0.05,
) -> GrrResult:
    """The crossed study of `values`, shape (m, n parts, k appraisers, r repeats) or (n, k, r)
    for one measurement; `tolerance` (USL - LSL, shape (m,) or scalar, NaN for none).
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim == 3:
        y = y[np.newaxis]
    if y.ndim != 4:
        raise AnalysisError(f"values must be (m, parts, appraisers, repeats), not {y.shape}")
    m, n, k, r = y.shape
    if n < 2 or k < 2 or r < 2:
        raise AnalysisError(
            f"a crossed study needs >= 2 parts, appraisers and repeats, not {y.shape}"
        )
    if not np.isfinite(y).all():
        raise AnalysisError("every observation must be a finite number (no missing runs)")
    if not 0.0 <= alpha_interaction <= 1.0:
        raise AnalysisError(f"alpha_interaction {alpha_interaction} is not a probability")

    grand = y.mean(axis=(1, 2, 3))
    cell = y.mean(axis=3)  # (m, n, k)
    part = cell.mean(axis=2)  # (m, n)
    appraiser = cell.mean(axis=1)  # (m, k)
    ss_part = k * r * ((part - grand[:, None]) ** 2).sum(axis=1)
    ss_appraiser = n * r * ((appraiser - grand[:, None]) ** 2).sum(axis=1)
    ss_cells = r * ((cell - grand[:, None, None]) ** 2).sum(axis=(1, 2))
    ss_interaction = np.maximum(ss_cells - ss_part - ss_appraiser, 0.0)
    ss_error = ((y - cell[..., None]) ** 2).sum(axis=(1, 2, 3))
    df_p, df_a, df_pa, df_e = n - 1, k - 1, (n - 1) * (k - 1), n * k * (r - 1)
    ms_p, ms_a = ss_part / df_p, ss_appraiser / df_a
    ms_pa, ms_e = ss_interaction / df_pa, ss_error / df_e

    with np.errstate(divide="ignore", invalid="ignore"):
        f_pa = np.where(ms_e > 0, ms_pa / ms_e, np.where(ms_pa > 0, np.inf, 0.0))
    p_pa = stats.f.sf(f_pa, df_pa, df_e)
    pooled = p_pa > alpha_interaction

    ms_e_pooled = (ss_interaction + ss_error) / (df_pa + df_e)
    var_e = np.where(pooled, ms_e_pooled, ms_e)
    var_pa = np.where(pooled, 0.0, np.maximum((ms_pa - ms_e) / r, 0.0))
    denominator = np.where(pooled, ms_e_pooled, ms_pa)  # what the main effects are tested against
    var_a = np.maximum((ms_a - denominator) / (n * r), 0.0)
    var_p = np.maximum((ms_p - denominator) / (k * r), 0.0)

    ev, av, inter, pv = np.sqrt(var_e), np.sqrt(var_a), np.sqrt(var_pa), np.sqrt(var_p)
    grr = np.sqrt(var_e + var_a + var_pa)
    tv = np.sqrt(var_e + var_a + var_pa + var_p)
    tol = np.broadcast_to(
        np.asarray(np.nan if tolerance is None else tolerance, dtype=np.float64), (m,)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_tol = np.where(tol > 0, 100.0 * STUDY_SIGMAS * grr / tol, np.nan)
        pct_study = np.where(tv > 0, 100.0 * grr / tv, np.nan)
        ndc = np.where(grr > 0, NDC_FACTOR * pv / grr, np.inf)
    return GrrResult(
        df_p, df_a, df_pa, df_e,
        ss_part, ss_appraiser, ss_interaction, ss_error,
        ms_p, ms_a, ms_pa, ms_e,
        f_pa, p_pa, pooled,
        ev, av, inter, grr, pv, tv,
        pct_tol, pct_study, ndc,
    )  # fmt: skip


def repeatability_interval(sigma: float, df: int, confidence: float = 0.95) -> tuple[float, float]:
    """Where an estimate of a standard deviation `sigma` with `df` degrees of freedom falls with
    probability `confidence` (chi-square: df s^2 / sigma^2 ~ chi2(df))."""
    tail = (1.0 - confidence) / 2.0
    low, high = stats.chi2.ppf([tail, 1.0 - tail], df)
    return sigma * float(np.sqrt(low / df)), sigma * float(np.sqrt(high / df))
