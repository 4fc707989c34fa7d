"""Protocol tests of the FormFactor Velox prober driver (scripted) and against its twin."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentCommandError, InstrumentReplyError, InstrumentTimeout
from drivers.formfactor.velox import Velox
from drivers.interfaces import DiePosition, WaferProber
from sim_instruments.bench import SimBench
from sim_instruments.formfactor_velox import SimVelox
from tests.scripted import TIMEOUT, ScriptedTransport, scpi

FAST = 0.005  # a die step of 0.4 s takes 2 ms


@pytest.fixture
def wafer_bench() -> Iterator[SimBench]:
    with SimBench.build("wafer", time_factor=FAST) as sim:
        sim.insert("W01", "CPO-PIC-A1")
        yield sim


# --- scripted protocol ------------------------------------------------------------------------
def test_step_first_die_reads_the_die_number_for_the_test_order_index() -> None:
    transport = ScriptedTransport(
        scpi(("StepFirstDie", "0: 13 1 0 0"), ("GetDieDataAsNum", "0: 1 13 1"))
    )
    assert Velox(transport).step_first_die() == DiePosition(column=13, row=1, index=0)
    assert transport.done()


def test_end_of_wafer_703_is_a_typed_end_not_an_error() -> None:
    transport = ScriptedTransport(scpi(("StepNextDie", "703: End of wafer.")))
    assert Velox(transport).step_next_die() is None
    assert transport.done()


def test_other_error_codes_raise_with_the_code() -> None:
    transport = ScriptedTransport(scpi(("MoveChuckContact", "3: No wafer on chuck")))
    with pytest.raises(InstrumentCommandError) as caught:
        Velox(transport).contact()
    assert caught.value.code == 3 and "No wafer" in caught.value.text


def test_fibre_moves_are_sent_relative_to_home_and_read_back() -> None:
    transport = ScriptedTransport(
        scpi(
            ("MoveOpticalProbe 0 1.500 -2.250 H", "0:"),
            ("ReadOpticalProbePos 0 H", "0: 1.50 -2.25 25.00 0.00 0.00 0.00"),
        )
    )
    prober = Velox(transport)
    prober.move_fibre_um(1.5, -2.25)
    assert prober.fibre_position_um() == (1.5, -2.25)
    assert transport.done()


def test_a_move_that_times_out_is_not_repeated_and_resynchronises() -> None:
    transport = ScriptedTransport(scpi(("MoveChuckSeparation", TIMEOUT)))
    with pytest.raises(InstrumentTimeout):
        Velox(transport).separate()
    assert transport.resyncs == 1 and transport.done()


def test_a_reading_command_is_retried_once_after_a_timeout() -> None:
    transport = ScriptedTransport(
        scpi(("ReadChuckIndex Y", TIMEOUT), ("ReadChuckIndex Y", "0: 10000.0 12000.0"))
    )
    assert Velox(transport).die_pitch_um() == (10000.0, 12000.0)


def test_a_reply_without_a_code_is_a_reply_error() -> None:
    transport = ScriptedTransport(scpi(("StepFirstDie", "ready")))
    with pytest.raises(InstrumentReplyError):
        Velox(transport).step_first_die()


# --- against the twin over a socket --------------------------------------------------------------
def test_steps_through_the_whole_map_in_order_and_ends_with_none(wafer_bench: SimBench) -> None:
    wafer = wafer_bench.world.wafer.wafer  # type: ignore[union-attr]
    assert wafer is not None
    with Velox.open(wafer_bench.resources()["prober"], timeout_s=5) as prober:
        assert isinstance(prober, WaferProber)
        identity = prober.identify()
        assert (identity.manufacturer, identity.model) == ("FormFactor", "Velox")
        dies = [prober.step_first_die()]
        while (die := prober.step_next_die()) is not None:
            dies.append(die)
        assert prober.step_next_die() is None  # stays at the end
        assert [d.index for d in dies] == list(range(wafer.count))
        assert [(d.column, d.row) for d in dies] == list(
            zip(wafer.columns.tolist(), wafer.rows.tolist(), strict=True)
        )
        rows = [d.row for d in dies]
        assert rows == sorted(rows)  # row by row
        second_row = [d.column for d in dies if d.row == rows[0] + 1]
        assert second_row == sorted(second_row, reverse=True)  # serpentine
        assert prober.die_pitch_um() == (10000.0, 12000.0)
        target = dies[57]
        assert prober.step_to_die(target.column, target.row) == target


def test_contact_separation_and_fibre_moves_change_the_station(wafer_bench: SimBench) -> None:
    station = wafer_bench.world.wafer
    assert station is not None
    with Velox.open(wafer_bench.resources()["prober"], timeout_s=5) as prober:
        prober.step_first_die()
        assert not station.in_contact
        prober.contact()
        assert station.in_contact
        prober.move_fibre_um(3.0, -1.25)
        assert station.fibre_um == pytest.approx((3.0, -1.25))
        assert prober.fibre_position_um() == pytest.approx((3.0, -1.25))
        prober.step_next_die()
        assert not station.in_contact  # a die step travels at separation height
        prober.contact()
        prober.safe_state()
        assert not station.in_contact


def test_bad_commands_and_positions_are_refused_with_errors(wafer_bench: SimBench) -> None:
    with Velox.open(wafer_bench.resources()["prober"], timeout_s=5) as prober:
        with pytest.raises(InstrumentCommandError):
            prober.command("MoveChuckSideways 3")
        with pytest.raises(InstrumentCommandError):
            prober.step_to_die(0, 0)  # a corner outside the wafer
        with pytest.raises(InstrumentCommandError):
            prober.move_fibre_um(9000.0, 0.0)  # beyond the positioner's travel
        with pytest.raises(InstrumentCommandError):
            prober.command("MoveChuckContact 500")  # velocity is a percentage
        assert prober.step_first_die().index == 0  # still answering correctly


def test_prober_without_a_wafer_refuses_to_contact() -> None:
    with (
        SimBench.build("wafer", time_factor=FAST) as sim,
        Velox.open(sim.resources()["prober"], timeout_s=5) as prober,
        pytest.raises(InstrumentCommandError),
    ):
        prober.contact()


def test_stuck_prober_gives_a_bounded_timeout_then_answers_correctly(
    wafer_bench: SimBench,
) -> None:
    twin = wafer_bench.devices["prober"]
    assert isinstance(twin, SimVelox)
    with Velox.open(wafer_bench.resources()["prober"], timeout_s=0.5) as prober:
        first = prober.step_first_die()
        twin.stick()
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout):
            prober.step_next_die()
        assert time.monotonic() - started < 3.0
        assert prober.fibre_position_um() == (0.0, 0.0)  # the next query is answered correctly
        assert wafer_bench.world.wafer.die_index == first.index  # type: ignore[union-attr]
        assert prober.step_next_die() == DiePosition(
            column=int(wafer_bench.world.wafer.wafer.columns[1]),  # type: ignore[union-attr]
            row=int(wafer_bench.world.wafer.wafer.rows[1]),  # type: ignore[union-attr]
            index=1,
        )
