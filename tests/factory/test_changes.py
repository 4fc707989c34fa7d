"""Audited changes: a limits change is refused without the role, and the log alone reconstructs
the limits after a chain of changes; overrides and calibrations are recorded with their user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from station.analysis.spc import imr_limits
from station.limits import limits_path, load_limits
from station.results.spc_plots import imr_chart
from station.security.audit import AuditLog, verify_log
from station.security.changes import (
    limit_fields,
    reconstruct_limits,
    record_calibration,
    record_limits_change,
    record_override,
)
from station.security.users import PermissionDenied, User

ENGINEER = User("eve", "engineer", None, b"", b"")
TECHNICIAN = User("tom", "technician", None, b"", b"")


def _variant(folder: Path, name: str, edits: dict[str, str]) -> Path:
    text = limits_path("800G-DR8").read_text()
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = folder / name
    path.write_text(text)
    return path


def test_the_log_reconstructs_a_chain_of_limits_changes(tmp_path: Path) -> None:
    base = load_limits(limits_path("800G-DR8"))
    tighter = load_limits(
        _variant(
            tmp_path, "b.toml", {"[limits.tx_tdecq]\nhigh = 3.4": "[limits.tx_tdecq]\nhigh = 3.2"}
        )
    )
    looser_margin = load_limits(
        _variant(
            tmp_path,
            "c.toml",
            {"high = 3.4\nmarginal = 0.3": "high = 3.3\nmarginal = 0.2"},
        )
    )
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(PermissionDenied, match="may not change_limits"):
        record_limits_change(log, TECHNICIAN, base, tighter, "customer request")
    first = record_limits_change(log, ENGINEER, base, tighter, "customer request CR-12")
    assert first["details"]["changed"] == {"tx_tdecq": {"high": [3.4, 3.2]}}
    assert first["details"]["old_sha256"] == base.sha256
    assert first["details"]["new_sha256"] == tighter.sha256
    record_limits_change(log, ENGINEER, tighter, looser_margin, "GR&R study 7")
    rebuilt = reconstruct_limits(limit_fields(base), log.entries(), "800G-DR8")
    assert rebuilt == limit_fields(looser_margin)
    assert rebuilt["tx_tdecq"]["high"] == 3.3 and rebuilt["tx_tdecq"]["marginal"] == 0.2
    assert verify_log(log.path).count == 2


def test_overrides_and_calibrations_are_recorded_by_role(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(PermissionDenied):
        record_override(log, TECHNICIAN, "station:ST1", "expired scope calibration")
    record_override(log, ENGINEER, "station:ST1", "scope cal due tomorrow", instrument="scope")
    record_calibration(log, TECHNICIAN, "power_meter", path_loss_db=1.92, jumper="J3")
    actions = [(e["actor"], e["action"], e["subject"]) for e in log.entries()]
    assert actions == [
        ("eve", "override", "station:ST1"),
        ("tom", "calibration", "instrument:power_meter"),
    ]


def test_an_imr_chart_draws_its_violations(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    baseline = 1.5 + 0.05 * rng.standard_normal(30)
    series = np.r_[baseline, 1.5 + 0.05 * rng.standard_normal(10) + 0.03 * np.arange(10)]
    figure = imr_chart(series, imr_limits(baseline), "golden SIM0003 tx power", "dBm")
    individuals, moving = figure.axes
    assert individuals.get_legend() is not None  # the drift's violations are marked
    marked = individuals.lines[-1].get_xdata()
    assert len(marked) > 0 and min(marked) >= 30  # only points after the baseline
    assert moving.get_ylabel() == "moving range"
    path = tmp_path / "spc.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
