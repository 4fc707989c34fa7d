"""Fixtures for station tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.limits import LimitsFile
from tests.station.helpers import limits_file


@pytest.fixture
def limits(tmp_path: Path) -> LimitsFile:
    return limits_file(tmp_path)
