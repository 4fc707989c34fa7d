"""Multi-site scaling: the same sequence on 1 and on N sites, with realistic instrument timing.

Each site has its own simulated instruments (served by one simulator process, as a multi-port
host board and per-site meters would be); the engine runs the sites concurrently. Reports the wall
time for 1 and N sites, their ratio (target <= 1.3 for 8 sites), and where the time goes per step.
Run: python benchmarks/bench_multisite.py [--sites 8] [--time-factor 1] [--sequence pluggable]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

from station.bench import open_sites
from station.config import load_station_config
from station.engine import Arbiter, RunEngine
from station.events import EventBus, StepEnded
from station.limits import limits_path, load_limits
from station.multisite import MultiSiteRunner
from station.sequence import load_sequence
from station.simbench import SimBenchProcess


def run_sites(
    sequence_name: str, product: str, sites: int, time_factor: float
) -> tuple[float, dict]:
    sequence = load_sequence(sequence_name)
    limits = load_limits(limits_path(product))
    config = load_station_config(None, sequence.bench)
    config = config.replicated(sites) if sites > 1 else config
    serials = [f"SIM{i:04d}" for i in range(1, sites + 1)]
    step_times: dict[str, list[float]] = defaultdict(list)
    with SimBenchProcess(
        bench=sequence.bench, duts=serials, sites=sites, product=product, time_factor=time_factor
    ) as sim:
        opened, site_instruments, records = open_sites(config, sequence.roles, sim.site_resources)
        with opened:
            bus = EventBus()
            bus.subscribe(
                lambda e: (
                    step_times[e.step].append(e.duration_s) if isinstance(e, StepEnded) else None
                )
            )

            def make_engine(site: int, shared: frozenset[str], arbiter: Arbiter) -> RunEngine:
                return RunEngine(
                    sequence=sequence,
                    limits=limits,
                    station=config.for_site(site),
                    instruments=site_instruments[site - 1],
                    instrument_records=records[site - 1],
                    bus=bus,
                    site=site,
                    mode="characterisation",
                    shared_roles=shared,
                    arbiter=arbiter,
                )

            runner = MultiSiteRunner(make_engine, site_instruments)
            started = time.monotonic()
            results = runner.run(serials)
            elapsed = time.monotonic() - started
    outcomes = [r.result.outcome.value if r.result else "ERROR" for r in results]
    return elapsed, {
        "steps": {k: statistics.median(v) for k, v in step_times.items()},
        "outcomes": outcomes,
        "waits": dict(runner.arbiter.wait_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--time-factor", type=float, default=1.0)
    parser.add_argument("--sequence", default="pluggable")
    parser.add_argument("--product", default="800G-DR8")
    args = parser.parse_args()
    one, detail_one = run_sites(args.sequence, args.product, 1, args.time_factor)
    many, detail_many = run_sites(args.sequence, args.product, args.sites, args.time_factor)
    print(f"1 site: {one:.2f} s   {args.sites} sites: {many:.2f} s   ratio {many / one:.2f}")
    print(
        f"modules per hour: 1 site {3600 / one:.0f}, {args.sites} sites "
        f"{3600 * args.sites / many:.0f}"
    )
    for name, seconds in detail_many["steps"].items():
        print(
            f"  step {name:24} median {seconds:7.3f} s  (1 site: "
            f"{detail_one['steps'].get(name, float('nan')):.3f} s)"
        )
    print(
        f"  outcomes: {detail_many['outcomes']}; waits for shared instruments: "
        f"{detail_many['waits'] or 'none (no shared instruments)'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
