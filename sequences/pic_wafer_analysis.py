"""One die's raw readings to its measurements, bins and kept spectra, through station.analysis:
coupler peak and bandwidth, ring resonances, photodetector and heater figures, the bin table.

Pure (no instrument I/O, no engine): the die loop runs it on a worker thread while the next die is
being measured, then records what it returns. Reference planes: the coupler figures are one
grating coupler's (the loop-back halved in dB, after the station's calibrated fibre paths and the
test cell's on-chip splitters are removed); the responsivity is at the detector (the input
coupler's transmission, measured on the loop-back at the photocurrent's wavelength, and the
splitters removed); the ring figures do not depend on the coupler envelope (baseline removed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sequences.pic_wafer_die import DieReadings
from sequences.pic_wafer_map import Device, DieMap
from station.analysis.errors import AnalysisError
from station.analysis.spectra import coupler_peak, find_resonances
from station.analysis.yields import BinRule, assign_bins
from station.limits import LimitsFile
from station.outcome import Outcome, worst

#: every measurement a die can get, with its unit (the die loop step declares these)
DIE_MEASURES: dict[str, str] = {
    "die_probed": "",
    "alignment_power": "dBm",
    "alignment_x": "um",
    "alignment_y": "um",
    "coupler_peak_il": "dB",
    "coupler_bandwidth_1db": "nm",
    "coupler_peak_wavelength": "nm",
    "ring_resonance_count": "",
    "ring_resonance_wavelength": "nm",
    "ring_q_loaded": "",
    "ring_extinction": "dB",
    "ring_fsr": "nm",
    "pd_responsivity": "A/W",
    "pd_dark_current": "A",
    "heater_resistance": "ohm",
}
_FLOOR_W = 1e-15  # below any meter's noise: keeps logarithms finite on a dark sample


@dataclass(frozen=True)
class Value:
    name: str
    value: float
    raw_value: float | None = None  # before the path / on-chip de-embedding, where there is one
    correction_db: float | None = None

    @property
    def unit(self) -> str:
        return DIE_MEASURES[self.name]


@dataclass(frozen=True)
class KeptSpectrum:
    name: str
    arrays: dict[str, np.ndarray]
    metadata: dict[str, str]


@dataclass
class DieResult:
    readings: DieReadings
    values: list[Value]
    outcome: Outcome  # as the limits judge the values (the engine judges them again on record)
    hard_bin: int | None
    soft_bin: int | None
    bin_name: str
    spectra: list[KeptSpectrum] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # analysis problems worth recording


@dataclass(frozen=True)
class Paths:
    """The station's calibrated fibre losses the die's figures are corrected by (dB)."""

    input_db: float  # laser output -> end of the input fibre
    output_db: dict[int, float]  # meter channel -> loss from its output fibre's tip


def analyse(
    readings: DieReadings,
    die_map: DieMap,
    paths: Paths,
    limits: LimitsFile,
    bin_table: Sequence[BinRule],
) -> DieResult:
    """Measurements of one die, judged and binned, with the spectra the map says to keep."""
    notes: list[str] = []
    values: list[Value] = []
    per_coupler_db: np.ndarray | None = None
    kept: list[KeptSpectrum] = []
    resonances = np.zeros(0)
    if readings.error is not None:
        values.append(Value("die_probed", math.nan))
    else:
        values.append(Value("die_probed", 1.0))
        align = readings.alignment
        if align is not None:
            values += [
                Value("alignment_power", _dbm(align.power_w)),
                Value("alignment_x", align.x_um),
                Value("alignment_y", align.y_um),
            ]
        coupler = die_map.device("grating_coupler_loopback")
        if coupler is not None and readings.wavelength_nm is not None:
            per_coupler_db, coupler_values = _coupler(readings, coupler, paths, notes)
            values += coupler_values
        ring = die_map.device("ring_resonator")
        if ring is not None and readings.wavelength_nm is not None:
            ring_values, resonances = _ring(readings, ring, notes)
            values += ring_values
        if die_map.device("photodetector") is not None:
            values += _detector(readings, die_map, paths, per_coupler_db)
        if die_map.device("heater") is not None:
            current = readings.heater_current_a
            resistance = readings.heater_voltage_v / current if current > 0 else math.inf
            values.append(Value("heater_resistance", min(resistance, 1e15)))
    outcomes = {v.name: limits.limits[v.name].judge(v.value, "")[0] for v in values}
    wide = {name: [outcomes[name].value if name in outcomes else None] for name in DIE_MEASURES}
    binned = assign_bins(wide, bin_table).iloc[0]
    outcome = worst(list(outcomes.values()))
    storage = die_map.storage
    keep = readings.index % storage.every_dies == 0 or (
        storage.failing_dies and outcome != Outcome.PASS
    )
    if keep and readings.wavelength_nm is not None:
        kept = _spectra(readings, die_map, per_coupler_db, resonances)
    return DieResult(
        readings,
        values,
        outcome,
        _bin(binned["hard_bin"]),
        _bin(binned["soft_bin"]),
        str(binned["bin_name"]),
        kept,
        notes,
    )


def _coupler(
    readings: DieReadings, device: Device, paths: Paths, notes: list[str]
) -> tuple[np.ndarray | None, list[Value]]:
    channel = device.meter_channel
    wavelength = readings.wavelength_nm
    assert wavelength is not None and channel is not None
    loopback_db = _transmission_db(readings.power_w[channel], readings.laser_power_w)
    removed_db = paths.input_db + paths.output_db[channel] + device.on_chip_loss_db
    per_coupler = 0.5 * (loopback_db + removed_db)
    try:
        peak = coupler_peak(wavelength, per_coupler)
    except AnalysisError as err:
        notes.append(f"coupler: {err}")
        return None, [Value(n, math.nan) for n in _COUPLER]
    il = float(peak.peak_il_db)
    return per_coupler, [
        Value(
            "coupler_peak_il", il, raw_value=il + 0.5 * removed_db, correction_db=-0.5 * removed_db
        ),
        Value("coupler_bandwidth_1db", float(peak.bandwidth_1db_nm)),
        Value("coupler_peak_wavelength", float(peak.peak_wavelength_nm)),
    ]


_COUPLER = ("coupler_peak_il", "coupler_bandwidth_1db", "coupler_peak_wavelength")
_RING = ("ring_resonance_wavelength", "ring_q_loaded", "ring_extinction", "ring_fsr")


def _ring(
    readings: DieReadings, device: Device, notes: list[str]
) -> tuple[list[Value], np.ndarray]:
    """The ring's resonances in the sweep: how many; the one nearest the design wavelength; the
    loaded Q there (its wavelength over the median width of all of them: one ring, one width in
    wavelength); median extinction; the FSR, the median spacing of neighbouring resonances.
    What a ring without resonances (or with one, for the FSR) does not have is not recorded: the
    count fails it, and its missing figures are no station error."""
    wavelength = readings.wavelength_nm
    assert wavelength is not None and device.meter_channel is not None
    through_db = _transmission_db(readings.power_w[device.meter_channel], readings.laser_power_w)
    design_nm = device.design_wavelength_nm or 0.0
    try:
        found = find_resonances(wavelength, through_db, min_extinction_db=device.min_extinction_db)
    except AnalysisError as err:
        notes.append(f"ring: {err}")
        return [Value(n, math.nan) for n in ("ring_resonance_count", *_RING)], np.zeros(0)
    good = found[found["fit_ok"]]
    values = [Value("ring_resonance_count", float(len(good)))]
    if good.empty:  # no dip deeper than the detection floor: nothing else to measure
        return values, np.zeros(0)
    centres = np.sort(good["wavelength_nm"].to_numpy())
    chosen = float(centres[np.argmin(np.abs(centres - design_nm))])
    fwhm = float(np.median(good["fwhm_nm"]))
    values += [
        Value("ring_resonance_wavelength", chosen),
        Value("ring_q_loaded", chosen / fwhm if fwhm > 0 else math.nan),
        Value("ring_extinction", float(np.median(good["extinction_db"]))),
    ]
    if centres.size >= 2:
        values.append(Value("ring_fsr", float(np.median(np.diff(centres)))))
    return values, centres


def _detector(
    readings: DieReadings, die_map: DieMap, paths: Paths, per_coupler_db: np.ndarray | None
) -> list[Value]:
    device = die_map.device("photodetector")
    assert device is not None
    values = [Value("pd_dark_current", abs(readings.dark_current_a))]
    wavelength = readings.wavelength_nm
    if per_coupler_db is None or wavelength is None:
        return [*values, Value("pd_responsivity", math.nan)]
    coupler_db = float(np.interp(readings.photocurrent_wavelength_nm, wavelength, per_coupler_db))
    at_detector_db = (
        10 * math.log10(readings.laser_power_w / 1e-3)
        - paths.input_db
        + coupler_db
        - device.on_chip_loss_db
    )
    photocurrent = readings.dark_current_a - readings.light_current_a  # reverse bias: negative
    responsivity = photocurrent / (1e-3 * 10 ** (at_detector_db / 10))
    return [*values, Value("pd_responsivity", responsivity)]


def _spectra(
    readings: DieReadings,
    die_map: DieMap,
    per_coupler_db: np.ndarray | None,
    resonances: np.ndarray,
) -> list[KeptSpectrum]:
    """Float32 spectra (0.12 pm and 1e-5 dB resolution at 1310 nm: finer than the data)."""
    wavelength = readings.wavelength_nm
    assert wavelength is not None
    die = {"die_x": str(readings.die[0]), "die_y": str(readings.die[1])}
    kept = []
    coupler = die_map.device("grating_coupler_loopback")
    if coupler is not None and per_coupler_db is not None:
        step = die_map.storage.coupler_decimation
        kept.append(
            KeptSpectrum(
                f"{coupler.name}_spectrum",
                {
                    "wavelength_nm": wavelength[::step].astype(np.float32),
                    "transmission_db": per_coupler_db[::step].astype(np.float32),
                },
                {
                    "kind": "spectrum",
                    **die,
                    "device": coupler.name,
                    "reference_plane": "one grating coupler (loop-back halved; fibres and "
                    "on-chip splitters removed)",
                    "measurements": ",".join(_COUPLER),
                },
            )
        )
    ring = die_map.device("ring_resonator")
    if ring is not None and ring.meter_channel in readings.power_w:
        through = _transmission_db(readings.power_w[ring.meter_channel], readings.laser_power_w)
        kept.append(
            KeptSpectrum(
                f"{ring.name}_spectrum",
                {
                    "wavelength_nm": wavelength.astype(np.float32),
                    "transmission_db": through.astype(np.float32),
                    "resonance_nm": np.asarray(resonances, dtype=np.float64),
                },
                {
                    "kind": "spectrum",
                    **die,
                    "device": ring.name,
                    "reference_plane": "laser output to power meter (couplers, splitter and "
                    "fibres included)",
                    "measurements": ",".join(("ring_resonance_count", *_RING)),
                },
            )
        )
    return kept


def _transmission_db(power_w: np.ndarray, laser_w: float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(np.asarray(power_w, dtype=float), _FLOOR_W) / laser_w)


def _dbm(power_w: float) -> float:
    return 10.0 * math.log10(max(power_w, _FLOOR_W) / 1e-3)


def _bin(value: object) -> int | None:
    """A bin number from assign_bins (nullable: NA when no rule matched)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
