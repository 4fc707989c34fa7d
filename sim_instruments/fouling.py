"""A station jumper that fouls a little at every mating: dust carried in on each DUT's receptacle
collects on the jumper's end face and adds loss to every leg of it. This is the slow drift a
golden unit is checked for; swapping the jumper for a clean one ends it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sim_instruments.world import World

FOULABLE = ("tx_breakout",)  # the jumper a module's TX light crosses before the station measures


@dataclass(frozen=True)
class Fouling:
    jumper: str
    db_per_mating: float


_fouling: dict[int, Fouling] = {}  # id(world) -> the fouling under way on that bench
_guard = threading.Lock()


def start(world: World, jumper: str, db_per_mating: float) -> None:
    """From now on, every mating on `world`'s cage adds `db_per_mating` to `jumper`'s legs."""
    if jumper not in FOULABLE:
        raise ValueError(f"jumper {jumper!r} cannot foul; foulable: {', '.join(FOULABLE)}")
    if not 0.0 <= db_per_mating <= 1.0:
        raise ValueError(f"fouling {db_per_mating} dB per mating: need 0 to 1 dB")
    with _guard:
        _fouling[id(world)] = Fouling(jumper, db_per_mating)


def stop(world: World) -> None:
    """The fouled jumper was replaced: no more loss grows on `world`."""
    with _guard:
        _fouling.pop(id(world), None)


def mated(world: World) -> None:
    """A DUT was inserted: a fouling jumper gains its loss per mating."""
    with _guard:
        fouling = _fouling.get(id(world))
    if fouling is None:
        return
    with world.lock:
        world.jumper_loss_db = world.jumper_loss_db + fouling.db_per_mating
