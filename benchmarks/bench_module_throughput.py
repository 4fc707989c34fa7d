"""Module throughput of the pluggable sequence on the simulated module bench: modules per hour on
1 and N sites with realistic instrument timing, the time per step and the share in analysis.

The simulator runs in its own process (as instruments are boxes of their own) and gives every site
a whole bench. A real N-site station shares one TX chain (switch, meter, scope, OSA) and one RX
chain (BERT, reference source, attenuator, RX switch) between its sites; the "shared" figure
makes the engine arbitrate those roles across sites as if each were one instrument, the
"unshared" figure is the simulated bench as it is (every site its own instruments). Every unit
runs every step (characterisation mode), so a failing unit does not shorten its test.
Run: python benchmarks/bench_module_throughput.py [--sites 8] [--time-factor 1] [--product ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from station.bench import open_sites
from station.config import StationConfig, load_station_config
from station.engine import Arbiter, RunEngine
from station.events import AttributeRecorded, EventBus, StepEnded
from station.limits import limits_path, load_limits
from station.multisite import MultiSiteRunner
from station.sequence import load_sequence
from station.simbench import SimBenchProcess

#: the roles one real multi-site module station has once, behind its switches
SHARED_ROLES = frozenset(
    {"optical_switch", "power_meter", "sampling_scope", "osa", "bert", "attenuator", "rx_switch"}
)


class RoleArbiter(Arbiter):
    """One lock per role for all sites: each site's simulated copy of the scope stands for the
    one scope a real station shares (locks are still taken in one global order)."""

    def __init__(self, role_of: dict[int, str]) -> None:
        super().__init__()
        self._role_of = role_of

    def _lock(self, device: object) -> threading.Lock:
        key = self._role_of[id(device)]
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())  # type: ignore[call-overload]


@dataclass
class Figures:
    sites: int
    shared: bool
    elapsed_s: float
    outcomes: list[str]
    step_s: dict[str, float]  # median over sites, steps that ran
    analysis_share: float
    waits_s: dict[str, float]

    @property
    def modules_per_hour(self) -> float:
        return 3600.0 * self.sites / self.elapsed_s


def site_config(sites: int) -> StationConfig:
    config = load_station_config()
    copies = {site: (dict(config.instruments), dict(config.paths)) for site in range(1, sites + 1)}
    return dataclasses.replace(config, sites=copies)


def measure(product: str, sites: int, time_factor: float, shared: bool) -> Figures:
    sequence = load_sequence("pluggable")
    limits = load_limits(limits_path(product))
    config = site_config(sites)
    serials = [f"SIM{i:04d}" for i in range(1, sites + 1)]
    steps: dict[str, list[float]] = defaultdict(list)
    analysis_s: list[float] = []
    lock = threading.Lock()

    def listen(event: object) -> None:
        with lock:
            if isinstance(event, StepEnded) and event.duration_s > 0.01:  # skipped corners: ~0
                steps[event.step].append(event.duration_s)
            elif isinstance(event, AttributeRecorded) and event.name == "analysis_s":
                analysis_s.append(float(event.value))

    with SimBenchProcess(
        bench="module", duts=serials, sites=sites, product=product, time_factor=time_factor
    ) as sim:
        opened, site_instruments, records = open_sites(config, sequence.roles, sim.site_resources)
        with opened:
            bus = EventBus()
            bus.subscribe(listen)
            role_of = {
                id(device): role for site in site_instruments for role, device in site.items()
            }
            arbiter = RoleArbiter(role_of) if shared else None
            roles = SHARED_ROLES if shared and sites > 1 else frozenset()

            def make_engine(site: int, found: frozenset[str], default: Arbiter) -> RunEngine:
                return RunEngine(
                    sequence=sequence,
                    limits=limits,
                    station=config.for_site(site),
                    instruments=site_instruments[site - 1],
                    instrument_records=records[site - 1],
                    bus=bus,
                    site=site,
                    mode="characterisation",
                    shared_roles=roles or found,
                    arbiter=arbiter or default,
                )

            runner = MultiSiteRunner(make_engine, site_instruments)
            started = time.monotonic()
            results = runner.run(serials)
            elapsed = time.monotonic() - started
            for site in site_instruments:  # the roles modelled as shared: safe once, at the end
                for role in roles:
                    site[role].safe_state()
    busy = sum(r.result.duration_s for r in results if r.result)
    waits = dict((arbiter or runner.arbiter).wait_s)
    return Figures(
        sites=sites,
        shared=shared and sites > 1,
        elapsed_s=elapsed,
        outcomes=[r.result.outcome.value if r.result else "ERROR" for r in results],
        step_s={name: statistics.median(times) for name, times in steps.items()},
        analysis_share=sum(analysis_s) / busy if busy else float("nan"),
        waits_s=waits,
    )


def report(figures: list[Figures]) -> None:
    print(f"{'':28s}" + "".join(f"{_label(f):>18s}" for f in figures))
    print(f"{'modules per hour':28s}" + "".join(f"{f.modules_per_hour:18.1f}" for f in figures))
    print(f"{'wall time (s)':28s}" + "".join(f"{f.elapsed_s:18.1f}" for f in figures))
    print(f"{'analysis share':28s}" + "".join(f"{100 * f.analysis_share:17.2f}%" for f in figures))
    print("median time per step (s):")
    names = list(dict.fromkeys(name for f in figures for name in f.step_s))
    for name in names:
        print(f"  {name:26s}" + "".join(f"{f.step_s.get(name, 0.0):18.2f}" for f in figures))
    for f in figures:
        if f.waits_s:
            waits = ", ".join(f"{role} {s:.0f} s" for role, s in sorted(f.waits_s.items()))
            print(f"{_label(f)}: sites waited for {waits}")
        print(f"{_label(f)}: outcomes {', '.join(f.outcomes)}")


def _label(figures: Figures) -> str:
    if figures.sites == 1:
        return "1 site"
    return f"{figures.sites} sites {'shared' if figures.shared else 'unshared'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--time-factor", type=float, default=1.0)
    parser.add_argument("--product", default="800G-DR8")
    parser.add_argument(
        "--no-unshared", action="store_true", help="skip the every-site-its-own-bench figure"
    )
    args = parser.parse_args()
    figures = [measure(args.product, 1, args.time_factor, shared=False)]
    figures.append(measure(args.product, args.sites, args.time_factor, shared=True))
    if not args.no_unshared:
        figures.append(measure(args.product, args.sites, args.time_factor, shared=False))
    print(f"pluggable {args.product}, time factor {args.time_factor:g}, characterisation mode")
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
