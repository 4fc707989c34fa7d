"""Keysight M8050A 120 GBd high-performance BERT, programmed through the M8070B system software's
SCPI server: the same command tree as the M8040A, so the same driver code (`M8070BBert`).

Command set: Keysight M8070B Programming Guide (the M8070A guide's chapter 5 "SCPI Command
Reference" and chapter 2 "Recommended Programming Techniques" carried over to the M8070B, which
runs both the M8040A and the M8050A); every command, its confirmation status and the location
strings are listed in drivers/keysight/m8040a.py. The M8050A-specific parts below were not
checked against a primary source and must be confirmed on a real M8050A before use:
- symbol rate 2 to 120 GBd (M8050A data sheet, NRZ and PAM4): the 800G (53.125 GBd) and 1.6T
  (106.25 GBd) DR8 rates both fall inside it;
- the locations: generator 'M1.DataOut1' and clock 'M1.ClkGen' in the first slot, the error
  detector of lane k at 'M<k+1>.DataIn1', as on the M8040A system;
- the error ratio measurement's fixed accumulation time of 1 s to 31.5 Ms (M8000 User Guide).
"""

from __future__ import annotations

from typing import ClassVar

from drivers.keysight.m8040a import M8070BBert


class M8050A(M8070BBert):
    """Keysight M8050A BERT, 2 to 120 GBd; implements `Bert`. Lane k (1-based) is error detector
    'M<k+1>.DataIn1'."""

    baud_range_gbd: ClassVar[tuple[float, float]] = (2.0, 120.0)
