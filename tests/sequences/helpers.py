"""Running the module sequences in process on simulated benches, and reading what they recorded."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sim_instruments.__main__ import _control
from sim_instruments.bench import SimBench
from station.bench import open_bench, open_sites
from station.config import StationConfig, load_station_config
from station.engine import Arbiter, Prompter, RunEngine, RunParameters, RunResult
from station.errors import SimBenchError
from station.events import (
    ArtefactRecorded,
    AttributeRecorded,
    EventBus,
    PromptRequested,
    StepEnded,
    StepStarted,
)
from station.limits import LimitsFile, limits_path, load_limits
from station.multisite import MultiSiteRunner, SiteResult
from station.outcome import Outcome
from station.sequence import Sequence, load_sequence
from station.simbench import SimulatedHands

TIME_FACTOR = 0.005  # soaks and BER gates take minutes of simulated time
GOLDEN_LIMITS = Path(__file__).resolve().parents[2] / "sequences/limits/golden/800G-DR8.toml"


@dataclass
class Recorder:
    """Subscriber: every event of the runs on a bus, and the module's inside temperature at the
    start and end of every step (what the lane truth depends on)."""

    sim: SimBench | None = None
    events: list[object] = field(default_factory=list)
    temperatures_c: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def __call__(self, event: object) -> None:
        self.events.append(event)
        module = self.sim.world.module if self.sim is not None else None
        if module is not None and isinstance(event, StepStarted | StepEnded):
            edge = "start" if isinstance(event, StepStarted) else "end"
            key = (event.run_id, event.step, edge)
            self.temperatures_c[key] = module.internal_temperature_c()


@dataclass
class Run:
    result: RunResult
    events: list[object]
    temperatures_c: dict[tuple[str, str, str], float]

    @property
    def outcome(self) -> Outcome:
        return self.result.outcome

    def values(self, name: str, step: str | None = None) -> dict[int | None, float | int | str]:
        return {
            m.lane: m.value
            for m in self.result.measurements
            if m.name == name and (step is None or m.step == step)
        }

    def failed(self) -> set[tuple[str, int | None]]:
        return {(m.name, m.lane) for m in self.result.measurements if m.outcome != Outcome.PASS}

    def attributes(self, step: str | None = None) -> dict[str, str]:
        return {
            e.name: e.value
            for e in self.events
            if isinstance(e, AttributeRecorded)
            and e.run_id == self.result.run_id
            and (step is None or e.step == step)
        }

    def artefacts(self, kind: str) -> list[ArtefactRecorded]:
        return [
            e
            for e in self.events
            if isinstance(e, ArtefactRecorded)
            and e.run_id == self.result.run_id
            and e.metadata.get("kind") == kind
        ]

    def step_outcomes(self) -> dict[str, Outcome]:
        return {
            e.step: e.outcome
            for e in self.events
            if isinstance(e, StepEnded) and e.run_id == self.result.run_id
        }

    def inside_temperatures_c(self, step: str) -> tuple[float, float]:
        """The module's inside temperature at the start and at the end of `step`."""
        run_id = self.result.run_id
        return (
            self.temperatures_c[(run_id, step, "start")],
            self.temperatures_c[(run_id, step, "end")],
        )

    def inside_temperature_c(self, step: str) -> float:
        """Mean of the module's inside temperature at the start and end of `step`."""
        return sum(self.inside_temperatures_c(step)) / 2.0


def first_choice(request: PromptRequested, abort: object) -> str:
    """An operator who does what every prompt asks (its first answer: "Cleaned", ...)."""
    return request.choices[0]


def hands(sims: list[SimBench]) -> SimulatedHands:
    """The simulated benches' hands, acting on benches in this process (site n: `sims[n-1]`)."""

    def control(line: str) -> str:
        reply = _control(sims, line)
        if reply.startswith("error"):
            raise SimBenchError(f"{line!r}: {reply}")
        return reply

    return SimulatedHands(control)


def run_unit(
    sim: SimBench,
    serial: str,
    product: str = "800G-DR8",
    *,
    sequence: str | Sequence = "pluggable",
    limits: LimitsFile | None = None,
    mode: str = "production",
    corners_c: tuple[float, ...] | None = None,
    config: StationConfig | None = None,
    insert: bool = True,
    operator: Prompter = first_choice,
) -> Run:
    """Insert `serial` and run the sequence on it through the real drivers; the bench's hands
    seat the inspection probe and clean as `operator` answers."""
    seq = load_sequence(sequence) if isinstance(sequence, str) else sequence
    config = config or load_station_config()
    if insert:
        sim.insert(serial, product)
    recorder = Recorder(sim)
    bus = EventBus()
    bus.subscribe(recorder)
    sim_hands = hands([sim])
    bus.subscribe(sim_hands)
    with open_bench(config, seq.roles, sim.resources()) as opened:
        engine = RunEngine(
            sequence=seq,
            limits=limits or load_limits(limits_path(product)),
            station=config,
            instruments=opened.instruments,
            instrument_records=tuple(opened.records),
            bus=bus,
            mode=mode,
            parameters=RunParameters(corners_c=corners_c),
            prompter=sim_hands.wrap(operator),
        )
        result = engine.run(serial)
    return Run(result, recorder.events, recorder.temperatures_c)


def site_config(sites: int) -> StationConfig:
    """The simulated bench's config as a station of `sites` identical sites, each naming every
    role itself (so that nothing is shared: every simulated site is a whole bench)."""
    config = load_station_config()
    copies = {site: (dict(config.instruments), dict(config.paths)) for site in range(1, sites + 1)}
    return dataclasses.replace(config, sites=copies)


@contextmanager
def benches(serials: list[str], product: str = "800G-DR8") -> Iterator[list[SimBench]]:
    with ExitStack() as stack:
        sims = [stack.enter_context(SimBench.build(time_factor=TIME_FACTOR)) for _ in serials]
        for sim, serial in zip(sims, serials, strict=True):
            sim.insert(serial, product)
        yield sims


def run_sites(
    sims: list[SimBench],
    serials: list[str],
    product: str = "800G-DR8",
    *,
    sequence: str = "pluggable",
    limits: LimitsFile | None = None,
    mode: str = "production",
) -> tuple[list[SiteResult], Recorder, MultiSiteRunner]:
    """One engine per simulated bench under the MultiSiteRunner, as `station run --sites` does."""
    seq = load_sequence(sequence)
    config = site_config(len(sims))
    resources = {
        (role, site): resource
        for site, sim in enumerate(sims, start=1)
        for role, resource in sim.resources().items()
    }
    recorder = Recorder()
    bus = EventBus()
    bus.subscribe(recorder)
    sim_hands = hands(sims)
    bus.subscribe(sim_hands)
    opened, site_instruments, records = open_sites(config, seq.roles, resources)
    with opened:

        def make_engine(site: int, shared: frozenset[str], arbiter: Arbiter) -> RunEngine:
            return RunEngine(
                sequence=seq,
                limits=limits or load_limits(limits_path(product)),
                station=config.for_site(site),
                instruments=site_instruments[site - 1],
                instrument_records=records[site - 1],
                bus=bus,
                mode=mode,
                site=site,
                shared_roles=shared,
                arbiter=arbiter,
                prompter=sim_hands.wrap(first_choice),
            )

        runner = MultiSiteRunner(make_engine, site_instruments)
        results = runner.run(serials)
    return results, recorder, runner
