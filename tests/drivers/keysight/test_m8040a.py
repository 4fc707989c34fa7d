"""Protocol tests of the Keysight M8040A BERT driver (scripted) and against its simulated twin."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentCommandError, InstrumentReplyError, InstrumentTimeout
from drivers.interfaces import Bert
from drivers.keysight.m8040a import M8040A, DetectorCondition
from drivers.transport import TransportTimeout
from sim_instruments.bench import SimBench
from sim_instruments.keysight_m8040a import SimM8040A
from sim_instruments.server import ScpiSocketServer
from tests.scripted import ScriptedTransport, scpi

OK = ("SYST:ERR?", '+0,"No error"')
FAST = 0.01


class TwoLaneM8040A(M8040A):
    lanes = 2


def _xml(body: str) -> str:
    xml = (
        '<sequenceDefinition xmlns="http://www.agilent.com/schemas/M8000/DataSequence">'
        f"<description /><sequence>{body}</sequence></sequenceDefinition>"
    )
    return f"#3{len(xml)}{xml}"


def test_configure_sets_rate_coding_gray_mapping_sequences_and_bindings() -> None:
    generator = _xml('<loop><block length="512"><prbs polynomial="2^13-1" /></block></loop>')
    analyzer = _xml(
        '<syncAndLoopBlock length="512"><prbs polynomial="2^13-1" /></syncAndLoopBlock>'
    )
    script = [(":SOUR:FREQ 'M1.ClkGen',53125000000", None), OK]
    for location in ("M1.DataOut1", "M2.DataIn1", "M3.DataIn1"):
        script += [(f":DATA:LIN '{location}',PAM4", None), OK]
        script += [(f":DATA:LIN:PAM4:MAPP '{location}',GRAY", None), OK]
    script += [
        (f":DATA:SEQ:SET:VAL 'Generator',{generator}", None),
        OK,
        (f":DATA:SEQ:SET:VAL 'Analyzer',{analyzer}", None),
        OK,
        (":DATA:SEQ:BIND 'Generator','M1.DataOut1'", None),
        OK,
        (":DATA:SEQ:BIND 'Analyzer','M2.DataIn1','M3.DataIn1'", None),
        OK,
        ("*OPC?", "1"),
    ]
    transport = ScriptedTransport(scpi(*script))
    TwoLaneM8040A(transport).configure("PAM4", "PRBS13Q", 53.125)
    assert transport.done()


@pytest.mark.parametrize(
    ("modulation", "pattern", "baud_gbd", "message"),
    [
        ("NRZ", "PRBS13Q", 53.125, "PAM4 pattern"),
        ("PAM4", "PRBS31Q", 106.25, "outside 2..64 GBd"),  # 1.6T needs a faster BERT
        ("PAM4", "SSPRQ", 53.125, "not one of"),
        ("PAM8", "PRBS31", 53.125, "not NRZ or PAM4"),
    ],
)
def test_configure_refuses_what_the_instrument_cannot_do_before_sending(
    modulation: str, pattern: str, baud_gbd: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        M8040A(ScriptedTransport([])).configure(modulation, pattern, baud_gbd)


PAM4_COUNTS = (
    '(1767225600.123,"M3.DataIn1",5.3125e+10,5.3125e+10,520,480,5.3125e+10,1000,'
    "1.328125e+10,160,1.328125e+10,340,1.328125e+10,330,1.328125e+10,170)"
)


def test_count_errors_runs_a_fixed_gate_waits_for_its_end_and_reads_pam4_counters() -> None:
    transport = ScriptedTransport(
        scpi(
            (":PLUG:ERAT:ACQ:FTIM 'ErrorRatio',2", None),
            OK,
            (":PLUG:ERAT:STAR 'ErrorRatio'", None),
            OK,
            (":STAT:OPER:COND?", "256"),
            (":STAT:OPER:COND?", "256"),
            (":STAT:OPER:COND?", "0"),
            (":FETC:BCO? 'M3.DataIn1'", PAM4_COUNTS),
        )
    )
    (count,) = M8040A(transport).count_errors((2,), 2.0)
    assert transport.done()
    assert (count.lane, count.gate_time_s, count.bits, count.errors) == (
        2,
        2.0,
        106_250_000_000,
        1000,
    )
    assert count.symbols == 53_125_000_000
    assert count.level_symbol_errors == (160, 340, 330, 170)
    assert count.ber == pytest.approx(1000 / 106.25e9)


def test_nrz_counters_and_a_lane_without_data() -> None:
    transport = ScriptedTransport(
        scpi(
            (":PLUG:ERAT:ACQ:FTIM 'ErrorRatio',1", None),
            OK,
            (":PLUG:ERAT:STAR 'ErrorRatio'", None),
            OK,
            (":STAT:OPER:COND?", "0"),
            (":FETC:BCO? 'M2.DataIn1'", '(1767225600.1,"M2.DataIn1",5e+09,5e+09,3,4)'),
            (":FETC:BCO? 'M9.DataIn1'", '(1767225600.1,"M9.DataIn1",0,0,0,0)'),
        )
    )
    first, last = M8040A(transport).count_errors((1, 8), 1.0)
    assert (first.bits, first.errors, first.symbols, first.level_symbol_errors) == (
        10_000_000_000,
        7,
        0,
        (),
    )
    assert last.bits == 0 and math.isnan(last.ber)  # no data: nothing compared


@pytest.mark.parametrize(
    "reply",
    [
        '(1767225600.1,"M2.DataIn1",5e+09,5e+09,3)',  # a counter missing
        '(1767225600.1,"M4.DataIn1",5e+09,5e+09,3,4)',  # another detector's counters
        "5e+09,5e+09,3,4",  # not the instrument's format
        '(1767225600.1,"M2.DataIn1",5e+09,lots,3,4)',
    ],
)
def test_malformed_counters_are_a_reply_error(reply: str) -> None:
    transport = ScriptedTransport(
        scpi(
            (":PLUG:ERAT:ACQ:FTIM 'ErrorRatio',1", None),
            OK,
            (":PLUG:ERAT:STAR 'ErrorRatio'", None),
            OK,
            (":STAT:OPER:COND?", "0"),
            (":FETC:BCO? 'M2.DataIn1'", reply),
        )
    )
    with pytest.raises(InstrumentReplyError):
        M8040A(transport).count_errors((1,), 1.0)


def test_bad_lanes_and_gates_are_refused_before_sending() -> None:
    bert = M8040A(ScriptedTransport([]))
    with pytest.raises(ValueError, match="lane 9"):
        bert.count_errors((1, 9), 1.0)
    with pytest.raises(ValueError, match=r"gate 0\.1 s"):
        bert.count_errors((1,), 0.1)
    with pytest.raises(ValueError, match="no lanes"):
        bert.count_errors((), 1.0)


class _ForeverRunning:
    """A BERT whose gate never ends: every query answers 'running'."""

    resource = "FOREVER::1"
    timeout_s = 0.05

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if data.startswith(b"SYST:ERR?"):
            self._pending.append(b'+0,"No error"')
        elif data.endswith(b"?\n"):
            self._pending.append(b"256")

    def read_line(self) -> bytes:
        if not self._pending:
            raise TransportTimeout
        return self._pending.pop(0)

    def read_exact(self, count: int) -> bytes:
        raise TransportTimeout

    def resynchronise(self) -> None:
        self._pending.clear()

    def set_timeout(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def close(self) -> None:
        pass


def test_a_gate_that_never_ends_is_a_bounded_timeout() -> None:
    class QuickGates(M8040A):
        gate_range_s = (0.01, 10.0)

    started = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="error ratio gate"):
        QuickGates(_ForeverRunning()).count_errors((1,), 0.01)
    assert time.monotonic() - started < 2.0  # 1.5 x gate + 2 x timeout, generously


def test_conditions_and_instantaneous_ratios() -> None:
    transport = ScriptedTransport(
        scpi(
            (":STAT:QUES:INST:COND? 'M2.DataIn1'", "22"),
            (
                ":FETC:IBER? 'M2.DataIn1'",
                '(1.7e9,"M2.DataIn1",9.91E+37,9.91E+37,9.91E+37,9.91E+37,9.91E+37,9.91E+37)',
            ),
            (
                ":FETC:IBER? 'M5.DataIn1'",
                '(1.7e9,"M5.DataIn1",1.5E-05,3.0E-05,2E-5,4E-5,4E-5,2E-5)',
            ),
        )
    )
    bert = M8040A(transport)
    condition = bert.conditions(1)
    assert condition == (
        DetectorCondition.DATA_LOSS | DetectorCondition.SYNC_LOSS | DetectorCondition.CDR_UNLOCKED
    )
    lost = bert.instantaneous_ratios(1)
    assert math.isnan(lost.ber) and all(math.isnan(r) for r in lost.level_ser)
    live = bert.instantaneous_ratios(4)
    assert (live.ber, live.ser, live.level_ser) == (1.5e-5, 3e-5, (2e-5, 4e-5, 4e-5, 2e-5))


# --- against the twin, over the real transport ----------------------------------------------------
def m8040a_bench(time_factor: float) -> SimBench:
    """The simulated module bench with an M8040A in its BERT's place (a station built for 800G)."""
    bench = SimBench.build(time_factor=time_factor)
    bench.servers["bert"].stop()  # the bench's own BERT, never started
    bench.devices["bert"] = SimM8040A(bench.world, "MY58440123")
    bench.servers["bert"] = ScpiSocketServer("bert", bench.devices["bert"])
    return bench


@pytest.fixture
def sim() -> Iterator[SimBench]:
    with m8040a_bench(FAST) as bench:
        yield bench


def test_against_twin_identity_protocol_and_configuration(sim: SimBench) -> None:
    with M8040A.open(sim.resources()["bert"]) as bert:
        assert isinstance(bert, Bert)
        identity = bert.identify()
        assert (identity.model, identity.serial_number) == ("M8040A", "MY58440123")
        assert bert.lane_count == 8
        bert.configure("PAM4", "PRBS31Q", 53.125)
        assert bert.query(":DATA:LIN? 'M9.DataIn1'") == "PAM4"
        assert bert.query(":DATA:LIN:PAM4:MAPP? 'M1.DataOut1'") == "GRAY"
        assert float(bert.query(":SOUR:FREQ? 'M1.ClkGen'")) == pytest.approx(53.125e9)
        bert.set_output(True)
        assert bert.output_enabled()
        assert sim.world.rx is not None and sim.world.rx.ref_tx.driven
        bert.safe_state()
        assert not bert.output_enabled() and not sim.world.rx.ref_tx.driven


def test_against_twin_out_of_range_settings_are_instrument_errors(sim: SimBench) -> None:
    with M8040A.open(sim.resources()["bert"]) as bert:
        with pytest.raises(InstrumentCommandError) as err:
            bert.write(":SOUR:FREQ 'M1.ClkGen',106.25e9")  # beyond the M8045A's 64 GBd
        assert err.value.code == -222
        with pytest.raises(InstrumentCommandError) as err:
            bert.write(":PLUG:ERAT:ACQ:FTIM 'ErrorRatio',0.2")
        assert err.value.code == -222
        with pytest.raises(InstrumentCommandError) as err:
            bert.write(":DATA:LIN 'M12.DataIn1',PAM4")
        assert err.value.code == -224


def test_against_twin_gate_lasts_its_time_and_no_module_means_no_data(sim: SimBench) -> None:
    with M8040A.open(sim.resources()["bert"]) as bert:
        bert.configure("PAM4", "PRBS13Q", 53.125)
        bert.set_output(True)
        clock = sim.world.clock
        started_s, started_wall = clock.now_s(), time.monotonic()
        counts = bert.count_errors((1, 2, 3), 2.0)
        assert clock.now_s() - started_s >= 2.0  # the gate took its (simulated) time
        assert time.monotonic() - started_wall < 2.0 * FAST + 3.0  # and a bounded wall time
        assert [c.lane for c in counts] == [1, 2, 3]
        assert all(c.bits == 0 and math.isnan(c.ber) for c in counts)  # the cage is empty
        assert DetectorCondition.DATA_LOSS in bert.conditions(2)
        assert math.isnan(bert.instantaneous_ratios(2).ber)
