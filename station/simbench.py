"""Start a simulated bench as its own process and hand out the resource strings it serves.

The station never imports the simulator: it runs `python -m sim_instruments serve` and reads the
`role resource` lines it prints, as an operator would read them off a real bench. What the
operator's hands do on a real bench (seat the inspection probe, clean a connector) the simulated
bench does on the control lines `SimulatedHands` sends when the operator answers a prompt.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from station.engine import Prompter
from station.errors import SimBenchError
from station.events import PromptRequested, RunEnded, RunStarted

START_TIMEOUT_S = 30.0


def end_process(process: subprocess.Popen[str]) -> None:
    """End a simulator process this station started: close its control pipe, terminate it
    (kill it when it has not ended 5 s later) and close its output pipes."""
    with contextlib.suppress(OSError):
        if process.stdin:
            process.stdin.close()
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    for stream in (process.stdout, process.stderr):
        with contextlib.suppress(OSError):
            if stream:
                stream.close()


class SimBenchProcess:
    def __init__(
        self,
        *,
        bench: str = "module",
        dut_serial: str | None = None,
        product: str = "800G-DR8",
        time_factor: float = 1.0,
        duts: list[str] | None = None,
        sites: int = 1,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "sim_instruments",
            "serve",
            "--bench",
            bench,
            "--time-factor",
            str(time_factor),
            "--product",
            product,
            "--sites",
            str(sites),
            "--controlled",  # the bench stops when this process's pipe closes, even on a crash
        ]
        if duts:
            self.args += ["--duts", ",".join(duts)]
        elif dut_serial:
            self.args += ["--dut", dut_serial]
        self.process: subprocess.Popen[str] | None = None
        self.resources: dict[str, str] = {}
        #: (role, site) -> resource string; site 1 on a single-site bench
        self.site_resources: dict[tuple[str, int], str] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._control_lock = threading.Lock()  # sites' threads send control lines too

    def start(self) -> dict[str, str]:
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise SimBenchError(
                    f"simulated bench did not start within {START_TIMEOUT_S:g} s"
                ) from None
            if line is None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                self.stop()
                raise SimBenchError(f"simulated bench exited: {stderr.strip()[-500:]}")
            if line == "READY":
                return self.resources
            role, _, resource = line.partition(" ")
            self.resources[role] = resource
            name, _, site = role.partition("@")
            self.site_resources[(name, int(site) if site else 1)] = resource

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout
        with contextlib.suppress(ValueError, OSError):  # closed by stop() while reading
            for line in stream:
                self._lines.put(line.strip())
        self._lines.put(None)

    def control(self, command: str, timeout_s: float = 5.0) -> str:
        """Send a control line (`insert ...`, `fault ...`) and return the bench's answer."""
        with self._control_lock:  # one command and its answer at a time
            if self.process is None or self.process.stdin is None:
                raise SimBenchError("simulated bench is not running")
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            try:
                reply = self._lines.get(timeout=timeout_s)
            except queue.Empty:
                raise SimBenchError(f"no answer to {command!r}") from None
        if reply is None or reply.startswith("error"):
            raise SimBenchError(f"{command!r}: {reply}")
        return reply

    def stop(self) -> None:
        if self.process is None:
            return
        end_process(self.process)
        self.process = None

    def __enter__(self) -> SimBenchProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The operator's answers the hands act on: the words of the prompts of sequences/inspection.py.
SEATED, CLEANED = "Seated", "Cleaned"


class SimulatedHands:
    """The simulation standing in for the operator's hands at the simulated bench.

    A bus subscriber (it learns each run's site from `RunStarted`) that wraps the station's
    prompter (`wrap`). A prompt whose only answer is "Seated" is an instruction to seat the
    inspection probe: the hands seat it on the connector the message names (the station's
    "jumper", else the module's receptacle) and answer it themselves, so that no operator is
    asked. Any other prompt goes to the operator; when the answer is "Cleaned", the simulated
    MPO cleaner runs over the connector under the probe. `control` sends one control line
    (`SimBenchProcess.control`, or a bench in the same process in tests) and returns its answer.
    """

    def __init__(self, control: Callable[[str], str]) -> None:
        self.control = control
        self._site: dict[str, int] = {}  # run id -> its site

    def __call__(self, event: object) -> None:
        if isinstance(event, RunStarted):
            self._site[event.run_id] = event.site
        elif isinstance(event, RunEnded):
            self._site.pop(event.run_id, None)

    def wrap(self, prompter: Prompter) -> Prompter:
        def ask(request: PromptRequested, abort: threading.Event) -> str | None:
            if request.choices == (SEATED,):
                connector = "jumper" if "jumper" in request.message.lower() else "dut"
                self._act(request, f"probe {connector}")
                return SEATED
            answer = prompter(request, abort)
            if answer == CLEANED:
                self._act(request, "clean")
            return answer

        return ask

    def _act(self, request: PromptRequested, line: str) -> None:
        self.control(f"{line} @{self._site.get(request.run_id, 1)}")
