"""Protocol tests of the SCPI base: error queue after writes, retries, blocks, properties."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.base import InstrumentIdentity, ScpiInstrument, ScpiProperty
from drivers.errors import InstrumentCommandError, InstrumentReplyError, InstrumentTimeout
from tests.scripted import TIMEOUT, ScriptedTransport, scpi


class Thing(ScpiInstrument):
    level_dbm = ScpiProperty[float]("LEV?", "LEV {value}", unit="dBm", limits=(-10.0, 10.0))
    span_nm = ScpiProperty[float]("SPAN?", "SPAN {value}NM", unit="nm", scale=1e9, set_scale=1.0)
    enabled = ScpiProperty[bool]("OUTP?", "OUTP {value}", kind=bool)
    mode = ScpiProperty[str]("MODE?", "MODE {value}", kind=str, choices=("FAST", "SLOW"))


def make(*pairs: tuple[str, object]) -> tuple[Thing, ScriptedTransport]:
    transport = ScriptedTransport(scpi(*pairs))  # type: ignore[arg-type]
    return Thing(transport), transport


def test_write_checks_the_error_queue_and_raises_the_first_error() -> None:
    thing, transport = make(
        ("LEV 20", None),
        ("SYST:ERR?", '-222,"Data out of range"'),
        ("SYST:ERR?", '-100,"Command error"'),
        ("SYST:ERR?", '0,"No error"'),
    )
    with pytest.raises(InstrumentCommandError) as caught:
        thing.write("LEV 20")
    assert caught.value.code == -222
    assert caught.value.text == "Data out of range"
    assert caught.value.command == "LEV 20"
    assert transport.done()  # the rest of the queue was drained


def test_property_set_formats_validates_and_checks_errors() -> None:
    thing, transport = make(("LEV 2.5", None), ("SYST:ERR?", '+0,"No error"'))
    thing.level_dbm = 2.5
    assert transport.done()
    with pytest.raises(ValueError, match="level_dbm"):
        thing.level_dbm = 11.0  # refused before anything is sent


def test_property_get_scales_to_the_unit_in_its_name() -> None:
    thing, _ = make(
        ("SPAN?", "+1.310000E-06"), ("SPAN 1310NM", None), ("SYST:ERR?", '0,"No error"')
    )
    assert thing.span_nm == pytest.approx(1310.0)
    thing.span_nm = 1310


def test_bool_and_choice_properties() -> None:
    thing, _ = make(("OUTP?", "1"), ("OUTP 0", None), ("SYST:ERR?", '0,"No error"'))
    assert thing.enabled is True
    thing.enabled = False
    with pytest.raises(ValueError, match="mode"):
        thing.mode = "MEDIUM"


def test_unparseable_reply_is_a_typed_error_naming_the_property() -> None:
    thing, _ = make(("LEV?", "banana"))
    with pytest.raises(InstrumentReplyError, match="level_dbm"):
        _ = thing.level_dbm


def test_idempotent_query_is_retried_once_after_a_timeout_with_resync() -> None:
    thing, transport = make(("*IDN?", TIMEOUT), ("*IDN?", "ACME,X1,SN42,1.0"))
    assert thing.identify() == InstrumentIdentity("ACME", "X1", "SN42", "1.0")
    assert transport.resyncs == 1


def test_non_idempotent_query_is_not_retried() -> None:
    thing, transport = make(("INIT;*OPC?", TIMEOUT))
    with pytest.raises(InstrumentTimeout):
        thing.query("INIT;*OPC?", idempotent=False)
    assert transport.resyncs == 1 and transport.done()


def test_block_read_parses_definite_length_block() -> None:
    values = np.array([1.5, -2.25, 3e-9], dtype="<f4")
    payload = values.tobytes()
    header = b"#2" + str(len(payload)).zfill(2).encode()
    transport = ScriptedTransport([(b"DATA?\n", [header + payload + b"\n"])])
    thing = Thing(transport)
    np.testing.assert_array_equal(thing.query_block("DATA?", "float32"), values)
    assert transport.done()


def test_block_with_a_newline_byte_inside_is_read_whole() -> None:
    values = np.frombuffer(b"\n\n\n\n" * 4, dtype="<f4")  # every byte is 0x0A
    payload = values.tobytes()
    transport = ScriptedTransport([(b"DATA?\n", [b"#216" + payload + b"\n"])])
    np.testing.assert_array_equal(Thing(transport).query_block("DATA?"), values)


def test_a_reply_that_is_not_a_block_is_a_typed_error_and_resyncs() -> None:
    transport = ScriptedTransport([(b"DATA?\n", [b'-113,"Undefined header"\n'])])
    with pytest.raises(InstrumentReplyError, match="definite-length block"):
        Thing(transport).query_block("DATA?")
    assert transport.resyncs == 1


def test_identity_needs_four_fields() -> None:
    with pytest.raises(InstrumentReplyError):
        InstrumentIdentity.parse_idn("ACME,X1")
