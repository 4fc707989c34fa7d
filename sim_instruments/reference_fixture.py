"""The module bench's reference loopback fixture: what an engineer puts in the module cage to
calibrate the station's optical paths (`path-cal`), in place of a module.

Each of its 8 lanes takes the light arriving at the cage's RX leg k, taps part of it to a fibre
fan-in that goes to a power meter channel (the reference meter at the DUT plane), and loops the
rest back into the cage's TX leg k (the reference source at the DUT plane). Its two losses per
lane are on its calibration certificate; the real ones differ from it by a few millidecibels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_instruments.population import serial_rng
from sim_instruments.rx_path import LANES, ReferenceTransmitter
from sim_instruments.transmitter import TxSignal

#: "products" that are fixtures: inserting one puts the fixture in the cage, not a module
FIXTURE_PRODUCTS = frozenset({"PATH-CAL-DR8"})
#: the certificate of every fixture of this design (what a station config states)
CERTIFIED_TAP_DB = 3.5
CERTIFIED_LOOPBACK_DB = 0.6
CERTIFICATE_SIGMA_DB = 0.01  # per lane, the real losses about the certified ones
REFERENCE_BANDWIDTH_HZ = 45e9  # the reference transmitter's eye is clean at 53 GBd
REFERENCE_RIN_DB_PER_HZ = -150.0


@dataclass(frozen=True)
class ReferenceFixture:
    serial: str
    tap_db: np.ndarray  # RX leg k -> the tap fan-in output, shape (LANES,)
    loopback_db: np.ndarray  # RX leg k -> TX leg k, shape (LANES,)

    @classmethod
    def make(cls, serial: str) -> ReferenceFixture:
        rng = serial_rng("fixture", serial)
        return cls(
            serial,
            CERTIFIED_TAP_DB + rng.normal(0.0, CERTIFICATE_SIGMA_DB, LANES),
            CERTIFIED_LOOPBACK_DB + rng.normal(0.0, CERTIFICATE_SIGMA_DB, LANES),
        )


def reference_signal(tx: ReferenceTransmitter, loss_db: float) -> TxSignal:
    """The reference transmitter's light after `loss_db`, as a sampling scope sees it: PAM4
    levels when the BERT drives it with PRBS13Q, else steady light no pattern trigger locks to
    (its four levels equal its average power)."""
    pam4 = tx.driven and tx.line_coding == "PAM4" and tx.polynomial == 13
    if pam4:
        ratio = 10 ** (tx.er_db / 10.0)
        p0 = tx.oma_w / (ratio - 1.0)
        levels = tuple(p0 + k * tx.oma_w / 3.0 for k in range(4))
    else:
        levels = (tx.average_power_w,) * 4
    signal = TxSignal(
        baud_rate_hz=tx.baud_gbd * 1e9 if pam4 else 0.0,
        levels_w=levels,  # type: ignore[arg-type]
        bandwidth_hz=REFERENCE_BANDWIDTH_HZ,
        rin_db_per_hz=REFERENCE_RIN_DB_PER_HZ,
        rj_ui=0.005,
        pj_ui=0.0,
        wavelength_nm=tx.wavelength_nm,
        smsr_db=50.0,
        side_mode_offset_nm=0.8,
    )
    return signal.attenuated(loss_db)
