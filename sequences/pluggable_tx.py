"""Transmitter tests of a pluggable module, lane by lane through the TX switch and its splitter:
average power on the meter, the PAM4 eye on the sampling scope, wavelength and SMSR on the OSA,
then the dark power of every lane with the transmitters disabled (they stay off afterwards);
the module's DDM TX power against the meter on the same light.

OMA outer, outer ER, TDECQ (802.3 clause 121.8.5) and RLM (annex 120D) come from the scope's
waveform through `station.analysis`, with the scope noise sigma_S measured on this station in the
same run: a dark capture through the same reference receiver the TDECQ analysis applies. The
scope's own TDECQ readout is recorded beside ours as a correlation figure on one lane per module
(a different lane from unit to unit): its eye acquisition and computation cost about 2 s a lane,
and the station's correlation is tracked over the population.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from drivers.interfaces import (
    EyeReadouts,
    ModuleHost,
    OpticalSpectrumAnalyzer,
    OpticalSwitch,
    PowerMeter,
    SamplingScope,
    Waveform,
)
from sequences.conditions import product_conditions
from station.analysis.errors import AnalysisError
from station.analysis.eye import pam4_eye
from station.analysis.patterns import PRBS13_LENGTH, prbs13q
from station.analysis.tdecq import reference_receiver_response, tdecq
from station.analysis.units import watts_to_dbm
from station.engine import StepContext
from station.errors import StationError

TX_ROLES = ("module_host", "optical_switch", "power_meter", "sampling_scope", "osa")
TX_MEASURES = (
    "tx_average_power",
    "tx_oma_outer",
    "tx_extinction_ratio",
    "tx_tdecq",
    "tx_tdecq_minus_ceq",
    "tx_oma_minus_tdecq",
    "tx_oma_minus_tdecq_low_er",
    "tx_rlm",
    "tx_tdecq_scope_delta",
    "tx_wavelength",
    "tx_smsr",
    "tx_off_power",
    "ddm_tx_power_error",
)
METER_CHANNEL = 1  # the splitter's meter leg
SCOPE_CHANNEL = 1  # the splitter's 50 % leg, channel 1A
METER_AVERAGING_S = 0.05
METER_NOISE_FLOOR_W = 1e-12  # readings below it are dark: recorded at the floor, never as NaN
MONITOR_FLOOR_W = 1e-9  # below the CMIS monitors' 0.1 uW resolution: recorded at the floor
SAMPLES_PER_UI = 16  # 131 kSa of one PRBS13Q period: 0.5 s on the sampler, 0.2 s of analysis
PATTERN_SYMBOLS = {"PRBS13Q": PRBS13_LENGTH, "SSPRQ": 65535}
OSA_SPAN_NM = 16.0  # the 1304.5-1317.5 nm window, the side modes (0.6-0.9 nm) and drift
OSA_RESOLUTION_NM = 0.02
# 0.005 nm steps, a quarter of the resolution: at steps equal to the resolution a mode that falls
# between two points reads up to 2.5 dB low, the main mode and the side mode each by its own amount,
# and the SMSR scattered by 0.65 dB rms sweep to sweep on the simulated bench (0.1 dB at this step)
OSA_POINTS = 3201
EYE_AMPLITUDE_BINS = 128  # of the folded eye stored for the report
#: wait after TxDisable before reading dark power (CMIS MaxDurationDPTxTurnOff is advertised;
#: modules advertise 10-50 ms)
TX_OFF_SETTLE_S = 0.05
#: a lane launching less than this (dBm) is dark: its eye is not analysed (it fails on power)
DARK_LANE_DBM = -15.0
TX_METER_PATH, TX_SCOPE_PATH = "tx_to_power_meter", "tx_to_scope"


@dataclass(frozen=True)
class LaneTx:
    """One lane's transmitter, corrected to the module's output where a power is concerned."""

    lane: int
    average_power_dbm: float
    average_power_raw_dbm: float  # at the meter
    meter_loss_db: float
    oma_outer_dbm: float
    oma_outer_raw_dbm: float  # at the scope
    scope_loss_db: float
    er_db: float
    tdecq_db: float
    tdecq_minus_ceq_db: float
    rlm: float
    scope_tdecq_db: float  # the scope firmware's TDECQ on the correlation lane, else nan
    wavelength_nm: float
    smsr_db: float
    off_power_dbm: float
    off_power_raw_dbm: float
    ddm_tx_power_dbm: float  # the module's own TX power monitor of the lane


@dataclass(frozen=True)
class TxResult:
    lanes: tuple[LaneTx, ...]
    scope_noise_w: float  # sigma_S after the reference receiver, W at the scope
    analysis_s: float


@dataclass(frozen=True)
class _Capture:
    lane: int
    lit_w: float
    waveform: Waveform
    readouts: EyeReadouts | None  # on the correlation lane only
    wavelength_nm: float
    smsr_db: float


def _dbm(power_w: float, floor_w: float = METER_NOISE_FLOOR_W) -> float:
    return float(watts_to_dbm(max(power_w, floor_w)))


def scope_noise_rms(dark: Waveform) -> float:
    """sigma_S: rms of a dark capture after the TDECQ reference receiver (4th-order
    Bessel-Thomson at baud/2), i.e. the scope noise as the TDECQ histograms carry it."""
    samples = np.asarray(dark.samples_w, dtype=np.float64)
    samples = samples - samples.mean()
    frequency_hz = np.fft.rfftfreq(samples.size, d=dark.time_step_s)
    response = reference_receiver_response(frequency_hz, dark.baud_rate_hz / 2.0)
    filtered = np.fft.irfft(np.fft.rfft(samples) * response, n=samples.size)
    return float(np.std(filtered))


def correlation_lane(serial: str, lanes: int) -> int:
    """The lane whose TDECQ is also read from the scope: fixed per unit, spread over units."""
    return 1 + sum(serial.encode()) % lanes


def _known_symbols(pattern: str) -> np.ndarray | None:
    """The pattern's symbols when the open analysis can generate them (pattern lock)."""
    return prbs13q() if pattern.upper() == "PRBS13Q" else None


def measure_tx(ctx: StepContext) -> TxResult:
    """Measure every lane, disable the transmitters, measure the dark, then analyse."""
    product = ctx.product
    pattern = product_conditions(product.name).tx_pattern
    host = ctx.instrument("module_host", ModuleHost)
    switch = ctx.instrument("optical_switch", OpticalSwitch)
    meter = ctx.instrument("power_meter", PowerMeter)
    scope = ctx.instrument("sampling_scope", SamplingScope)
    osa = ctx.instrument("osa", OpticalSpectrumAnalyzer)
    samples = SAMPLES_PER_UI * PATTERN_SYMBOLS[pattern.upper()]
    meter.set_wavelength_nm(METER_CHANNEL, product.wavelength_nm)
    meter.set_averaging_time_s(METER_CHANNEL, METER_AVERAGING_S)
    scope.configure_eye(SCOPE_CHANNEL, product.baud_rate_gbd, pattern, product.wavelength_nm)
    osa.configure(product.wavelength_nm, OSA_SPAN_NM, OSA_RESOLUTION_NM, OSA_POINTS)

    captures = []
    correlated = correlation_lane(ctx.dut_serial, product.lanes)
    ddm_tx_w = host.monitors().tx_power_w  # the lasers have been on since the corner began
    for lane in range(1, product.lanes + 1):
        switch.route(lane)
        lit_w = meter.read_power_w(METER_CHANNEL)
        spectrum = osa.sweep()
        wavelength_nm, smsr_db = osa.peak_wavelength_nm(), osa.smsr_db()
        waveform = scope.acquire_waveform(SCOPE_CHANNEL, samples)
        readouts = scope.eye_readouts(SCOPE_CHANNEL) if lane == correlated else None
        ctx.artefact(
            "spectrum",
            {"wavelength_nm": spectrum.wavelength_nm, "power_dbm": spectrum.power_dbm},
            lane=lane,
            kind="osa_spectrum",  # an emission trace in dBm (the "spectrum" kind is transmission)
            resolution_nm=f"{spectrum.resolution_nm:g}",
        )
        captures.append(_Capture(lane, lit_w, waveform, readouts, wavelength_nm, smsr_db))

    host.set_tx_disable((True,) * host.lane_count)
    ctx.sleep(TX_OFF_SETTLE_S)
    dark_w = []
    for lane in range(1, product.lanes + 1):
        switch.route(lane)
        dark_w.append(meter.read_power_w(METER_CHANNEL))
    dark = scope.acquire_waveform(SCOPE_CHANNEL, samples)

    started = time.perf_counter()
    sigma_s = scope_noise_rms(dark)
    analysis_s, lanes = time.perf_counter() - started, []
    for capture in captures:
        started = time.perf_counter()
        tx, eye = _analyse(ctx, capture, dark_w[capture.lane - 1], sigma_s)
        ddm_dbm = _dbm(ddm_tx_w[tx.lane - 1], MONITOR_FLOOR_W)
        tx = dataclasses.replace(tx, ddm_tx_power_dbm=ddm_dbm)
        analysis_s += time.perf_counter() - started
        lanes.append(tx)
        waveform = capture.waveform
        ctx.artefact(
            "eye",
            eye,
            lane=tx.lane,
            kind="eye",
            samples_per_ui=str(waveform.samples_per_ui),
            baud_rate_hz=f"{waveform.baud_rate_hz:.6g}",
            pattern=waveform.pattern,
            amplitude_unit="W at the scope",
            tdecq_db=f"{tx.tdecq_db:.3f}",
        )
    return TxResult(tuple(lanes), sigma_s, analysis_s)


def eye_density(
    samples_w: np.ndarray, samples_per_ui: int, centre_ui: float
) -> dict[str, np.ndarray]:
    """The folded eye for the report (kind "eye"): hit counts, shape (amplitude bins, time bins),
    over 2 UI with the eye centres at 0.5 and 1.5 UI."""
    values = np.asarray(samples_w, dtype=np.float64)
    phase_ui = (np.arange(values.size) / samples_per_ui - centre_ui + 0.5) % 2.0
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low) or 1e-9
    density, amplitude_edges, time_edges = np.histogram2d(
        values,
        phase_ui,
        bins=(EYE_AMPLITUDE_BINS, 2 * samples_per_ui),
        range=((low - pad, high + pad), (0.0, 2.0)),
    )
    return {
        "time_ui": 0.5 * (time_edges[1:] + time_edges[:-1]),
        "amplitude": 0.5 * (amplitude_edges[1:] + amplitude_edges[:-1]),
        "density": density.astype(np.int32),
    }


def _analyse(
    ctx: StepContext, capture: _Capture, dark_w: float, sigma_s: float
) -> tuple[LaneTx, dict[str, np.ndarray]]:
    """One lane's figures, and its eye (waveform and folded density) for the record."""
    lane, waveform = capture.lane, capture.waveform
    meter_loss = ctx.path_loss_db(TX_METER_PATH, lane - 1)
    scope_loss = ctx.path_loss_db(TX_SCOPE_PATH, lane - 1)
    lit_raw, dark_raw = _dbm(capture.lit_w), _dbm(dark_w)
    nan = math.nan
    oma_raw = er = tdecq_db = tdecq_ceq = rlm = nan
    if lit_raw + meter_loss >= DARK_LANE_DBM:
        try:
            result = tdecq(
                waveform.samples_w,
                waveform.samples_per_ui,
                waveform.baud_rate_hz,
                sigma_s,
                symbols=_known_symbols(waveform.pattern),
                pattern_name=waveform.pattern,
            )
            eye = pam4_eye(waveform.samples_w, waveform.samples_per_ui)
        except AnalysisError as err:  # light on the scope but no PAM4 eye in it: bad data
            raise StationError(
                f"lane {lane}: the scope's waveform has no PAM4 eye ({err})"
            ) from err
        oma_raw, er = _dbm(result.oma_outer), result.er_outer_db
        tdecq_db, tdecq_ceq, rlm = result.tdecq_db, result.tdecq_minus_ceq_db, eye.rlm
        levels, centre_ui = {"levels": np.asarray(eye.levels)}, eye.centre_phase_ui
    else:
        levels, centre_ui = {}, 0.0
    eye_arrays = {
        "samples_w": waveform.samples_w,
        **eye_density(waveform.samples_w, waveform.samples_per_ui, centre_ui),
        **levels,
    }
    tx = LaneTx(
        lane=lane,
        average_power_dbm=lit_raw + meter_loss,
        average_power_raw_dbm=lit_raw,
        meter_loss_db=meter_loss,
        oma_outer_dbm=oma_raw + scope_loss,
        oma_outer_raw_dbm=oma_raw,
        scope_loss_db=scope_loss,
        er_db=er,
        tdecq_db=tdecq_db,
        tdecq_minus_ceq_db=tdecq_ceq,
        rlm=rlm,
        scope_tdecq_db=capture.readouts.tdecq_db if capture.readouts else math.nan,
        wavelength_nm=capture.wavelength_nm,
        smsr_db=capture.smsr_db,
        off_power_dbm=dark_raw + meter_loss,
        off_power_raw_dbm=dark_raw,
        ddm_tx_power_dbm=math.nan,
    )
    return tx, eye_arrays


def record_tx(ctx: StepContext, result: TxResult) -> None:
    """The product's transmitter measurements, judged against its limits."""
    split_db = product_conditions(ctx.product.name).oma_minus_tdecq_er_split_db
    correlated = correlation_lane(ctx.dut_serial, ctx.product.lanes)
    ctx.attribute("scope_noise_rms_uw", f"{result.scope_noise_w * 1e6:.4f}")
    for tx in result.lanes:
        n = tx.lane
        ctx.measure(
            "tx_average_power",
            tx.average_power_dbm,
            unit="dBm",
            lane=n,
            raw_value=tx.average_power_raw_dbm,
            correction_db=tx.meter_loss_db,
        )
        if math.isfinite(tx.oma_outer_dbm):
            ctx.measure(
                "tx_oma_outer",
                tx.oma_outer_dbm,
                unit="dBm",
                lane=n,
                raw_value=tx.oma_outer_raw_dbm,
                correction_db=tx.scope_loss_db,
            )
            ctx.measure("tx_extinction_ratio", tx.er_db, unit="dB", lane=n)
            ctx.measure("tx_tdecq", tx.tdecq_db, unit="dB", lane=n)
            ctx.measure("tx_tdecq_minus_ceq", tx.tdecq_minus_ceq_db, unit="dB", lane=n)
            # 802.3 sets the OMA-minus-TDECQ limit by the lane's ER: two names, two limits.
            name = "tx_oma_minus_tdecq" if tx.er_db >= split_db else "tx_oma_minus_tdecq_low_er"
            ctx.measure(name, tx.oma_outer_dbm - tx.tdecq_db, unit="dBm", lane=n)
            ctx.measure("tx_rlm", tx.rlm, unit="", lane=n)
            if math.isfinite(tx.scope_tdecq_db):
                delta = tx.scope_tdecq_db - tx.tdecq_db
                ctx.measure("tx_tdecq_scope_delta", delta, unit="dB", lane=n)
            elif n == correlated:
                ctx.attribute(f"tx_tdecq_scope_lane_{n}", "the scope could not measure TDECQ")
            ctx.measure("tx_wavelength", tx.wavelength_nm, unit="nm", lane=n)
            ctx.measure("tx_smsr", tx.smsr_db, unit="dB", lane=n)
        else:
            ctx.attribute(f"tx_lane_{n}", "dark: no eye or spectrum to analyse")
        # DDM accuracy: the module's monitor against the station's meter, same lane, same light
        error = tx.ddm_tx_power_dbm - tx.average_power_dbm
        ctx.measure("ddm_tx_power_error", error, unit="dB", lane=n)
        ctx.measure(
            "tx_off_power",
            tx.off_power_dbm,
            unit="dBm",
            lane=n,
            raw_value=tx.off_power_raw_dbm,
            correction_db=tx.meter_loss_db,
        )
    ctx.attribute("analysis_s", f"{result.analysis_s:.4f}")
