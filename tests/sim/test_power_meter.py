"""The simulated N7744C's wavelength correction behaves like a real meter's, through the real
driver: told the right wavelength it is off by its correction table's small, smooth error (fixed
by its serial); told a wrong one it is off by the responsivity it assumed. The reference
transmitter's monitor output on channel 3 is the known power path-cal checks it against."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.keysight.n7744c import N7744C
from sim_instruments.bench import SimBench
from sim_instruments.keysight_n7744c import CorrectionTableError, SimN7744C
from sim_instruments.light import total_power_w

MONITOR_CHANNEL = 3
NOISE_DB = 0.01  # 0.2 % at 1 ms averaging, shrinking with the square root of 0.2 s


@pytest.fixture
def bench() -> Iterator[tuple[SimBench, N7744C, SimN7744C]]:
    with SimBench.build(time_factor=0.01) as sim:
        twin = sim.devices["power_meter"]
        assert isinstance(twin, SimN7744C)
        with N7744C.open(sim.resources()["power_meter"]) as meter:
            meter.set_averaging_time_s(MONITOR_CHANNEL, 0.2)
            yield sim, meter, twin


def _error_db(sim: SimBench, meter: N7744C, wavelength_nm: float) -> float:
    """The meter's reading of the monitor less what truly arrives there, dB."""
    meter.set_wavelength_nm(MONITOR_CHANNEL, wavelength_nm)
    truth_w = total_power_w(sim.world.light_at(f"power_meter:{MONITOR_CHANNEL}"))
    return 10 * math.log10(meter.read_power_w(MONITOR_CHANNEL) / truth_w)


def test_told_the_lights_wavelength_the_meter_is_off_by_its_correction_table(bench) -> None:
    sim, meter, twin = bench
    rx = sim.world.rx
    assert rx is not None and not rx.attenuator.shutter_open  # the monitor is lit regardless
    light_nm = round(rx.ref_tx.wavelength_nm, 4)
    error = _error_db(sim, meter, light_nm)
    assert error == pytest.approx(twin.table_error.error_db(light_nm), abs=NOISE_DB)
    # a meter with a known table: +0.15 dB flat
    twin.table_error = CorrectionTableError(0.15, 1e9, math.pi / 2)
    assert _error_db(sim, meter, light_nm) == pytest.approx(0.15, abs=NOISE_DB)


def test_told_a_wrong_wavelength_the_meter_divides_by_the_responsivity_there(bench) -> None:
    sim, meter, twin = bench
    twin.table_error = CorrectionTableError(0.0, 1e9, 0.0)  # a perfect table
    rx = sim.world.rx
    assert rx is not None
    light_nm = round(rx.ref_tx.wavelength_nm, 4)
    # InGaAs: about 13 % less responsive at 1310 nm than at 1550 nm
    assert _error_db(sim, meter, 1550.0) == pytest.approx(
        10 * math.log10((1.0 + 0.00054 * (light_nm - 1550.0)) / 1.0), abs=NOISE_DB
    )


def test_the_table_error_is_small_smooth_and_fixed_by_the_serial() -> None:
    wavelengths = np.arange(1260.0, 1361.0, 1.0)
    tables = [CorrectionTableError.of(f"MY5433{n:04d}") for n in range(30)]
    errors = np.array([[t.error_db(w) for w in wavelengths] for t in tables])
    assert np.abs(errors).max() <= 0.1  # inside the N774xC's +-2.5 % at reference conditions
    assert np.abs(np.diff(errors, axis=1)).max() < 0.01  # under 0.01 dB per nm
    assert errors.std(axis=0).min() > 0.02  # meters differ from one another
    assert CorrectionTableError.of("MY54330045") == CorrectionTableError.of("MY54330045")


def test_the_monitor_carries_the_reference_transmitters_power_less_its_certified_loss(
    bench,
) -> None:
    sim, _, _ = bench
    rx = sim.world.rx
    assert rx is not None
    arriving = total_power_w(sim.world.light_at(f"power_meter:{MONITOR_CHANNEL}"))
    loss_db = 10 * math.log10(rx.ref_tx.average_power_w / arriving)
    assert loss_db == pytest.approx(9.6, abs=0.02)  # the certificate, to a few millidecibels
    rx.ref_tx.driven = True  # modulated or not, the same average power
    assert total_power_w(sim.world.light_at("power_meter:3")) == pytest.approx(arriving)
