"""Duet measurement: two load runs at the same time, each with its own target on its own CPU.

On a shared VM the host's speed drifts by tens of % within a minute, and a ratio of two runs
taken one after the other carries that drift. Run side by side, each pair (a target and the
load that drives it) on a CPU of its own, both runs see the same host at the same moment and
their ratio cancels most of it (duet benchmarking: Bulej, Horký, Tůma, Trubiani and
Wiesmann, "Duet Benchmarking: Improving Measurement Accuracy in the Cloud", Empirical
Software Engineering 25, 2020). The two CPUs of a VM do not run at the same speed either, each
at its own moment: so while both sides run, they trade CPUs every ``trade_every_s`` (each
side's processes and its target move together), and each side has each CPU for about half of
its time. On the 2-core development VM, the A/A ratio of bare Locust against bare Locust (8
rounds of 10 s) spread by 2.9 and 4.3 % with the pairs pinned, and by 2.2 and 2.3 % trading
CPUs; in the bench's own runs by 3.9-5.2 % pinned and 1.1-4.2 % trading. A spread taken from
8 rounds is itself uncertain by about a quarter: trading helps, by less than a factor of two.

This module only starts, pins, trades and stops the processes; what they measure is the
caller's. A side is a command that prints ``ready`` when it has done its start-up (imports,
store), waits for ``go`` on its stdin, runs its measurement and prints its result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence

READY = "ready"
GO = "go"


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


class _Side:
    def __init__(self, command: Sequence[str], cpu: int, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # A process group of its own: a stopped duet stops the side's Locust with it.
            start_new_session=True,
            # In the child before exec: the side and everything it starts run on this CPU.
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        self.lines: list[str] = []
        self.output = ""
        self.error: BaseException | None = None

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.strip() == READY:
                return
        raise RuntimeError(f"a duet side ended before it was ready:\n{''.join(self.lines)[-2000:]}")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(GO + "\n")
        self.process.stdin.close()

    def finish(self) -> None:
        """Read the rest of the side's output and reap it (from the side's reader thread)."""
        try:
            assert self.process.stdout is not None
            self.lines.extend(self.process.stdout)
            self.process.stdout.close()
            code = self.process.wait()
            self.output = "".join(self.lines)
            if code != 0:
                raise RuntimeError(f"a duet side exited with {code}:\n{self.output[-2000:]}")
        except BaseException as exc:  # re-raised by run_duet, in its caller's thread
            self.error = exc

    def kill(self) -> None:
        """Stop the side and whatever it started (its process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def run_duet(
    commands: Sequence[Sequence[str]],
    cpus: Sequence[int],
    env: dict[str, str],
    on_start: Callable[[], None] = lambda: None,
    companions: Sequence[int] = (),
    trade_every_s: float = 0.0,
    timeout_s: float = 600.0,
) -> list[str]:
    """Start each command on its CPU, wait until all are ready, put each ``companions``
    process (a side's target) on its side's CPU, call ``on_start``, start the sides together
    and return what each printed, in the order given. While both run they trade CPUs every
    ``trade_every_s`` (0: never). A side that fails, or a duet that takes longer than
    ``timeout_s`` in all, is an error, and no process of either side outlives it."""
    sides: list[_Side] = []
    readers: list[threading.Thread] = []
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        for side in sides:
            side.kill()

    watchdog = threading.Timer(timeout_s, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        for command, cpu in zip(commands, cpus, strict=True):
            sides.append(_Side(command, cpu, env))
        for side in sides:
            side.wait_ready()
        for pid, cpu in zip(companions, cpus, strict=False):
            pin(pid, {cpu})
        on_start()
        for side in sides:
            side.go()
        readers = [threading.Thread(target=side.finish, daemon=True) for side in sides]
        for reader in readers:
            reader.start()
        placed = list(cpus)
        # Trading stops when a side ends: the one left keeps the CPU it has.
        while trade_every_s > 0 and len(sides) == 2:
            readers[0].join(trade_every_s)
            if not all(reader.is_alive() for reader in readers):
                break
            placed.reverse()
            # Every process first, then the moves: the two loads share a CPU for microseconds.
            moves = [
                (pid, placed[index])
                for index, side in enumerate(sides)
                for pid in descendants(side.process.pid) + list(companions[index : index + 1])
            ]
            for pid, cpu in moves:
                pin(pid, {cpu})
        for reader in readers:
            reader.join()
        for side in sides:
            if side.error is not None:
                raise side.error
        return [side.output for side in sides]
    except BaseException as exc:
        if timed_out.is_set():
            raise RuntimeError(f"a duet did not finish within {timeout_s:g} s") from exc
        raise
    finally:
        watchdog.cancel()
        for side in sides:  # on an error: no side outlives the duet
            if side.process.returncode is None:
                side.kill()
        for reader in readers:
            reader.join(10)
        if not readers:  # stopped before the readers started: reap here
            for side in sides:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    side.process.wait(10)
                for pipe in (side.process.stdin, side.process.stdout):
                    if pipe is not None:
                        pipe.close()


def wait_for_go(read_line: Callable[[], str]) -> bool:
    """In a side: True when the duet said go (False: the parent went away first)."""
    return read_line().strip() == GO
