"""Running path-cal and a transmitter test in process on simulated benches, through the real
drivers, the engine, the results store and the calibration writer."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from sequences.path_cal import SEQUENCE as PATH_CAL
from sequences.pluggable import corner_steps, power_up
from sim_instruments.bench import SimBench
from station.bench import check_path_calibration, open_bench
from station.calibration.paths import PathCalibration, load_path_calibrations
from station.calibration.writer import PathCalWriter
from station.config import StationConfig, load_station_config
from station.engine import RunEngine, RunResult
from station.events import EventBus
from station.limits import limits_path, load_limits
from station.results.store import ResultsStore
from station.sequence import Sequence

FIXTURE = "REF-LB8-0001"
TIME_FACTOR = 0.005
#: power-up and the 25 degC transmitter step of the pluggable sequence: what a path corrects
TX_ONLY = Sequence(
    name="tx-correlation",
    description="module transmitter figures through the calibrated TX paths",
    products=("800G-DR8",),
    steps=(power_up, corner_steps(25.0)[1]),
)


#: the simulated reference transmitter's monitor output: power meter channel 3, its certificate
MONITOR_LINES = "monitor_channel = 3\nmonitor_db = 9.6\n"


def station_config(
    tmp_path: Path,
    station_id: str,
    tx_jumper: str = "MPO8-TX-0417",
    *,
    rx_jumper: str = "MPO8-RX-0418",
    monitor: bool = True,
) -> StationConfig:
    """The shipped module bench config as station `station_id` with its TX jumper `tx_jumper`
    and RX jumper `rx_jumper`; its [path_cal] table names the reference transmitter's monitor
    output (as shipped) unless not `monitor`."""
    text = load_station_config(bench="module").path.read_text(encoding="utf-8")
    text = text.replace('id = "sim-module-bench-1"', f'id = "{station_id}"')
    text = text.replace('serial = "MPO8-TX-0417"', f'serial = "{tx_jumper}"')
    text = text.replace('serial = "MPO8-RX-0418"', f'serial = "{rx_jumper}"')
    if monitor and "monitor_channel" not in text:
        text = text.replace("tap_channel = 2\n", "tap_channel = 2\n" + MONITOR_LINES)
    if not monitor:
        lines = text.splitlines(keepends=True)
        text = "".join(
            line for line in lines if not line.startswith(("monitor_channel", "monitor_db"))
        )
    path = tmp_path / f"{station_id}.toml"
    path.write_text(text, encoding="utf-8")
    return load_station_config(path)


def run(
    sim: SimBench,
    config: StationConfig,
    sequence: Sequence,
    serial: str,
    *,
    product: str,
    store: ResultsStore | None = None,
    mode: str = "production",
    insert: bool = True,
) -> RunResult:
    """Put `serial` in the cage (unless not `insert`) and run `sequence` on it; events go to
    `store` (and, for path-cal, to the calibration writer) when one is given."""
    if insert:
        sim.insert(serial, product)
    bus = EventBus()
    if store is not None:
        bus.subscribe(store)
        bus.subscribe(PathCalWriter(store.engine, config))
    with open_bench(config, sequence.roles, sim.resources()) as opened:
        engine = RunEngine(
            sequence=sequence,
            limits=load_limits(limits_path(product)),
            station=config,
            instruments=opened.instruments,
            instrument_records=tuple(opened.records),
            bus=bus,
            mode=mode,
        )
        result = engine.run(serial)
    if store is not None:
        store.flush()
    return result


def path_cal(
    sim: SimBench, config: StationConfig, store: ResultsStore, sequence: Sequence = PATH_CAL
) -> RunResult:
    return run(sim, config, sequence, FIXTURE, product="PATH-CAL-DR8", store=store)


def calibrated(
    config: StationConfig,
    store: ResultsStore,
    roles: tuple[str, ...],
    now: dt.datetime | None = None,
) -> StationConfig:
    """`config` with the losses in force from `store` (refused like a production run)."""
    records = records_of(config, store)
    now = now or dt.datetime.now(dt.UTC)
    view, _ = check_path_calibration(
        config, "pluggable", roles, records, 1311.0, now, "production", None
    )
    return view.for_site(1)


def records_of(config: StationConfig, store: ResultsStore) -> list[PathCalibration]:
    return load_path_calibrations(store.url, config.station_id)


def tx_path_cal() -> Sequence:
    """path-cal's TX step alone: a station whose reference transmitter has no certificate in
    sequences/references/sources.toml can still calibrate its TX paths."""
    return dataclasses.replace(
        PATH_CAL, steps=tuple(s for s in PATH_CAL.steps if s.name == "tx_paths")
    )
