"""Operator page fixtures: the page served in this process over a simulated bench in its own
process, and Debian's headless Chromium driven by Playwright. Screenshots are test artefacts."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from station.launch import prepare_run
from station.ui.server import UiServer, allowed_hosts_for, bind, create_app
from station.ui.service import StationService

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (.ci/run installs it)
#: flags headless Chromium needs as root on a closed network (background fetches stall it)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIME_FACTOR = 0.02  # wall seconds per simulated second: a module's run takes a few seconds


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where screenshots and figures go: $STATION_TEST_ARTIFACTS/ui or test-artifacts/ui."""
    root = os.environ.get("STATION_TEST_ARTIFACTS")
    folder = (Path(root) if root else Path(__file__).parents[2] / "test-artifacts") / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (Playwright's browser object); skipped without Chromium, except in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (README: Operator page)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class StationUnderTest:
    """A started station service and its page's server."""

    def __init__(self, service: StationService, server: UiServer) -> None:
        self.service = service
        self.server = server
        self.url = server.url

    def close(self) -> None:
        self.server.stop()
        self.service.stop()


def serve(
    tmp: Path,
    sites: int,
    *,
    start_bench: bool = True,
    token: str | None = None,
    without: tuple[str, ...] = (),
    time_factor: float = TIME_FACTOR,
) -> StationUnderTest:
    """The station of `sites` simulated sites behind its page (the bench not started when the
    test runs no DUT: `start_bench` False); `without` leaves out the
    pluggable sequence's steps whose names start so (a shorter run where the test is about the
    page, not the measurements)."""
    setup = prepare_run(
        sequence="pluggable",
        product="800G-DR8",
        sites=sites,
        sim=True,
        time_factor=time_factor,
        operator="tester",
    )
    if without:
        steps = tuple(s for s in setup.sequence.steps if not s.name.startswith(without))
        sequence = dataclasses.replace(setup.sequence, steps=steps)
        setup = dataclasses.replace(setup, sequence=sequence)
    service = StationService(setup, str(tmp / "results.sqlite"), tmp / "reports")
    if start_bench:
        service.start()
    try:
        app = create_app(service, token=token, allowed_hosts=allowed_hosts_for("127.0.0.1", token))
        server = UiServer(app, bind("127.0.0.1", 0))
        server.start()
    except BaseException:
        service.stop()
        raise
    return StationUnderTest(service, server)


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationUnderTest]:
    """A two-site simulated station behind its page, shared by a module's tests."""
    station = serve(tmp_path_factory.mktemp("two-sites"), 2)
    yield station
    station.close()
