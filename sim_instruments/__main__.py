"""`python -m sim_instruments serve`: run a simulated bench until interrupted.

Prints one `role resource` line per instrument (`role@site resource` with `--sites`), then `READY`.
Lines on standard input act on the bench the way hands would: `insert <serial> <product>`,
`remove`, `fault <role> <kind> [seconds] [match]`, `clear <role>`, `probe dut|jumper` (seat
the inspection probe), `clean [fibre]` (the MPO cleaner), `jumper <name> <serial> [extra_db]`
(swap a station jumper for another one), `foul <jumper> <db_per_mating>` (the jumper gains loss at
every insertion until it is swapped), each optionally ending in `@<site>`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from sim_instruments import fouling
from sim_instruments.bench import SimBench
from sim_instruments.faults import Fault


def _control(benches: list[SimBench], line: str) -> str:
    words = line.split()
    if not words:
        return ""
    verb, args = words[0].lower(), words[1:]
    # A trailing "@<site>" picks the site on a multi-site bench (default: site 1).
    site = 1
    if args and args[-1].startswith("@") and args[-1][1:].isdigit():
        site = int(args.pop()[1:])
    if not 1 <= site <= len(benches):
        return f"error: no site {site}; this bench has {len(benches)}"
    bench = benches[site - 1]
    try:
        if verb == "insert" and len(args) == 2:
            bench.insert(args[0], args[1])
            fouling.mated(bench.world)
        elif verb == "remove" and not args:
            bench.world.remove_dut()
        elif verb == "fault" and 2 <= len(args) <= 4:
            seconds = float(args[2]) if len(args) > 2 else 0.0
            match = args[3] if len(args) > 3 else ""
            bench.arm_fault(args[0], Fault(args[1], seconds=seconds, match=match))
        elif verb == "clear" and len(args) == 1:
            bench.faults(args[0]).clear()
        elif verb == "clean" and len(args) <= 1:  # the MPO cleaner, on the probed connector
            return f"ok {bench.clean(int(args[0]) if args else None)} removed"
        elif verb == "probe" and len(args) == 1:  # seat the inspection probe: dut or jumper
            bench.endfaces().place_probe(args[0])
        elif verb == "jumper" and 2 <= len(args) <= 3:  # swap a station jumper
            bench.world.swap_jumper(args[0], args[1], float(args[2]) if len(args) > 2 else 0.0)
            fouling.stop(bench.world)
        elif verb == "foul" and len(args) == 2:
            fouling.start(bench.world, args[0], float(args[1]))
        else:
            return f"error: cannot parse {line.strip()!r}"
    except (KeyError, ValueError) as err:
        return f"error: {err}"
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim_instruments")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a simulated bench until interrupted")
    serve.add_argument(
        "--time-factor",
        type=float,
        default=1.0,
        help="wall seconds per simulated second (1 = real time)",
    )
    serve.add_argument("--bench", default="module", help="bench kind: module")
    serve.add_argument("--bench-id", help="fixes the bench's passive losses (default per kind)")
    serve.add_argument("--dut", metavar="SERIAL", help="DUT serial to put on the bench at start")
    serve.add_argument("--product", default="800G-DR8", help="product of the inserted DUT")
    serve.add_argument("--sites", type=int, default=1,
                       help="test sites, each a copy of the bench; roles print as role@site")
    serve.add_argument("--duts", metavar="SERIAL,...", help="one DUT serial per site")
    serve.add_argument(
        "--controlled",
        action="store_true",
        help="standard input is the controlling program's pipe: stop when it closes",
    )
    args = parser.parse_args(argv)

    try:
        if args.sites < 1:
            raise ValueError(f"--sites {args.sites}: need at least one site")
        benches = [
            SimBench.build(args.bench, time_factor=args.time_factor, bench_id=args.bench_id)
            for _ in range(args.sites)
        ]
        serials = args.duts.split(",") if args.duts else ([args.dut] if args.dut else [])
        if len(serials) > args.sites:
            raise ValueError(f"{len(serials)} DUT serials for {args.sites} sites")
        for bench, serial in zip(benches, serials, strict=False):
            bench.insert(serial, args.product)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with contextlib.ExitStack() as running:
        for site, bench in enumerate(benches, start=1):
            running.enter_context(bench)
            for role, resource in bench.resources().items():
                print(f"{role}@{site} {resource}" if len(benches) > 1 else f"{role} {resource}")
        print("READY", flush=True)

        def read_controls() -> None:
            for line in sys.stdin:
                reply = _control(benches, line)
                if reply:
                    print(reply, flush=True)
            if args.controlled:  # the controller is gone (ended or killed): so is its bench
                stop.set()

        if sys.stdin is not None:
            threading.Thread(target=read_controls, daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
