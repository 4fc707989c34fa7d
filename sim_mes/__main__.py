"""`python -m sim_mes serve`: serve a simulated MES until interrupted.

Prints `URL http://127.0.0.1:<port>`, then `READY`. Lines on standard input inject what happens on
a shop floor: `outage on|off`, `lose-replies <n>`, `hold <serial or lot> <reason...>`,
`release <serial or lot>`, `lot <lot> <product> <op,op,...> <serial,serial,...>`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

from sim_mes.server import MesServer
from sim_mes.state import MesFault, MesState
from station.mes.retest import load_retest_policy


def _control(server: MesServer, line: str) -> str:
    words = line.split()
    if not words:
        return ""
    verb, args = words[0].lower(), words[1:]
    try:
        if verb == "outage" and args in (["on"], ["off"]):
            server.controls.down = args[0] == "on"
        elif verb == "lose-replies" and len(args) == 1 and args[0].isdigit():
            server.controls.lose_replies = int(args[0])
        elif verb == "hold" and len(args) >= 2:
            server.state.set_hold(args[0], " ".join(args[1:]))
        elif verb == "release" and len(args) == 1:
            server.state.set_hold(args[0], None)
        elif verb == "lot" and len(args) == 4:
            server.state.add_lot(args[0], args[1], args[2].split(","), args[3].split(","))
        else:
            return f"error: cannot parse {line.strip()!r}"
    except MesFault as fault:
        return f"error: {fault.message}"
    return "ok"


def _serials(path: Path, name: str, table: dict[str, Any]) -> list[str]:
    if "serials" in table:
        serials = table["serials"]
        if isinstance(serials, list) and all(isinstance(s, str) for s in serials):
            return serials
        raise ValueError(f"{path}: lots.{name}.serials = {serials!r}: must list serials")
    spec = table.get("serial_range")
    try:
        if not isinstance(spec, dict):
            raise TypeError(spec)
        prefix, first, count = spec["prefix"], int(spec["first"]), int(spec["count"])
        digits = int(spec.get("digits", 4))
    except (TypeError, KeyError, ValueError):
        raise ValueError(
            f"{path}: lots.{name}.serial_range = {spec!r}: needs prefix, first, count"
        ) from None
    return [f"{prefix}{n:0{digits}d}" for n in range(first, first + count)]


def load_lots(state: MesState, path: Path) -> None:
    """Lots of a TOML file: `[lots.<id>]` with product, route, serials or serial_range."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot be read as TOML ({err})") from None
    for name, table in data.get("lots", {}).items():
        route = table.get("route")
        if not isinstance(route, list) or not route:
            raise ValueError(f"{path}: lots.{name}.route = {route!r}: must list operations")
        try:
            state.add_lot(
                name,
                str(table.get("product", "")),
                route,
                _serials(path, name, table),
                table.get("work_order"),
            )
        except MesFault as fault:
            raise ValueError(f"{path}: lots.{name}: {fault.message}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim_mes")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a simulated MES until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0: any free port")
    serve.add_argument("--lots", type=Path, help="TOML file of lots to start with")
    serve.add_argument(
        "--retest",
        type=Path,
        action="append",
        help="retest policy file or folder (default shipped)",
    )
    args = parser.parse_args(argv)
    try:
        state = MesState(load_retest_policy(args.retest))
        if args.lots:
            load_lots(state, args.lots)
        server = MesServer(state, args.host, args.port)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        print(f"URL {server.url}")
        print("READY", flush=True)

        def read_controls() -> None:
            for line in sys.stdin:
                reply = _control(server, line)
                if reply:
                    print(reply, flush=True)

        if sys.stdin is not None:
            threading.Thread(target=read_controls, daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
