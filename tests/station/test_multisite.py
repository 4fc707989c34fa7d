"""Several sites at once: independent outcomes, shared instruments one step at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from drivers.interfaces import Instrument
from station.config import StationConfig
from station.engine import Arbiter, RunEngine, StepContext
from station.events import EventBus
from station.limits import LimitsFile
from station.multisite import MultiSiteRunner, shared_roles
from station.outcome import Outcome
from station.sequence import Sequence, step
from tests.station.helpers import FakeSource


class SharedScope(FakeSource):
    """Counts how many sites use it at the same moment."""

    def __init__(self) -> None:
        super().__init__()
        self.users = 0
        self.max_users = 0
        self._lock = threading.Lock()

    def measure(self) -> float:
        with self._lock:
            self.users += 1
            self.max_users = max(self.max_users, self.users)
        time.sleep(0.02)
        with self._lock:
            self.users -= 1
        return 0.5


@step(roles=("source", "scope"), measures=("power",))
def through_scope(ctx: StepContext) -> None:
    ctx.instrument("source", Instrument).output_on = True  # type: ignore[attr-defined]
    scope = ctx.instrument("scope", Instrument)
    for lane in (1, 2):
        value = scope.measure()  # type: ignore[attr-defined]
        if ctx.dut_serial == "T13":
            value = 5.0  # this DUT is bad
        if ctx.dut_serial == "T99":
            raise TimeoutError("scope did not trigger")
        ctx.measure("power", value, unit="mW", lane=lane)


@step(roles=("source",), measures=("later",))
def later(ctx: StepContext) -> None:
    ctx.measure("later", 1.0, unit="V")


def make_runner(
    limits: LimitsFile, sites: int
) -> tuple[MultiSiteRunner, list[FakeSource], SharedScope]:
    scope = SharedScope()
    sources = [FakeSource() for _ in range(sites)]
    instruments: list[dict[str, Instrument]] = [
        {"source": source, "scope": scope}
        for source in sources  # type: ignore[dict-item]
    ]

    def make_engine(site: int, shared: frozenset[str], arbiter: Arbiter) -> RunEngine:
        return RunEngine(
            sequence=Sequence("t", "t", ("T",), (through_scope, later)),
            limits=limits,
            station=StationConfig(Path("s.toml"), "st", {}),
            instruments=instruments[site - 1],
            instrument_records=(),
            bus=EventBus(),
            site=site,
            shared_roles=shared,
            arbiter=arbiter,
        )

    return MultiSiteRunner(make_engine, instruments), sources, scope


def test_shared_roles_are_found_by_identity() -> None:
    a, b, shared = FakeSource(), FakeSource(), FakeSource()
    sites = [{"x": a, "s": shared}, {"x": b, "s": shared}]
    assert shared_roles(sites) == frozenset({"s"})  # type: ignore[arg-type]
    assert shared_roles(sites[:1]) == frozenset()  # type: ignore[arg-type]


def test_failing_and_erroring_sites_do_not_stop_the_others(limits: LimitsFile) -> None:
    runner, sources, scope = make_runner(limits, 4)
    results = runner.run(["T1", "T13", "T99", "T4"])
    outcomes = [r.result.outcome for r in results if r.result]
    assert outcomes == [Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.PASS]
    assert all(not s.output_on and s.safe_calls == 1 for s in sources)
    assert scope.safe_calls == 1  # the shared scope is made safe once, after every site


def test_a_shared_instrument_serves_one_site_at_a_time(limits: LimitsFile) -> None:
    runner, _, scope = make_runner(limits, 6)
    results = runner.run([f"T{i}" for i in range(1, 7)])
    assert all(r.result and r.result.outcome == Outcome.PASS for r in results)
    assert scope.max_users == 1
    assert runner.arbiter.wait_s["scope"] > 0  # the sites did queue for it
