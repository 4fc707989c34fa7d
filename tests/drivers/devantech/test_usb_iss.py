"""Protocol tests of the USB-ISS bridge (binary, scripted) and of CMIS through its twin."""

from __future__ import annotations

import pytest

from drivers.devantech.usb_iss import UsbIss, UsbIssCmisHost
from drivers.errors import InstrumentReplyError, InstrumentStateError
from drivers.interfaces import DataPathState, ModuleHost, ModuleState
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport


def test_identify_reads_version_and_serial() -> None:
    transport = ScriptedTransport(
        [
            (bytes([0x5A, 0x01]), [bytes([0x07, 0x09, 0x40])]),
            (bytes([0x5A, 0x03]), [b"00031415"]),
        ]
    )
    identity = UsbIss(transport).identify()
    assert (identity.model, identity.serial_number, identity.firmware) == (
        "USB-ISS",
        "00031415",
        "9",
    )


def test_identify_refuses_another_module_id() -> None:
    transport = ScriptedTransport([(bytes([0x5A, 0x01]), [bytes([0x05, 0x01, 0x00])])])
    with pytest.raises(InstrumentReplyError, match="USB-ISS"):
        UsbIss(transport).identify()


def test_reads_are_split_into_transfers_of_at_most_60_bytes() -> None:
    transport = ScriptedTransport(
        [
            (bytes([0x55, 0xA1, 0, 60]), [bytes(range(60))]),
            (bytes([0x55, 0xA1, 60, 40]), [bytes(range(60, 100))]),
        ]
    )
    assert UsbIss(transport).read_registers(0x50, 0, 100) == bytes(range(100))


def test_unacknowledged_write_is_a_typed_error() -> None:
    transport = ScriptedTransport([(bytes([0x55, 0xA0, 26, 1, 0x10]), [b"\x00"])])
    with pytest.raises(InstrumentStateError, match="not acknowledged"):
        UsbIss(transport).write_registers(0x50, 26, b"\x10")


def test_cmis_bring_up_through_the_twin(bench: SimBench) -> None:
    with UsbIssCmisHost.open(bench.resources()["module_host"]) as host:
        assert isinstance(host, ModuleHost)
        identity = host.module_identity()
        assert identity.serial_number == "SIM0001"
        assert identity.vendor_name == "SIMOPTICS"
        assert identity.cmis_revision == "5.2"
        assert host.module_state() == ModuleState.LOW_POWER
        assert set(host.data_path_states()) == {DataPathState.DEACTIVATED}
        host.set_low_power(False)
        assert host.wait_module_state(ModuleState.READY) is not None
        assert host.activate_data_paths(1) is not None
        assert set(host.data_path_states()) == {DataPathState.ACTIVATED}
        monitors = host.monitors()
        assert 20.0 < monitors.temperature_c < 60.0
        assert monitors.vcc_v == pytest.approx(3.3, abs=0.03)
        assert all(1e-4 < p < 1e-2 for p in monitors.tx_power_w)  # lasers on: 0.1 to 10 mW
        assert all(0.01 < b < 0.2 for b in monitors.tx_bias_a)


def test_unadvertised_application_is_rejected_by_the_module(bench: SimBench) -> None:
    with UsbIssCmisHost.open(bench.resources()["module_host"]) as host:
        host.set_low_power(False)
        host.wait_module_state(ModuleState.READY)
        assert host.activate_data_paths(application=2, timeout_s=0.5) is None
        assert set(host.data_path_states()) == {DataPathState.DEACTIVATED}


def test_tx_disable_and_safe_state_turn_the_lasers_off(bench: SimBench) -> None:
    with UsbIssCmisHost.open(bench.resources()["module_host"]) as host:
        host.set_low_power(False)
        host.wait_module_state(ModuleState.READY)
        host.activate_data_paths(1)
        host.set_tx_disable((True, False, False, False, False, False, False, True))
        powers = host.monitors().tx_power_w
        assert powers[0] == 0.0 and powers[7] == 0.0 and powers[1] > 1e-4
        host.safe_state()
        assert bench.world.module is not None
        assert not bench.world.module.emitted_power_w().any()
