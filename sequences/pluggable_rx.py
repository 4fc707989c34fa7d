"""Receiver tests of a pluggable module: BER at nominal power with its confidence level, the
sensitivity from an attenuator sweep (waterfall) and the module's RX power monitor against the
known received power, lane by lane through the RX switch.

The station's reference transmitter (driven by the BERT) feeds the attenuator and the RX switch;
the received OMA is its calibrated OMA less the calibrated RX path loss (at the 0 dB setting) and
the attenuation the attenuator really applies at the setting used (its linearity records from
path-cal, interpolated between calibrated settings). The attenuator never goes below the
attenuation that keeps the receiver under its damage level.

Received powers are recorded like the transmitter's: the value at the module's input, the raw
value (the source's certified power less the attenuator setting, what the station would state
without its path calibration) and the correction between them, which names the RX path's
calibration record; the linearity records used are named in the step's attributes.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

import numpy as np

from drivers.interfaces import Attenuator, Bert, ErrorCount, ModuleHost, OpticalSwitch
from sequences.conditions import (
    ProductConditions,
    ReferenceSource,
    product_conditions,
    rx_reference,
)
from station.analysis.ber import (
    SensitivityResult,
    confidence_level,
    q_of_ber,
    q_to_ber,
    sensitivity,
)
from station.analysis.errors import AnalysisError
from station.analysis.units import watts_to_dbm
from station.calibration.paths import AttenuatorCurve
from station.config import PathLossDb
from station.engine import StepContext
from station.errors import StationError

RX_ROLES = ("module_host", "bert", "attenuator", "rx_switch")
RX_MEASURES = (
    "rx_data_detected",
    "rx_ber_nominal",
    "rx_ber_nominal_confidence",
    "rx_sensitivity_oma",
    "ddm_rx_power_error",
)
RX_PATH = "ref_tx_to_module_rx"
#: pre-FEC target of KP4 RS(544,514) links (802.3 clause 124); 1.6T DR8 assumes the same (its
#: limits file's rx_ber_nominal, unverified)
BER_TARGET = 2.4e-4
GATE_S = 1.0  # the shortest error-ratio gate of the M8070B BERTs: 1e11 bits at 53 GBd PAM4
MIN_ERRORS = 10  # fewest errors a waterfall point needs to enter the sensitivity fit
#: waterfall points around the current estimate of the sensitivity, dB of received OMA: BER
#: about 3e-3 down to 4e-6 for a noise-limited receiver, all far above the error floors
WATERFALL_OFFSETS_DB = (-1.0, -0.3, 0.4, 1.1)
MAX_WATERFALL_ROUNDS = 3  # re-centred sweeps before the lane's sensitivity counts as not found
DDM_UPDATE_S = 0.1  # CMIS monitors refresh about every 100 ms: wait one after a change of light
MONITOR_FLOOR_W = 1e-9  # below the monitors' 0.1 uW resolution: recorded at the floor
SAME_POINT_DB = 0.05  # a planned attenuation this close to a measured one is not measured again


@dataclass(frozen=True)
class WaterfallPoint:
    attenuation_db: float
    oma_dbm: float  # received OMA outer at the module's input
    bits: int
    errors: int

    @property
    def ber(self) -> float:
        return self.errors / self.bits if self.bits else math.nan


@dataclass(frozen=True)
class LaneRx:
    lane: int
    data_detected: bool  # the module's host-side output carried data the BERT compared
    nominal: WaterfallPoint
    confidence: float  # that the true BER at nominal power is below BER_TARGET
    sensitivity_dbm: float  # received OMA at BER_TARGET; nan when not found
    points: tuple[WaterfallPoint, ...]
    note: str  # why the sensitivity is missing, when it is
    fit: tuple[float, float] = (math.nan, math.nan)  # Q = slope * OMA(mW) + intercept
    #: the sensitivity as the source's OMA less the setting it corresponds to, and the
    #: correction from that to the module's input (a PathLossDb when the path is calibrated)
    sensitivity_raw_dbm: float = math.nan
    sensitivity_correction_db: float = 0.0


@dataclass(frozen=True)
class DdmRx:
    lane: int
    ddm_dbm: float  # the module's RX power monitor
    known_dbm: float  # average power the station puts on the receiver
    raw_known_dbm: float  # the same as the source less the attenuator setting
    known_correction_db: float  # known - raw known (a PathLossDb when the path is calibrated)


@dataclass(frozen=True)
class RxResult:
    lanes: tuple[LaneRx, ...]  # empty when the BERT cannot run the product
    source: ReferenceSource
    min_attenuation_db: float
    analysis_s: float
    ddm: tuple[DdmRx, ...] = ()  # the RX power monitors, BERT or not
    #: per lane (index lane - 1), the RX path calibration record its powers are corrected by
    calibration_ids: tuple[int | None, ...] = ()

    def calibration_id(self, lane: int) -> int | None:
        return self.calibration_ids[lane - 1] if lane <= len(self.calibration_ids) else None


class RxPlan:
    """Received power on each lane as a function of the attenuator setting, and the safety
    floor. Every `attenuation_db` here is a setting; the light sees `curve.actual_db` of it."""

    def __init__(self, ctx: StepContext, conditions: ProductConditions) -> None:
        self.source = rx_reference(ctx.station.station_id)
        self.source.check_calibration(dt.date.today())
        self.loss_db = [ctx.path_loss_db(RX_PATH, lane - 1) for lane in lanes(ctx)]
        self.curve = AttenuatorCurve.of(ctx.station)
        least = min_attenuation_db(
            self.source.average_power_dbm,
            min(self.loss_db),
            conditions.rx_damage_dbm - conditions.rx_damage_margin_db,
        )
        self.min_attenuation_db = max(0.0, self.curve.setting_for(least)) if least > 0 else 0.0

    def _through_db(self, lane: int, attenuation_db: float) -> float:
        """Loss from the source to the module's input at setting `attenuation_db`."""
        return self.loss_db[lane - 1] + self.curve.actual_db(attenuation_db)

    def oma_dbm(self, lane: int, attenuation_db: float) -> float:
        return self.source.oma_outer_dbm - self._through_db(lane, attenuation_db)

    def average_dbm(self, lane: int, attenuation_db: float) -> float:
        return self.source.average_power_dbm - self._through_db(lane, attenuation_db)

    def raw_average_dbm(self, attenuation_db: float) -> float:
        """The source's average power less the setting: no path loss, no linearity."""
        return self.source.average_power_dbm - attenuation_db

    def correction_db(self, lane: int, attenuation_db: float) -> float:
        """What takes a raw received power (source less setting) to the module's input at
        `attenuation_db`: a PathLossDb naming the RX path's record where it is calibrated."""
        loss = self.loss_db[lane - 1]
        correction = -(loss + self.curve.error_db(attenuation_db))
        if isinstance(loss, PathLossDb):
            return PathLossDb(correction, loss.calibration_id)
        return correction

    def oma_correction_db(self, lane: int, oma_dbm: float) -> tuple[float, float]:
        """The raw value and correction of an OMA at the module's input (a fitted sensitivity:
        the setting it corresponds to need not have been set)."""
        setting = self.curve.setting_for(
            self.source.oma_outer_dbm - self.loss_db[lane - 1] - oma_dbm
        )
        raw = self.source.oma_outer_dbm - setting
        calibration_id = getattr(self.loss_db[lane - 1], "calibration_id", None)
        correction = oma_dbm - raw  # exactly: value = raw + correction
        if calibration_id is None:
            return raw, correction
        return raw, PathLossDb(correction, calibration_id)

    def attenuation_for_oma(self, lane: int, oma_dbm: float, max_db: float) -> float:
        wanted = self.source.oma_outer_dbm - self.loss_db[lane - 1] - oma_dbm
        return min(max(self.curve.setting_for(wanted), self.min_attenuation_db), max_db)

    def attenuation_for_average(self, lane: int, average_dbm: float, max_db: float) -> float:
        wanted = self.source.average_power_dbm - self.loss_db[lane - 1] - average_dbm
        return min(max(self.curve.setting_for(wanted), self.min_attenuation_db), max_db)

    def calibration_ids(self) -> tuple[int | None, ...]:
        return tuple(getattr(loss, "calibration_id", None) for loss in self.loss_db)

    def linearity_note(self) -> str:
        """Which linearity records the run's attenuations come from."""
        ids = self.curve.calibration_ids
        if not ids:
            return "not calibrated: the attenuator's settings taken as its attenuation"
        settings = ", ".join(f"{s:g}" for s in self.curve.settings_db)
        return f"records {', '.join(str(i) for i in ids)} (settings {settings} dB)"


def min_attenuation_db(
    source_average_dbm: float, lowest_loss_db: float, ceiling_dbm: float
) -> float:
    """The least attenuation that keeps every lane's average input at or below `ceiling_dbm`
    (the damage level less a margin), given the least lossy path."""
    return max(0.0, source_average_dbm - lowest_loss_db - ceiling_dbm)


def lanes(ctx: StepContext) -> range:
    return range(1, ctx.product.lanes + 1)


def bert_cannot_run(bert: Bert, baud_rate_gbd: float) -> str | None:
    """Why this station's BERT cannot test the product's receivers, or None if it can."""
    low, high = bert.baud_range_gbd
    if low <= baud_rate_gbd <= high:
        return None
    identity = bert.identify()
    return (
        f"the station's BERT ({identity.manufacturer} {identity.model} {identity.serial_number}) "
        f"runs {low:g} to {high:g} GBd; the product needs {baud_rate_gbd:g} GBd"
    )


class _Lane:
    """The attenuator, switch and BERT as one lane's receiver sees them."""

    def __init__(
        self, ctx: StepContext, plan: RxPlan, attenuator: Attenuator, bert: Bert, lane: int
    ) -> None:
        self.ctx, self.plan, self.attenuator, self.bert, self.lane = (
            ctx,
            plan,
            attenuator,
            bert,
            lane,
        )
        self.max_db = attenuator.max_attenuation_db

    def attenuation_for(self, oma_dbm: float) -> float:
        return self.plan.attenuation_for_oma(self.lane, oma_dbm, self.max_db)

    def count_at_oma(self, oma_dbm: float) -> WaterfallPoint:
        attenuation = self.attenuation_for(oma_dbm)
        if attenuation < self.plan.min_attenuation_db:  # never: attenuation_for_oma clamps
            raise StationError(f"attenuation {attenuation:.2f} dB is below the damage floor")
        self.attenuator.set_attenuation_db(attenuation)
        (count,) = self.bert.count_errors((self.lane,), GATE_S)
        self.ctx.check_cancelled()
        return _point(attenuation, self.plan.oma_dbm(self.lane, attenuation), count)


def _point(attenuation_db: float, oma_dbm: float, count: ErrorCount) -> WaterfallPoint:
    return WaterfallPoint(attenuation_db, oma_dbm, count.bits, count.errors)


def _estimate_dbm(points: list[WaterfallPoint], fallback_dbm: float) -> float:
    """Where the BER target lies, from the points so far: Q is linear in OMA (mW) and nearly
    through the origin, so one usable point gives an estimate and two give a line."""
    usable = [p for p in points if p.errors >= MIN_ERRORS and p.ber < 0.1]
    q_target = float(q_of_ber(BER_TARGET))
    if usable:
        oma_mw = np.array([10 ** (p.oma_dbm / 10.0) for p in usable])
        q = np.asarray(q_of_ber(np.array([p.ber for p in usable])), dtype=float)
        best = int(np.argmin(np.abs(q - q_target)))
        through_origin = float(10 * math.log10(oma_mw[best] * q_target / max(q[best], 1e-3)))
        if len(usable) >= 2 and np.ptp(oma_mw) > 0:
            slope, intercept = np.polyfit(oma_mw, q, 1)
            if slope > 0:
                line = float(10 * math.log10(max((q_target - intercept) / slope, 1e-6)))
                # points on the receiver's error floor flatten the line: it then points far
                # off, where the through-origin estimate does not
                if abs(line - through_origin) < 3.0:
                    return line
        return through_origin
    if points and all(not p.bits or p.ber >= 0.1 for p in points):
        # all far too many errors, or squelched (below loss of signal): more light
        return max(p.oma_dbm for p in points) + 2.0
    if points and all(p.bits and p.errors < MIN_ERRORS for p in points):
        return min(p.oma_dbm for p in points) - 2.0  # all nearly error-free: less light
    return fallback_dbm


def waterfall(
    lane: _Lane, guess_dbm: float
) -> tuple[list[WaterfallPoint], SensitivityResult | None, str, float]:
    """Measure points around the sensitivity until the fit brackets the BER target.

    Returns the points (in measured order), the fit (None if not found), why it is missing, and
    the seconds spent fitting.
    """
    points: list[WaterfallPoint] = []
    centre, analysis_s, note = guess_dbm, 0.0, ""
    for _ in range(MAX_WATERFALL_ROUNDS):
        for offset in WATERFALL_OFFSETS_DB:
            oma = centre + offset  # the same attenuation twice (at a clamp) measures nothing new
            if not any(
                abs(p.attenuation_db - lane.attenuation_for(oma)) < SAME_POINT_DB for p in points
            ):
                points.append(lane.count_at_oma(oma))
        started = time.perf_counter()
        # below its loss-of-signal level the receiver squelches: no bits, nothing to fit
        counted = [p for p in points if p.bits]
        try:
            fit = sensitivity(
                np.array([p.oma_dbm for p in counted]),
                None,
                BER_TARGET,
                bits=np.array([p.bits for p in counted], dtype=float),
                errors=np.array([p.errors for p in counted], dtype=float),
                min_errors=MIN_ERRORS,
            )
            return points, fit, "", analysis_s + time.perf_counter() - started
        except AnalysisError as err:
            note = str(err)
            centre = _estimate_dbm(points, centre)
        analysis_s += time.perf_counter() - started
    return points, None, note, analysis_s


def _ddm_dbm(host: ModuleHost, lane: int) -> float:
    power_w = host.monitors().rx_power_w[lane - 1]
    return float(watts_to_dbm(max(power_w, MONITOR_FLOOR_W)))


def ddm_reading(plan: RxPlan, host: ModuleHost, lane: int, attenuation_db: float) -> DdmRx:
    """Lane `lane`'s RX power monitor against what the station puts on it at the setting."""
    return DdmRx(
        lane,
        _ddm_dbm(host, lane),
        plan.average_dbm(lane, attenuation_db),
        plan.raw_average_dbm(attenuation_db),
        plan.correction_db(lane, attenuation_db),
    )


def negated(correction_db: float) -> float:
    """`-correction_db`, still naming its calibration record."""
    calibration_id = getattr(correction_db, "calibration_id", None)
    if calibration_id is None:
        return -correction_db
    return PathLossDb(-float(correction_db), calibration_id)


def measure_rx(ctx: StepContext) -> RxResult:
    """Every lane's BER at nominal power, sensitivity and RX power monitor. When the station's
    BERT cannot run the product's symbol rate (the reason is recorded), only the monitors."""
    conditions = product_conditions(ctx.product.name)
    host = ctx.instrument("module_host", ModuleHost)
    bert = ctx.instrument("bert", Bert)
    attenuator = ctx.instrument("attenuator", Attenuator)
    switch = ctx.instrument("rx_switch", OpticalSwitch)
    reason = bert_cannot_run(bert, ctx.product.baud_rate_gbd)
    plan = RxPlan(ctx, conditions)
    source = plan.source
    ctx.attribute("rx_source", f"{source.description}; SECQ {source.secq_db:g} dB")
    ctx.attribute("rx_min_attenuation_db", f"{plan.min_attenuation_db:.2f}")
    ctx.attribute("rx_attenuator_linearity", plan.linearity_note())
    results, monitors, analysis_s = [], [], 0.0
    # Shared with other sites on a multi-site station: leave the path dark on every exit.
    attenuator.set_output(False)
    attenuator.set_attenuation_db(attenuator.max_attenuation_db)
    try:
        attenuator.set_wavelength_nm(source.wavelength_nm)
        if reason is not None:
            ctx.attribute("rx_skipped", reason)
            # The monitors need light, not a BERT: the undriven source keeps its average power.
            lowest = int(np.argmin(plan.loss_db)) + 1
            attenuation = plan.attenuation_for_average(
                lowest, conditions.ddm_rx_power_dbm, attenuator.max_attenuation_db
            )
            attenuator.set_attenuation_db(attenuation)
            attenuator.set_output(True)
            for number in lanes(ctx):
                switch.route(number)
                ctx.sleep(DDM_UPDATE_S)
                monitors.append(ddm_reading(plan, host, number, attenuation))
            return RxResult(
                (), source, plan.min_attenuation_db, 0.0, tuple(monitors), plan.calibration_ids()
            )
        bert.configure("PAM4", conditions.rx_pattern, ctx.product.baud_rate_gbd)
        bert.set_output(True)
        attenuator.set_output(True)
        guess = conditions.rx_sensitivity_guess_dbm
        for number in lanes(ctx):
            switch.route(number)
            lane = _Lane(ctx, plan, attenuator, bert, number)
            nominal = lane.count_at_oma(conditions.rx_nominal_oma_dbm)
            # the light has been steady for the whole gate: the monitor has caught up
            monitors.append(ddm_reading(plan, host, number, nominal.attenuation_db))
            started = time.perf_counter()
            confidence = float(confidence_level(nominal.bits, nominal.errors, BER_TARGET))
            analysis_s += time.perf_counter() - started
            if not nominal.bits:  # squelched: no data from this receiver at all
                results.append(LaneRx(number, False, nominal, 0.0, math.nan, (), "no data"))
                continue
            points, fit, note, fit_s = waterfall(lane, guess)
            analysis_s += fit_s
            if fit is not None:
                guess = fit.oma_dbm
            elif nominal.ber <= BER_TARGET:  # the receiver works, but the station found no fit
                raise StationError(f"lane {number}: no sensitivity from the waterfall ({note})")
            found = fit.oma_dbm if fit else math.nan
            line = (fit.slope_per_mw, fit.intercept_q) if fit else (math.nan, math.nan)
            raw, correction = plan.oma_correction_db(number, found) if fit else (math.nan, 0.0)
            results.append(
                LaneRx(
                    number,
                    True,
                    nominal,
                    confidence,
                    found,
                    tuple(points),
                    note,
                    line,
                    raw,
                    correction,
                )
            )
    finally:
        attenuator.set_output(False)
        attenuator.set_attenuation_db(attenuator.max_attenuation_db)
        bert.set_output(False)
    return RxResult(
        tuple(results),
        source,
        plan.min_attenuation_db,
        analysis_s,
        tuple(monitors),
        plan.calibration_ids(),
    )


def record_waterfalls(ctx: StepContext, result: RxResult) -> None:
    """Each lane's BER waterfall as an artefact (kind "waterfall")."""
    source = result.source
    for lane in result.lanes:
        if not lane.points:
            continue
        oma_dbm = np.array([p.oma_dbm for p in lane.points])
        fitted: dict[str, np.ndarray] = {}
        if math.isfinite(lane.sensitivity_dbm):  # the Q-linear fit, back to BER, for the plot
            fit_dbm = np.linspace(oma_dbm.min(), oma_dbm.max(), 50)
            q = lane.fit[0] * 10 ** (fit_dbm / 10.0) + lane.fit[1]
            fitted = {"fit_oma_dbm": fit_dbm, "fit_ber": 0.75 * np.asarray(q_to_ber(q))}
        ctx.artefact(
            "ber_waterfall",
            {
                "attenuation_db": np.array([p.attenuation_db for p in lane.points]),
                "oma_dbm": oma_dbm,
                # the source's OMA less the setting: what each point was before correction
                "raw_oma_dbm": source.oma_outer_dbm
                - np.array([p.attenuation_db for p in lane.points]),
                "bits": np.array([p.bits for p in lane.points], dtype=np.int64),
                "errors": np.array([p.errors for p in lane.points], dtype=np.int64),
                "ber": np.array([p.ber for p in lane.points]),
                **fitted,
            },
            lane=lane.lane,
            kind="waterfall",
            ber_target=f"{BER_TARGET:g}",
            sensitivity_oma_dbm=f"{lane.sensitivity_dbm:.3f}",
            gate_s=f"{GATE_S:g}",
            source=source.description,
            source_secq_db=f"{source.secq_db:g}",
            rx_calibration_id=str(result.calibration_id(lane.lane)),
        )


def nominal_note(result: RxResult, lane: LaneRx) -> str:
    """Where the BER at nominal power was taken: the OMA at the module's input, its raw value
    (the source's OMA less the setting) and the calibration record the correction came from."""
    point = lane.nominal
    raw = result.source.oma_outer_dbm - point.attenuation_db
    calibration = result.calibration_id(lane.lane)
    return (
        f"{point.oma_dbm:.3f} dBm at the module input; raw {raw:.3f} dBm, correction "
        f"{point.oma_dbm - raw:+.3f} dB, calibration {calibration or 'none (bootstrap)'}; "
        f"attenuator set to {point.attenuation_db:.3f} dB"
    )


def record_rx(ctx: StepContext, result: RxResult) -> None:
    """The product's receiver measurements, judged against its limits."""
    record_waterfalls(ctx, result)
    for ddm in result.ddm:  # DDM accuracy: the monitor against the known received power
        ctx.measure(
            "ddm_rx_power_error",
            ddm.ddm_dbm - ddm.known_dbm,
            unit="dB",
            lane=ddm.lane,
            raw_value=ddm.ddm_dbm - ddm.raw_known_dbm,
            correction_db=negated(ddm.known_correction_db),
        )
    for lane in result.lanes:
        ctx.measure(
            "rx_data_detected", "YES" if lane.data_detected else "NO", unit="", lane=lane.lane
        )
        if not lane.data_detected:
            continue
        ctx.measure("rx_ber_nominal", lane.nominal.ber, unit="", lane=lane.lane)
        ctx.attribute(f"rx_nominal_oma_lane_{lane.lane}", nominal_note(result, lane))
        ctx.measure("rx_ber_nominal_confidence", lane.confidence, unit="", lane=lane.lane)
        if math.isfinite(lane.sensitivity_dbm):
            ctx.measure(
                "rx_sensitivity_oma",
                lane.sensitivity_dbm,
                unit="dBm",
                lane=lane.lane,
                raw_value=lane.sensitivity_raw_dbm,
                correction_db=lane.sensitivity_correction_db,
            )
        else:
            ctx.attribute(f"rx_sensitivity_lane_{lane.lane}", f"not found: {lane.note}")
    ctx.attribute("analysis_s", f"{result.analysis_s:.4f}")
