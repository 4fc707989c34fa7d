"""Golden-unit check of the module station: the pluggable TX and RX tests on a reference module,
compared lane by lane with the values it gave when the station was known good.

Every judged measurement is a station figure (`station_*`, offsets from the reference within the
+-0.25 dB correlation budget): a FAIL here means THE STATION DRIFTED (a dirty or swapped jumper,
a source or scope out of calibration), not that the golden unit is bad. Reference values live in
`sequences/references/golden_units.toml`; the limits in `sequences/limits/golden/<product>.toml`
(give it with `--limits`: the product's own file judges modules, not stations).

The steps only record. What a run concludes is the station's (station.calibration.offsets, per
the limits file's `[offsets]` table): a PASS becomes the station's next offsets version, which
later runs apply; a figure outside its limits locks the station until an engineer unlocks it.
"""

from __future__ import annotations

import math

import numpy as np

from drivers.interfaces import ModuleHost, ThermalController
from sequences.conditions import GoldenReference, golden_reference
from sequences.pluggable import SOAK_S, WINDOW_C, power_up, settle_case
from sequences.pluggable_rx import RX_ROLES, measure_rx, record_waterfalls
from sequences.pluggable_tx import TX_ROLES, measure_tx
from station.engine import StepContext
from station.errors import InputError, StationError
from station.sequence import Sequence, step

GOLDEN_CASE_C = 25.0  # references are taken, and checked, at room temperature only
VERDICT = "station check: FAIL means the station drifted from its golden-unit reference"


def _reference(ctx: StepContext) -> GoldenReference:
    """This unit's reference on this station, or an InputError saying why there is none."""
    reference = golden_reference(ctx.dut_serial)
    if reference.product != ctx.product.name:
        raise InputError(
            "--product",
            "product",
            ctx.product.name,
            f"golden unit {ctx.dut_serial} is a {reference.product}",
        )
    if reference.station_id != ctx.station.station_id:
        raise InputError(
            "--serial",
            "serial",
            ctx.dut_serial,
            f"its reference values were taken on {reference.station_id}, not on "
            f"{ctx.station.station_id}: take a reference on this station first",
        )
    return reference


@step(roles=("module_host",), measures=("serial_number",), timeout_s=15.0, retries=1)
def identify_golden_unit(ctx: StepContext) -> None:
    """The module in the cage is the golden unit scanned, and it has a reference here."""
    reference = _reference(ctx)
    ctx.attribute("verdict_meaning", VERDICT)
    ctx.attribute("reference_measured_on", reference.measured_on.isoformat())
    identity = ctx.instrument("module_host", ModuleHost).module_identity()
    ctx.measure("serial_number", identity.serial_number, unit="")


@step(roles=("thermal_head",), timeout_s=30.0)
def golden_case_temperature_plan(ctx: StepContext) -> None:
    """Start the head on the reference temperature (its soak overlaps power-up)."""
    corners = ctx.parameters.corners_c
    if corners is not None and tuple(corners) != (GOLDEN_CASE_C,):
        raise InputError(
            "--corners", "corners_c", corners, f"golden checks run at {GOLDEN_CASE_C:g} degC only"
        )
    head = ctx.instrument("thermal_head", ThermalController)
    head.configure(window_c=WINDOW_C, soak_time_s=SOAK_S)
    head.set_setpoint_c(GOLDEN_CASE_C)


@step(roles=("module_host", "thermal_head"), measures=("case_temperature_error",), timeout_s=1200.0)
def golden_case_temperature(ctx: StepContext) -> None:
    """Wait for the case to soak at the reference temperature, lasers on."""
    host = ctx.instrument("module_host", ModuleHost)
    host.set_tx_disable((False,) * host.lane_count)
    head = ctx.instrument("thermal_head", ThermalController)
    case_c = settle_case(ctx, head, GOLDEN_CASE_C, start=False)
    ctx.measure("case_temperature_error", case_c - GOLDEN_CASE_C, unit="degC")


def _offsets(
    ctx: StepContext, name: str, measured: list[float], reference: tuple[float, ...]
) -> list[float]:
    if len(reference) != len(measured):
        raise InputError("golden_units.toml", name, len(reference), f"need {len(measured)} lanes")
    offsets = []
    for lane, (value, ref) in enumerate(zip(measured, reference, strict=True), start=1):
        if not math.isfinite(value):
            raise StationError(f"lane {lane}: no {name} to compare with the reference")
        offsets.append(value - ref)
        ctx.measure(name, value - ref, unit="dB", lane=lane)
    return offsets


@step(
    roles=TX_ROLES,
    measures=(
        "station_tx_power_offset",
        "station_oma_offset",
        "station_er_offset",
        "station_tdecq_offset",
        "station_tx_drift_max",
    ),
    timeout_s=180.0,
    retries=1,
)
def station_tx_check(ctx: StepContext) -> None:
    """The pluggable TX tests on the golden unit, each lane against its reference."""
    reference = _reference(ctx)
    result = measure_tx(ctx)
    lanes = result.lanes
    ctx.attribute("scope_noise_rms_uw", f"{result.scope_noise_w * 1e6:.4f}")
    offsets = [
        *_offsets(
            ctx,
            "station_tx_power_offset",
            [t.average_power_dbm for t in lanes],
            reference.tx_average_power_dbm,
        ),
        *_offsets(
            ctx, "station_oma_offset", [t.oma_outer_dbm for t in lanes], reference.tx_oma_outer_dbm
        ),
        *_offsets(
            ctx, "station_er_offset", [t.er_db for t in lanes], reference.tx_extinction_ratio_db
        ),
        *_offsets(ctx, "station_tdecq_offset", [t.tdecq_db for t in lanes], reference.tx_tdecq_db),
    ]
    ctx.measure("station_tx_drift_max", float(np.max(np.abs(offsets))), unit="dB")
    ctx.attribute("analysis_s", f"{result.analysis_s:.4f}")


@step(
    roles=RX_ROLES,
    measures=("station_sensitivity_offset", "station_rx_drift_max"),
    timeout_s=300.0,
)
def station_rx_check(ctx: StepContext) -> None:
    """The pluggable RX tests on the golden unit, each lane's sensitivity against its reference."""
    reference = _reference(ctx)
    result = measure_rx(ctx)
    if not result.lanes:
        raise StationError("this station cannot run the golden unit's RX tests (see rx_skipped)")
    record_waterfalls(ctx, result)
    offsets = _offsets(
        ctx,
        "station_sensitivity_offset",
        [lane.sensitivity_dbm for lane in result.lanes],
        reference.rx_sensitivity_oma_dbm,
    )
    ctx.measure("station_rx_drift_max", float(np.max(np.abs(offsets))), unit="dB")
    ctx.attribute("analysis_s", f"{result.analysis_s:.4f}")


SEQUENCE = Sequence(
    name="golden",
    description=__doc__.strip().splitlines()[0],
    products=("800G-DR8",),
    steps=(
        identify_golden_unit,
        golden_case_temperature_plan,
        power_up,
        golden_case_temperature,
        station_tx_check,
        station_rx_check,
    ),
)
