"""Protocol tests of the Keysight M8050A BERT driver (scripted) and against its simulated twin: the
M8070B command tree of the M8040A at up to 120 GBd."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentCommandError
from drivers.interfaces import Bert
from drivers.keysight.m8040a import DetectorCondition
from drivers.keysight.m8050a import M8050A
from sim_instruments.bench import SimBench
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '+0,"No error"')
FAST = 0.01


class OneLaneM8050A(M8050A):
    lanes = 1


def _xml(body: str) -> str:
    xml = (
        '<sequenceDefinition xmlns="http://www.agilent.com/schemas/M8000/DataSequence">'
        f"<description /><sequence>{body}</sequence></sequenceDefinition>"
    )
    return f"#3{len(xml)}{xml}"


@pytest.mark.parametrize(("baud_gbd", "hertz"), [(106.25, 106250000000), (53.125, 53125000000)])
def test_configure_runs_1p6t_and_800g_rates_through_the_m8070b_tree(
    baud_gbd: float, hertz: int
) -> None:
    generator = _xml('<loop><block length="512"><prbs polynomial="2^31-1" /></block></loop>')
    analyzer = _xml(
        '<syncAndLoopBlock length="512"><prbs polynomial="2^31-1" /></syncAndLoopBlock>'
    )
    script = [(f":SOUR:FREQ 'M1.ClkGen',{hertz}", None), OK]
    for location in ("M1.DataOut1", "M2.DataIn1"):
        script += [(f":DATA:LIN '{location}',PAM4", None), OK]
        script += [(f":DATA:LIN:PAM4:MAPP '{location}',GRAY", None), OK]
    script += [
        (f":DATA:SEQ:SET:VAL 'Generator',{generator}", None),
        OK,
        (f":DATA:SEQ:SET:VAL 'Analyzer',{analyzer}", None),
        OK,
        (":DATA:SEQ:BIND 'Generator','M1.DataOut1'", None),
        OK,
        (":DATA:SEQ:BIND 'Analyzer','M2.DataIn1'", None),
        OK,
        ("*OPC?", "1"),
    ]
    transport = ScriptedTransport(scpi(*script))
    OneLaneM8050A(transport).configure("PAM4", "PRBS31Q", baud_gbd)
    assert transport.done()


@pytest.mark.parametrize("baud_gbd", [1.0, 121.0])
def test_rates_outside_2_to_120_gbd_are_refused_before_sending(baud_gbd: float) -> None:
    bert = M8050A(ScriptedTransport([]))
    assert bert.baud_range_gbd == (2.0, 120.0)
    with pytest.raises(ValueError, match=r"outside 2\.\.120 GBd"):
        bert.configure("PAM4", "PRBS31Q", baud_gbd)


# --- against the twin, over the real transport ----------------------------------------------------
@pytest.fixture
def sim() -> Iterator[SimBench]:
    with SimBench.build(time_factor=FAST) as bench:
        yield bench


def test_against_twin_the_module_benchs_bert_drives_the_reference_at_106p25_gbd(
    sim: SimBench,
) -> None:
    rx = sim.world.rx
    assert rx is not None
    with M8050A.open(sim.resources()["bert"]) as bert:
        assert isinstance(bert, Bert)
        identity = bert.identify()
        assert (identity.model, identity.serial_number) == ("M8050A", "MY62380154")
        bert.configure("PAM4", "PRBS31Q", 106.25)
        assert float(bert.query(":SOUR:FREQ? 'M1.ClkGen'")) == pytest.approx(106.25e9)
        assert bert.query(":DATA:LIN? 'M9.DataIn1'") == "PAM4"
        bert.set_output(True)
        assert bert.output_enabled()
        assert rx.ref_tx.driven and rx.ref_tx.baud_gbd == pytest.approx(106.25)
        assert rx.ref_tx.line_coding == "PAM4" and rx.ref_tx.polynomial == 31
        bert.safe_state()
        assert not bert.output_enabled() and not rx.ref_tx.driven


def test_against_twin_rates_beyond_120_gbd_and_unknown_locations_are_errors(
    sim: SimBench,
) -> None:
    with M8050A.open(sim.resources()["bert"]) as bert:
        with pytest.raises(InstrumentCommandError) as err:
            bert.write(":SOUR:FREQ 'M1.ClkGen',130e9")
        assert err.value.code == -222
        assert float(bert.query(":SOUR:FREQ? 'M1.ClkGen'")) < 120e9  # the rate did not change
        with pytest.raises(InstrumentCommandError) as err:
            bert.write(":OUTP:STAT 'M2.DataIn1',1")  # a detector has no output
        assert err.value.code == -224


def test_against_twin_an_empty_cage_is_loss_of_data_on_every_detector(sim: SimBench) -> None:
    with M8050A.open(sim.resources()["bert"]) as bert:
        bert.configure("PAM4", "PRBS31Q", 106.25)
        bert.set_output(True)
        started_s = sim.world.clock.now_s()
        counts = bert.count_errors((1, 8), 1.0)
        assert sim.world.clock.now_s() - started_s >= 1.0  # the gate took its simulated time
        assert [c.lane for c in counts] == [1, 8]
        assert all(c.bits == 0 and math.isnan(c.ber) for c in counts)
        assert DetectorCondition.DATA_LOSS in bert.conditions(8)
