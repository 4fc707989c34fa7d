"""Simulated Keysight M8050A 120 GBd BERT: the M8070B system software's SCPI server (the M8040A
twin's machinery) with the M8050A's symbol rate range, driving the same reference transmitter.

At 106.25 GBd a gate counts twice the symbols it does at 53.125 GBd: counts stay binomial draws
from the error rates the module's receivers deliver for the OMA the world routes to them.
"""

from __future__ import annotations

from sim_instruments.keysight_m8040a import SimM8070BBert

#: M8050A symbol rate range, NRZ and PAM4 (its data sheet; not confirmed by a primary source)
MIN_BAUD_HZ, MAX_BAUD_HZ = 2e9, 120e9


class SimM8050A(SimM8070BBert):
    model = "M8050A"
    firmware = "10.0.320.4"
    min_baud_hz, max_baud_hz = MIN_BAUD_HZ, MAX_BAUD_HZ
