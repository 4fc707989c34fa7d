"""The traveller in the run record: lot, work order and route operation as run columns, the
unit's genealogy both ways, and old runs' traveller attributes carried over by the migration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from station.config import StationConfig
from station.engine import RunEngine
from station.events import EventBus, RunEnded, RunStarted
from station.mes.shopfloor import store_history
from station.mes.traveller import STEP, Traveller
from station.outcome import Outcome
from station.results import open_store
from station.results.migrate import alembic_config
from station.results.store import ResultsStore
from station.sequence import Sequence
from tests.station.helpers import FakeSource, limits_file, measure_power

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000


@pytest.fixture
def store(store_url: str) -> Iterator[ResultsStore]:
    with ResultsStore(store_url) as opened:
        yield opened


def _started(run_id: str, serial: str, n: int, traveller: Traveller) -> RunStarted:
    return RunStarted(
        run_id=run_id, sequence="els", product="ELS-8", dut_serial=serial, site=1,
        station_id="ST1", operator="op", software_version="0", limits_path="l.toml",
        limits_sha256="0" * 64, mode="production", instruments=(), at_ns=T0 + n * S,
        **traveller.run_fields(),
    )  # fmt: skip


def test_an_engine_run_records_its_traveller_in_columns(
    store: ResultsStore, tmp_path: Path
) -> None:
    bus = EventBus()
    bus.subscribe(store)
    engine = RunEngine(
        sequence=Sequence("t", "t", ("T",), (measure_power,)),
        limits=limits_file(tmp_path),
        station=StationConfig(Path("s.toml"), "ST1", {}),
        instruments={"source": FakeSource()},  # type: ignore[dict-item]
        instrument_records=(),
        bus=bus,
    )
    traveller = Traveller("LOT-9", "burn_in", "WO-31", {"laser_1": "L-0457", "tec": "T-12"})
    result = engine.run("T1", **traveller.run_options())
    assert result.outcome == Outcome.PASS
    run = store.runs(run_id=result.run_id).iloc[0]
    assert (run["lot_id"], run["work_order"], run["route_operation"]) == (
        "LOT-9", "WO-31", "burn_in",
    )  # fmt: skip
    assert store.attributes(result.run_id).query("step == 'traveller'").empty
    parts = store.unit_parts("T1")
    assert parts[["part_role", "part_id"]].values.tolist() == [
        ["laser_1", "L-0457"], ["tec", "T-12"],
    ]  # fmt: skip
    assert parts["run_id"].tolist() == [result.run_id] * 2 and parts["current"].all()
    assert store.runs(work_order="WO-31", route_operation="burn_in")["run_id"].tolist() == [
        result.run_id
    ]


def test_genealogy_both_ways_and_a_reworked_unit(store: ResultsStore) -> None:
    store(_started("r1", "M1", 0, Traveller("L1", "final_test", None, {"laser_1": "LA"})))
    store(_started("r2", "M2", 1, Traveller("L1", "final_test", None, {"laser_1": "LB"})))
    # M1 reworked: its laser replaced by LC, tested again; M2 tested at a second operation
    store(_started("r3", "M1", 2, Traveller("L1", "final_test", None, {"laser_1": "LC"})))
    store(_started("r4", "M2", 3, Traveller("L1", "burn_in", None, {"laser_1": "LB"})))
    parts = store.unit_parts("M1")
    assert parts[["part_id", "run_id", "current"]].values.tolist() == [
        ["LA", "r1", False], ["LC", "r3", True],
    ]  # fmt: skip
    assert (
        str(parts["recorded_at"].dtype).startswith("datetime64")
        and parts["recorded_at"].is_monotonic_increasing
    )
    built = store.units_built_from("LB")
    assert built[["serial", "part_role", "run_id"]].values.tolist() == [["M2", "laser_1", "r4"]]
    assert store.units_built_from("LA")["serial"].tolist() == ["M1"]  # history stays
    assert store.unit_parts("NOPE").empty and store.units_built_from("NOPE").empty


def test_the_shop_floor_history_reads_the_operation_column(store: ResultsStore) -> None:
    final, burn_in = Traveller("L1", "final_test"), Traveller("L1", "burn_in")
    for n, (traveller, outcome) in enumerate(
        [(final, "FAIL"), (burn_in, "PASS"), (final, "PASS"), (final, None)]
    ):
        store(_started(f"r{n}", "M1", n, traveller))
        if outcome is not None:
            store(RunEnded(f"r{n}", Outcome(outcome), None, at_ns=T0 + n * S + 1))
    store.flush()
    history = store_history(store)
    assert history("M1", "final_test") == ["FAIL", "PASS"]  # the run in flight is left out
    assert history("M1", "burn_in") == ["PASS"]
    assert history("M2", "final_test") == []


def test_old_traveller_attributes_move_into_the_columns(store_url: str) -> None:
    url = store_url if "://" in store_url else f"sqlite:///{store_url}"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0006")
        conn.commit()
    engine.dispose()
    old = [  # (name, value) of the attributes version 6 kept the traveller in
        ("route_operation", "final_test"), ("work_order", "WO-7"),
        ("genealogy.laser_2", "LX"), ("genealogy.pcb", "P1"),
    ]  # fmt: skip
    with engine.begin() as conn:  # a run as version 6 recorded it
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_id, sequence, product, dut_serial, site, station_id, "
                "operator, software_version, mode, limits_path, limits_sha256, lot_id, "
                "started_at, complete) VALUES ('r1', 's', 'p', 'M9', 1, 'ST1', 'op', '0', "
                "'production', 'l', 'h', 'L1', :at, :done)"
            ),
            {"at": "2026-11-01 10:00:00", "done": True},
        )
        for name, value in old:
            conn.execute(
                sa.text(
                    "INSERT INTO attributes (run_id, step, name, value) "
                    "VALUES ('r1', :step, :name, :value)"
                ),
                {"step": STEP, "name": name, "value": value},
            )
    engine.dispose()
    with open_store(store_url) as store:
        assert store.schema_action == "upgraded from 0006"
        run = store.runs().iloc[0]
        assert (run["work_order"], run["route_operation"]) == ("WO-7", "final_test")
        parts = store.unit_parts("M9")
        assert dict(zip(parts["part_role"], parts["part_id"], strict=True)) == {
            "pcb": "P1",
            "laser_2": "LX",
        }
        assert set(parts["run_id"]) == {"r1"}
