"""DUT-side jumper mating counters: one mating per run, counted in the results store from the
configured count, a swapped jumper counted on its own, admission refused at the limit, and
`station jumpers`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from station.calibration.resolve import JumperWorn, check_jumpers, load_matings
from station.cli import main
from station.config import Jumper, StationConfig, load_station_config
from station.engine import RunEngine
from station.events import EventBus, JumperRecord, RunStarted
from station.results.store import ResultsStore
from station.sequence import Sequence
from tests.station.helpers import FakeSource, limits_file, measure_power

TX = Jumper("tx_breakout", "MPO-A", 997, 1000, ("tx_path",))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[ResultsStore]:
    with ResultsStore(db) as opened:
        yield opened


def _station(
    *jumpers: Jumper, site_jumpers: dict[int, dict[str, Jumper]] | None = None
) -> StationConfig:
    sites = {site: ({}, {}) for site in (site_jumpers or {})}
    return StationConfig(
        Path("st.toml"), "ST1", {}, sites=sites,  # type: ignore[arg-type]
        jumpers={j.name: j for j in jumpers}, site_jumpers=site_jumpers or {},
    )  # fmt: skip


def _test_units(store: ResultsStore, tmp_path: Path, config: StationConfig, *serials: str) -> None:
    bus = EventBus()
    bus.subscribe(store)
    engine = RunEngine(
        sequence=Sequence("t", "t", ("T",), (measure_power,)),
        limits=limits_file(tmp_path),
        station=config,
        instruments={"source": FakeSource()},  # type: ignore[dict-item]
        instrument_records=(),
        bus=bus,
    )
    for serial in serials:
        engine.run(serial)
    store.flush()


def _admit(db: Path, config: StationConfig) -> None:
    check_jumpers(config.with_matings(load_matings(db, config.station_id)))


def test_every_run_mates_the_jumper_once_from_its_configured_count(
    store: ResultsStore, db: Path, tmp_path: Path
) -> None:
    config = _station(TX)
    assert load_matings(db, "ST1") == {}
    _admit(db, config)
    _test_units(store, tmp_path, config, "T1", "T2")
    matings = store.jumper_matings("ST1")
    assert matings[["jumper_serial", "matings", "site"]].values.tolist() == [["MPO-A", 999, 1]]
    _admit(db, config)  # 999 of 1000: one more unit may be tested
    _test_units(store, tmp_path, config, "T3")
    assert load_matings(db, "ST1") == {"MPO-A": 1000}
    with pytest.raises(JumperWorn) as refused:
        _admit(db, config)
    message = str(refused.value)
    assert message == (
        "ST1: jumper tx_breakout serial MPO-A has 1000 matings, limit 1000: replace it"
    )
    # the config still says 997: the store's count is the one that holds
    assert config.jumpers["tx_breakout"].mating_count == 997


def test_a_swapped_jumper_starts_its_own_count(
    store: ResultsStore, db: Path, tmp_path: Path
) -> None:
    _test_units(store, tmp_path, _station(dataclasses.replace(TX, mating_count=999)), "T1")
    with pytest.raises(JumperWorn):
        _admit(db, _station(TX))
    swapped = _station(dataclasses.replace(TX, serial="MPO-B", mating_count=0))
    _admit(db, swapped)
    _test_units(store, tmp_path, swapped, "T2")
    assert load_matings(db, "ST1") == {"MPO-A": 1000, "MPO-B": 1}


def test_a_resumed_run_is_not_a_new_mating(store: ResultsStore, tmp_path: Path) -> None:
    config = _station(TX)
    _test_units(store, tmp_path, config, "T1")
    run_id = store.runs()["run_id"].iloc[0]
    store(  # the same run again after a crash
        RunStarted(
            run_id=run_id, sequence="t", product="T", dut_serial="T1", site=1, station_id="ST1",
            operator="op", software_version="0", limits_path="l", limits_sha256="h",
            mode="production", instruments=(), resumed=True,
            jumpers=(JumperRecord("tx_breakout", "MPO-A", 997, 1000),),
        )
    )  # fmt: skip
    assert store.jumper_matings("ST1")["matings"].tolist() == [998]


def test_each_site_counts_its_own_jumper(store: ResultsStore, db: Path, tmp_path: Path) -> None:
    own = Jumper("tx_breakout", "MPO-S2", 1000, 1000, ("tx_path",))
    config = _station(TX, site_jumpers={2: {"tx_breakout": own}})
    with pytest.raises(JumperWorn, match=r"jumper tx_breakout \(site 2\) serial MPO-S2 has 1000"):
        _admit(db, config)
    _test_units(store, tmp_path, config.for_site(1), "T1")
    assert load_matings(db, "ST1") == {"MPO-A": 998}


def test_station_jumpers_lists_counts_and_limits(
    store: ResultsStore,
    db: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config = load_station_config()  # the simulated module bench: two breakouts
    empty = tmp_path / "none.sqlite"
    assert main(["jumpers", "--db", str(empty), "--csv"]) == 0
    rows = pd.read_csv(StringIO(capsys.readouterr().out))
    assert rows["serial"].tolist() == [j.serial for _, j in sorted(config.jumpers.items())]
    assert rows["matings"].tolist() == [187, 212] and set(rows["counted_by"]) == {"config"}
    assert not empty.exists()  # looking did not create a database
    store(
        RunStarted(
            run_id="r1", sequence="pluggable", product="800G-DR8", dut_serial="SIM0001", site=1,
            station_id=config.station_id, operator="op", software_version="0",
            limits_path="l", limits_sha256="h", mode="production", instruments=(),
            jumpers=(JumperRecord("tx_breakout", "MPO8-TX-0417", 212, 1000),),
        )
    )  # fmt: skip
    store.flush()
    assert main(["jumpers", "--db", str(db), "--csv"]) == 0
    rows = pd.read_csv(StringIO(capsys.readouterr().out)).set_index("jumper")
    assert rows.loc["tx_breakout", ["matings", "remaining", "counted_by"]].tolist() == [
        213, 787, "store",
    ]  # fmt: skip
    assert rows.loc["rx_breakout", "counted_by"] == "config"
    assert main(["jumpers", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"Jumpers of station {config.station_id}" in out and "MPO8-TX-0417" in out


def test_station_run_refuses_a_worn_jumper_before_opening_anything(
    store: ResultsStore,
    db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the console would wrap a long line at 80
    station_id = load_station_config().station_id
    store(
        RunStarted(
            run_id="r1", sequence="pluggable", product="800G-DR8", dut_serial="SIM0001", site=1,
            station_id=station_id, operator="op", software_version="0", limits_path="l",
            limits_sha256="h", mode="production", instruments=(),
            jumpers=(JumperRecord("tx_breakout", "MPO8-TX-0417", 999, 1000),),
        )
    )  # fmt: skip
    store.flush()
    args = ["run", "pluggable", "--product", "800G-DR8", "--serial", "SIM0001", "--sim"]
    assert main([*args, "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {station_id}: jumper tx_breakout serial MPO8-TX-0417 has 1000 matings, "
        "limit 1000: replace it"
    )
    assert load_matings(db, station_id) == {"MPO8-TX-0417": 1000}  # nothing ran, nothing counted
