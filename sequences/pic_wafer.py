"""PIC wafer test on the wafer station: step die by die through the product's die map; per die,
heater and photodetector (SMU), fibre alignment, photocurrent, a swept spectrum of every optical
device, their analysis, and the die's hard and soft bins; each die committed as it completes.

`station run pic-wafer --product CPO-PIC-A1 --serial W07 --lot LOT42` (the serial is the wafer
id); `--resume <run id>` continues a run that died from the first die without results.

The die loop is a pipeline: while die N+1 is measured, a worker thread analyses die N (spectra,
figures, bins: pure station.analysis code); die N is then recorded and checkpointed, so the
analysis never sits on the measurement's critical path and a crash loses at most two dies' work,
which a resumed run measures again. Spectra kept (10,001 points a sweep would be 80 MB of float64
per 1,000 dies for the rings alone): every `storage.every_dies`-th die in test order and every die
that does not pass, as float32, the ring at full resolution, the smooth coupler envelope
decimated; about 120 kB a kept die, some 15 MB for a 1,000-die wafer with 10 % failing.
"""

from __future__ import annotations

import concurrent.futures

from drivers.interfaces import (
    InstrumentError,
    PowerMeter,
    SourceMeter,
    TunableLaser,
    WaferProber,
)
from sequences.pic_wafer_analysis import DIE_MEASURES, DieResult, Paths, analyse
from sequences.pic_wafer_die import DieFault, DieReadings, WaferBench
from sequences.pic_wafer_map import Die, DieMap, die_key, load_die_map
from station.engine import StepContext
from station.errors import InputError, StationError
from station.sequence import Sequence, step

PRODUCTS = ("CPO-PIC-A1", "CPO-PIC-B1")
ROLES = ("prober", "tunable_laser", "power_meter", "smu")
INPUT_PATH = "laser_to_input_fibre"  # station config paths the die's figures are corrected by
OUTPUT_PATH = "output_fibre_to_power_meter"  # index: meter channel - 1
#: the die loop's timeout bounds every die (it starts again at each die's checkpoint)
DIE_TIMEOUT_S = 600.0
PITCH_TOLERANCE_UM = 1.0


def make_sequence(die_map: DieMap | None = None) -> Sequence:
    """The pic-wafer sequence; `die_map` replaces the product's shipped map (a region of the
    wafer, a retest list: `load_die_map(product).restricted(dies)`)."""

    def map_for(ctx: StepContext) -> DieMap:
        chosen = die_map if die_map is not None else load_die_map(ctx.product.name)
        if chosen.product != ctx.product.name:
            raise InputError(chosen.path, "map.product", chosen.product, "is not the product run")
        return chosen

    @step(roles=("prober",), timeout_s=300.0)
    def load_wafer(ctx: StepContext) -> None:
        """Check the wafer on the chuck is this product's: die pitch and home die on the prober."""
        chosen = map_for(ctx)
        prober = ctx.instrument("prober", WaferProber)
        pitch_um = prober.die_pitch_um()
        expected_um = (chosen.pitch_x_mm * 1e3, chosen.pitch_y_mm * 1e3)
        if max(abs(a - b) for a, b in zip(pitch_um, expected_um, strict=True)) > (
            PITCH_TOLERANCE_UM
        ):
            raise StationError(
                f"the prober's die pitch {pitch_um} um is not the map's {expected_um} um: "
                f"wrong wafer or wrong prober map for {chosen.product}"
            )
        prober.separate()
        home = prober.step_to_die(*chosen.home_die)
        if (home.column, home.row) != chosen.home_die:
            raise StationError(f"the prober cannot reach the home die {chosen.home_die}")
        ctx.attribute("die_map", f"{chosen.path.name} revision {chosen.revision}")
        ctx.attribute("die_map_sha256", chosen.sha256)
        ctx.attribute("home_die", die_key(chosen.home_die))
        ctx.attribute("dies_in_map", len(chosen.dies))
        sweep = chosen.sweep
        ctx.attribute(
            "sweep",
            f"{sweep.start_nm:g}-{sweep.stop_nm:g} nm, {sweep.step_nm * 1e3:g} pm step "
            f"({sweep.points} points), {sweep.speed_nm_per_s:g} nm/s, {sweep.power_dbm:g} dBm",
        )
        kept = chosen.storage
        ctx.attribute(
            "spectra_kept",
            f"every {kept.every_dies} dies"
            + (" and every die not passing" if kept.failing_dies else ""),
        )

    @step(roles=ROLES, measures=tuple(DIE_MEASURES), timeout_s=DIE_TIMEOUT_S)
    def test_dies(ctx: StepContext) -> None:
        """Every die of the map not yet completed: measure, analyse, bin, commit."""
        run_dies(ctx, map_for(ctx))

    return Sequence(
        name="pic-wafer",
        description="CPO PIC wafer: couplers, rings, photodetectors and heaters, die by die",
        products=PRODUCTS,
        steps=(load_wafer, test_dies),
        bench="wafer",
    )


def run_dies(ctx: StepContext, die_map: DieMap) -> None:
    if not ctx.limits.bins:
        raise InputError(ctx.limits.path, "bins", None, "a wafer product needs a bin table")
    bench = WaferBench(
        prober=ctx.instrument("prober", WaferProber),
        laser=ctx.instrument("tunable_laser", TunableLaser),
        meter=ctx.instrument("power_meter", PowerMeter),
        smu=ctx.instrument("smu", SourceMeter),
        die_map=die_map,
        check=ctx.check_cancelled,
        sleep=ctx.sleep,
    )
    channels = [d.meter_channel for d in die_map.devices if d.meter_channel is not None]
    paths = Paths(
        input_db=ctx.path_loss_db(INPUT_PATH, 0),
        output_db={ch: ctx.path_loss_db(OUTPUT_PATH, ch - 1) for ch in channels},
    )
    points = bench.prepare()
    if points != die_map.sweep.points:
        raise StationError(
            f"the laser will log {points} points, the map expects {die_map.sweep.points}"
        )
    todo = [(i, d) for i, d in enumerate(die_map.dies) if die_key(d) not in ctx.completed_units]
    ctx.attribute("dies_to_test", len(todo))
    if len(todo) < len(die_map.dies):
        ctx.attribute("dies_already_done", len(die_map.dies) - len(todo))
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="die-analysis")
    pending: concurrent.futures.Future[DieResult] | None = None
    errors_in_a_row = 0
    try:
        for index, die in todo:
            ctx.check_cancelled()
            ctx.die = die
            readings = measure_die(bench, index, die, points)
            if pending is not None:
                record(ctx, pending.result())
            pending = pool.submit(analyse, readings, die_map, paths, ctx.limits, ctx.limits.bins)
            errors_in_a_row = errors_in_a_row + 1 if readings.error else 0
            if errors_in_a_row >= die_map.max_consecutive_errors:
                record(ctx, pending.result())
                pending = None
                raise StationError(
                    f"{errors_in_a_row} dies in a row could not be tested (last: {readings.error})"
                    ": the station needs attention; resume the run once it is fixed"
                )
        if pending is not None:
            record(ctx, pending.result())
            pending = None
        bench.prober.separate()
    finally:
        ctx.die = None
        pool.shutdown(wait=True, cancel_futures=True)


def measure_die(bench: WaferBench, index: int, die: Die, points: int) -> DieReadings:
    """The die's readings; a prober or instrument fault (stuck, lost contact, no reply) retries
    the die once from the step, then leaves it to be binned ERROR."""
    readings = DieReadings(die, index)
    for attempt in (1, 2):
        try:
            bench.probe(die)
            bench.measure(readings, points)
            return readings
        except (InstrumentError, DieFault) as err:
            described = f"{type(err).__name__}: {err}"
            bench.quiet()
            if attempt == 1:
                readings = DieReadings(die, index, retried=described)
                continue
            readings.error = described
    return readings


def record(ctx: StepContext, result: DieResult) -> None:
    """Record one analysed die and commit it (its checkpoint carries its bins)."""
    readings = result.readings
    die = readings.die
    where = f"die_{die[0]}_{die[1]}"
    if readings.retried:
        ctx.attribute(f"{where}_retried", readings.retried)
    if readings.error:
        ctx.attribute(f"{where}_error", readings.error)
    for note in result.notes:
        ctx.attribute(f"{where}_analysis", note)
    for value in result.values:
        ctx.measure(
            value.name,
            value.value,
            unit=value.unit,
            raw_value=value.raw_value,
            correction_db=value.correction_db,
            die=die,
        )
    for kept in result.spectra:
        ctx.artefact(kept.name, kept.arrays, **kept.metadata)  # type: ignore[arg-type]
    ctx.checkpoint(
        die_key(die),
        die=die,
        hard_bin=result.hard_bin,
        soft_bin=result.soft_bin,
        bin_name=result.bin_name,
    )


SEQUENCE = make_sequence()
