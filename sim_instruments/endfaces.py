"""The physical end faces an inspection microscope looks at (the DUT's MPO receptacle, the
station's MPO jumper): seeded dirt and damage, cleaning, and rendering them as the sensor sees.

The same module always arrives with the same dirt and damage (`serial_rng`); cleaning removes loose
particles (most of the time), never pits or scratches. Rendering is numpy only, vectorised over
pixels.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim_instruments.population import serial_rng

if TYPE_CHECKING:
    from sim_instruments.world import World

CLADDING_DIAMETER_UM = 125.0
CORE_DIAMETER_UM = 9.2
MPO_FIBRES = 16  # MPO-16: an 800G DR8 module uses all 16 (8 TX, 8 RX)

# Reflectance under the microscope's coaxial illumination (relative units).
CLADDING_REFLECTANCE = 0.90
CORE_REFLECTANCE = 0.88  # the core is barely visible in reflected light
EPOXY_REFLECTANCE = 0.30


@dataclass(frozen=True)
class Ferrule:
    """What surrounds the fibre: the ferrule material and the adhesive ring around the fibre."""

    reflectance: float
    texture: float  # relative standard deviation of its grain
    epoxy_ring_um: float  # width of the dark adhesive ring outside the cladding


FERRULES = {
    "mpo": Ferrule(0.55, 0.08, 1.0),  # glass-filled PPS, grainy; the fibre sits in a tight hole
    "zirconia": Ferrule(0.60, 0.015, 3.0),  # single-fibre ceramic ferrule (LC, SC), polished
}

# Population (unverified production figures: a fresh module with its dust cap is usually clean).
DIRTY_CONNECTOR_RATE = 0.30  # connectors arriving with loose contamination on some fibres
DIRTY_FIBRE_RATE = 0.45  # fibres of a dirty connector that carry particles
PIT_RATE = 0.004  # fibres with a pit (permanent)
SCRATCH_RATE = 0.003  # fibres with a scratch (permanent)
JUMPER_PICKUP_RATE = 0.15  # chance the station jumper picks up dust between two DUTs
# Chance one cleaning removes a particle: dry dust comes off, dried residue often needs more.
REMOVAL_PROBABILITY = {"dust": 0.95, "residue": 0.5, "pit": 0.0}


@dataclass(frozen=True)
class Particle:
    """A round or oval feature on the face: loose contamination ("dust", "residue") or a "pit"
    (a chip in the glass, permanent). Position relative to the fibre axis (x right, y down)."""

    x_um: float
    y_um: float
    diameter_um: float  # major diameter
    kind: str = "dust"
    aspect: float = 1.0  # major / minor diameter
    angle_rad: float = 0.0  # direction of the major axis
    darkness: float = 0.75  # fraction of the light lost at its centre

    @property
    def loose(self) -> bool:
        return self.kind != "pit"

    @property
    def radius_um(self) -> float:
        """Distance of its centre from the fibre axis."""
        return math.hypot(self.x_um, self.y_um)


@dataclass(frozen=True)
class Scratch:
    """A straight scratch (permanent) from (x0, y0) to (x1, y1), relative to the fibre axis."""

    x0_um: float
    y0_um: float
    x1_um: float
    y1_um: float
    width_um: float
    darkness: float = 0.5

    @property
    def length_um(self) -> float:
        return math.hypot(self.x1_um - self.x0_um, self.y1_um - self.y0_um)

    def closest_approach_um(self) -> float:
        """Distance of the scratch from the fibre axis."""
        dx, dy = self.x1_um - self.x0_um, self.y1_um - self.y0_um
        t = -(self.x0_um * dx + self.y0_um * dy) / max(dx * dx + dy * dy, 1e-12)
        t = min(max(t, 0.0), 1.0)
        return math.hypot(self.x0_um + t * dx, self.y0_um + t * dy)


@dataclass
class FibreFace:
    """One fibre's end face: what is on it, its height for focus and its ferrule's grain."""

    particles: list[Particle] = field(default_factory=list)
    scratches: list[Scratch] = field(default_factory=list)
    height_um: float = 0.0  # end-face height relative to the connector's nominal focus plane
    texture_seed: int = 0
    ferrule: str = "mpo"

    def clean(self, rng: np.random.Generator) -> int:
        """One pass of a cleaner: loose particles come off by their removal probability.
        Returns how many came off."""
        keep = [p for p in self.particles if rng.random() >= REMOVAL_PROBABILITY[p.kind]]
        removed = len(self.particles) - len(keep)
        self.particles = keep
        return removed

    @property
    def loose_particles(self) -> list[Particle]:
        return [p for p in self.particles if p.loose]

    @property
    def pits(self) -> list[Particle]:
        return [p for p in self.particles if not p.loose]


@dataclass
class Connector:
    """A multi-fibre connector end face: fibre k (1-based) is `faces[k - 1]`."""

    name: str
    kind: str
    faces: list[FibreFace]
    seed: str
    cleanings: int = 0

    @property
    def fibre_count(self) -> int:
        return len(self.faces)

    def face(self, fibre: int) -> FibreFace:
        return self.faces[fibre - 1]

    def clean(self, fibre: int | None = None) -> int:
        """Clean one fibre (1-based) or, with None, the whole ferrule (a one-click MPO cleaner
        cleans every fibre at once). Returns how many particles came off."""
        self.cleanings += 1
        rng = serial_rng("clean", self.seed, str(self.cleanings))
        faces = self.faces if fibre is None else [self.face(fibre)]
        return sum(face.clean(rng) for face in faces)

    def is_dirty(self) -> bool:
        return any(face.loose_particles for face in self.faces)


def _particles(rng: np.random.Generator, count: int, max_radius_um: float) -> list[Particle]:
    """Loose contamination: log-normal sizes (median 3 um), anywhere in the field of view."""
    radius = max_radius_um * np.sqrt(rng.random(count))
    angle = rng.uniform(0.0, 2.0 * np.pi, count)
    diameter = np.clip(rng.lognormal(math.log(3.0), 0.6, count), 1.2, 25.0)
    kinds = np.where(rng.random(count) < 0.8, "dust", "residue")
    return [
        Particle(
            x_um=float(radius[i] * np.cos(angle[i])),
            y_um=float(radius[i] * np.sin(angle[i])),
            diameter_um=float(diameter[i]),
            kind=str(kinds[i]),
            aspect=float(rng.uniform(1.0, 1.4)),
            angle_rad=float(rng.uniform(0.0, np.pi)),
            darkness=float(rng.uniform(0.6, 0.9)),
        )
        for i in range(count)
    ]


def _pit(rng: np.random.Generator) -> Particle:
    radius = 60.0 * math.sqrt(rng.random())
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return Particle(
        radius * math.cos(angle),
        radius * math.sin(angle),
        float(np.clip(rng.lognormal(math.log(2.2), 0.4), 1.2, 8.0)),
        kind="pit",
        darkness=float(rng.uniform(0.5, 0.8)),
    )


def _scratch(rng: np.random.Generator) -> Scratch:
    """A polishing or handling scratch passing within 45 um of the axis; widths mostly below
    3 um, a few wider."""
    offset = rng.uniform(-45.0, 45.0)
    direction = rng.uniform(0.0, math.pi)
    half = rng.uniform(10.0, 50.0)
    along = rng.uniform(-30.0, 30.0)
    nx, ny = -math.sin(direction), math.cos(direction)
    cx, cy = offset * nx + along * math.cos(direction), offset * ny + along * math.sin(direction)
    dx, dy = half * math.cos(direction), half * math.sin(direction)
    width = float(np.clip(rng.lognormal(math.log(1.3), 0.5), 0.6, 6.0))
    return Scratch(cx - dx, cy - dy, cx + dx, cy + dy, width, float(rng.uniform(0.35, 0.6)))


def make_connector(
    name: str, seed: str, *, fibres: int = MPO_FIBRES, dirty_rate: float = DIRTY_CONNECTOR_RATE
) -> Connector:
    """A connector as it arrives: seeded by `seed` (same seed, same faces)."""
    rng = serial_rng("endface", seed)
    dirty = rng.random() < dirty_rate
    tilt_um = rng.normal(0.0, 0.15)  # end-face height change from fibre to fibre
    faces = []
    for index in range(fibres):
        face = FibreFace(
            height_um=float(tilt_um * (index - fibres / 2) + rng.normal(0.0, 0.3)),
            texture_seed=int(rng.integers(2**31)),
        )
        if dirty and rng.random() < DIRTY_FIBRE_RATE:
            face.particles += _particles(rng, 1 + int(rng.poisson(1.5)), 110.0)
        if rng.random() < PIT_RATE:
            face.particles.append(_pit(rng))
        if rng.random() < SCRATCH_RATE:
            face.scratches.append(_scratch(rng))
        faces.append(face)
    return Connector(name, f"MPO-{fibres} APC", faces, seed)


@dataclass(frozen=True)
class Optics:
    """A microscope's imaging chain: sensor, pixel scale, illumination, noise."""

    rows: int = 480
    cols: int = 480
    um_per_pixel: float = 0.5
    bits: int = 12  # ADC; an 8-bit transfer keeps the top 8 bits
    full_well_e: float = 10_000.0
    read_noise_e: float = 10.0
    exposure_level: float = 0.80  # full-scale fraction a perfect reflector at the centre gives
    vignetting: float = 0.15  # relative fall of the illumination at the field edge
    axis_offset_um: tuple[float, float] = (6.0, -4.0)  # optical axis from the image centre
    gradient: float = 0.03  # relative left-to-right illumination slope over the half field
    psf_sigma_um: float = 0.45  # in focus
    defocus_blur_per_um: float = 0.2  # edge sigma growth per um of defocus


def _step(distance_um: np.ndarray, sigma_um: float) -> np.ndarray:
    """Soft inside-indicator: ~1 well inside (distance > 0), 0.5 on the edge, a Gaussian-blurred
    edge (logistic approximation of the normal CDF)."""
    return 0.5 * (1.0 + np.tanh((0.851 / sigma_um) * distance_um))


def _texture(seed: int, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
    """Grain of the ferrule, fixed to the ferrule: bilinear samples of a 4 um random grid."""
    cell, half = 4.0, 200.0
    size = int(2 * half / cell) + 2
    grid = np.random.default_rng(seed).normal(0.0, 1.0, (size, size))
    u = np.clip((x_um + half) / cell, 0.0, size - 1.001)
    v = np.clip((y_um + half) / cell, 0.0, size - 1.001)
    iu, iv = u.astype(np.int64), v.astype(np.int64)
    fu, fv = u - iu, v - iv
    top = grid[iv, iu] * (1 - fu) + grid[iv, iu + 1] * fu
    bottom = grid[iv + 1, iu] * (1 - fu) + grid[iv + 1, iu + 1] * fu
    return top * (1 - fv) + bottom * fv


def _window(x0: float, x1: float, y0: float, y1: float, xs: np.ndarray, ys: np.ndarray) -> tuple:
    """Index slices of the pixels whose coordinates lie in [x0, x1] x [y0, y1]."""
    c = np.searchsorted(xs, [x0, x1])
    r = np.searchsorted(ys, [y0, y1])
    return slice(int(r[0]), int(r[1]) + 1), slice(int(c[0]), int(c[1]) + 1)


def render_reflectance(
    face: FibreFace | None,
    optics: Optics,
    *,
    offset_um: tuple[float, float] = (0.0, 0.0),
    defocus_um: float = 0.0,
    lens_debris: tuple[tuple[float, float, float], ...] = (),
) -> np.ndarray:
    """What the sensor sees before noise: reflectance x illumination, (rows, cols) float64.

    `offset_um` is the fibre axis's position from the image centre (x right, y down); None for
    `face` is an empty field (no connector under the probe). `lens_debris` are (x_um, y_um,
    diameter_um) spots on the microscope's own optics, fixed in the image whatever is inspected.
    """
    s = optics.um_per_pixel
    xs = (np.arange(optics.cols) - (optics.cols - 1) / 2.0) * s
    ys = (np.arange(optics.rows) - (optics.rows - 1) / 2.0) * s
    ax, ay = optics.axis_offset_um
    half_field = max(xs[-1], ys[-1])
    light = (
        1.0
        - optics.vignetting * ((xs[None, :] - ax) ** 2 + (ys[:, None] - ay) ** 2) / half_field**2
        + optics.gradient * xs[None, :] / half_field
    )
    if face is None:
        image = np.full((optics.rows, optics.cols), 0.02)  # stray light only
    else:
        sigma = math.hypot(optics.psf_sigma_um, optics.defocus_blur_per_um * defocus_um)
        fx, fy = offset_um
        x, y = xs[None, :] - fx, ys[:, None] - fy
        r = np.hypot(x, y)
        clad = CLADDING_DIAMETER_UM / 2.0
        ferrule = FERRULES[face.ferrule]
        grain = _texture(face.texture_seed, x, y)
        image = ferrule.reflectance * (1.0 + ferrule.texture * grain)
        for radius, level in (
            (clad + ferrule.epoxy_ring_um, EPOXY_REFLECTANCE),
            (clad, CLADDING_REFLECTANCE),
            (CORE_DIAMETER_UM / 2.0, CORE_REFLECTANCE),
        ):
            image += (level - image) * _step(radius - r, sigma)
        fxs, fys = xs - fx, ys - fy  # pixel coordinates relative to the fibre axis
        for particle in face.particles:
            _draw_particle(image, particle, fxs, fys, sigma)
        for scratch in face.scratches:
            _draw_scratch(image, scratch, fxs, fys, sigma)
    for x_um, y_um, diameter_um in lens_debris:  # out of focus: large and soft
        spot = Particle(x_um, y_um, diameter_um, kind="pit", darkness=0.35)
        _draw_particle(image, spot, xs, ys, 2.5)
    return image * light


def _draw_particle(
    image: np.ndarray, p: Particle, xs: np.ndarray, ys: np.ndarray, sigma: float
) -> None:
    reach = p.diameter_um / 2.0 + 4.0 * sigma
    rows, cols = _window(p.x_um - reach, p.x_um + reach, p.y_um - reach, p.y_um + reach, xs, ys)
    dx = xs[cols][None, :] - p.x_um
    dy = ys[rows][:, None] - p.y_um
    cos, sin = math.cos(p.angle_rad), math.sin(p.angle_rad)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    a = p.diameter_um / 2.0
    b = a / p.aspect
    distance = np.hypot(u, v)
    rho = np.hypot(u / a, v / b)
    # Edge distance along the ray from the centre: the ellipse radius in that direction minus the
    # distance (exact for a circle).
    edge = np.where(rho > 1e-9, distance / np.maximum(rho, 1e-9) - distance, b)
    image[rows, cols] *= 1.0 - p.darkness * _step(edge, sigma)


def _draw_scratch(
    image: np.ndarray, s: Scratch, xs: np.ndarray, ys: np.ndarray, sigma: float
) -> None:
    reach = s.width_um / 2.0 + 4.0 * sigma
    rows, cols = _window(
        min(s.x0_um, s.x1_um) - reach,
        max(s.x0_um, s.x1_um) + reach,
        min(s.y0_um, s.y1_um) - reach,
        max(s.y0_um, s.y1_um) + reach,
        xs,
        ys,
    )
    px = xs[cols][None, :] - s.x0_um
    py = ys[rows][:, None] - s.y0_um
    dx, dy = s.x1_um - s.x0_um, s.y1_um - s.y0_um
    t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
    distance = np.hypot(px - t * dx, py - t * dy)
    image[rows, cols] *= 1.0 - s.darkness * _step(s.width_um / 2.0 - distance, sigma)


def expose(reflectance: np.ndarray, optics: Optics, rng: np.random.Generator) -> np.ndarray:
    """Sensor: photo-electrons with shot and read noise, quantised to `optics.bits`; returns
    uint16 counts (0 .. 2**bits - 1)."""
    electrons = np.clip(reflectance, 0.0, None) * optics.exposure_level * optics.full_well_e
    noisy = electrons + rng.normal(0.0, 1.0, electrons.shape) * np.sqrt(
        electrons + optics.read_noise_e**2
    )
    full_scale = 2**optics.bits - 1
    return np.clip(np.rint(noisy * (full_scale / optics.full_well_e)), 0, full_scale).astype(
        np.uint16
    )


def render_endface(
    face: FibreFace | None,
    optics: Optics,
    rng: np.random.Generator,
    *,
    offset_um: tuple[float, float] = (0.0, 0.0),
    defocus_um: float = 0.0,
    lens_debris: tuple[tuple[float, float, float], ...] = (),
) -> np.ndarray:
    """One noisy frame of `face` at the sensor's full bit depth, (rows, cols) uint16."""
    reflectance = render_reflectance(
        face, optics, offset_um=offset_um, defocus_um=defocus_um, lens_debris=lens_debris
    )
    return expose(reflectance, optics, rng)


class EndFaceFixture:
    """The connectors on the module bench an inspection probe can be seated on: "dut" (the
    module's MPO receptacle, seeded by the module's serial) and "jumper" (the station's MPO
    breakout jumper end, fixed by the bench id, which picks up dust between DUTs)."""

    CONNECTORS = ("dut", "jumper")

    def __init__(self, world: World) -> None:
        self.world = world
        self.lock = threading.RLock()
        self.jumper = make_connector("jumper", f"jumper/{world.bench_id}", dirty_rate=0.0)
        self.probe = "dut"  # where the operator seated the probe
        self.seatings = 0
        #: height of the seated connector's face on the microscope's focus scale, um
        self.seat_height_um = 0.0
        self._duts: dict[tuple[str, str], Connector] = {}
        self.place_probe("dut")

    def place_probe(self, connector: str) -> None:
        """Seat the inspection probe on `connector` ("dut" or "jumper"); every seating puts the
        face at a different height for the focus."""
        if connector not in self.CONNECTORS:
            raise ValueError(f"no connector {connector!r}; known: {', '.join(self.CONNECTORS)}")
        with self.lock:
            self.probe = connector
            self.seatings += 1
            rng = serial_rng("seat", self.world.bench_id, str(self.seatings))
            self.seat_height_um = float(rng.uniform(-25.0, 25.0))

    def connector(self, name: str) -> Connector | None:
        """The connector `name`, or None when there is none (no module in the cage)."""
        with self.lock:
            dut = self._dut()
            return self.jumper if name == "jumper" else dut

    def _dut(self) -> Connector | None:
        # The module in the cage decides; a module seen for the first time was just mated.
        module = self.world.module
        if module is None:
            return None
        key = (module.truth.design.name, module.truth.serial)
        if key not in self._duts:
            self._duts[key] = make_connector("dut", f"dut/{key[0]}/{key[1]}")
            self._jumper_handled(key[1])
        return self._duts[key]

    def _jumper_handled(self, serial: str) -> None:
        # Unmating the last DUT and mating the next can leave dust on the jumper.
        rng = serial_rng("jumper-pickup", self.world.bench_id, serial)
        if rng.random() < JUMPER_PICKUP_RATE:
            fibre = int(rng.integers(self.jumper.fibre_count))
            self.jumper.faces[fibre].particles += _particles(rng, 1 + int(rng.poisson(0.5)), 80.0)

    def under_probe(self) -> Connector | None:
        with self.lock:
            return self.connector(self.probe)

    def clean(self, fibre: int | None = None) -> int:
        """Clean the connector under the probe (one fibre, or all with None); returns how many
        particles came off. Raises ValueError when there is nothing to clean."""
        with self.lock:
            connector = self.under_probe()
            if connector is None:
                raise ValueError(f"no {self.probe} connector on the bench to clean")
            if fibre is not None and not 1 <= fibre <= connector.fibre_count:
                raise ValueError(f"fibre {fibre} is outside 1..{connector.fibre_count}")
            return connector.clean(fibre)
