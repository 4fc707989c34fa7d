"""The results schema (SQLAlchemy Core), the same on SQLite and PostgreSQL, and its version.

A change here needs a migration in migrations/versions and a new HEAD_REVISION.
"""

from __future__ import annotations

import sqlalchemy as sa

#: Human-readable schema version, kept in `schema_info` so older software refuses a newer file.
SCHEMA_VERSION = 8
#: The Alembic revision that creates exactly these tables (tests check it is the script head).
HEAD_REVISION = "0008"
#: schema_info.version of databases made before Alembic -> the revision that describes them
REVISION_OF_VERSION = {version: f"{version:04d}" for version in range(1, SCHEMA_VERSION + 1)}

metadata = sa.MetaData()

schema_info = sa.Table(
    "schema_info",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.station_id"), primary_key=True),
    sa.Column("site", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("sequence", sa.String(64), nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("dut_serial", sa.String(64), nullable=False, index=True),
    sa.Column("site", sa.Integer, nullable=False),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("software_version", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("limits_path", sa.Text, nullable=False),
    sa.Column("limits_sha256", sa.String(64), nullable=False),
    sa.Column("calibration_override", sa.Text),
    sa.Column("lot_id", sa.String(64), index=True),
    sa.Column("wafer_id", sa.String(64), index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(16)),
    sa.Column("error", sa.Text),
    sa.Column("complete", sa.Boolean, nullable=False, default=False),
    # the traveller (schema version 7): the work order and the route operation the run tested
    sa.Column("work_order", sa.String(64), index=True),
    sa.Column("route_operation", sa.String(64)),
)

# The station's instruments by identity, with the calibration due date last seen on a run.
instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("manufacturer", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("serial_number", sa.String(64), primary_key=True),
    sa.Column("firmware", sa.String(64), nullable=False),
    sa.Column("calibration_due", sa.Date),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("last_run_id", sa.String(32), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
)

# What each run used: identity, resource and calibration as they were at the run.
run_instruments = sa.Table(
    "run_instruments",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("role", sa.String(64), primary_key=True),
    sa.Column("driver", sa.String(128), nullable=False),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("manufacturer", sa.String(128), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("serial_number", sa.String(64), nullable=False),
    sa.Column("firmware", sa.String(64), nullable=False),
    sa.Column("calibration_due", sa.Date),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("step_index", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("started_at_ns", sa.BigInteger, nullable=False),
    sa.Column("ended_at_ns", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    # the test-time split (schema version 7), in seconds of the step's wall time: waiting for the
    # engine to hand over shared instruments, attempts that were retried, and operator prompts
    # that load, insert or clean the unit (NULL on steps recorded before version 7)
    sa.Column("waited_s", sa.Float),
    sa.Column("retry_s", sa.Float),
    sa.Column("load_prompt_s", sa.Float),
)

run_limits = sa.Table(
    "run_limits",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("low_limit", sa.Float),
    sa.Column("high_limit", sa.Float),
    sa.Column("expected", sa.Text),
    sa.Column("per_lane", sa.Boolean, nullable=False),
    sa.Column("marginal_band", sa.Float),
    sa.Column("spec", sa.Text, nullable=False),
)

# One narrow row per measurement; its unit and limits are in run_limits (one row per name and
# run), which keeps the per-measurement write cheap. Queries join them back into tidy rows.
# artefact_id is set after the insert, by one UPDATE per artefact, never per measurement.
measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid itself
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("lane", sa.Integer),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("text_value", sa.Text),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("marginal", sa.Boolean, nullable=False),
    sa.Column("raw_value", sa.Float),
    sa.Column("correction_db", sa.Float),
    sa.Column("die_x", sa.Integer),
    sa.Column("die_y", sa.Integer),
    sa.Column("recorded_at_ns", sa.BigInteger, nullable=False),
    sa.Column("artefact_id", sa.Integer, sa.ForeignKey("artefacts.id")),
    # path_calibrations.id of the loss the value was corrected by, where one was
    sa.Column("calibration_id", sa.Integer),
)

attributes = sa.Table(
    "attributes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
)

artefacts = sa.Table(
    "artefacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("lane", sa.Integer),
    sa.Column("format", sa.String(16), nullable=False),  # "npz": numpy savez_compressed
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("recorded_at_ns", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32)),  # metadata["kind"]: how a report plots it
    sa.Column("die_x", sa.Integer),  # wafer runs: metadata["die_x"], ["die_y"]
    sa.Column("die_y", sa.Integer),
)

# Completed units of a run (wafer dies, lasers), committed with the unit's measurements at its
# checkpoint: a resumed run skips them, and the primary key keeps any unit from being recorded
# twice. Wafer dies carry their die and the hard and soft bins of the product's bin table.
units = sa.Table(
    "units",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("unit", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("die_x", sa.Integer),
    sa.Column("die_y", sa.Integer),
    sa.Column("hard_bin", sa.Integer),
    sa.Column("soft_bin", sa.Integer),
    sa.Column("bin_name", sa.String(64)),
    sa.Column("completed_at_ns", sa.BigInteger, nullable=False),
)


# Optical path calibrations (DOMAIN.md 9): one row per measured loss of a station's path
# (switch port x jumper x attenuator setting x wavelength), never updated: a new measurement is a
# new row, and the newest unexpired row of a (station, site, path, index, wavelength, setting) is
# the one in force. `run_id` is the path-cal run whose measurements and raw data produced it.
path_calibrations = sa.Table(
    "path_calibrations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("site", sa.Integer, nullable=False),
    sa.Column("path", sa.String(64), nullable=False),
    sa.Column("path_index", sa.Integer, nullable=False),  # 0-based, e.g. lane - 1
    sa.Column("wavelength_nm", sa.Float, nullable=False),
    sa.Column("attenuation_db", sa.Float),  # the attenuator setting, where it matters
    sa.Column("loss_db", sa.Float, nullable=False),
    sa.Column("uncertainty_db", sa.Float, nullable=False),
    sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("reference_instruments", sa.Text, nullable=False),  # "role=serial; ..."
    sa.Column("jumper_serial", sa.String(64)),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Index("ix_path_calibrations_station_path", "station_id", "site", "path"),
)


# --- limits release, station offsets, gauge R&R (schema version 6; station locks, dropped in
# version 8, live in the audit log: station.security.lock) ------------------------------------
# A run that used an unapproved limits file under an engineering override: who, why, which file.
limits_overrides = sa.Table(
    "limits_overrides",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("limits_path", sa.Text, nullable=False),
    sa.Column("limits_sha256", sa.String(64), nullable=False),
    sa.Column("unapproved_reason", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

# Golden-unit offsets of a station's site, versioned: every golden run within its limits adds
# one version (all its rows); the newest version is the one later runs apply (value - offset).
station_offsets = sa.Table(
    "station_offsets",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("site", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("measurement", sa.String(64), primary_key=True),
    sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("offset_db", sa.Float, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),  # the golden figure it came from
    sa.Column("golden_run_id", sa.String(32), nullable=False),
    sa.Column("golden_serial", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Gauge R&R studies: the design, the limits version studied and whether it released it ...
grr_studies = sa.Table(
    "grr_studies",
    metadata,
    sa.Column("study_id", sa.String(32), primary_key=True),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("limits_version", sa.String(64), nullable=False),
    sa.Column("limits_sha256", sa.String(64), nullable=False),
    sa.Column("sequence", sa.String(64), nullable=False),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("appraiser_kind", sa.String(32), nullable=False),  # "site" (simulated stations)
    sa.Column("parts", sa.Integer, nullable=False),
    sa.Column("appraisers", sa.Integer, nullable=False),
    sa.Column("repeats", sa.Integer, nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("released", sa.Boolean, nullable=False),
)

# ... one row per measurement (and lane) with its variance components (standard deviations) ...
grr_results = sa.Table(
    "grr_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(32), sa.ForeignKey("grr_studies.study_id"), nullable=False),
    sa.Column("measurement", sa.String(64), nullable=False),
    sa.Column("lane", sa.Integer),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("ev", sa.Float, nullable=False),
    sa.Column("av", sa.Float, nullable=False),
    sa.Column("interaction", sa.Float, nullable=False),
    sa.Column("grr", sa.Float, nullable=False),
    sa.Column("pv", sa.Float, nullable=False),
    sa.Column("tv", sa.Float, nullable=False),
    sa.Column("interaction_pooled", sa.Boolean, nullable=False),
    sa.Column("tolerance", sa.Float),
    sa.Column("pct_grr_tolerance", sa.Float),
    sa.Column("pct_grr_study", sa.Float),
    sa.Column("ndc", sa.Float),
    sa.Column("key", sa.Boolean, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
)

# ... and the run behind each observation (part, appraiser, repeat), so a study can be re-read.
grr_runs = sa.Table(
    "grr_runs",
    metadata,
    sa.Column("study_id", sa.String(32), sa.ForeignKey("grr_studies.study_id"), primary_key=True),
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("part", sa.String(64), nullable=False),
    sa.Column("appraiser", sa.Integer, nullable=False),
    sa.Column("repeat", sa.Integer, nullable=False),
)

# Limits versions released by a passing gauge R&R study of their key measurements.
limits_releases = sa.Table(
    "limits_releases",
    metadata,
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("limits_sha256", sa.String(64), primary_key=True),
    sa.Column("limits_version", sa.String(64), nullable=False),
    sa.Column("study_id", sa.String(32), sa.ForeignKey("grr_studies.study_id"), nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
)


# --- traveller genealogy, downtime, jumper matings (schema version 7) ----------------------------
# The parts a unit is built from, as its traveller named them on a run: part role (e.g.
# "laser_3", "pic_die") -> part identity (e.g. "ELS-W12-L0457", "W07:12,-3").
genealogy = sa.Table(
    "genealogy",
    metadata,
    sa.Column("serial", sa.String(64), primary_key=True),
    sa.Column("part_role", sa.String(64), primary_key=True),
    sa.Column("part_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

# Station downtime with a reason from station.results.downtime.REASONS; open while ended_at is
# NULL. `site` NULL: the whole station.
downtime = sa.Table(
    "downtime",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("site", sa.Integer),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("recorded_by", sa.String(64), nullable=False),
    sa.Index("ix_downtime_station", "station_id", "started_at"),
)

# Matings of a station's DUT-side jumpers by serial: one per unit tested on the jumper's site,
# counted from the configured mating_count when the serial was first seen.
jumper_matings = sa.Table(
    "jumper_matings",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("jumper_serial", sa.String(64), primary_key=True),
    sa.Column("site", sa.Integer, nullable=False),
    sa.Column("matings", sa.Integer, nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_run_id", sa.String(32)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
