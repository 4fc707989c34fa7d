"""Module sequences without a bench: limits files against the sequences, test conditions and
reference files, the receiver's damage floor, the BERT rate check, the corners option."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from drivers.base import InstrumentIdentity
from sequences import conditions, golden, pluggable
from sequences.pluggable_rx import bert_cannot_run, min_attenuation_db
from station.cli import _corners_c
from station.errors import InputError
from station.limits import limits_path, load_limits
from tests.sequences.helpers import GOLDEN_LIMITS


@pytest.mark.parametrize("product", ["800G-DR8", "1.6T-DR8"])
def test_each_product_has_limits_for_exactly_what_the_sequence_measures(product: str) -> None:
    limits = load_limits(limits_path(product))
    limits.check_against(pluggable.SEQUENCE.measurements)
    assert product in pluggable.SEQUENCE.products
    assert limits.product.provisional == (product == "1.6T-DR8")
    limits.check_serial("SIM0042")
    conditions.product_conditions(product)  # and its test conditions


def test_the_1p6t_limits_say_which_values_are_unconfirmed() -> None:
    text = limits_path("1.6T-DR8").read_text()
    for name, limit in load_limits(limits_path("1.6T-DR8")).limits.items():
        block = text[text.index(f"[limits.{name}]") :].split("\n\n")[0]
        statistics_or_state = name in ("rx_data_detected", "rx_ber_nominal_confidence")
        optical = name.startswith(("tx_", "rx_")) and not statistics_or_state
        assert not optical or "unverified" in block, name
        assert limit.unit is not None


def test_800g_limits_carry_the_802_3_values() -> None:
    limits = load_limits(limits_path("800G-DR8")).limits
    values = {name: (limit.spec_low, limit.spec_high) for name, limit in limits.items()}
    assert values["tx_oma_outer"] == (-0.8, 4.2)
    assert values["tx_tdecq"] == (None, 3.4)
    assert values["tx_oma_minus_tdecq"] == (-2.2, None)
    assert values["tx_oma_minus_tdecq_low_er"] == (-1.9, None)
    assert values["tx_wavelength"] == (1304.5, 1317.5)
    assert values["tx_off_power"] == (None, -15.0)
    assert values["rx_sensitivity_oma"] == (None, -4.4)
    assert values["rx_ber_nominal"] == (None, 2.4e-4)


def test_golden_limits_judge_station_figures_only() -> None:
    limits = load_limits(GOLDEN_LIMITS)
    limits.check_against(golden.SEQUENCE.measurements)
    figures = [n for n in limits.limits if n.startswith("station_")]
    assert len(figures) == 7
    assert all("station check" in limits.limits[n].description for n in figures)
    reference = conditions.golden_reference("SIM0003")
    assert len(reference.tx_tdecq_db) == 8 and reference.station_id == "sim-module-bench-1"


def test_the_reference_source_is_calibrated_and_refused_when_expired() -> None:
    source = conditions.rx_reference("sim-module-bench-1")
    assert source.average_power_dbm < source.oma_outer_dbm  # ER 5.2 dB: average below OMA
    source.check_calibration(dt.date(2027, 1, 1))
    with pytest.raises(InputError, match="has passed"):
        source.check_calibration(source.calibration_due + dt.timedelta(days=1))
    with pytest.raises(InputError, match=r"stations\.nowhere"):
        conditions.rx_reference("nowhere")


def test_the_damage_floor_keeps_every_lane_below_the_damage_level() -> None:
    # this bench's source cannot reach the damage level even unattenuated
    assert min_attenuation_db(1.71, 2.02, 5.0 - 1.0) == 0.0
    # a 10 dBm source through 1 dB: at least 5 dB, so 10 - 1 - 5 = 4 dBm (damage 5, margin 1)
    assert min_attenuation_db(10.0, 1.0, 4.0) == pytest.approx(5.0)


class _Bert:
    def __init__(self, high_gbd: float) -> None:
        self.baud_range_gbd = (2.0, high_gbd)

    def identify(self) -> InstrumentIdentity:
        return InstrumentIdentity("Keysight Technologies", "M8040A", "MY1", "1")


def test_rx_is_skipped_only_when_the_stations_bert_cannot_run_the_rate() -> None:
    assert bert_cannot_run(_Bert(64.0), 53.125) is None  # type: ignore[arg-type]
    assert bert_cannot_run(_Bert(120.0), 106.25) is None  # type: ignore[arg-type]
    reason = bert_cannot_run(_Bert(64.0), 106.25)  # type: ignore[arg-type]
    assert reason is not None and "M8040A MY1" in reason and "2 to 64 GBd" in reason


def test_corners_option_parses_a_typed_list() -> None:
    assert _corners_c("0,25,70") == (0.0, 25.0, 70.0)
    for bad in ("0,x", "25,25", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _corners_c(bad)
    assert pluggable.DEFAULT_CORNERS_C == (25.0,)
    assert set(pluggable.DEFAULT_CORNERS_C) <= set(pluggable.CORNERS_C)
