"""Protocol tests of the generic SCPI end-face microscope driver (scripted) and against its twin."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.errors import InstrumentCommandError, InstrumentReplyError, InstrumentTimeout
from drivers.generic.scpi_endface_microscope import ScpiEndfaceMicroscope
from drivers.interfaces import EndFaceImage, InspectionMicroscope
from sim_instruments.bench import SimBench
from sim_instruments.generic_scpi_endface_microscope import AUTOFOCUS_S
from station.analysis.endface import grade_endfaces
from tests.scripted import TIMEOUT, ScriptedTransport, scpi

OK = ("SYST:ERR?", '+0,"No error"')


def fetch(payload: bytes) -> tuple[bytes, list[bytes | object]]:
    """The `FETC:IMAG?` step of a script, answered with `payload` as a definite-length block."""
    length = str(len(payload)).encode()
    return b"FETC:IMAG?\n", [b"#" + str(len(length)).encode() + length + payload + b"\n"]


def test_select_fibre_checks_the_tip_then_moves_and_waits_for_the_move() -> None:
    transport = ScriptedTransport(
        scpi(("ROUT:FIB:COUN?", "16"), ("ROUT:FIB 3", None), OK, ("*OPC?", "1"))
    )
    microscope = ScpiEndfaceMicroscope(transport)
    microscope.select_fibre(3)
    assert microscope.fibre_count == 16  # cached: no second query
    assert transport.done()


def test_a_fibre_beyond_the_tip_is_refused_before_anything_moves() -> None:
    transport = ScriptedTransport(scpi(("ROUT:FIB:COUN?", "12")))
    with pytest.raises(ValueError, match=r"fibre 13 is outside 1\.\.12"):
        ScpiEndfaceMicroscope(transport).select_fibre(13)
    assert transport.done()


def test_an_instrument_error_after_the_move_is_raised_with_its_code() -> None:
    transport = ScriptedTransport(
        scpi(
            ("ROUT:FIB:COUN?", "16"),
            ("ROUT:FIB 2", None),
            ("SYST:ERR?", '-222,"Data out of range"'),
        )
        + scpi(OK)
    )
    with pytest.raises(InstrumentCommandError) as caught:
        ScpiEndfaceMicroscope(transport).select_fibre(2)
    assert caught.value.code == -222


def test_auto_focus_waits_for_the_operation_with_a_longer_timeout() -> None:
    transport = ScriptedTransport(scpi(("SENS:FOC:AUTO ONCE", None), OK, ("*OPC?", "1")))
    seen: list[float] = []
    transport.set_timeout = lambda timeout_s: seen.append(timeout_s)  # type: ignore[method-assign]
    ScpiEndfaceMicroscope(transport).auto_focus()
    assert seen[0] == pytest.approx(1.0 + ScpiEndfaceMicroscope.operation_timeout_s)
    assert seen[-1] == pytest.approx(1.0)  # restored
    assert transport.done()


def test_capture_reads_an_8_bit_frame_as_one_block() -> None:
    pixels = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10
    transport = ScriptedTransport(
        [
            *scpi(
                ("FORM:DATA UINT,8", None),
                OK,
                ("SENS:IMAG:SIZE?", "6,4"),
                ("ROUT:FIB?", "5"),
                ("INIT", None),
                OK,
                ("*OPC?", "1"),
                ("SENS:IMAG:SCAL?", "0.50000"),
            ),
            fetch(pixels.tobytes()),
        ]
    )
    frame = ScpiEndfaceMicroscope(transport).capture()
    assert isinstance(frame, EndFaceImage)
    assert frame.fibre == 5 and frame.um_per_pixel == pytest.approx(0.5)
    assert frame.image.dtype == np.uint8 and frame.image.shape == (6, 4)
    np.testing.assert_array_equal(frame.image, pixels)
    assert transport.done()


def test_capture_in_16_bits_keeps_values_above_255_little_endian() -> None:
    pixels = np.array([[0, 255], [256, 4095]], dtype=np.uint16)
    transport = ScriptedTransport(
        [
            *scpi(
                ("FORM:DATA UINT,16", None),
                OK,
                ("ROUT:FIB:COUN?", "16"),
                ("ROUT:FIB 1", None),
                OK,
                ("*OPC?", "1"),
                ("SENS:IMAG:SIZE?", "2,2"),
                ("INIT", None),
                OK,
                ("*OPC?", "1"),
                ("SENS:IMAG:SCAL?", "0.25"),
            ),
            fetch(pixels.astype("<u2").tobytes()),
        ]
    )
    microscope = ScpiEndfaceMicroscope(transport)
    microscope.set_bit_depth(16)
    microscope.select_fibre(1)
    frame = microscope.capture()
    assert frame.image.dtype == np.uint16
    np.testing.assert_array_equal(frame.image, pixels)
    assert frame.fibre == 1


def test_a_short_frame_is_a_reply_error() -> None:
    transport = ScriptedTransport(
        [
            *scpi(
                ("FORM:DATA UINT,8", None),
                OK,
                ("SENS:IMAG:SIZE?", "6,4"),
                ("ROUT:FIB?", "1"),
                ("INIT", None),
                OK,
                ("*OPC?", "1"),
                ("SENS:IMAG:SCAL?", "0.5"),
            ),
            fetch(bytes(20)),
        ]
    )
    with pytest.raises(InstrumentReplyError, match="6 x 4 = 24 pixels"):
        ScpiEndfaceMicroscope(transport).capture()


def test_an_operation_that_never_completes_times_out_and_resynchronises() -> None:
    transport = ScriptedTransport(
        scpi(("SENS:FOC:AUTO ONCE", None), OK, ("*OPC?", TIMEOUT), ("*OPC?", TIMEOUT))
    )
    with pytest.raises(InstrumentTimeout, match=r"\*OPC\?"):
        ScpiEndfaceMicroscope(transport).auto_focus()
    assert transport.resyncs == 2  # the query is retried once, after a resynchronisation


def test_bit_depth_other_than_8_or_16_is_refused() -> None:
    with pytest.raises(ValueError, match="bit depth 12"):
        ScpiEndfaceMicroscope(ScriptedTransport([])).set_bit_depth(12)


# --- against the simulated twin -------------------------------------------------------------------
def test_against_twin_implements_inspection_microscope(bench: SimBench) -> None:
    with ScpiEndfaceMicroscope.open(bench.resources()["inspection_microscope"]) as microscope:
        assert isinstance(microscope, InspectionMicroscope)
        identity = microscope.identify()
        assert (identity.manufacturer, identity.serial_number) == ("Generic", "EFM0417")
        assert microscope.fibre_count == 16
        microscope.select_fibre(7)
        before_s = bench.world.clock.now_s()
        microscope.auto_focus()
        assert bench.world.clock.now_s() - before_s >= AUTOFOCUS_S  # simulated time
        frame = microscope.capture()
    assert frame.fibre == 7
    assert frame.image.shape == (480, 480) and frame.image.dtype == np.uint8
    assert frame.um_per_pixel == pytest.approx(0.5)
    grades = grade_endfaces(frame.image, frame.um_per_pixel)
    assert grades.location.located[0]
    assert grades.location.cladding_diameter_um[0] == pytest.approx(125.0, abs=1.0)


def test_twin_refuses_bad_settings_with_standard_errors(bench: SimBench) -> None:
    with ScpiEndfaceMicroscope.open(bench.resources()["inspection_microscope"]) as microscope:
        with pytest.raises(InstrumentCommandError) as caught:
            microscope.write("ROUT:FIB 17")
        assert caught.value.code == -222
        with pytest.raises(InstrumentCommandError) as caught:
            microscope.write("FORM:DATA REAL,32")
        assert caught.value.code == -224
        microscope.reset()
        with pytest.raises(InstrumentCommandError) as caught:
            microscope.write("FETC:IMAG?")  # no frame yet: no block, an error instead
        assert caught.value.code == -230


def test_twin_16_bit_frames_hold_the_12_bit_sensor_counts(bench: SimBench) -> None:
    with ScpiEndfaceMicroscope.open(bench.resources()["inspection_microscope"]) as microscope:
        microscope.auto_focus()
        eight = microscope.capture().image
        microscope.set_bit_depth(16)
        sixteen = microscope.capture().image
    assert sixteen.dtype == np.uint16 and sixteen.max() > 255 and sixteen.max() < 4096
    assert abs(float(sixteen.mean()) / 16.0 - float(eight.mean())) < 2.0


def test_without_focusing_after_seating_the_face_is_blurred(bench: SimBench) -> None:
    with ScpiEndfaceMicroscope.open(bench.resources()["inspection_microscope"]) as microscope:
        microscope.focus_um = 60.0  # far from the seated face
        blurred = microscope.capture().image.astype(float)
        microscope.auto_focus()
        assert abs(microscope.focus_um) < 30.0  # found the face (seated within +-25 um)
        sharp = microscope.capture().image.astype(float)
    # the steepest grey-level step (the cladding edge) is far steeper in focus
    assert np.abs(np.diff(sharp, axis=1)).max() > 2 * np.abs(np.diff(blurred, axis=1)).max()


def test_debris_on_the_tip_optics_shows_on_every_fibre_until_the_optics_are_cleaned(
    bench: SimBench,
) -> None:
    twin = bench.devices["inspection_microscope"]
    twin.soil_optics(x_um=20.0, y_um=-15.0, diameter_um=10.0)  # type: ignore[union-attr]
    frames = []
    with ScpiEndfaceMicroscope.open(bench.resources()["inspection_microscope"]) as microscope:
        microscope.auto_focus()
        for fibre in (2, 9):
            microscope.select_fibre(fibre)
            frames.append(microscope.capture().image)
        bench.clean()  # cleaning the connector does not clean the microscope
        frames.append(microscope.capture().image)
        twin.clean_optics()  # type: ignore[union-attr]
        frames.append(microscope.capture().image)
    grades = grade_endfaces(np.stack(frames), 0.5)
    np.testing.assert_array_equal(grades.passed, [False, False, False, True])
    # the spot sits at the same place in the image, wherever the fibre lands
    centre_rc = (480 - 1) / 2.0 + np.array([-15.0, 20.0]) / 0.5
    for index in range(3):
        spot = grades.labels[index] > 0
        rows, cols = np.nonzero(spot)
        assert np.hypot(rows.mean() - centre_rc[0], cols.mean() - centre_rc[1]) < 4.0


def test_a_dropped_frame_times_out_and_the_next_capture_works(bench: SimBench) -> None:
    from sim_instruments.faults import Fault

    with ScpiEndfaceMicroscope.open(
        bench.resources()["inspection_microscope"], timeout_s=0.5
    ) as microscope:
        microscope.capture()
        bench.arm_fault("inspection_microscope", Fault("no_reply", match="FETC:IMAG", count=1))
        with pytest.raises(InstrumentTimeout):
            microscope.capture()
        assert microscope.capture().image.shape == (480, 480)
