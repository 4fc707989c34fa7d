"""The simulated bench is physically coupled: instruments agree about the same light."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.devantech.usb_iss import UsbIssCmisHost
from drivers.interfaces import ModuleState
from drivers.keysight.n7734a import N7734A
from drivers.keysight.n7744c import N7744C
from sim_instruments.bench import SimBench
from sim_instruments.population import make_module


def _watts_to_dbm(w: float) -> float:
    return 10 * np.log10(w / 1e-3)


def test_same_serial_same_unit_and_population_varies() -> None:
    assert make_module("SIM0007", "800G-DR8") == make_module("SIM0007", "800G-DR8")
    powers = np.array(
        [
            [lane.tx_power_dbm for lane in make_module(f"SIM{i:04d}", "800G-DR8").lanes]
            for i in range(1, 201)
        ]
    )
    assert 0.3 < powers.std() < 1.5
    weak = sum(make_module(f"SIM{i:04d}", "800G-DR8").weak_lane is not None for i in range(1, 201))
    assert 2 <= weak <= 25  # a few percent carry a degraded laser


def test_meter_reads_module_launch_power_less_path_loss_and_ddm_agrees(bench: SimBench) -> None:
    resources = bench.resources()
    with (
        UsbIssCmisHost.open(resources["module_host"]) as host,
        N7734A.open(resources["optical_switch"]) as switch,
        N7744C.open(resources["power_meter"]) as meter,
    ):
        host.set_low_power(False)
        host.wait_module_state(ModuleState.READY)
        host.activate_data_paths(1)
        meter.set_wavelength_nm(1, 1311)
        meter.set_averaging_time_s(1, 0.01)
        world = bench.world
        assert world.module is not None and world.switch is not None
        for lane in (1, 4, 8):
            switch.route(lane)
            read_dbm = _watts_to_dbm(meter.read_power_w(1))
            launched_dbm = _watts_to_dbm(world.module.emitted_power_w()[lane - 1])
            loss = world.jumper_loss_db[lane - 1] + world.switch.port_loss_db[lane - 1]
            loss += world.tx_splitter_loss_db.get("power_meter:1", 0.0)  # TX splitter's meter leg
            assert read_dbm == pytest.approx(launched_dbm - loss, abs=0.1)
            ddm_dbm = _watts_to_dbm(host.monitors().tx_power_w[lane - 1])
            assert ddm_dbm == pytest.approx(launched_dbm, abs=1.0)  # DDM is only +-1 dB-ish


def test_wrong_meter_wavelength_reads_wrong(bench: SimBench) -> None:
    resources = bench.resources()
    with (
        UsbIssCmisHost.open(resources["module_host"]) as host,
        N7734A.open(resources["optical_switch"]) as switch,
        N7744C.open(resources["power_meter"]) as meter,
    ):
        host.set_low_power(False)
        host.wait_module_state(ModuleState.READY)
        host.activate_data_paths(1)
        switch.route(2)
        meter.set_averaging_time_s(1, 0.01)
        meter.set_wavelength_nm(1, 1311)
        right = meter.read_power_w(1)
        meter.set_wavelength_nm(1, 1550)
        wrong = meter.read_power_w(1)
        assert _watts_to_dbm(wrong) - _watts_to_dbm(right) < -0.4  # InGaAs responsivity


def test_tx_disable_drops_the_meter_to_the_dark_level(bench: SimBench) -> None:
    resources = bench.resources()
    with (
        UsbIssCmisHost.open(resources["module_host"]) as host,
        N7734A.open(resources["optical_switch"]) as switch,
        N7744C.open(resources["power_meter"]) as meter,
    ):
        host.set_low_power(False)
        host.wait_module_state(ModuleState.READY)
        host.activate_data_paths(1)
        switch.route(3)
        meter.set_averaging_time_s(1, 0.01)
        assert meter.read_power_w(1) > 1e-4
        host.set_tx_disable((False, False, True, False, False, False, False, False))
        assert abs(meter.read_power_w(1)) < 1e-9


def test_meter_noise_falls_with_averaging_time(bench: SimBench) -> None:
    with N7744C.open(bench.resources()["power_meter"], timeout_s=5) as meter:
        short = meter.log_power_w(1, 4000, 1e-5)
        long = meter.log_power_w(1, 4000, 1e-3)
    assert short.std() > 5 * long.std()
