"""Reads an STDF file back with pystdf (an independent, widely used reader) into records."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(record type, fields) of every record, in file order."""
    with warnings.catch_warnings():  # pystdf's own code predates current warning rules
        warnings.simplefilter("ignore")
        from pystdf.IO import Parser

    records: list[tuple[str, dict[str, Any]]] = []

    class Sink:
        def before_send(self, _source: object, data: tuple[Any, list[Any]]) -> None:
            kind, fields = data
            records.append(
                (type(kind).__name__.upper(), dict(zip(kind.fieldNames, fields, strict=True)))
            )

    with path.open("rb") as stream:
        parser = Parser(inp=stream)
        parser.addSink(Sink())
        parser.parse()
    return records
