"""Setting up and running sites, shared by `station run` and the operator page (`station ui`):
checking a run's inputs, the simulated bench, opening every site, one engine per site.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from drivers.interfaces import Instrument
from station.bench import OpenBench, check_calibration, open_sites
from station.config import StationConfig, load_station_config
from station.engine import Arbiter, PlannedSequence, Prompter, RunEngine, RunParameters
from station.errors import InputError
from station.events import EventBus, InstrumentRecord
from station.limits import LimitsFile, limits_path, load_limits, shipped_products
from station.multisite import MultiSiteRunner, SiteResult
from station.sequence import Sequence, load_sequence
from station.simbench import SimBenchProcess


@dataclass(frozen=True)
class RunSetup:
    """Everything about a station's runs that is checked once, before anything is opened."""

    sequence: Sequence
    limits: LimitsFile
    config: StationConfig
    sites: int
    sim: bool
    time_factor: float
    mode: str
    operator: str
    calibration_override: str | None
    parameters: RunParameters

    @property
    def step_names(self) -> tuple[str, ...]:
        """The steps a run goes through with these parameters, in order."""
        steps = (
            self.sequence.steps_for(self.parameters)
            if isinstance(self.sequence, PlannedSequence)
            else self.sequence.steps
        )
        return tuple(s.name for s in steps)

    def check_serials(self, serials: list[str], source: str = "--serial") -> None:
        """Serials as scanned: each matches the product's pattern, no DUT on two sites."""
        if len(set(serials)) != len(serials):
            raise InputError(source, "serial", serials, "the same serial is on two sites")
        for serial in serials:
            self.limits.check_serial(serial)

    def simulated_bench(self, serials: list[str] | None = None) -> SimBenchProcess:
        """The simulated bench for these sites (not started), with `serials` in the cages."""
        return SimBenchProcess(
            bench=self.sequence.bench,
            duts=serials,
            sites=self.sites,
            product=self.limits.product.name,
            time_factor=self.time_factor,
        )


def prepare_run(
    *,
    sequence: str,
    product: str,
    limits: str | None = None,
    station: str | None = None,
    sites: int | None = None,
    sim: bool = False,
    time_factor: float = 1.0,
    mode: str = "production",
    operator: str = "unknown",
    calibration_override: str | None = None,
    parameters: RunParameters | None = None,
    today: dt.date | None = None,
) -> RunSetup:
    """Check sequence, product, limits, station config, site count and calibration dates.

    `sites` None takes the station config's site count.

    Raises InputError (or CalibrationExpired) naming the file, field and value at fault.
    """
    loaded = load_sequence(sequence)
    if limits is None and product not in shipped_products():
        raise InputError(
            "--product",
            "product",
            product,
            f"no limits file; known products: {', '.join(shipped_products())}",
        )
    limits_file = load_limits(limits or limits_path(product))
    if limits_file.product.name != product:
        raise InputError(
            limits_file.path,
            "product.name",
            limits_file.product.name,
            f"is not the requested product {product!r}",
        )
    if product not in loaded.products:
        raise InputError(
            "--product",
            "product",
            product,
            f"sequence {loaded.name!r} tests {', '.join(loaded.products)}",
        )
    limits_file.check_against(loaded.measurements)
    if sites is not None and sites < 1:
        raise InputError("--sites", "sites", sites, "must be at least 1")
    config = load_station_config(station, loaded.bench)
    sites = sites or config.site_count
    if sim and config.site_count == 1 and sites > 1:
        config = config.replicated(sites)  # the simulated bench builds every site like site 1
    if config.site_count != sites:
        raise InputError(
            config.path,
            "sites",
            config.site_count,
            f"the station has {config.site_count} sites, --sites asks for {sites}",
        )
    check_calibration(config, loaded.roles, today or dt.date.today(), calibration_override)
    if time_factor <= 0:
        raise InputError("--time-factor", "time_factor", time_factor, "must be > 0")
    return RunSetup(
        sequence=loaded,
        limits=limits_file,
        config=config,
        sites=sites,
        sim=sim,
        time_factor=time_factor,
        mode=mode,
        operator=operator,
        calibration_override=calibration_override,
        parameters=parameters or RunParameters(),
    )


@dataclass
class OpenStation:
    """Every site's instruments, opened; `bench` owns them all and closing closes them."""

    bench: OpenBench
    instruments: list[dict[str, Instrument]]
    records: list[tuple[InstrumentRecord, ...]]

    def __enter__(self) -> OpenStation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bench.close()


def open_station(
    setup: RunSetup, resources: Mapping[tuple[str, int], str] | None = None
) -> OpenStation:
    """Open every site (InstrumentSetupError when one cannot be)."""
    bench, instruments, records = open_sites(
        setup.config, setup.sequence.roles, dict(resources) if resources else None
    )
    return OpenStation(bench, instruments, records)


@dataclass(frozen=True)
class SitesRun:
    results: list[SiteResult]
    shared_safe_errors: list[str]
    elapsed_s: float


def run_sites(
    setup: RunSetup,
    station: OpenStation,
    serials: Mapping[int, str],
    *,
    bus: EventBus,
    prompter: Prompter,
    guard: Callable[[MultiSiteRunner], AbstractContextManager[Any]],
    run_options: Mapping[str, Any] | None = None,
) -> SitesRun:
    """Test `serials` (site number -> serial) at once, one engine per site on its own thread.

    Sites left out stay idle; `guard(runner)` is entered around the run (abort on signals for
    the CLI, an abort button for the operator page).
    """
    chosen = sorted(serials)
    unknown = [site for site in chosen if not 1 <= site <= setup.sites]
    if unknown or not chosen:
        raise InputError("sites", "site", unknown or chosen, f"sites are 1..{setup.sites}")

    def make_engine(index: int, shared: frozenset[str], arbiter: Arbiter) -> RunEngine:
        site = chosen[index - 1]
        return RunEngine(
            sequence=setup.sequence,
            limits=setup.limits,
            station=setup.config.for_site(site),
            instruments=station.instruments[site - 1],
            instrument_records=station.records[site - 1],
            bus=bus,
            operator=setup.operator,
            mode=setup.mode,
            site=site,
            calibration_override=setup.calibration_override,
            prompter=prompter,
            shared_roles=shared,
            arbiter=arbiter,
            parameters=setup.parameters,
        )

    runner = MultiSiteRunner(make_engine, [station.instruments[site - 1] for site in chosen])
    started = time.monotonic()
    with guard(runner):
        results = runner.run([serials[site] for site in chosen], **(run_options or {}))
    # MultiSiteRunner numbers the sites it ran 1..n: give them back their station numbers
    renumbered = [SiteResult(chosen[r.site - 1], r.serial, r.result, r.error) for r in results]
    return SitesRun(renumbered, runner.shared_safe_errors, time.monotonic() - started)
