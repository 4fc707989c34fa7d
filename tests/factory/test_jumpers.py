"""DUT-side jumper mating counters: one mating per run, counted in the results store from the
configured count, a swapped jumper counted on its own, admission refused at the limit, and
`station jumpers`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from station.calibration.jumpers import replace_jumper
from station.calibration.resolve import JumperWorn, check_jumpers, load_matings
from station.cli import main
from station.config import Jumper, StationConfig, load_station_config
from station.engine import RunEngine
from station.events import EventBus, JumperRecord, RunStarted
from station.results.store import ResultsStore
from station.security.audit import DEFAULT_AUDIT, AuditLog
from station.security.users import DEFAULT_USERS, add_user
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
        "ST1: jumper tx_breakout serial MPO-A has 1000 matings, limit 1000: replace it "
        "(`station jumpers swap tx_breakout`)"
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
        "limit 1000: replace it (`station jumpers swap tx_breakout`)"
    )
    assert load_matings(db, station_id) == {"MPO8-TX-0417": 1000}  # nothing ran, nothing counted


def test_a_technician_swaps_a_jumper_and_production_waits_for_path_cal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = load_station_config(bench="module").path.read_text(encoding="utf-8")
    config = tmp_path / "station.toml"
    config.write_text(shipped, encoding="utf-8")
    for login, role in (("tom", "technician"), ("olga", "operator"), ("eve", "engineer")):
        add_user(tmp_path / DEFAULT_USERS, login, role, f"{login}-secret")
    db = tmp_path / "results.sqlite"
    on = ["--station", str(config), "--db", str(db)]
    path_cal = ["run", "path-cal", "--product", "PATH-CAL-DR8", "--serial", "REF-LB8-0001"]
    assert main([*path_cal, "--sim", "--time-factor", "0.01", *on]) == 0
    capsys.readouterr()

    def swap(user: str, *more: str) -> int:
        monkeypatch.setenv("STATION_SECRET", f"{user}-secret")
        reason = ["--reason", "golden TX power low on every lane"]
        return main(["jumpers", "swap", *more, *reason, "--user", user, *on])

    def refused(code: int, pattern: str) -> None:
        assert code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and re.search(pattern, lines[0]), lines
        assert config.read_text(encoding="utf-8") == shipped  # nothing half-written

    refused(swap("olga", "tx_breakout", "--serial", "MPO8-TX-9001"), r"olga \(operator\) may not")
    refused(swap("tom", "tx_patch", "--serial", "MPO8-TX-9001"), r"jumper.*'tx_patch'.*no such")
    refused(swap("tom", "tx_breakout", "--serial", "MPO8-TX-0417"), "is the tx_breakout jumper")
    refused(swap("tom", "tx_breakout", "--serial", "bad serial"), "serial = 'bad serial': letters")
    assert not (tmp_path / "audit.jsonl").exists()

    assert swap("tom", "tx_breakout", "--serial", "MPO8-TX-9001") == 0
    out = capsys.readouterr().out
    assert "MPO8-TX-0417 (213 matings) replaced by MPO8-TX-9001 (0 matings)" in out
    # the config changed in the jumper's two lines only: comments and layout are the engineer's
    changed = [
        (old, new)
        for old, new in zip(shipped.splitlines(), config.read_text().splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        ('serial = "MPO8-TX-0417"', 'serial = "MPO8-TX-9001"'),
        ("mating_count = 212", "mating_count = 0"),
    ]
    (entry,) = AuditLog(tmp_path / DEFAULT_AUDIT).entries()[-1:]
    assert (entry["actor"], entry["action"]) == ("tom", "jumper_swap")
    assert entry["details"] | {"config": None} == {
        "jumper": "tx_breakout", "site": None, "old_serial": "MPO8-TX-0417", "old_matings": 213,
        "new_serial": "MPO8-TX-9001", "new_matings": 0,
        "reason": "golden TX power low on every lane", "config": None,
    }  # fmt: skip

    pluggable = ["run", "pluggable", "--product", "800G-DR8", "--serial", "SIM0001", "--sim"]
    assert main([*pluggable, *on]) == 2
    err = capsys.readouterr().err
    assert "jumper tx_breakout is MPO8-TX-9001, calibrated with MPO8-TX-0417" in err
    assert main([*path_cal, "--sim", "--time-factor", "0.01", *on]) == 0
    capsys.readouterr()
    assert main(["jumpers", "--csv", *on]) == 0
    table = pd.read_csv(StringIO(capsys.readouterr().out))
    tx = table[table["jumper"] == "tx_breakout"].iloc[0]
    assert (tx["serial"], tx["matings"]) == ("MPO8-TX-9001", 1)  # path-cal mated it once


def test_a_swap_the_audit_log_cannot_record_leaves_the_config_as_it_was(tmp_path: Path) -> None:
    shipped = load_station_config(bench="module").path.read_text(encoding="utf-8")
    path = tmp_path / "station.toml"
    path.write_text(shipped, encoding="utf-8")
    (tmp_path / "audit").mkdir()  # a log that cannot be written: a folder in its place
    tom = add_user(tmp_path / DEFAULT_USERS, "tom", "technician", "tom-secret")
    with pytest.raises(OSError):
        replace_jumper(
            load_station_config(path), "tx_breakout", "MPO8-TX-9001", user=tom,
            log=AuditLog(tmp_path / "audit"), db=str(tmp_path / "r.sqlite"), reason="worn out",
        )  # fmt: skip
    assert path.read_text(encoding="utf-8") == shipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit", DEFAULT_USERS, "station.toml"]
