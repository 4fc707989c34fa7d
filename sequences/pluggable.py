"""Qualification of a pluggable transceiver module (800G DR8, 1.6T DR8) on the module test station.

CMIS identity and power-up, then at each selected case temperature: the DDM temperature against
the case, every TX lane (power, eye, TDECQ, spectrum, dark power, DDM TX power) and every RX lane
(BER at nominal power, sensitivity, DDM RX power).
The corners come from the run parameters (`station run ... --corners 0,25,70`; production: 25
degC); the engine runs only the selected corners' steps (`CornerSequence.steps_for`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.interfaces import ModuleHost, ModuleState, ThermalController
from sequences.inspection import inspect
from sequences.pluggable_rx import RX_MEASURES, RX_ROLES, measure_rx, record_rx
from sequences.pluggable_tx import TX_MEASURES, TX_ROLES, measure_tx, record_tx
from station.engine import RunParameters, StepContext
from station.errors import InputError
from station.sequence import Sequence, Step, step

#: case temperatures this sequence offers, in the order it runs them: room first, then cold, then
#: hot, so that the head's return to ambient at the end never passes the dew point
CORNERS_C = (25.0, 0.0, 70.0)
#: production default; `station run ... --corners 0,25,70` asks for more
DEFAULT_CORNERS_C = (25.0,)
WINDOW_C = 1.0  # the head holds the case within this of the corner ...
SOAK_S = 30  # ... for this long before the corner counts as reached
SETTLE_POLL_S = 0.2


def corners_of(parameters: RunParameters) -> tuple[float, ...]:
    """The offered corners a run asks for, in run order (`case_temperature_plan` rejects the
    others)."""
    asked = parameters.corners_c
    wanted = DEFAULT_CORNERS_C if asked is None else tuple(float(c) for c in asked)
    return tuple(c for c in CORNERS_C if c in wanted)


def selected_corners(ctx: StepContext) -> tuple[float, ...]:
    return corners_of(ctx.parameters)


@dataclass(frozen=True)
class CornerSequence(Sequence):
    """A sequence with steps that belong to one case temperature corner: a run gets the others
    and those of the corners it asks for, so that no step of an unselected corner waits for an
    instrument another site holds."""

    corner_of: tuple[tuple[str, float], ...] = ()  # (step name, its corner)

    def steps_for(self, parameters: RunParameters) -> tuple[Step, ...]:
        wanted, corner_of = (None, *corners_of(parameters)), dict(self.corner_of)
        return tuple(s for s in self.steps if corner_of.get(s.name) in wanted)


# --- CMIS -----------------------------------------------------------------------------------------
@step(
    roles=("module_host",),
    measures=(
        "cmis_identifier",
        "vendor_name",
        "part_number",
        "serial_number",
        "cmis_revision",
        "firmware_version",
    ),
    timeout_s=15.0,
    retries=1,
)
def identify_module(ctx: StepContext) -> None:
    """Read the module's identity from its CMIS memory map."""
    identity = ctx.instrument("module_host", ModuleHost).module_identity()
    ctx.measure("cmis_identifier", identity.identifier, unit="")
    ctx.measure("vendor_name", identity.vendor_name, unit="")
    ctx.measure("part_number", identity.part_number, unit="")
    ctx.measure("serial_number", identity.serial_number, unit="")
    ctx.measure("cmis_revision", identity.cmis_revision, unit="")
    ctx.measure("firmware_version", identity.firmware_version, unit="")
    ctx.attribute("vendor_revision", identity.vendor_revision)
    ctx.attribute("date_code", identity.date_code)


@step(roles=("thermal_head",), timeout_s=30.0)
def case_temperature_plan(ctx: StepContext) -> None:
    """Check the corners asked for and start the head on the first (its soak overlaps power-up)."""
    asked = ctx.parameters.corners_c
    offered = ", ".join(f"{c:g}" for c in CORNERS_C)
    if asked is not None:
        unknown = [c for c in asked if float(c) not in CORNERS_C]
        if unknown or not asked:
            raise InputError(
                "--corners", "corners_c", asked, f"this sequence offers {offered} degC"
            )
    corners = selected_corners(ctx)
    ctx.attribute("corners_c", ",".join(f"{c:g}" for c in corners))
    head = ctx.instrument("thermal_head", ThermalController)
    head.configure(window_c=WINDOW_C, soak_time_s=SOAK_S)
    head.set_setpoint_c(corners[0])


@step(
    roles=("module_host",),
    measures=("module_state", "data_path_state", "module_vcc"),
    timeout_s=120.0,
)
def power_up(ctx: StepContext) -> None:
    """Release low power, wait for ModuleReady, activate all data paths, read the supply."""
    host = ctx.instrument("module_host", ModuleHost)
    host.set_tx_disable((False,) * host.lane_count)
    host.set_low_power(False)
    ready_s = host.wait_module_state(ModuleState.READY)  # within the advertised duration
    ctx.measure("module_state", host.module_state().name, unit="")
    if ready_s is None:
        return  # the module did not become ready: its state above already fails it
    ctx.attribute("module_ready_s", f"{ready_s:.3f}")
    activated_s = host.activate_data_paths(application=1)  # within the advertised durations
    if activated_s is not None:
        ctx.attribute("data_path_activated_s", f"{activated_s:.3f}")
    for lane, state in enumerate(host.data_path_states(), start=1):
        ctx.measure("data_path_state", state.name, unit="", lane=lane)
    ctx.measure("module_vcc", host.monitors().vcc_v, unit="V")


# --- one corner -------------------------------------------------------------------------------
def _skipped(ctx: StepContext, corner_c: float) -> bool:
    """Whether a step of `corner_c` runs although its corner was not asked for (a plain
    `Sequence` of these steps runs them all): it records why it does nothing."""
    corners = selected_corners(ctx)
    if corner_c in corners:
        return False
    listed = ",".join(f"{c:g}" for c in corners)
    ctx.attribute("skipped", f"{corner_c:g} degC is not a corner of this run ({listed} degC)")
    return True


def settle_case(
    ctx: StepContext, head: ThermalController, corner_c: float, *, start: bool
) -> float:
    """Bring the module case to `corner_c` (setting the head when `start`) and wait until it
    has soaked; returns the case thermocouple reading."""
    started = time.monotonic()
    if start:
        head.set_setpoint_c(corner_c)
    while not head.settled(WINDOW_C):
        ctx.sleep(SETTLE_POLL_S)
    ctx.attribute("case_settle_wait_s", f"{time.monotonic() - started:.2f}")
    return head.temperature_c()


def case_temperature(ctx: StepContext, corner_c: float) -> None:
    """Soak the module case at the corner; temperature and supply monitors against the case."""
    if _skipped(ctx, corner_c):
        return
    host = ctx.instrument("module_host", ModuleHost)
    head = ctx.instrument("thermal_head", ThermalController)
    host.set_tx_disable((False,) * host.lane_count)  # the TX tests of the last corner left them off
    ctx.attribute("case_setpoint_c", f"{corner_c:g}")
    case_c = settle_case(ctx, head, corner_c, start=corner_c != selected_corners(ctx)[0])
    monitors = host.monitors()
    ctx.measure("case_temperature_error", case_c - corner_c, unit="degC")
    ctx.measure("module_temperature", monitors.temperature_c, unit="degC")
    ctx.measure("module_vcc", monitors.vcc_v, unit="V")
    # DOMAIN.md 1: compare the DDM with the case thermocouple, never with the head's setpoint.
    ctx.measure("ddm_temperature_minus_case", monitors.temperature_c - case_c, unit="degC")


def tx_optical(ctx: StepContext, corner_c: float) -> None:
    """Every TX lane: power, OMA, ER, TDECQ, RLM, wavelength, SMSR, dark power, DDM TX power."""
    if not _skipped(ctx, corner_c):
        record_tx(ctx, measure_tx(ctx))


def rx_receiver(ctx: StepContext, corner_c: float) -> None:
    """Every RX lane: BER at nominal power and its confidence, sensitivity, DDM RX power."""
    if not _skipped(ctx, corner_c):
        record_rx(ctx, measure_rx(ctx))


def _at_corner(
    func: Callable[[StepContext, float], None],
    prefix: str,
    corner_c: float,
    *,
    roles: tuple[str, ...],
    measures: tuple[str, ...],
    timeout_s: float,
    retries: int = 0,
) -> Step:
    """`func` as the step `<prefix>_<corner>c` (e.g. tx_optical_70c)."""
    doc = (func.__doc__ or "").strip().splitlines()[0]

    def at_corner(ctx: StepContext) -> None:
        func(ctx, corner_c)

    return Step(
        at_corner,
        f"{prefix}_{corner_c:g}c".replace("-", "m"),
        roles,
        measures,
        timeout_s,
        retries,
        f"{doc} ({corner_c:g} degC case)",
    )


def corner_steps(corner_c: float) -> tuple[Step, ...]:
    return (
        _at_corner(
            case_temperature,
            "case_temperature",
            corner_c,
            roles=("module_host", "thermal_head"),
            measures=(
                "case_temperature_error",
                "module_temperature",
                "module_vcc",
                "ddm_temperature_minus_case",
            ),
            timeout_s=1200.0,  # a 70 K change of case temperature takes minutes
        ),
        _at_corner(
            tx_optical,
            "tx_optical",
            corner_c,
            roles=TX_ROLES,
            measures=TX_MEASURES,
            timeout_s=180.0,
            retries=1,
        ),
        _at_corner(
            rx_receiver, "rx", corner_c, roles=RX_ROLES, measures=RX_MEASURES, timeout_s=300.0
        ),
    )


_CORNER_STEPS = {corner: corner_steps(corner) for corner in CORNERS_C}

SEQUENCE = CornerSequence(
    name="pluggable",
    description=__doc__.strip().splitlines()[0],
    products=("800G-DR8", "1.6T-DR8"),
    steps=(
        identify_module,
        case_temperature_plan,
        inspect,  # the end faces before mating, with the transmitters still off
        power_up,
        *(s for steps in _CORNER_STEPS.values() for s in steps),
    ),
    corner_of=tuple((s.name, corner) for corner, steps in _CORNER_STEPS.items() for s in steps),
)
