"""The simulated instruments' SCPI parser behaves like an instrument's."""

from __future__ import annotations

import pytest

from sim_instruments.clock import SimClock
from sim_instruments.scpi import ScpiDevice, ScpiError, parse_number, scpi


class Box(ScpiDevice):
    def __init__(self) -> None:
        super().__init__(SimClock(0.01), "B1")
        self.value = {1: 0.0, 2: 0.0}

    @scpi("SOURce#:POWer:LEVel")
    def _set(self, s: tuple[int, ...], args: str) -> None:
        self.value[s[0]] = parse_number(args, {"DBM": 1.0})

    @scpi("SOURce#:POWer:LEVel", query=True)
    def _get(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.value[s[0]]:.2f}"


@pytest.mark.parametrize(
    "header", ["SOUR2:POW:LEV", "source2:power:level", "Sour2:Pow:Level", ":SOUR2:POW:LEV"]
)
def test_short_and_long_forms_any_case(header: str) -> None:
    box = Box()
    assert box.handle(f"{header} 3.5DBM") == []
    assert box.handle(f"{header}?") == ["3.50"]


def test_missing_suffix_means_one_and_compound_messages() -> None:
    box = Box()
    assert box.handle("SOUR:POW:LEV 1;SOUR2:POW:LEV 2;SOUR1:POW:LEV?;SOUR2:POW:LEV?") == [
        "1.00",
        "2.00",
    ]


def test_unknown_header_queues_113_and_answers_nothing() -> None:
    box = Box()
    assert box.handle("SOUR:POW:LEVX?") == []
    assert box.handle("SYST:ERR?") == ['-113,"Undefined header"']
    assert box.handle("SYST:ERR?") == ['0,"No error"']


def test_partial_long_form_is_not_accepted() -> None:
    box = Box()
    box.handle("SOURC1:POW:LEV 1")
    assert box.handle("SYST:ERR?") == ['-113,"Undefined header"']


def test_bad_suffix_and_bad_number() -> None:
    with pytest.raises(ScpiError):
        parse_number("1.0XX", {"DBM": 1.0})
    with pytest.raises(ScpiError):
        parse_number("abc")
    assert parse_number("1310NM", {"NM": 1e-9}) == pytest.approx(1.31e-6)


def test_error_queue_overflow() -> None:
    box = Box()
    for _ in range(40):
        box.handle("NOPE")
    replies = [box.handle("SYST:ERR?")[0] for _ in range(box.max_errors + 1)]
    assert replies[box.max_errors - 1] == '-350,"Queue overflow"'
    assert replies[-1] == '0,"No error"'
