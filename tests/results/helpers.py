"""Runs made through the real engine for the results tests: a wafer run (dies, lanes, a failing
and an erroring die), a module run with eye and waterfall artefacts, synthetic artefacts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from station.config import StationConfig
from station.engine import RunEngine, RunResult, StepContext
from station.events import EventBus, InstrumentRecord
from station.limits import LimitsFile, load_limits
from station.sequence import Sequence, Step, step

WAFER_PRODUCT = "PIC-A1"
MODULE_PRODUCT = "MOD-T"
METER = InstrumentRecord(
    "power_meter",
    "keysight.n7744c",
    "TCPIP::127.0.0.1::1::SOCKET",
    "Keysight",
    "N7744C",
    "MY123",
    "1.2.3",
    dt.date(2027, 1, 31),
)


def limits_file(folder: Path, product: str, limits: dict[str, dict[str, object]]) -> LimitsFile:
    """A limits file for `product` with the given [limits.<name>] tables."""
    lines = [
        "[product]",
        f'name = "{product}"',
        'revision = "1"',
        'serial_pattern = ".+"',
        f'part_number = "{product}"',
        "lanes = 4",
        "wavelength_nm = 1310",
        "baud_rate_gbd = 53.125",
    ]
    for name, spec in limits.items():
        lines.append(f"[limits.{name}]")
        for key, value in spec.items():
            text = f'"{value}"' if isinstance(value, str) else str(value).lower()
            lines.append(f"{key} = {text}")
    path = folder / f"{product}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_limits(path)


WAFER_LIMITS: dict[str, dict[str, object]] = {
    "coupler_il": {"low": 0.0, "high": 5.0, "unit": "dB"},
    "ring_q": {"low": 5000.0, "unit": ""},
    "responsivity": {"low": 0.55, "unit": "A/W", "per_lane": True},
}
FAILING_DIE, ERROR_DIE = (0, 0), (1, -1)


def wafer_value(name: str, lane: int | None, x: int, y: int) -> float:
    """A smooth process variation; the failing die's coupler is bad, the erroring die reads NaN."""
    if (x, y) == FAILING_DIE and name == "coupler_il":
        return 6.5
    if (x, y) == ERROR_DIE and name == "ring_q":
        return math.nan
    base = {"coupler_il": 3.5, "ring_q": 2.0e4, "responsivity": 0.8}[name]
    return base * (1 + 0.05 * math.sin(x) * math.cos(y)) + 0.01 * (lane or 0)


def dies_of(radius: int) -> list[tuple[int, int]]:
    return [
        (x, y)
        for y in range(radius, -radius - 1, -1)
        for x in range(-radius, radius + 1)
        if x * x + y * y <= radius * radius
    ]


def probe(
    limits: dict[str, dict[str, object]],
    dies: Iterable[tuple[int, int]],
    value: Callable[[str, int | None, int, int], float] = wafer_value,
    lanes: int = 2,
) -> Step:
    """One step probing every die: each measurement of the limits, per lane where per_lane."""
    plan = [
        (name, str(spec["unit"]), lane)
        for name, spec in limits.items()
        for lane in (range(1, lanes + 1) if spec.get("per_lane") else (None,))
    ]
    dies = list(dies)

    @step(measures=tuple(limits))
    def probe_dies(ctx: StepContext) -> None:
        for x, y in dies:
            ctx.die = (x, y)
            for name, unit, lane in plan:
                ctx.measure(name, value(name, lane, x, y), unit=unit, lane=lane)

    return probe_dies


def run(
    bus_subscriber: Callable[[object], None],
    limits: LimitsFile,
    steps: tuple[Step, ...],
    serial: str,
    *,
    lot_id: str | None = None,
    wafer_id: str | None = None,
    station_id: str = "st-1",
    site: int = 1,
    mode: str = "characterisation",
) -> RunResult:
    """Run `steps` through the real engine with `bus_subscriber` (a store) listening."""
    bus = EventBus()
    bus.subscribe(bus_subscriber)
    engine = RunEngine(
        sequence=Sequence("t", "test", (limits.product.name,), steps),
        limits=limits,
        station=StationConfig(Path("station.toml"), station_id, {}),
        instruments={},
        instrument_records=(METER,),
        bus=bus,
        mode=mode,
        site=site,
    )
    return engine.run(serial, lot_id=lot_id, wafer_id=wafer_id)


def wafer_run(
    store: Callable[[object], None],
    folder: Path,
    *,
    radius: int = 2,
    lot_id: str = "LOT1",
    wafer_id: str = "W01",
) -> RunResult:
    limits = limits_file(folder, WAFER_PRODUCT, WAFER_LIMITS)
    return run(
        store,
        limits,
        (probe(WAFER_LIMITS, dies_of(radius)),),
        wafer_id,
        lot_id=lot_id,
        wafer_id=wafer_id,
    )


# --- synthetic artefacts of every kind (arrays named with units, as artefacts.KINDS says) -----
def eye_arrays(seed: int = 0, symbols: int = 4000) -> dict[str, np.ndarray]:
    """A folded PAM4 eye: 2 UI of a random symbol stream with raised-cosine edges and noise."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.1, 0.4, 0.7, 1.0])
    samples_per_ui = 32
    stream = levels[rng.integers(0, 4, symbols)]
    phase = np.arange(samples_per_ui) / samples_per_ui
    edge = 0.5 - 0.5 * np.cos(np.pi * phase)  # from one symbol to the next across a UI
    wave = (stream[:-1, None] + (stream[1:] - stream[:-1])[:, None] * edge).ravel()
    wave += rng.normal(0, 0.015 + 0.005 * seed, wave.size)
    folded = wave[: (wave.size // (2 * samples_per_ui)) * 2 * samples_per_ui].reshape(
        -1, 2 * samples_per_ui
    )
    time_ui = (np.arange(2 * samples_per_ui) + 0.5) / samples_per_ui
    amplitude = np.linspace(-0.1, 1.2, 120)
    density = np.stack(
        [
            np.histogram(folded[:, k], bins=np.append(amplitude, 1.21))[0]
            for k in range(folded.shape[1])
        ],
        axis=1,
    )
    return {"time_ui": time_ui, "amplitude": amplitude, "density": density, "levels": levels}


def waterfall_arrays(offset_db: float = 0.0) -> dict[str, np.ndarray]:
    oma_dbm = np.linspace(-9, -4, 8) + offset_db
    ber = 10 ** (-2 - 1.4 * (oma_dbm - offset_db + 9))
    fit = np.linspace(-9.5, -3.5, 50) + offset_db
    return {
        "oma_dbm": oma_dbm,
        "ber": ber,
        "fit_oma_dbm": fit,
        "fit_ber": 10 ** (-2 - 1.4 * (fit - offset_db + 9)),
    }


def liv_arrays() -> dict[str, np.ndarray]:
    current_a = np.linspace(0, 0.2, 201)
    power_w = np.clip(0.3 * (current_a - 0.02), 0, None)
    return {"current_a": current_a, "power_w": power_w, "voltage_v": 0.9 + 5 * current_a}


def spectrum_arrays() -> dict[str, np.ndarray]:
    wavelength_nm = np.linspace(1300, 1320, 4001)
    dips = np.array([1304.2, 1310.0, 1315.8])
    lorentz = sum(0.9 / (1 + ((wavelength_nm - d) / 0.05) ** 2) for d in dips)
    return {
        "wavelength_nm": wavelength_nm,
        "transmission_db": -4 + 10 * np.log10(1 - lorentz + 1e-3),
        "resonance_nm": dips,
    }


MODULE_LIMITS: dict[str, dict[str, object]] = {
    "part_number": {"expected": "PN-1", "unit": ""},
    "tdecq": {"high": 3.4, "unit": "dB", "per_lane": True},
    "rx_sensitivity_oma": {"high": -4.4, "unit": "dBm", "per_lane": True},
}


@step(measures=("part_number",))
def identify(ctx: StepContext) -> None:
    ctx.measure("part_number", "PN-1", unit="")


@step(measures=("tdecq",))
def eyes(ctx: StepContext) -> None:
    for lane in (1, 2):
        ctx.artefact("eye", eye_arrays(lane), lane=lane, kind="eye")
        ctx.measure("tdecq", 1.5 + 0.1 * lane, unit="dB", lane=lane)


@step(measures=("rx_sensitivity_oma",))
def sensitivity(ctx: StepContext) -> None:
    for lane in (1, 2):
        ctx.measure("rx_sensitivity_oma", -7.0 + lane, unit="dBm", lane=lane)
        ctx.artefact(
            "waterfall",
            waterfall_arrays(0.4 * lane),
            lane=lane,
            kind="waterfall",
            measurements="rx_sensitivity_oma",
            ber_target="2.4e-4",
        )


def module_run(
    store: Callable[[object], None], folder: Path, serial: str = "M0001", **kwargs: object
) -> RunResult:
    limits = limits_file(folder, MODULE_PRODUCT, MODULE_LIMITS)
    return run(store, limits, (identify, eyes, sensitivity), serial, **kwargs)  # type: ignore[arg-type]
