"""Duet measurement: two load runs at the same time, each with its own target on its own CPU.

On a shared VM the host's speed drifts by tens of % within a minute, and a ratio of two runs
taken one after the other carries that drift. Run side by side, each pair (a target and the
load that drives it) pinned to one CPU, both runs see the same host at the same moment and
their ratio cancels most of it (duet benchmarking: Bulej, Horký, Tůma, Trubiani and
Wiesmann, "Duet Benchmarking: Improving Measurement Accuracy in the Cloud", Empirical
Software Engineering 25, 2020). What is left is that the two CPUs of a VM do not run at the
same speed either, each at its own moment: so while they run, the two sides trade CPUs every
``trade_every_s`` (each side's processes and its target move together), and each side gets
both CPUs for half of its time. On the 2-core development VM that halved the spread of an A/A
ratio (bare Locust against bare Locust, 8 rounds of 10 s): 4.3 % pinned, 2.2 % trading every
0.5 s.

This module only starts, pins and synchronizes the processes; what they measure is the
caller's. A side is a command that prints ``ready`` when it has done its start-up (imports,
store), waits for one line on its stdin, runs its measurement and prints its result as the
last line of its stdout.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

READY = "ready"


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process ``pid`` to ``cpus`` (threads it starts later inherit it)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:  # the process ended meanwhile
        return
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of every thread, from /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as children:
                    todo.extend(int(child) for child in children.read().split())
        except OSError:  # gone meanwhile
            pass
    return found


def can_pin(cpus: int = 2) -> bool:
    """Whether this process may run on ``cpus`` distinct CPUs and pin to them (Linux)."""
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= cpus


@dataclass
class Finished:
    output: str  # the side's whole stdout
    cpu_s: float  # user + system CPU of the side and the children it waited for


class _Side:
    def __init__(self, command: Sequence[str], cpu: int, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # In the child before exec: the side and everything it starts run on this CPU.
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        self.lines: list[str] = []

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.strip() == READY:
                return
        raise RuntimeError(f"a duet side exited before it was ready:\n{''.join(self.lines)[-2000:]}")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.close()

    def finish(self) -> Finished:
        assert self.process.stdout is not None
        self.lines.extend(self.process.stdout)
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        output = "".join(self.lines)
        if self.process.returncode != 0:
            raise RuntimeError(f"a duet side exited with {self.process.returncode}:\n{output[-2000:]}")
        return Finished(output, usage.ru_utime + usage.ru_stime)


def run_duet(
    commands: Sequence[Sequence[str]],
    cpus: Sequence[int],
    env: dict[str, str],
    on_start: Callable[[], None] = lambda: None,
    companions: Sequence[int] = (),
    trade_every_s: float = 0.0,
) -> list[Finished]:
    """Start each command pinned to its CPU, wait until all are ready, call ``on_start``, start
    them together and return what each printed, in the order given. ``companions``: a process
    per side (its target) that moves with it when two sides trade CPUs, every
    ``trade_every_s`` (0: never)."""
    sides = [_Side(command, cpu, env) for command, cpu in zip(commands, cpus, strict=True)]
    try:
        for side in sides:
            side.wait_ready()
        on_start()
        for side in sides:
            side.go()
        results: list[Finished | BaseException | None] = [None] * len(sides)

        def collect(index: int) -> None:
            try:
                results[index] = sides[index].finish()
            except BaseException as exc:  # re-raised below, in the caller's thread
                results[index] = exc

        readers = [threading.Thread(target=collect, args=(i,)) for i in range(len(sides))]
        for reader in readers:
            reader.start()
        placed = list(cpus)
        while trade_every_s > 0 and len(sides) == 2 and any(reader.is_alive() for reader in readers):
            readers[0].join(trade_every_s)
            placed.reverse()
            for index, side in enumerate(sides):
                moving = descendants(side.process.pid) + list(companions[index : index + 1])
                for pid in moving:
                    pin(pid, {placed[index]})
        for reader in readers:
            reader.join()
        finished: list[Finished] = []
        for result in results:
            if not isinstance(result, Finished):
                raise result if isinstance(result, BaseException) else RuntimeError("a duet side was lost")
            finished.append(result)
        return finished
    finally:
        for side in sides:  # on an error: no side outlives the duet
            if side.process.returncode is None and side.process.poll() is None:
                side.process.kill()
                side.process.wait()
