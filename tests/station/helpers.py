"""Fakes shared by the engine and store tests: a limits file, a source, two steps."""

from __future__ import annotations

from pathlib import Path

from drivers.base import InstrumentIdentity
from drivers.interfaces import Instrument
from station.config import StationConfig
from station.engine import RunEngine, StepContext
from station.events import EventBus
from station.limits import LimitsFile, load_limits
from station.sequence import Sequence, step

LIMITS = """
[product]
name = "T"
revision = "1"
serial_pattern = "T\\\\d+"
part_number = "PN"
lanes = 2
wavelength_nm = 1310
baud_rate_gbd = 53.125

[limits.power]
low = 0.0
high = 1.0
unit = "mW"
per_lane = true

[limits.later]
low = 0.0
unit = "V"
"""


class FakeSource:
    """An instrument with an output that must end switched off."""

    resource = "FAKE::1"

    def __init__(self) -> None:
        self.output_on = False
        self.safe_calls = 0
        self.values = [0.5, 0.7]

    def identify(self) -> InstrumentIdentity:
        return InstrumentIdentity("Fake", "Source", "F1", "1")

    def safe_state(self) -> None:
        self.output_on = False
        self.safe_calls += 1

    def close(self) -> None:
        pass


def limits_file(tmp_path: Path) -> LimitsFile:
    path = tmp_path / "T.toml"
    path.write_text(LIMITS)
    return load_limits(path)


def make_engine(
    limits: LimitsFile,
    steps: tuple,
    source: FakeSource,
    mode: str = "production",
    bus: EventBus | None = None,
) -> RunEngine:
    sequence = Sequence("t", "test", ("T",), steps)
    return RunEngine(
        sequence=sequence,
        limits=limits,
        station=StationConfig(Path("station.toml"), "st-1", {}),
        instruments={"source": source},
        instrument_records=(),
        bus=bus or EventBus(),
        mode=mode,
    )


@step(roles=("source",), measures=("power",))
def measure_power(ctx: StepContext) -> None:
    source = ctx.instrument("source", Instrument)
    source.output_on = True  # type: ignore[attr-defined]
    for lane, value in enumerate(source.values, start=1):  # type: ignore[attr-defined]
        ctx.measure("power", value, unit="mW", lane=lane)


@step(roles=("source",), measures=("later",))
def measure_later(ctx: StepContext) -> None:
    ctx.measure("later", 1.0, unit="V")
