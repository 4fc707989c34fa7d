"""Whether the station's measurement system may run a sequence now, asked before any instrument
is opened by every way a run starts (`station run`, `station grr`, the simulated shift):

- no DUT-side jumper at or over its mating limit, as the results store counts matings;
- every optical path the sequence uses calibrated, unexpired and measured through the jumper
  now installed (a characterisation run may go ahead under a recorded override);
- for a production run, the station not locked (audit log: a golden unit out of bounds, an SPC
  rule). A lock stops production only: path-cal and golden-unit runs, with which the cause is
  fixed and the fix verified before an engineer unlocks, and characterisation runs, with which it
  is investigated, go ahead on a locked station.

What the limits file itself must pass (release table, approval, GR&R release) depends on who
starts the run and stays with the caller (`LimitsFile.check_release`,
`station.release.production_problems`).
"""

from __future__ import annotations

from station.bench import resolve_run_paths
from station.calibration.offsets import GOLDEN_SEQUENCE, load_offsets
from station.calibration.paths import PATH_CAL_SEQUENCE
from station.calibration.resolve import check_jumpers, load_matings
from station.config import StationConfig
from station.results.store import database_url
from station.security.audit import AuditLog
from station.security.lock import require_unlocked
from station.sequence import Sequence

#: the sequences that check the station itself, not a unit: with them a lock's cause is fixed
#: and the fix verified; their runs are no part of a product's yield
STATION_CHECKS = (PATH_CAL_SEQUENCE, GOLDEN_SEQUENCE)


def lock_applies(sequence: str, mode: str) -> bool:
    """Whether a lock refuses a run of `sequence` in `mode` (production of units only)."""
    return mode == "production" and sequence not in STATION_CHECKS


def admit_measurement_system(
    config: StationConfig,
    sequence: Sequence,
    wavelength_nm: float,
    mode: str,
    *,
    db: str,
    log: AuditLog,
    calibration_override: str | None = None,
) -> tuple[StationConfig, str | None]:
    """Refuse (one-line StationError subclasses) a worn jumper, a path without a calibration in
    force and, where `lock_applies`, a locked station. `db` is the station's results database
    (path or URL): it holds the mating counts, the path calibrations and the golden-unit
    offsets. Returns the config with the mating counts, path losses and offsets in force, and
    the calibration override that was used (None when every path was in calibration)."""
    counted = config.with_matings(load_matings(db, config.station_id))
    check_jumpers(counted)
    config, override = resolve_run_paths(
        counted,
        sequence.name,
        sequence.roles,
        wavelength_nm,
        database_url(db),
        mode,
        calibration_override,
    )
    if lock_applies(sequence.name, mode):
        require_unlocked(log, config.station_id)
    offsets = load_offsets(db, config.station_id)
    if offsets:
        config = config.with_offsets(offsets)
    return config, override
