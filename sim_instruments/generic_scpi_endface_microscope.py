"""Simulated generic SCPI end-face inspection microscope with a motorised MPO-16 tip: the command
set drivers/generic/scpi_endface_microscope.py documents (not a confirmed product protocol).

It images whatever connector the probe is seated on (`EndFaceFixture`): the tip moves between
fibres (with a position repeatability), the focus must be found again on each connector, the
sensor is 12-bit with shot and read noise. Moves, auto-focus and exposures are overlapped
operations with realistic durations; `*OPC?` and `FETCh:IMAGe?` wait for them. Its own fault:
debris on the tip's optics, a soft spot in the same place of every image (`soil_optics`).
"""

from __future__ import annotations

import numpy as np

from sim_instruments.endfaces import EndFaceFixture, Optics, render_endface
from sim_instruments.scpi import ScpiDevice, ScpiError, block, parse_number, scpi
from sim_instruments.world import World

MOVE_BASE_S = 0.12  # settle after any tip move
MOVE_PER_FIBRE_S = 0.02  # per 250 um fibre pitch travelled
AUTOFOCUS_S = 0.7  # focus sweep and contrast search
EXPOSURE_S = 0.03
READOUT_S = 0.015
FOCUS_RANGE_UM = 200.0
POSITION_REPEATABILITY_UM = 1.5
AUTOFOCUS_ERROR_UM = 0.3  # residual focus error after an auto-focus


class SimScpiEndfaceMicroscope(ScpiDevice):
    manufacturer = "Generic"
    model = "SCPI-EFM-MPO16"
    firmware = "1.0.0"

    def __init__(
        self,
        world: World,
        fixture: EndFaceFixture,
        serial_number: str,
        optics: Optics | None = None,
    ) -> None:
        super().__init__(world.clock, serial_number)
        self.world = world
        self.fixture = fixture
        self.optics = optics or Optics()
        self.fibre_count = 16
        self.rng = np.random.default_rng()
        calibration = world.bench_rng(f"microscope-{serial_number}")
        # Where each fibre position lands in the field of view (tip alignment), um.
        self.fibre_offsets_um = calibration.uniform(-12.0, 12.0, (self.fibre_count, 2))
        #: (x_um, y_um, diameter_um) debris on the tip's optics, fixed in the image
        self.lens_debris: list[tuple[float, float, float]] = []
        self.reset()

    def reset(self) -> None:
        self.fibre = 1
        self.focus_um = 0.0
        self.bits = 8
        self.busy_until = 0.0
        self.frame: np.ndarray | None = None
        self._offset_um = self._landing(1)

    # --- instrument-specific fault ------------------------------------------------------------
    def soil_optics(
        self, x_um: float = 30.0, y_um: float = -20.0, diameter_um: float = 12.0
    ) -> None:
        """Put debris on the tip's optics: a soft dark spot at (x, y) from the image centre in
        every image, whatever connector is under it, until `clean_optics`."""
        with self.lock:
            self.lens_debris.append((x_um, y_um, diameter_um))

    def clean_optics(self) -> None:
        with self.lock:
            self.lens_debris.clear()

    # --- overlapped operations ------------------------------------------------------------------
    def _start(self, duration_s: float) -> None:
        now = self.clock.now_s()
        self.busy_until = max(now, self.busy_until) + duration_s

    def wait_operations(self) -> None:
        self.clock.sleep(self.busy_until - self.clock.now_s())

    def _landing(self, fibre: int) -> tuple[float, float]:
        dx, dy = self.fibre_offsets_um[fibre - 1]
        jitter = self.rng.normal(0.0, POSITION_REPEATABILITY_UM, 2)
        return float(dx + jitter[0]), float(dy + jitter[1])

    # --- fibre selection --------------------------------------------------------------------------
    @scpi("ROUTe:FIBer")
    def _set_fibre(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args)
        if value != int(value) or not 1 <= value <= self.fibre_count:
            raise ScpiError(-222, "Data out of range")
        fibre = int(value)
        self.wait_operations()
        self._start(MOVE_BASE_S + MOVE_PER_FIBRE_S * abs(fibre - self.fibre))
        self.fibre = fibre
        self._offset_um = self._landing(fibre)

    @scpi("ROUTe:FIBer", query=True)
    def _get_fibre(self, s: tuple[int, ...], args: str) -> str:
        return str(self.fibre)

    @scpi("ROUTe:FIBer:COUNt", query=True)
    def _fibre_count(self, s: tuple[int, ...], args: str) -> str:
        return str(self.fibre_count)

    # --- focus ------------------------------------------------------------------------------------
    def _surface_um(self) -> float | None:
        """Height of the end face in view on the focus drive's scale, or None (nothing seated)."""
        with self.fixture.lock:
            connector = self.fixture.under_probe()
            if connector is None:
                return None
            face = connector.face(min(self.fibre, connector.fibre_count))
            return self.fixture.seat_height_um + face.height_um

    @scpi("SENSe:FOCus:AUTO")
    def _autofocus(self, s: tuple[int, ...], args: str) -> None:
        if args.strip().upper() not in ("ONCE", "1", "ON"):
            raise ScpiError(-224, "Illegal parameter value")
        self.wait_operations()
        self._start(AUTOFOCUS_S)
        surface = self._surface_um()
        if surface is not None:  # with nothing to focus on, the search leaves the drive alone
            self.focus_um = surface + float(self.rng.normal(0.0, AUTOFOCUS_ERROR_UM))

    @scpi("SENSe:FOCus:POSition")
    def _set_focus(self, s: tuple[int, ...], args: str) -> None:
        value = parse_number(args, {"UM": 1.0, "MM": 1e3})
        if not -FOCUS_RANGE_UM <= value <= FOCUS_RANGE_UM:
            raise ScpiError(-222, "Data out of range")
        self.focus_um = value

    @scpi("SENSe:FOCus:POSition", query=True)
    def _get_focus(self, s: tuple[int, ...], args: str) -> str:
        self.wait_operations()
        return f"{self.focus_um:+.3f}"

    # --- image --------------------------------------------------------------------------------
    @scpi("SENSe:IMAGe:SIZE", query=True)
    def _size(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.optics.rows},{self.optics.cols}"

    @scpi("SENSe:IMAGe:SCALe", query=True)
    def _scale(self, s: tuple[int, ...], args: str) -> str:
        return f"{self.optics.um_per_pixel:.5f}"

    @scpi("FORMat:DATA")
    def _set_format(self, s: tuple[int, ...], args: str) -> None:
        words = [w.strip().upper() for w in args.split(",")]
        if len(words) != 2 or words[0] not in ("UINT", "UINTEGER") or words[1] not in ("8", "16"):
            raise ScpiError(-224, "Illegal parameter value")
        self.bits = int(words[1])

    @scpi("FORMat:DATA", query=True)
    def _get_format(self, s: tuple[int, ...], args: str) -> str:
        return f"UINT,{self.bits}"

    @scpi("INITiate")
    @scpi("INITiate:IMMediate")
    def _initiate(self, s: tuple[int, ...], args: str) -> None:
        self.wait_operations()  # a frame exposed mid-move or mid-focus would be smeared
        surface = self._surface_um()
        with self.fixture.lock:
            connector = self.fixture.under_probe()
            face = (
                None
                if connector is None
                else connector.face(min(self.fibre, connector.fibre_count))
            )
            defocus = 0.0 if surface is None else self.focus_um - surface
            frame = render_endface(
                face,
                self.optics,
                self.rng,
                offset_um=self._offset_um,
                defocus_um=defocus,
                lens_debris=tuple(self.lens_debris),
            )
        # UINT,8 keeps the sensor's top 8 bits; UINT,16 carries its counts as they are.
        self.frame = frame >> (self.optics.bits - 8) if self.bits == 8 else frame
        self._start(EXPOSURE_S + READOUT_S)

    @scpi("FETCh:IMAGe", query=True)
    def _fetch(self, s: tuple[int, ...], args: str) -> bytes:
        self.wait_operations()
        if self.frame is None:
            raise ScpiError(-230, "Data corrupt or stale")
        dtype = "u1" if self.bits == 8 else "<u2"
        return block(self.frame.astype(dtype).tobytes())
