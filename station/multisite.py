"""Several DUTs tested at once: one engine per site on its own thread, instruments shared between
sites arbitrated step by step, shared instruments made safe once every site has finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.interfaces import Instrument
from station.engine import Arbiter, RunEngine, RunResult
from station.errors import StationError


@dataclass(frozen=True)
class SiteResult:
    site: int
    serial: str
    result: RunResult | None
    error: str | None  # set when the site could not run at all


def shared_roles(site_instruments: list[dict[str, Instrument]]) -> frozenset[str]:
    """Roles whose instrument object is the same for more than one site."""
    if len(site_instruments) < 2:
        return frozenset()
    shared = set()
    for role in site_instruments[0]:
        owners = {id(site.get(role)) for site in site_instruments}
        if len(owners) < len(site_instruments):
            shared.add(role)
    return frozenset(shared)


class MultiSiteRunner:
    """Runs one engine per site concurrently; a site that errors does not stop the others."""

    def __init__(
        self,
        make_engine: Callable[[int, frozenset[str], Arbiter], RunEngine],
        site_instruments: list[dict[str, Instrument]],
    ) -> None:
        self.site_instruments = site_instruments
        self.shared = shared_roles(site_instruments)
        self.arbiter = Arbiter()
        self.engines = [
            make_engine(site, self.shared, self.arbiter)
            for site in range(1, len(site_instruments) + 1)
        ]

    def abort(self) -> None:
        for engine in self.engines:
            engine.abort()

    def run(self, serials: list[str], **run_options: Any) -> list[SiteResult]:
        """Run every site; `run_options` go to each engine's `run` (lot, wafer, resume)."""
        if len(serials) != len(self.engines):
            raise StationError(
                f"{len(self.engines)} sites need {len(self.engines)} serials, got {len(serials)}"
            )
        results: list[SiteResult | None] = [None] * len(serials)

        def site_main(index: int) -> None:
            try:
                result = self.engines[index].run(serials[index], **run_options)
                results[index] = SiteResult(index + 1, serials[index], result, None)
            except Exception as err:  # the engine itself failed: this site only
                results[index] = SiteResult(index + 1, serials[index], None, repr(err))

        threads = [
            threading.Thread(target=site_main, args=(i,), name=f"site-{i + 1}")
            for i in range(len(serials))
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.1)
        except KeyboardInterrupt:
            self.abort()
            for thread in threads:
                thread.join()
        finally:
            self._safe_shared()
        return [r for r in results if r is not None]

    def _safe_shared(self) -> None:
        done: set[int] = set()
        self.shared_safe_errors: list[str] = []
        for site in self.site_instruments:
            for role in sorted(self.shared):
                device = site[role]
                if id(device) in done:
                    continue
                done.add(id(device))
                try:
                    device.safe_state()
                except Exception as err:  # every shared instrument gets its turn
                    self.shared_safe_errors.append(f"{role}: safe_state failed: {err!r}")
