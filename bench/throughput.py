"""How fast can the gate's load harness drive a target? Harness vs bare Locust vs wrk.

The target: the sample app with ``--latency-ms 0`` (as fast as it goes), one uvicorn worker,
on loopback, started once (twice in the duet design, below: one per side). Load comes from a
tight locustfile this bench writes to a temp dir: a ``FastHttpUser`` with
``wait_time = constant(0)`` requesting ``/version`` (no think time), ``--users`` users
(default 20), ``--duration`` seconds (default 10) per measurement:

- ``harness``:    the project's runner, ``run_load([LoadSpec(...)], store)``, what the gate runs:
                  Locust in a child process (``python -m pytest_perfsig.load.locust_main``) with
                  the raw-sample capture: every request through a pipe to this process, whose
                  writer thread stores it in SQLite;
- ``locust``:     bare ``python -m locust -f tight.py --headless -u N -r N -t Ds --host URL
                  --only-summary``: the same Locust, no harness, no capture;
- ``nocapture``:  the harness with ``PERFSIG_NO_CAPTURE=1`` (Locust child, no capture);
- ``wrk``:        ``wrk -t2 -c N -d Ds URL/version``: what the target gives a C load generator;
- ``processes1`` / ``processes2``: the harness with ``processes=1`` / ``processes=2`` and a
                  *busy* locustfile, the tight one plus ``--work-ms`` (default 2) of pure-Python
                  CPU work per request (a loop of integer multiply-adds whose iteration count
                  is calibrated in this process before the run). The work makes the load
                  generator the bottleneck, far below what the target can serve, so the ratio
                  shows how the harness scales with generator processes, not the target's limit.

A Locust rate is Locust's own count divided by Locust's own measured run time: the
``Aggregated`` line of the ``--only-summary`` table, whose req/s is requests / (last request -
start of the stats). So Locust's start-up and shut-down are outside every Locust rate, and the
harness's extra work around the load (store bookkeeping, compaction) too; the ``wall s`` column
shows the whole measurement. wrk's rate is its request count over its run time. Every
measurement runs once per round, ``--rounds`` rounds (default 8), the order rotated from round
to round so that none always comes first. A ratio is *paired*: computed within each round, and
the median over the rounds counts. On a shared VM the host's speed drifts by tens of % within
a minute (the CPU a request costs the target, which does the same work in every measurement,
shows it), so how the two runs of a ratio are paired decides what the bench can resolve.
Two designs (``--design``):

- ``duet`` (default; bench/duet.py): harness, locust and nocapture are compared two at a time,
  *side by side*. A second, identical target runs beside the first; each side (a load and the
  target it drives) has one CPU of its own, both start together, and while they run they trade
  CPUs every 0.5 s, so each side has each CPU for half of its time. Three pairs a round:
  harness with locust (``harness_vs_locust``, ``tail_p999_ratio``), harness with nocapture
  (``capture_overhead``), and locust with locust, an A/A pair, whose ratio should be 1 and whose
  spread is what one round resolves. From round to round each pair swaps CPUs, and every
  second round which side starts first: over 4 rounds, every arrangement once. wrk,
  processes1 and processes2 run alone on the whole machine (processes2 needs both CPUs), and
  so does a bare Locust run when wrk is there, for ``locust_vs_wrk``. Measured on the 2-core
  development VM, the A/A ratio of bare Locust spread from round to round (sd of its log) by
  11 % one run after the other, 3-5 % side by side on pinned CPUs, and 1-4 % trading CPUs
  (every run prints its own): the goals ask about 2-3 %.
- ``sequential``: every measurement alone on the whole machine, one after the other, the
  target and the load sharing both CPUs.

In the duet design the report adds, per pair, the ratio of what the target got of its CPU
(its CPU time over the run's wall time): on a full CPU that is what the load left to the
target, whatever that CPU's speed was, so it moves by about 1 % from round to round and
shows the harness's extra CPU even where the rates' spread hides it.
The table shows too, per measurement (medians): the CPU the target used and the CPU the load
generator used (the Locust processes or wrk, and this process: the runner, whose threads read
and store the capture's samples), in % of one core over the wall time and in CPU microseconds
per request (start-up included; ``runner``: the part spent in this process, with the run's
compaction at its end; in the duet design the side's own process, from its start signal,
with the runner's set-up for the run), and "other": user and system CPU of anything
else on the machine (from /proc/stat, softirq not counted). A measurement during which other
processes used more than 10 % of a core is noisy and is repeated (``--retries``, default 2):
the bench measures a shared machine, so run it when nothing else runs.

What limits each ratio on a 2-core machine (figures: quiet runs, see bench/README.md; in the
duet design each pair has one CPU where this says two, and every CPU-second the harness spends,
in Locust's process or in the runner, comes out of its own pair's):
- the target and the generator share the 2 cores. One uvicorn worker is one core at most, and
  so is one gevent Locust process (its hub thread runs every user and the request listeners,
  the capture's among them). Per request, the app and Locust cost about the same CPU (about
  230 and 220 us), so in the tight runs both run near a full core each and the machine is full:
  ``locust`` and ``harness`` are bounded by the target and the generator together;
- ``locust_vs_wrk``: wrk needs about 12 us of CPU per request, so the target gets a whole core
  and that core is the limit; the same rate as Locust (ratio about 1) means that here the
  target's one worker, not Locust, sets the rate. On a target with more cores, or on another
  machine, Locust's ~220 us per request (about 4,500 req/s per process) would be the limit;
- ``harness_vs_locust`` and ``capture_overhead``: on Locust's hub the capture costs a listener
  call per request and, per batch of FLUSH_EVERY_ROWS = 500 (or every FLUSH_EVERY_S = 0.5 s),
  packing it with ``marshal`` and one non-blocking write to the pipe (about 1.5 us of CPU per
  request in all, in isolation); reading and storing it (one column batch per write, about
  1 us per sample: bench/sample_insert.py) happens in the runner's process, on whatever core
  is free, and the compaction after Locust's exit (outside every Locust rate) about 2 us more.
  The ``load`` CPU columns count both: the Locust processes and this process.
  Against a real service (think time, latency) the generator is mostly idle and the same
  capture costs no throughput; ``nocapture`` runs the same child without the capture and
  should match ``locust``;
- ``tail_p999_ratio``: the 99.9th percentile of Locust's own response times (exact: every
  response time of the run, kept in memory by the tight locustfile and written out when Locust
  quits) in the ``harness`` runs over the ``locust`` runs, at the tight runs' rate, the
  highest of the bench. A capture that stalled the hub (a SQLite write or checkpoint on it)
  would show here first: every request in flight during a stall waits for it;
- ``processes2_vs_1``: ``--processes 2`` forks 2 workers plus a master (the master aggregates
  stats and, with the capture, sends the workers' sample batches on to the runner). Two workers at
  full speed want 2 cores; the target (a small fraction of a core at these rates: the
  ``target`` column) and the master want some too, so on 2 cores the ratio stays below 2 even
  with the generator as the bottleneck. The master's stats start before its workers spawn,
  which makes the processes2 rate about 3 % conservative (its ``run s`` is above the others').
  On N machines (``perfsig load-worker``) each worker brings its own cores and sends its
  samples in batches to the master, which passes them on to the runner (which stores them at
  about 1 us of CPU a sample), so the rate grows roughly linearly with the workers until the
  target saturates, or the master's one core does.

    python bench/throughput.py [--design duet|sequential] [--users 20] [--duration 10] [--rounds 8]
                               [--work-ms 2] [--retries 2] [--only harness,locust,nocapture]

wrk comes from the Debian package (``apt-get install wrk``); without it the wrk measurement is
skipped with a message and its ratio is ``nan``. The last line is machine-readable:
    throughput harness_vs_locust=R locust_vs_wrk=R capture_overhead=R processes2_vs_1=R tail_p999_ratio=R
harness_vs_locust = harness / locust, locust_vs_wrk = locust / wrk, capture_overhead =
harness / nocapture (below 1: slower with the capture), processes2_vs_1 = processes2 /
processes1, tail_p999_ratio = harness p99.9 / locust p99.9 (above 1: a longer tail with the
capture); each the median over the rounds of the round's ratio, to 2 decimals (nan for a
measurement left out with ``--only``).
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from duet import READY, can_pin, pin, run_duet, wait_for_go  # noqa: E402

from pytest_perfsig.errors import LoadError  # noqa: E402
from pytest_perfsig.load import capture  # noqa: E402
from pytest_perfsig.load.runner import LoadSpec, run_load  # noqa: E402
from pytest_perfsig.store import SqliteStore  # noqa: E402
from sample_app.launcher import RunningApp, start_app  # noqa: E402

T = TypeVar("T")

MEASUREMENTS = ("harness", "locust", "nocapture", "wrk", "processes1", "processes2")
# Run side by side in the duet design (each side with its own target on its own CPU); the
# others always run one after the other, on the whole machine.
DUET_PAIRS = (("harness", "locust"), ("harness", "nocapture"), ("locust", "locust"))
TIGHT_RUNS = ("harness", "locust", "nocapture")
TRADE_EVERY_S = 0.5  # the two sides of a duet trade CPUs this often (see bench/duet.py)
DEFAULT_ROUNDS = 8  # in the duet design: each pair twice in each arrangement (CPUs, start order)
NOISY_OTHER_CPU = 10.0  # % of a core used by other processes: above it, warn
PAUSE_S = 1.0  # between measurements: let the previous run's sockets and processes go

TIGHT = '''"""Tight loop: no think time, one cheap endpoint (written by bench/throughput.py).
Every response time is kept and written to $BENCH_LATENCY_FILE when Locust quits."""

import array
import os

from locust import FastHttpUser, constant, events, task

_TIMES = array.array("d")
_OUT = os.environ.get("BENCH_LATENCY_FILE")


@events.request.add_listener
def _keep(response_time, **_):
    _TIMES.append(response_time)


@events.quitting.add_listener
def _save(**_):
    if _OUT:
        with open(_OUT, "wb") as out:
            _TIMES.tofile(out)


class Tight(FastHttpUser):
    wait_time = constant(0)

    @task
    def version(self) -> None:
        self.client.get("/version", name="/version")
'''

BUSY = '''"""Tight loop plus CPU work per request: the load generator is the bottleneck
(written by bench/throughput.py; BENCH_WORK_ITERS iterations, about --work-ms of CPU)."""

import os

from locust import FastHttpUser, constant, task

ITERS = int(os.environ.get("BENCH_WORK_ITERS", "0"))


def work(iters: int) -> int:
    x = 0
    for i in range(iters):
        x += i * i
    return x


class Busy(FastHttpUser):
    wait_time = constant(0)

    @task
    def version(self) -> None:
        work(ITERS)
        self.client.get("/version", name="/version")
'''

# "Aggregated  <reqs>  <fails>(<pct>%) | avg min max med | <req/s> <failures/s>"
_AGGREGATED = re.compile(
    r"^\s*Aggregated\s+(\d+)\s+(\d+)\([\d.]+%\)\s*\|[^|]*\|\s*([\d.]+)\s+([\d.]+)\s*$", re.MULTILINE
)
_WRK = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def work(iters: int) -> int:
    """The busy locustfile's per-request work (same code, for calibration)."""
    x = 0
    for i in range(iters):
        x += i * i
    return x


def calibrate(work_ms: float) -> int:
    """Iterations of :func:`work` that take about ``work_ms`` of CPU here (best of 7)."""
    if work_ms <= 0:
        return 0
    probe = 200_000
    best = math.inf
    for _ in range(7):
        started = time.process_time()
        work(probe)
        best = min(best, time.process_time() - started)
    return max(1, round(probe * work_ms / 1000.0 / best))


@dataclass
class Sample:
    rate: float  # requests per second (nan when not measured)
    requests: int = 0
    failures: int = 0
    seconds: float = math.nan  # the tool's measured run time
    wall_s: float = math.nan
    captured: int | None = None  # samples the capture stored (harness with capture)
    p999_ms: float = math.nan  # 99.9th percentile of Locust's response times (tight runs)
    target_cpu: float = math.nan  # % of one core
    load_cpu: float = math.nan
    other_cpu: float = math.nan
    target_us: float = math.nan  # CPU microseconds per request
    load_us: float = math.nan
    runner_us: float = math.nan  # the part of load_us spent in this process (the runner)

    def account(self, wall: float, target: float, load: float, runner: float, other: float) -> None:
        """Record the CPU seconds the measurement used over ``wall`` seconds: the target's,
        the load's (``runner`` of it in the runner's process) and everything else's."""
        self.wall_s = wall
        self.target_cpu = 100.0 * target / wall
        self.load_cpu = 100.0 * load / wall
        self.other_cpu = 100.0 * max(0.0, other) / wall
        if self.requests:
            self.target_us = 1e6 * target / self.requests
            self.load_us = 1e6 * load / self.requests
            self.runner_us = 1e6 * runner / self.requests


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str = "rate") -> float:
        values = [getattr(s, attr) for s in self.samples]
        values = [v for v in values if v is not None and not math.isnan(v)]
        return statistics.median(values) if values else math.nan


def parse_locust(text: str) -> tuple[int, int, float, float]:
    """(requests, failures, req/s, run time s) from Locust's --only-summary output."""
    match = _AGGREGATED.search(text)
    if match is None:
        raise RuntimeError("no 'Aggregated' line in Locust's output:\n" + "\n".join(text.splitlines()[-15:]))
    requests, failures, rps = int(match[1]), int(match[2]), float(match[3])
    return requests, failures, rps, (requests / rps if rps else math.nan)


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (nan where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy: user + nice + system + steal; not idle,
    iowait, irq or softirq (the loopback network's softirq time belongs to the load, but to
    no process)."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        return (cpu[0] + cpu[1] + cpu[2] + cpu[7]) / TICK
    except (OSError, IndexError, ValueError):
        return math.nan


def own_cpu() -> tuple[float, float]:
    """(this process, its finished children): user + system CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU of the target, of the load (this bench's finished children, and this process: for
    the harness the runner, whose threads store the samples) and of everything else."""

    def __init__(self, target_pid: int) -> None:
        self.target_pid = target_pid

    def _read(self) -> tuple[float, float, float, float, float]:
        me, children = own_cpu()
        return time.monotonic(), process_cpu(self.target_pid), children, me, machine_busy()

    def measure(self, run: Callable[[], Sample]) -> Sample:
        before = self._read()
        sample = run()
        after = self._read()
        wall, target, load, me, busy = (b - a for a, b in zip(before, after, strict=True))
        load += me  # the capture's writer runs in the runner, here; bare Locust leaves it ~0
        sample.account(wall, target, load, me, busy - target - load)
        return sample


class Bench:
    def __init__(self, args: argparse.Namespace, work_dir: Path, url: str, store: SqliteStore) -> None:
        self.args = args
        self.work_dir = work_dir
        self.url = url
        self.store = store
        self.tight = work_dir / "tight.py"
        self.busy = work_dir / "busy.py"
        self.tight.write_text(TIGHT)
        self.busy.write_text(BUSY)
        self.iters = calibrate(args.work_ms)
        self.wrk = shutil.which("wrk")
        self.runs = 0
        self.cpus = sorted(os.sched_getaffinity(0))[:2] if can_pin() else []

    def harness(self, locustfile: Path, *, processes: int = 1, no_capture: bool = False) -> Sample:
        self.runs += 1
        log_dir = self.work_dir / "logs" / f"run{self.runs}"
        times = self.work_dir / f"times{self.runs}.bin"
        extra_env = {"BENCH_WORK_ITERS": str(self.iters), "BENCH_LATENCY_FILE": str(times)}
        if no_capture:
            extra_env[capture.ENV_NO_CAPTURE] = "1"
        spec = LoadSpec(
            service="bench",
            env=f"run{self.runs}",
            url=self.url,
            locustfile=str(locustfile),
            users=self.args.users,
            spawn_rate=self.args.users,
            duration_s=self.args.duration,
            extra_env=extra_env,
            processes=processes,
        )
        captured: int | None = None
        try:
            (result,) = run_load([spec], self.store, log_dir=log_dir)
            captured = result.requests
        except LoadError as exc:
            # Without the capture the store gets no samples, and the runner says so: expected.
            if not (no_capture and "sent no requests" in str(exc)):
                raise
        (log,) = log_dir.glob("*.log")
        requests, failures, rps, seconds = parse_locust(log.read_text(errors="replace"))
        return Sample(rps, requests, failures, seconds, captured=captured, p999_ms=p999(times))

    def locust(self) -> Sample:
        duration = max(1, round(self.args.duration))
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(self.tight),
            "--headless",
            "-u",
            str(self.args.users),
            "-r",
            str(self.args.users),
            "-t",
            f"{duration}s",
            "--host",
            self.url,
            "--only-summary",
        ]
        self.runs += 1
        times = self.work_dir / f"times{self.runs}.bin"
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            cwd=self.work_dir,
            check=False,
            env={**os.environ, "BENCH_LATENCY_FILE": str(times)},
        )
        if done.returncode != 0:
            raise RuntimeError(f"locust exited with {done.returncode}:\n{done.stderr[-2000:]}")
        requests, failures, rps, seconds = parse_locust(done.stdout + done.stderr)
        return Sample(rps, requests, failures, seconds, p999_ms=p999(times))

    def wrk_run(self) -> Sample:
        if self.wrk is None:
            return Sample(math.nan)
        duration = max(1, round(self.args.duration))
        connections = self.args.users
        command = [
            self.wrk,
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{duration}s",
            f"{self.url}/version",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
        match = _WRK.search(done.stdout)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        requests, seconds = int(match[1]), float(match[2]) * _WRK_UNITS[match[3]]
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
        return Sample(requests / seconds, requests, int(errors[1]) if errors else 0, seconds)

    def run(self, name: str) -> Sample:
        if name == "harness":
            return self.harness(self.tight)
        if name == "locust":
            return self.locust()
        if name == "nocapture":
            return self.harness(self.tight, no_capture=True)
        if name == "wrk":
            return self.wrk_run()
        if name == "processes1":
            return self.harness(self.busy, processes=1)
        if name == "processes2":
            return self.harness(self.busy, processes=2)
        raise ValueError(name)

    def duet(
        self, pair: tuple[str, str], cpus: Sequence[int], apps: Sequence[RunningApp], second_first: bool
    ) -> list[Sample]:
        """Run the two measurements of ``pair`` at the same time, side ``i`` on CPU
        ``cpus[i]`` against the target pinned there (``apps[j]`` runs on CPU ``self.cpus[j]``);
        ``second_first``: start the second side first (who starts first has a small edge).

        Each side is this script in ``--variant`` mode: its own runner, store and Locust, all on
        its CPU. A side's load CPU is what it reports (its own CPU and its children's, from its
        start signal on); the targets' and the machine's are read here around the run."""
        self.runs += 1
        commands = []
        targets = []
        for side, (name, cpu) in enumerate(zip(pair, cpus, strict=True)):
            app = apps[self.cpus.index(cpu)]
            targets.append(app)
            side_dir = self.work_dir / "duet" / f"run{self.runs}-{side}"
            side_dir.mkdir(parents=True)
            commands.append(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--variant",
                    name,
                    "--host",
                    app.url,
                    "--work-dir",
                    str(side_dir),
                    "--users",
                    str(self.args.users),
                    "--duration",
                    f"{self.args.duration:g}",
                    "--work-ms",
                    "0",  # the sides run tight measurements only: nothing to calibrate
                ]
            )
        before: list[float] = []

        def started() -> None:
            before.extend([time.monotonic(), machine_busy(), *(process_cpu(a.process.pid) for a in targets)])

        order = [1, 0] if second_first else [0, 1]
        done_in_order = run_duet(
            [commands[i] for i in order],
            [cpus[i] for i in order],
            dict(os.environ),
            on_start=started,
            companions=[targets[i].process.pid for i in order],
            trade_every_s=TRADE_EVERY_S,
            timeout_s=self.args.duration + 180,
        )
        finished = [done_in_order[order.index(i)] for i in range(2)]
        after = [time.monotonic(), machine_busy(), *(process_cpu(a.process.pid) for a in targets)]
        wall, busy, *target_s = (b - a for a, b in zip(before, after, strict=True))
        found = [side_result(output) for output in finished]
        loads = [(side.pop("load_s"), side.pop("runner_s")) for side in found]
        other = busy - sum(target_s) - sum(load for load, _ in loads)
        samples = [Sample(**side) for side in found]
        for sample, target, (load, runner) in zip(samples, target_s, loads, strict=True):
            sample.account(wall, target, load, runner, other)
        return samples


RESULT = "result "  # a side's result line: this, then the measurement as JSON


def side_result(output: str) -> dict[str, Any]:
    """The measurement a side printed (its last result line), or an error showing its output."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT):
            found: dict[str, Any] = json.loads(line[len(RESULT) :])
            return found
    raise RuntimeError(f"a duet side printed no result:\n{output[-2000:]}")


def run_variant(args: argparse.Namespace) -> int:
    """One side of a duet (``--variant NAME``): set up, print ``ready``, wait for ``go`` on
    stdin, run the measurement and print it as JSON on a result line, with the CPU this
    process and its children used from the start signal on (``load_s``) and this process
    alone (``runner_s``)."""
    work_dir = Path(args.work_dir)
    store = SqliteStore(work_dir / "bench.db")
    bench = Bench(args, work_dir, args.host, store)
    print(READY, flush=True)
    if not wait_for_go(sys.stdin.readline):
        return 2  # the duet went away before it started us
    me, children = own_cpu()
    sample = bench.run(args.variant)
    me_after, children_after = own_cpu()
    store.close()
    load = (me_after - me) + (children_after - children)
    print(RESULT + json.dumps({**asdict(sample), "load_s": load, "runner_s": me_after - me}), flush=True)
    return 0


def p999(path: Path) -> float:
    """The 99.9th percentile (ms, exact) of the response times a tight run wrote; nan when the
    run wrote none (the busy locustfile keeps none)."""
    if not path.exists():
        return math.nan
    times = array.array("d")
    times.frombytes(path.read_bytes())
    path.unlink()
    if not times:
        return math.nan
    ordered = sorted(times)
    rank = 0.999 * (len(ordered) - 1)  # linear between the closest ranks, as numpy's default
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# name on the last line: (numerator, denominator, what is compared)
RATIOS = {
    "harness_vs_locust": ("harness", "locust", "rate"),
    "locust_vs_wrk": ("locust", "wrk", "rate"),
    "capture_overhead": ("harness", "nocapture", "rate"),
    "processes2_vs_1": ("processes2", "processes1", "rate"),
    "tail_p999_ratio": ("harness", "locust", "p999_ms"),
}


def paired(a: Series, b: Series, attr: str) -> list[float]:
    """The ratio a / b of each round in which both were measured."""
    pairs = zip(a.samples, b.samples, strict=False)
    found = [ratio(getattr(x, attr), getattr(y, attr)) for x, y in pairs]
    return [r for r in found if not math.isnan(r)]


def spread(ratios: list[float]) -> tuple[float, float]:
    """(standard deviation of ln(ratio) from round to round, standard error of their median):
    how far one round's ratio wanders, and how far the printed median may be off (nan with
    fewer than 2 rounds)."""
    ratios = [r for r in ratios if r > 0]  # a side that served nothing has no log
    if len(ratios) < 2:
        return math.nan, math.nan
    sd = statistics.stdev(math.log(r) for r in ratios)
    return sd, 1.2533 * sd / math.sqrt(len(ratios))  # the median's SE under a normal spread


@dataclass
class Results:
    """What a run measured: one series per row of the table, and where each ratio comes from."""

    design: str
    rows: dict[str, Series] = field(default_factory=dict)
    # ratio name: (numerator row, denominator row, attribute compared)
    sources: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def row(self, label: str) -> Series:
        return self.rows.setdefault(label, Series(label))


def duet_label(pair: tuple[str, str], side: int) -> str:
    if pair[0] == pair[1]:
        return f"{pair[side]} [A/A {'ab'[side]}]"
    return f"{pair[side]} [with {pair[1 - side]}]"


def plan(design: str) -> dict[str, tuple[str, str, str]]:
    """Where each ratio of the last line comes from, by design (row labels)."""
    sources = {name: (a, b, attr) for name, (a, b, attr) in RATIOS.items()}
    if design == "duet":
        sources["harness_vs_locust"] = (
            duet_label(("harness", "locust"), 0),
            duet_label(("harness", "locust"), 1),
            "rate",
        )
        sources["tail_p999_ratio"] = (
            duet_label(("harness", "locust"), 0),
            duet_label(("harness", "locust"), 1),
            "p999_ms",
        )
        sources["capture_overhead"] = (
            duet_label(("harness", "nocapture"), 0),
            duet_label(("harness", "nocapture"), 1),
            "rate",
        )
    return sources


def report(results: Results, args: argparse.Namespace, iters: int) -> None:
    width = max([11, *(len(label) for label in results.rows)])
    print()
    print(
        f"{'':<{width}} {'req/s':>6} {'min':>6} {'max':>6} {'requests':>8} {'fails':>5} {'run s':>6} "
        f"{'wall s':>6} {'captured':>8}  {'CPU % of one core':^19}  {'CPU us/request':^20}  {'p99.9':>6}"
    )
    print(
        f"{'measurement':<{width}} {'median':>6} {'':>6} {'':>6} {'':>8} {'':>5} {'':>6} {'':>6} {'':>8}  "
        f"{'target':>6} {'load':>5} {'other':>5}  {'target':>6} {'load':>6} {'runner':>6}  {'ms':>6}"
    )
    for s in results.rows.values():
        rates = [x.rate for x in s.samples if not math.isnan(x.rate)]
        if not rates:
            print(f"{s.name:<{width}} {'nan':>6}  (not measured)")
            continue
        captured = [x.captured for x in s.samples if x.captured is not None]
        lost = sum(x.requests - x.captured for x in s.samples if x.captured is not None)
        kept = "-" if not captured else ("all" if lost == 0 else f"-{lost}")
        print(
            f"{s.name:<{width}} {s.median():6.0f} {min(rates):6.0f} {max(rates):6.0f} "
            f"{s.median('requests'):8.0f} {s.median('failures'):5.0f} {s.median('seconds'):6.2f} "
            f"{s.median('wall_s'):6.1f} {kept:>8}  "
            f"{s.median('target_cpu'):6.0f} {s.median('load_cpu'):5.0f} {s.median('other_cpu'):5.0f}  "
            f"{s.median('target_us'):6.0f} {s.median('load_us'):6.0f} {s.median('runner_us'):6.1f}  "
            f"{s.median('p999_ms'):6.1f}"
        )
    noise = max((s.median("other_cpu") for s in results.rows.values()), default=0.0)
    if noise > NOISY_OTHER_CPU:
        print(
            f"warning: other processes used up to {noise:.0f} % of a core during the measurements: "
            "the machine was not quiet, so the ratios are noisy"
        )
    print()
    print(
        "rounds (req/s): "
        + "; ".join(
            f"{s.name} " + " ".join(f"{x.rate:.0f}" for x in s.samples)
            for s in results.rows.values()
            if s.samples
        )
    )
    print(
        f"design={results.design} users={args.users} duration={args.duration:g}s rounds={args.rounds} "
        f"busy work={args.work_ms:g} ms ({iters} iterations) per request in processes1/processes2"
    )

    def ratios_of(a: str, b: str, attr: str) -> list[float]:
        if a not in results.rows or b not in results.rows:
            return []
        return paired(results.rows[a], results.rows[b], attr)

    per_round = {name: ratios_of(a, b, attr) for name, (a, b, attr) in results.sources.items()}
    print(
        "ratios per round: "
        + "; ".join(f"{name} " + " ".join(f"{r:.2f}" for r in rs) for name, rs in per_round.items())
    )
    spreads = {name: spread(rs) for name, rs in per_round.items()}
    print(
        "spread per round (sd of ln ratio) and the median's standard error: "
        + "; ".join(f"{name} {sd:.3f} {se:.3f}" for name, (sd, se) in spreads.items() if not math.isnan(sd))
    )
    if results.design == "duet":
        shares = {
            f"{pair[0]}/{pair[1]}": ratios_of(duet_label(pair, 0), duet_label(pair, 1), "target_cpu")
            for pair in DUET_PAIRS
        }
        print(
            "the target's share of its CPU, pair's first / second (median; sd of ln ratio): "
            + "; ".join(
                f"{name} {statistics.median(rs):.3f} ({spread(rs)[0]:.3f})"
                for name, rs in shares.items()
                if rs
            )
            + ": on a full CPU, what the load left to the target, whatever the CPU's speed"
        )
        aa_a, aa_b = duet_label(("locust", "locust"), 0), duet_label(("locust", "locust"), 1)
        aa = ratios_of(aa_a, aa_b, "rate")
        if aa:
            sd, se = spread(aa)
            print(
                f"A/A (bare Locust against bare Locust, side by side): median {statistics.median(aa):.3f}, "
                f"sd of ln ratio {sd:.3f}, standard error of the median {se:.3f}: what this run "
                "resolves, and the bias between the two sides (1 when none)"
            )
    else:
        print(
            "ratios of the medians (unpaired, for comparison): "
            + " ".join(
                f"{name}={ratio(results.rows[a].median(attr), results.rows[b].median(attr)):.2f}"
                for name, (a, b, attr) in results.sources.items()
                if a in results.rows and b in results.rows
            )
        )
    ratios = {name: statistics.median(rs) if rs else math.nan for name, rs in per_round.items()}
    print(
        f"harness / locust      {ratios['harness_vs_locust']:.2f}  (target >= 0.97)\n"
        f"locust / wrk          {ratios['locust_vs_wrk']:.2f}\n"
        f"harness / nocapture   {ratios['capture_overhead']:.2f}  (capture overhead, target >= 0.98)\n"
        f"processes 2 / 1       {ratios['processes2_vs_1']:.2f}  (target >= 1.3, generator-bound)\n"
        f"p99.9 harness / locust {ratios['tail_p999_ratio']:.2f}  (tail with the capture; target <= 1.10)"
    )
    print("throughput " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


def measure_alone(bench: Bench, meter: CpuMeter, results: Results, name: str, round_text: str) -> None:
    """One measurement on the whole machine, repeated while other processes make it noisy."""
    if name == "wrk" and bench.wrk is None:
        results.row(name).samples.append(Sample(math.nan))
        return
    for attempt in range(bench.args.retries + 1):
        time.sleep(PAUSE_S)
        sample = meter.measure(lambda: bench.run(name))
        noisy = sample.other_cpu > NOISY_OTHER_CPU
        print_sample(round_text, name, sample, noisy, attempt < bench.args.retries)
        if not noisy:
            break
    results.row(name).samples.append(sample)


def measure_duet(
    bench: Bench,
    apps: Sequence[RunningApp],
    results: Results,
    pair: tuple[str, str],
    cpus: Sequence[int],
    second_first: bool,
    round_text: str,
) -> None:
    """One duet of ``pair``, repeated while other processes make it noisy."""
    for attempt in range(bench.args.retries + 1):
        time.sleep(PAUSE_S)
        samples = bench.duet(pair, cpus, apps, second_first)
        noisy = samples[0].other_cpu > NOISY_OTHER_CPU
        for side, sample in enumerate(samples):
            first = (side == 1) == second_first
            label = f"{duet_label(pair, side)} cpu {cpus[side]}{' first' if first else ''}"
            print_sample(round_text, label, sample, noisy, attempt < bench.args.retries)
        if not noisy:
            break
    for side, sample in enumerate(samples):
        results.row(duet_label(pair, side)).samples.append(sample)


def print_sample(round_text: str, label: str, sample: Sample, noisy: bool, again: bool) -> None:
    print(
        f"{round_text} {label:<30} {sample.rate:6.0f} req/s "
        f"({sample.requests} requests in {sample.seconds:.2f} s; CPU % target "
        f"{sample.target_cpu:.0f}, load {sample.load_cpu:.0f}, other "
        f"{sample.other_cpu:.0f}; CPU us/request target {sample.target_us:.0f}, "
        f"load {sample.load_us:.0f}"
        + (f"; p99.9 {sample.p999_ms:.1f} ms)" if not math.isnan(sample.p999_ms) else ")")
        + (" noisy" + (", again" if again else "") if noisy else ""),
        flush=True,
    )


def rotated(items: Sequence[T], round_no: int) -> list[T]:
    """``items`` starting at a different one each round, so that none always comes first."""
    if not items:
        return []
    shift = (round_no - 1) % len(items)
    return [*items[shift:], *items[:shift]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20, help="Locust users / wrk connections (default 20)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--design",
        choices=("duet", "sequential"),
        default="duet",
        help="duet (default): harness, locust and nocapture compared side by side, each with its own "
        "target on its own CPU; sequential: one after the other on the whole machine",
    )
    parser.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help="measurements to run, comma-separated (default: all; in the duet design a pair runs when "
        "both of its measurements are chosen); the ratios of the others are nan",
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=2.0,
        help="CPU work per request in the processes1/processes2 locustfile (default 2)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help=f"repeat a measurement during which other processes used more than "
        f"{NOISY_OTHER_CPU:g} %% of a core, up to this many times (default 2)",
    )
    # One side of a duet, started by this script itself.
    parser.add_argument("--variant", choices=MEASUREMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return run_variant(args)
    if args.users < 1 or args.duration < 1 or args.rounds < 1:
        parser.error("--users, --duration and --rounds must be at least 1")
    chosen = [name for name in args.only.split(",") if name]
    unknown = sorted(set(chosen) - set(MEASUREMENTS))
    if unknown or not chosen:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    chosen = [name for name in MEASUREMENTS if name in chosen]
    design = args.design
    if design == "duet" and not can_pin():
        print("fewer than 2 CPUs to pin to (or no sched_setaffinity): the sequential design", flush=True)
        design = "sequential"
    pairs = [pair for pair in DUET_PAIRS if set(pair) <= set(chosen)] if design == "duet" else []
    unpaired = {name for name in chosen if name in TIGHT_RUNS} - {name for pair in pairs for name in pair}
    if design == "duet" and unpaired:
        parser.error(
            f"--only: in the duet design {', '.join(sorted(unpaired))} runs only beside another "
            "measurement (harness with locust or nocapture, locust with locust): choose its partner "
            "too, or --design sequential"
        )
    alone = [name for name in chosen if design == "sequential" or name not in TIGHT_RUNS]
    if design == "duet" and "wrk" in chosen and "locust" in chosen and shutil.which("wrk"):
        alone.insert(0, "locust")  # locust_vs_wrk compares two runs on the whole machine

    results = Results(design, sources=plan(design))
    for pair in pairs:
        for side in (0, 1):
            results.row(duet_label(pair, side))
    for name in MEASUREMENTS if design == "sequential" else alone:
        results.row(name)
    with tempfile.TemporaryDirectory(prefix="perfsig-bench-") as tmp:
        work_dir = Path(tmp)
        store = SqliteStore(work_dir / "bench.db")
        with (
            start_app("Staging", 1, work_dir, latency_ms=0) as app,
            start_app("Staging", 1, work_dir / "second", latency_ms=0) as second,
        ):
            bench = Bench(args, work_dir, app.url, store)
            if bench.wrk is None and "wrk" in chosen:
                print(
                    "wrk not found on PATH: the wrk measurement is skipped and locust_vs_wrk is nan "
                    "(Debian/Ubuntu: apt-get install wrk)",
                    flush=True,
                )
            meter = CpuMeter(app.process.pid)
            apps = (app, second)
            print(
                f"targets {app.url} and {second.url} (sample app, latency 0 ms, one uvicorn worker each); "
                f"{os.cpu_count()} CPUs; design {design}; {args.rounds} rounds of "
                + ", ".join([*(f"{a} with {b}" for a, b in pairs), *alone])
                + f"; {args.duration:g} s each",
                flush=True,
            )
            everywhere = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
            for round_no in range(1, args.rounds + 1):
                round_text = f"round {round_no}/{args.rounds}"
                if pairs:
                    for target, cpu in zip(apps, bench.cpus, strict=True):
                        pin(target.process.pid, {cpu})
                    for pair in rotated(pairs, round_no):
                        # Each pair swaps CPUs (and targets) from round to round, and which
                        # side starts first every other round: over 4 rounds, every combination.
                        shift = DUET_PAIRS.index(pair)
                        cpus = bench.cpus[::-1] if (round_no + shift) % 2 else bench.cpus
                        second_first = bool(((round_no - 1) // 2 + shift) % 2)
                        measure_duet(bench, apps, results, pair, cpus, second_first, round_text)
                    for target in apps:
                        pin(target.process.pid, everywhere)
                for name in rotated(alone, round_no):
                    measure_alone(bench, meter, results, name, round_text)
        store.close()
    report(results, args, bench.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
