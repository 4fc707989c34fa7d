"""Artefacts: arrays behind measurements (eye, waterfall, LIV, spectrum, wafer map, waveform),
stored as compressed npz with their sha256, the `kind` convention, and their measurement links.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

# A step records one with `ctx.artefact(name, arrays, lane=..., kind=..., **metadata)`. Metadata
# keys the store reads (all text, as the event carries them):
# - kind: how a report plots it; one of KINDS, with the arrays (units in the names) below.
# - measurements: comma-separated names the artefact is behind. Without it, it is behind every
#   measurement of the same step with the same lane. A measurement links the artefact recorded
#   last in its step when several match (measurements.artefact_id).
# - die_x, die_y: wafer runs: the die it belongs to (then only that die's measurements link).
# Any other metadata is kept as JSON and shown to the plots (e.g. ber_target, threshold_a).

#: kind -> (required arrays, optional arrays); units are in the array names
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # density: (amplitude bins, time bins) hit counts of a folded eye; levels: the PAM4 levels
    "eye": (("time_ui", "amplitude", "density"), ("levels",)),
    # measured BER against received OMA, and the fitted curve (Q-linear fit) where there is one
    "waterfall": (("oma_dbm", "ber"), ("fit_oma_dbm", "fit_ber")),
    "liv": (("current_a", "power_w"), ("voltage_v", "fit_current_a", "fit_power_w")),
    # transmission against wavelength, and the resonances found (marked on the plot)
    "spectrum": (("wavelength_nm", "transmission_db"), ("resonance_nm",)),
    "wafer_map": (("die_x", "die_y", "value"), ()),
    "waveform": (("time_s", "amplitude"), ()),
    # a fibre's end face (uint8, binned), its detected features' mask, where its centre is
    # (row, col), the pixel pitch and the graded zones' outer radii (sequences/inspection.py)
    "endface": (
        ("image", "defect_mask", "centre_px", "um_per_pixel", "zone_radius_um"),
        ("feature_centre_um", "feature_size_um", "feature_is_scratch"),
    ),
}
FORMAT_NPZ = "npz"


@dataclass(frozen=True)
class EncodedArtefact:
    data: bytes
    sha256: str


def encode(arrays: dict[str, np.ndarray]) -> EncodedArtefact:
    """Compressed npz bytes of the arrays and their sha256 (object arrays are refused)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    data = buffer.getvalue()
    return EncodedArtefact(data, hashlib.sha256(data).hexdigest())


def decode(data: bytes, sha256: str, what: str) -> dict[str, np.ndarray]:
    """The arrays of stored npz bytes, checked against the hash stored with them."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{what} does not match its sha256")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def missing_arrays(kind: str | None, arrays: dict[str, Any]) -> list[str]:
    """The arrays the kind convention requires that `arrays` lacks ([] for an unknown kind)."""
    required = KINDS.get(kind or "", ((), ()))[0]
    return [name for name in required if name not in arrays]


def row_fields(metadata: dict[str, str]) -> dict[str, Any]:
    """Columns of the artefact row read from the metadata: kind, die_x, die_y."""
    kind = metadata.get("kind")
    return {
        "kind": kind[:32] if kind else None,
        "die_x": _int_or_none(metadata.get("die_x")),
        "die_y": _int_or_none(metadata.get("die_y")),
        "metadata_json": json.dumps(metadata, sort_keys=True),
    }


def linked_names(metadata: dict[str, str]) -> tuple[str, ...]:
    """Measurement names named by the ``measurements`` key (empty: all of the step's)."""
    text = metadata.get("measurements", "")
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _int_or_none(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return None
