"""Qualification of a pluggable transceiver module (800G DR8) on the module test station.

Identify the module over CMIS, bring it to ModuleReady with its data paths Activated, then route
each TX lane through the optical switch to the power meter and record its average launch power.
"""

from __future__ import annotations

import numpy as np

from drivers.interfaces import ModuleHost, ModuleState, OpticalSwitch, PowerMeter
from station.analysis.units import watts_to_dbm
from station.engine import StepContext
from station.sequence import Sequence, step

METER_CHANNEL = 1  # the switch's common port is patched to channel 1
METER_AVERAGING_S = 0.05
METER_NOISE_FLOOR_W = 1e-12  # readings below it are dark: recorded at the floor, never as NaN
TX_PATH = "tx_to_power_meter"


@step(
    roles=("module_host",),
    measures=("cmis_identifier", "part_number", "serial_number"),
    timeout_s=15.0,
    retries=1,
)
def identify_module(ctx: StepContext) -> None:
    """Read the module's identity from its CMIS memory map."""
    host = ctx.instrument("module_host", ModuleHost)
    identity = host.module_identity()
    ctx.measure("cmis_identifier", identity.identifier, unit="")
    ctx.measure("part_number", identity.part_number, unit="")
    ctx.measure("serial_number", identity.serial_number, unit="")
    for name in (
        "vendor_name",
        "vendor_revision",
        "cmis_revision",
        "firmware_version",
        "date_code",
    ):
        ctx.attribute(name, getattr(identity, name))


@step(
    roles=("module_host",),
    measures=("module_state", "data_path_state", "module_temperature", "module_vcc"),
    timeout_s=120.0,
)
def power_up(ctx: StepContext) -> None:
    """Release low power, wait for ModuleReady, activate all data paths, read the monitors."""
    host = ctx.instrument("module_host", ModuleHost)
    host.set_tx_disable((False,) * ctx.product.lanes)
    host.set_low_power(False)
    ready_s = host.wait_module_state(ModuleState.READY)
    ctx.measure("module_state", host.module_state().name, unit="")
    if ready_s is None:
        return  # the module did not become ready: its state above already fails it
    ctx.attribute("module_ready_s", f"{ready_s:.3f}")
    activated_s = host.activate_data_paths(application=1)
    if activated_s is not None:
        ctx.attribute("data_path_activated_s", f"{activated_s:.3f}")
    for lane, state in enumerate(host.data_path_states(), start=1):
        ctx.measure("data_path_state", state.name, unit="", lane=lane)
    monitors = host.monitors()
    ctx.measure("module_temperature", monitors.temperature_c, unit="degC")
    ctx.measure("module_vcc", monitors.vcc_v, unit="V")


@step(
    roles=("optical_switch", "power_meter"),
    measures=("tx_average_power",),
    timeout_s=60.0,
    retries=1,
)
def tx_average_power(ctx: StepContext) -> None:
    """Average launch power of every lane, through the switch, corrected for the path loss."""
    switch = ctx.instrument("optical_switch", OpticalSwitch)
    meter = ctx.instrument("power_meter", PowerMeter)
    meter.set_wavelength_nm(METER_CHANNEL, ctx.product.wavelength_nm)
    meter.set_averaging_time_s(METER_CHANNEL, METER_AVERAGING_S)
    for lane in range(1, ctx.product.lanes + 1):
        switch.route(lane)
        power_w = meter.read_power_w(METER_CHANNEL)
        raw_dbm = float(watts_to_dbm(np.maximum(power_w, METER_NOISE_FLOOR_W)))
        loss_db = ctx.path_loss_db(TX_PATH, lane - 1)
        ctx.measure(
            "tx_average_power",
            raw_dbm + loss_db,
            unit="dBm",
            lane=lane,
            raw_value=raw_dbm,
            correction_db=loss_db,
        )


SEQUENCE = Sequence(
    name="pluggable",
    description=__doc__.strip().splitlines()[0],
    products=("800G-DR8",),
    steps=(identify_module, power_up, tx_average_power),
)
