"""A step's measurements are written as one batch when it ends; on SQLite a large batch in which
few columns vary travels as one JSON array, with the columns every row shares bound once.
Whatever the path, every value reads back exactly as the engine recorded it: full double
precision, timestamps, lanes, dies, outcomes, text values, and a NaN (which JSON cannot carry)
beside ordinary values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from station.engine import StepContext
from station.events import MeasurementRecorded
from station.results import ResultsStore
from station.results.rows import JSON_BATCH_MIN, JSON_INSERT, json_batch
from station.sequence import step
from tests.results.helpers import WAFER_PRODUCT, dies_of, limits_file, probe, run

LIMITS: dict[str, dict[str, object]] = {
    "coupler_il": {"low": 0.0, "high": 5.0, "unit": "dB"},
    "responsivity": {"low": 0.55, "high": 1.2, "unit": "A/W", "per_lane": True, "marginal": 0.02},
    "vendor": {"expected": "ACME", "unit": ""},
}


def _values(nan_at: tuple[int, int] | None):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    table: dict[tuple[str, int | None, int, int], object] = {}

    def value(name: str, lane: int | None, x: int, y: int) -> object:
        if name == "vendor":
            return "ACME" if (x, y) != (1, 1) else "OTHER"  # one FAIL on a text value
        if (x, y) == nan_at and name == "coupler_il":
            return math.nan
        key = (name, lane, x, y)
        if key not in table:  # full-precision doubles, some outside the limits
            base = 3.0 if name == "coupler_il" else 0.8
            table[key] = float(base * (1 + 0.4 * rng.standard_normal()))
        return table[key]

    return value


@pytest.mark.parametrize("nan_at", [None, (0, 0)], ids=["finite", "with-nan"])
def test_a_large_step_reads_back_exactly_as_recorded(
    store: ResultsStore, tmp_path: Path, nan_at: tuple[int, int] | None
) -> None:
    recorded: list[MeasurementRecorded] = []

    def both(event: object) -> None:
        store(event)  # type: ignore[arg-type]
        if isinstance(event, MeasurementRecorded):
            recorded.append(event)

    limits = limits_file(tmp_path, WAFER_PRODUCT, LIMITS)
    dies = dies_of(4)
    result = run(both, limits, (probe(LIMITS, dies, _values(nan_at), lanes=4),), "W01")
    store.flush()
    numeric = [m for m in recorded if not isinstance(m.value, str)]
    assert len(numeric) >= JSON_BATCH_MIN * 3  # large enough for the batched path

    stored = store.measurements(run_id=result.run_id).sort_values("recorded_at", kind="stable")
    assert len(stored) == len(recorded) == len(dies) * 6
    by_key = {
        (row.measurement, None if pd.isna(row.lane) else int(row.lane), row.die_x, row.die_y): row
        for row in stored.itertuples()
    }
    assert len(by_key) == len(recorded)
    outcomes = set()
    for m in recorded:
        row = by_key[(m.name, m.lane, m.die_x, m.die_y)]
        if isinstance(m.value, str):
            assert row.text_value == m.value and pd.isna(row.value)  # text, no number
        elif math.isnan(m.value):
            assert pd.isna(row.value)  # NaN reads back as missing, not as a number
        else:
            assert row.value == m.value  # bit for bit
        assert (row.outcome, bool(row.marginal), row.attempt) == (m.outcome, m.marginal, 1)
        assert row.step == m.step and row.unit == m.unit
        outcomes.add((m.outcome, m.marginal))
    # the batch mixed outcomes, so no column was taken as shared that is not
    assert {o for o, _ in outcomes} >= {"PASS", "FAIL"} and (
        "ERROR" in {o for o, _ in outcomes}
    ) == (nan_at is not None)


TRACE_LIMITS: dict[str, dict[str, object]] = {
    "tap_power": {"low": -3.0, "high": 3.0, "unit": "dBm"}
}


def test_a_long_trace_of_one_quantity_goes_as_one_json_array_and_reads_back_exactly(
    store: ResultsStore, tmp_path: Path
) -> None:
    """One quantity sampled many times in a step (the engine benchmark's shape): only the value,
    its timestamp and its outcome vary, which is the batch the JSON path is for."""
    rng = np.random.default_rng(11)
    samples = [float(v) for v in rng.normal(0.0, 1.6, 3 * JSON_BATCH_MIN)]  # some outside +-3

    @step(measures=("tap_power",))
    def sample_tap(ctx: StepContext) -> None:
        for value in samples:
            ctx.measure("tap_power", value, unit="dBm")

    recorded: list[MeasurementRecorded] = []

    def both(event: object) -> None:
        store(event)  # type: ignore[arg-type]
        if isinstance(event, MeasurementRecorded):
            recorded.append(event)

    limits = limits_file(tmp_path, "TRACE", TRACE_LIMITS)
    result = run(both, limits, (sample_tap,), "T1")
    store.flush()
    if store.engine.dialect.name == "sqlite" and JSON_INSERT:
        assert json_batch(recorded, ()) is not None  # this batch takes the JSON path
    stored = store.measurements(run_id=result.run_id).sort_values("recorded_at", kind="stable")
    assert stored["value"].tolist() == samples  # bit for bit, in order
    assert stored["outcome"].tolist() == [m.outcome for m in recorded]
    assert {"PASS", "FAIL"} <= set(stored["outcome"])
    assert stored["recorded_at"].astype("int64").tolist() == [m.at_ns for m in recorded]
    assert stored["lane"].isna().all() and (stored["attempt"] == 1).all()
