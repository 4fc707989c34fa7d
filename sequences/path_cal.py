"""Optical path calibration of the module bench: with the reference loopback fixture in the module
cage, measure the power meter's wavelength correction, every lane's TX path loss (to the power
meter and to the scope), RX path loss and the attenuator's linearity, and state each as a
calibration record (published when the run passes).

The fixture taps the light arriving at RX leg k to the power meter's tap channel (the reference
meter at the DUT plane) and loops the rest into TX leg k (the reference source at the DUT plane).
With its certified tap and loopback losses T and L, per lane k:

    power at TX leg k      = P_tap + T - L                  (both dBm)
    TX path loss to meter  = P_tap + T - L - P_meter        (same meter, same wavelength setting)
    TX path loss to scope  = P_tap + T - L - P_scope        (P_scope: the mean of its waveform,
                                                              so its power/OMA factor is included)
    RX path loss           = P_source - (P_tap + T)         (P_source: the calibrated average of
                                                              the station's reference transmitter)

Each meter value is the mean of a few re-routings of both switches, whose spread (switch
repeatability, meter noise) goes into its uncertainty with the fixture certificate's.

P_tap is the one absolute reading: the meter's wavelength correction table holds only to its
calibration uncertainty. Where the station config names the reference transmitter's monitor
output (`[path_cal]` monitor_channel, monitor_db: a known power, its certified average power less
the monitor's certified loss), the meter's correction C at the wavelength setting used is

    C = P_source - monitor_db - P_monitor         (dB to add to a reading)

measured on the monitor's channel and applied to the tap channel's readings. That assumes the
correction is common to the meter's ports (identical InGaAs detectors behind one correction
table; unverified for a real N774xC: check a meter by swapping the monitor and tap fibres once).
Every P_tap above then reads P_tap + C: the TX path records gain C, the RX path records lose it.
C at the product's wavelength is stated as a record of its own (`power_meter_wavelength`).
The attenuator's linearity is measured with the light and the wavelength setting the receiver
tests use (the reference transmitter's), as attenuation relative to the 0 dB setting.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from drivers.interfaces import Attenuator, Bert, OpticalSwitch, PowerMeter, SamplingScope
from sequences.conditions import rx_reference
from station.analysis.units import watts_to_dbm
from station.calibration.paths import ATTENUATOR_PATH, METER_WAVELENGTH_PATH, PATH_CAL_SEQUENCE
from station.calibration.writer import cal_attribute, cal_facts
from station.config import PathCalSettings
from station.engine import StepContext
from station.errors import StationError
from station.sequence import Sequence, step

TX_METER_PATH, TX_SCOPE_PATH, RX_PATH = "tx_to_power_meter", "tx_to_scope", "ref_tx_to_module_rx"
METER_CHANNEL = 1  # the TX splitter's meter leg
SCOPE_CHANNEL = 1
PATTERN = "PRBS13Q"  # the reference transmitter's pattern: the scope locks to it
SAMPLES_PER_UI = 4  # the mean of a whole pattern is all path-cal needs of a waveform
PATTERN_SYMBOLS = 8191
AVERAGING_S = 0.05
REPEATS = 3  # re-routings of both switches per lane
SCOPE_REPEATS = 1  # a pattern waveform costs the sampler about 0.3 s: one per lane
#: attenuator settings of the linearity check (dB), on lane 1
LINEARITY_SETTINGS_DB = tuple(float(s) for s in range(0, 45, 5))
TAP_FLOOR_W = 1e-9  # below this the tap sees no light: the fixture is not there, or a path is open

ROLES_TX = ("bert", "attenuator", "rx_switch", "optical_switch", "power_meter", "sampling_scope")
ROLES_RX = ("bert", "attenuator", "rx_switch", "power_meter")
MONITOR_REPEATS = 5  # readings of the reference transmitter's monitor per correction


@dataclass(frozen=True)
class Reading:
    """Repeated readings of one quantity (dBm); `spread_db` is their standard deviation."""

    mean_dbm: float
    spread_db: float

    @classmethod
    def of(cls, values_w: list[float]) -> Reading:
        dbm = watts_to_dbm(np.asarray(values_w, dtype=np.float64))
        spread = float(dbm.std(ddof=1)) if dbm.size > 1 else 0.0
        return cls(float(dbm.mean()), spread)

    @classmethod
    def of_ratios(cls, ratios: list[float]) -> Reading:
        """Repeated power ratios (W/W) in dB, as `mean_dbm`."""
        return cls.of([r * 1e-3 for r in ratios])  # a ratio times 1 mW: its dB read as dBm


def _settings(ctx: StepContext) -> PathCalSettings:
    settings = ctx.station.path_cal
    if settings is None:
        raise StationError(f"{ctx.station.path.name} has no [path_cal] table: cannot calibrate")
    return settings


def _light_up(ctx: StepContext, wavelength_nm: float) -> tuple[Attenuator, OpticalSwitch]:
    """Drive the reference transmitter with PRBS13Q PAM4 and open the attenuator at 0 dB."""
    bert = ctx.instrument("bert", Bert)
    attenuator = ctx.instrument("attenuator", Attenuator)
    bert.configure("PAM4", PATTERN, ctx.product.baud_rate_gbd)
    bert.set_output(True)
    attenuator.set_wavelength_nm(wavelength_nm)
    attenuator.set_attenuation_db(0.0)
    attenuator.set_output(True)
    return attenuator, ctx.instrument("rx_switch", OpticalSwitch)


@dataclass(frozen=True)
class MeterCorrection:
    """The dB to add to the power meter's readings at one wavelength setting, and its
    uncertainty; zero (and not measured) where the station has no monitor to measure it with."""

    correction_db: float
    uncertainty_db: float
    measured: bool

    def describe(self) -> str:
        if not self.measured:
            return "power meter wavelength correction not measured (no monitor configured)"
        return f"power meter wavelength correction {self.correction_db:+.3f} dB applied"


def meter_correction(ctx: StepContext, meter: PowerMeter, wavelength_nm: float) -> MeterCorrection:
    """The meter's correction at wavelength setting `wavelength_nm`, against the reference
    transmitter's monitor output (always lit: the transmitter's laser never stops)."""
    settings = _settings(ctx)
    if settings.monitor_channel is None or settings.monitor_db is None:
        return MeterCorrection(0.0, 0.0, measured=False)
    source = rx_reference(ctx.station.station_id)
    source.check_calibration(dt.date.today())
    channel = settings.monitor_channel
    meter.set_wavelength_nm(channel, wavelength_nm)
    meter.set_averaging_time_s(channel, AVERAGING_S)
    readings = [meter.read_power_w(channel) for _ in range(MONITOR_REPEATS)]
    if min(readings) < TAP_FLOOR_W:
        raise StationError(
            f"the reference transmitter's monitor (power meter channel {channel}) sees no light"
        )
    reading = Reading.of(readings)
    known_dbm = source.average_power_dbm - settings.monitor_db
    uncertainty = math.hypot(settings.fixture_uncertainty_db, reading.spread_db)
    return MeterCorrection(known_dbm - reading.mean_dbm, uncertainty, measured=True)


def _dark(ctx: StepContext, attenuator: Attenuator) -> None:
    attenuator.set_output(False)
    attenuator.set_attenuation_db(attenuator.max_attenuation_db)
    ctx.instrument("bert", Bert).set_output(False)


def _tap_w(ctx: StepContext, meter: PowerMeter, channel: int, lane: int) -> float:
    power = meter.read_power_w(channel)
    if power < TAP_FLOOR_W:
        raise StationError(
            f"lane {lane}: the fixture's tap (power meter channel {channel}) sees no light: "
            "is the reference loopback fixture in the cage?"
        )
    return power


def _reroute(switches: tuple[OpticalSwitch, ...], lane: int, lanes: int) -> None:
    """Route away and back, so that each reading sees its own switch repeatability."""
    for switch in switches:
        switch.route(lane % lanes + 1)
        switch.route(lane)


@step(roles=("power_meter",), measures=("power_meter_wavelength_correction",), timeout_s=60.0)
def meter_wavelength(ctx: StepContext) -> None:
    """The power meter's correction at the product's wavelength, against the reference
    transmitter's monitor output: stated as a record of its own (the path records fold it in)."""
    settings, wavelength = _settings(ctx), ctx.product.wavelength_nm
    meter = ctx.instrument("power_meter", PowerMeter)
    correction = meter_correction(ctx, meter, wavelength)
    if not correction.measured:
        ctx.attribute(
            "power_meter_wavelength",
            "not measured: the station config's [path_cal] names no monitor_channel/monitor_db",
        )
        return
    channel = settings.monitor_channel
    assert channel is not None  # measured: the monitor is configured
    source = rx_reference(ctx.station.station_id)
    ctx.measure("power_meter_wavelength_correction", correction.correction_db, unit="dB")
    ctx.attribute(
        cal_attribute(METER_WAVELENGTH_PATH, channel - 1),
        cal_facts(
            correction.correction_db,
            correction.uncertainty_db,
            wavelength,
            f"reference transmitter ({source.description}, {source.average_power_dbm:g} dBm, "
            f"calibrated {source.calibrated_on}) monitor output ({settings.monitor_db:g} dB) "
            f"on power meter channel {channel} set to {wavelength:g} nm; "
            f"{MONITOR_REPEATS} readings; applies to every channel of the meter",
            ("power_meter", "bert"),
        ),
    )


@step(
    roles=ROLES_TX,
    measures=("tx_to_power_meter_loss", "tx_to_scope_loss", "path_repeatability"),
    timeout_s=300.0,
)
def tx_paths(ctx: StepContext) -> None:
    """Every lane's loss from the module's TX leg to the power meter and to the scope."""
    settings, product = _settings(ctx), ctx.product
    wavelength = product.wavelength_nm
    meter = ctx.instrument("power_meter", PowerMeter)
    tx_switch = ctx.instrument("optical_switch", OpticalSwitch)
    scope = ctx.instrument("sampling_scope", SamplingScope)
    for channel in (METER_CHANNEL, settings.tap_channel):
        meter.set_wavelength_nm(channel, wavelength)
        meter.set_averaging_time_s(channel, AVERAGING_S)
    correction = meter_correction(ctx, meter, wavelength)
    scope.configure_eye(SCOPE_CHANNEL, product.baud_rate_gbd, PATTERN, wavelength)
    samples = SAMPLES_PER_UI * PATTERN_SYMBOLS
    dark_w = float(np.mean(scope.acquire_waveform(SCOPE_CHANNEL, samples).samples_w))
    attenuator, rx_switch = _light_up(ctx, wavelength)
    u_fixture = settings.fixture_uncertainty_db
    worst_spread = 0.0
    try:
        for lane in range(1, product.lanes + 1):
            meter_w, scope_w = [], []
            for repeat in range(REPEATS):
                _reroute((rx_switch, tx_switch), lane, product.lanes)
                tap = _tap_w(ctx, meter, settings.tap_channel, lane)
                meter_w.append(meter.read_power_w(METER_CHANNEL) / tap)  # per watt at the tap
                if repeat < SCOPE_REPEATS:
                    waveform = scope.acquire_waveform(SCOPE_CHANNEL, samples)
                    after = _tap_w(ctx, meter, settings.tap_channel, lane)
                    mean_w = float(np.mean(waveform.samples_w)) - dark_w
                    scope_w.append(max(mean_w, TAP_FLOOR_W) / (0.5 * (tap + after)))
            # per 0 dBm read at the tap: what the TX leg really gets
            leg_dbm = settings.fixture_tap_db - settings.fixture_loopback_db
            leg_dbm += correction.correction_db
            meter_reading = Reading.of_ratios(meter_w)
            worst_spread = max(worst_spread, meter_reading.spread_db)
            for path, reading, name in (
                (TX_METER_PATH, meter_reading, "tx_to_power_meter_loss"),
                (TX_SCOPE_PATH, Reading.of_ratios(scope_w), "tx_to_scope_loss"),
            ):
                loss = leg_dbm - reading.mean_dbm
                # the scope shares the meter's routings' repeatability (same switches)
                spread = max(reading.spread_db, meter_reading.spread_db)
                uncertainty = math.hypot(u_fixture, spread, correction.uncertainty_db)
                ctx.measure(name, loss, unit="dB", lane=lane)
                ctx.attribute(
                    cal_attribute(path, lane - 1),
                    cal_facts(
                        loss,
                        uncertainty,
                        wavelength,
                        f"reference loopback fixture, tap on power meter channel "
                        f"{settings.tap_channel}; {REPEATS} re-routings; "
                        f"{'scope waveform mean' if path == TX_SCOPE_PATH else 'power meter'} "
                        f"at {wavelength:g} nm; {correction.describe()}",
                        ("power_meter", "sampling_scope", "bert"),
                    ),
                )
        ctx.measure("path_repeatability", worst_spread, unit="dB")
    finally:
        _dark(ctx, attenuator)


@step(roles=ROLES_RX, measures=("ref_tx_to_module_rx_loss",), timeout_s=300.0)
def rx_paths(ctx: StepContext) -> None:
    """Every lane's loss from the reference transmitter to the module's RX leg (attenuator at
    0 dB), against the reference transmitter's calibrated average power."""
    settings, product = _settings(ctx), ctx.product
    source = rx_reference(ctx.station.station_id)
    source.check_calibration(dt.date.today())
    meter = ctx.instrument("power_meter", PowerMeter)
    meter.set_wavelength_nm(settings.tap_channel, source.wavelength_nm)
    meter.set_averaging_time_s(settings.tap_channel, AVERAGING_S)
    correction = meter_correction(ctx, meter, source.wavelength_nm)
    attenuator, rx_switch = _light_up(ctx, source.wavelength_nm)
    try:
        for lane in range(1, product.lanes + 1):
            readings = []
            for _ in range(REPEATS):
                _reroute((rx_switch,), lane, product.lanes)
                readings.append(_tap_w(ctx, meter, settings.tap_channel, lane))
            reading = Reading.of(readings)
            at_leg_dbm = reading.mean_dbm + correction.correction_db + settings.fixture_tap_db
            loss = source.average_power_dbm - at_leg_dbm
            ctx.measure("ref_tx_to_module_rx_loss", loss, unit="dB", lane=lane)
            ctx.attribute(
                cal_attribute(RX_PATH, lane - 1),
                cal_facts(
                    loss,
                    math.hypot(
                        settings.fixture_uncertainty_db,
                        reading.spread_db,
                        correction.uncertainty_db,
                    ),
                    source.wavelength_nm,
                    f"reference transmitter ({source.description}, calibrated "
                    f"{source.calibrated_on}) to the fixture's tap on power meter channel "
                    f"{settings.tap_channel}; attenuator at 0 dB; {REPEATS} re-routings; "
                    f"{correction.describe()}",
                    ("power_meter", "bert", "attenuator"),
                ),
            )
    finally:
        _dark(ctx, attenuator)


@step(roles=ROLES_RX, measures=("attenuator_linearity_error",), timeout_s=300.0)
def attenuator_linearity(ctx: StepContext) -> None:
    """The attenuation the light really sees against the setting, over the attenuator's range
    (lane 1, relative to 0 dB: the insertion loss is part of the RX path loss), with the
    reference transmitter's light and wavelength setting, as the receiver tests use it."""
    settings = _settings(ctx)
    source = rx_reference(ctx.station.station_id)
    meter = ctx.instrument("power_meter", PowerMeter)
    meter.set_wavelength_nm(settings.tap_channel, source.wavelength_nm)
    meter.set_averaging_time_s(settings.tap_channel, AVERAGING_S)
    attenuator, rx_switch = _light_up(ctx, source.wavelength_nm)
    rx_switch.route(1)
    worst = 0.0
    try:
        reference_dbm = float(watts_to_dbm(_tap_w(ctx, meter, settings.tap_channel, 1)))
        for setting in LINEARITY_SETTINGS_DB:
            attenuator.set_attenuation_db(setting)
            measured = reference_dbm - float(watts_to_dbm(meter.read_power_w(settings.tap_channel)))
            error = measured - setting
            if abs(error) > abs(worst):
                worst = error
            ctx.attribute(
                cal_attribute(ATTENUATOR_PATH, 0, setting),
                cal_facts(
                    measured,
                    math.hypot(0.005, 0.001 * setting),  # meter linearity over the range
                    source.wavelength_nm,
                    f"attenuation relative to 0 dB on lane 1, attenuator set to "
                    f"{source.wavelength_nm:g} nm, power meter channel {settings.tap_channel}",
                    ("power_meter", "attenuator"),
                    attenuation_db=setting,
                ),
            )
        ctx.measure("attenuator_linearity_error", worst, unit="dB")
    finally:
        _dark(ctx, attenuator)


SEQUENCE = Sequence(
    name=PATH_CAL_SEQUENCE,
    description=__doc__.strip().splitlines()[0],
    products=("PATH-CAL-DR8",),
    steps=(meter_wavelength, tx_paths, rx_paths, attenuator_linearity),
)
