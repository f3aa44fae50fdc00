"""The open load model inside the Locust processes: the tasks of the locustfile's User classes
started at a fixed total rate, whatever the stage's response times.

Semantics: ``--perfsig-arrival-rate R`` starts R *tasks* per second in total, evenly spaced,
each in its own greenlet at its intended time, so a slow answer never delays the next start.
A task is one ``@task`` function (tasks of nested TaskSets count one by one); tasks are picked
in proportion to their weight times their User class's weight. The built-in profile offers
one task per endpoint, so there R is requests per second. ``wait_time`` and load shapes do not
apply; ``on_start`` runs once for each User instance the scheduler creates (one per task in
flight at a time, reused afterwards).

The first request a task completes is measured from the task's intended start (the capture
takes the time from the greenlet, see :mod:`.capture`). Nothing scheduled vanishes: every
scheduler counts the tasks that came due, started, finished, failed, or were still unfinished
when the drain time after the schedule was over (those are stopped); the counts go to the
master and end in the file named by PERFSIG_SUMMARY, which the runner keeps with the run.

With several Locust processes (``--processes``, remote workers) every process gets one
scheduler and a share of the rate. ``python -m pytest_perfsig.load.arrivals --check FILE``
lists the tasks the open model would schedule (the runner asks before any load).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.pool
from locust import User, constant, task
from locust.exception import InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately, StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.user.task import TaskSet

from . import capture, inflight
from .profiles import (
    ARG_DRAIN,
    ARG_DURATION,
    ARG_RATE,
    ARG_SCHEDULERS,
    DEFAULT_DRAIN_S,
    ENV_SUMMARY,
    OpenCounts,
)

logger = logging.getLogger(__name__)

COUNTS_MESSAGE = "perfsig_open_counts"
MAX_IN_FLIGHT = int(os.environ.get("PERFSIG_MAX_IN_FLIGHT", "1000"))  # per scheduler
_TASK_END = (StopUser, InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately)


@dataclass(frozen=True)
class Scheduled:
    """One task the open model can start: on an instance of ``user_class``, through the nested
    TaskSets of ``path``, call ``function``."""

    label: str
    weight: float
    user_class: type[User]
    path: tuple[type[TaskSet], ...]
    function: Callable[[Any], Any]


def _flatten(
    user_class: type[User], tasks: Sequence[Any], weight: float, path: tuple[type[TaskSet], ...]
) -> Iterator[Scheduled]:
    # Locust repeats a task in ``tasks`` as often as its weight: each entry gets a share.
    share = weight / len(tasks) if tasks else 0.0
    for item in tasks:
        if isinstance(item, type) and issubclass(item, TaskSet):
            yield from _flatten(user_class, item.tasks, share, (*path, item))
        elif callable(item):
            name = getattr(item, "__name__", type(item).__name__)
            label = ".".join([user_class.__name__, *(t.__name__ for t in path), name])
            yield Scheduled(label, share, user_class, path, item)


def schedulable_tasks(user_classes: Sequence[type[User]], environment: Any) -> list[Scheduled]:
    """Every task of these User classes the open model can start, with its weight."""
    merged: dict[tuple[Any, ...], Scheduled] = {}
    for user_class in user_classes:
        class_weight = float(user_class.weight or 1)
        hook = getattr(user_class, "perfsig_open_tasks", None)
        if hook is not None:  # the built-in profile names its own tasks: one per endpoint
            named = list(hook(environment))
            total = sum(weight for _, weight, _ in named) or 1.0
            found = [  # shares of the class's weight, as for plain tasks
                Scheduled(label, class_weight * weight / total, user_class, (), function)
                for label, weight, function in named
            ]
        else:
            found = list(_flatten(user_class, user_class.tasks or [], class_weight, ()))
        for item in found:
            key = (item.user_class, item.path, item.label)
            if key in merged:
                item = replace(item, weight=merged[key].weight + item.weight)
            merged[key] = item
    return [item for item in merged.values() if item.weight > 0]


class _Rotation:
    """Smooth weighted round robin: every task gets its share, evenly spread, also in short runs."""

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = list(weights)
        self.total = sum(self.weights)
        self.current = [0.0] * len(self.weights)

    def next(self) -> int:
        for index, weight in enumerate(self.weights):
            self.current[index] += weight
        best = max(range(len(self.current)), key=self.current.__getitem__)
        self.current[best] -= self.total
        return best


class _UserPool:
    """User instances for the tasks in flight: one per running task, reused once it is done."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.idle: dict[type[User], list[User]] = {}

    def take(self, user_class: type[User]) -> User:
        idle = self.idle.get(user_class)
        if idle:
            return idle.pop()
        user = user_class(self.environment)
        user.on_start()
        return user

    def give(self, user: User) -> None:
        self.idle.setdefault(type(user), []).append(user)


# The counts of this process's schedulers and, on a master, of its workers'.
_TOTALS = OpenCounts()


def _report(environment: Any, counts: OpenCounts) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(COUNTS_MESSAGE, asdict(counts))
    else:
        _add(environment, counts)


def _on_worker_counts(environment: Any, msg: Any, **_: Any) -> None:
    _add(environment, OpenCounts.from_dict(msg.data))


def _add(environment: Any, counts: OpenCounts) -> None:
    _TOTALS.add(counts)
    if _TOTALS.schedulers >= max(1, int(environment.parsed_options.perfsig_open_schedulers or 1)):
        # Every schedule is done and drained: end the run now rather than at --run-time,
        # which leaves room for the longest drain.
        gevent.spawn_later(0.1, environment.runner.quit)


def _run_task(
    item: Scheduled, intended: float, pool: _UserPool, counts: OpenCounts, environment: Any
) -> None:
    user: User | None = None
    try:
        user = pool.take(item.user_class)
        capture.intend(intended)
        target: Any = user
        for taskset in item.path:
            target = taskset(target)
        item.function(target)
    except _TASK_END:
        pass
    except Exception as exc:
        counts.errors += 1
        environment.events.user_error.fire(user_instance=user, exception=exc, tb=exc.__traceback__)
        logger.error("task %s failed: %s", item.label, exc, exc_info=exc)
    capture.forget_intended()
    if user is not None:
        pool.give(user)
    counts.finished += 1


def run_schedule(environment: Any, source_classes: Sequence[type[User]]) -> None:
    """Start the tasks at their intended times for the scheduled duration, let the ones in
    flight finish within the drain time, stop the rest, and report the counts."""
    options = environment.parsed_options
    schedulers = max(1, int(options.perfsig_open_schedulers or 1))
    rate = float(options.perfsig_arrival_rate) / schedulers
    duration = float(options.perfsig_open_duration)
    drain = float(options.perfsig_open_drain if options.perfsig_open_drain is not None else DEFAULT_DRAIN_S)
    for user_class in source_classes:
        if environment.host:  # as Locust does for the classes it runs itself
            user_class.host = environment.host
    items = schedulable_tasks(source_classes, environment)
    rotation = _Rotation([item.weight for item in items])
    pool = _UserPool(environment)
    in_flight = gevent.pool.Group()
    counts = OpenCounts(schedulers=1)
    # Schedulers in other processes start their series shifted, so the total stays even.
    index = int(getattr(environment.runner, "worker_index", 0) or 0) % schedulers
    began = time.time()
    first = began + index / (rate * schedulers)
    try:
        while (intended := first + counts.scheduled / rate) < began + duration:
            delay = intended - time.time()
            if delay > 0:
                gevent.sleep(delay)
            counts.scheduled += 1
            item = items[rotation.next()]
            if len(in_flight) >= MAX_IN_FLIGHT:
                counts.dropped += 1
                continue
            counts.started += 1
            in_flight.spawn(_run_task, item, intended, pool, counts, environment)
        in_flight.join(timeout=drain)
    finally:
        stopping = len(in_flight)
        if stopping:
            logger.warning("%d tasks unfinished %g s after the schedule: stopped", stopping, drain)
        inflight.count_every_stopped()
        in_flight.kill(block=True, timeout=5)
        # Every started task either reached its end (finished, errors included) or not: counted
        # after the stop, so a task finishing while the others are stopped is counted once.
        counts.unfinished = counts.started - counts.finished
        _report(environment, counts)


class PerfsigArrivals(User):
    """The open model's scheduler: one per Locust process that generates load."""

    wait_time = constant(0)
    source_classes: list[type[User]] = []  # noqa: RUF012  (the locustfile's classes, set on init)

    @task
    def schedule(self) -> None:
        run_schedule(self.environment, self.source_classes)
        while True:  # the schedule is done; Locust stops this user when its run time is over
            gevent.sleep(3600)


def _options(parser: Any) -> None:
    group = parser.add_argument_group("perfsig open model")
    group.add_argument(ARG_RATE, type=float, default=None, help="tasks started per second in total")
    group.add_argument(ARG_DURATION, type=float, default=None, help="seconds of scheduled starts")
    group.add_argument(ARG_SCHEDULERS, type=int, default=1, help="Locust processes sharing the rate")
    group.add_argument(ARG_DRAIN, type=float, default=None, help="seconds to finish after the schedule")


def _on_init(environment: Any, runner: Any = None, **_: Any) -> None:
    source = [cls for cls in environment.user_classes if cls is not PerfsigArrivals]
    PerfsigArrivals.source_classes = source
    if isinstance(runner, WorkerRunner):
        # A worker learns the model from its master when the load starts: the master
        # decides whether it runs the locustfile's users or this scheduler.
        environment.user_classes.append(PerfsigArrivals)
        return
    if isinstance(runner, MasterRunner):
        runner.register_message(COUNTS_MESSAGE, _on_worker_counts)
    if getattr(environment.parsed_options, "perfsig_arrival_rate", None) is None:
        return
    if not schedulable_tasks(source, environment):
        sys.stderr.write("perfsig: the locustfile has no tasks the open model can schedule\n")
        raise SystemExit(3)
    environment.user_classes[:] = [PerfsigArrivals]
    environment.shape_class = None


def _on_quitting(environment: Any, **_: Any) -> None:
    path = os.environ.get(ENV_SUMMARY)
    options = environment.parsed_options
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    if getattr(options, "perfsig_arrival_rate", None) is None:
        return
    try:
        with open(path, "w") as summary:
            summary.write(_TOTALS.to_json())
    except OSError as exc:
        sys.stderr.write(f"perfsig: could not write the open model's counts to {path}: {exc}\n")


def install(events: Any) -> None:
    """Make the open model available in this Locust process (master, worker or local)."""
    events.init_command_line_parser.add_listener(_options)
    events.init.add_listener(_on_init)
    events.quitting.add_listener(_on_quitting)


def check(locustfile: str) -> list[dict[str, Any]]:
    """The tasks the open model would schedule from this locustfile, with their weights."""
    from locust.util.load_locustfile import load_locustfile

    user_classes, _ = load_locustfile(locustfile)
    environment = SimpleNamespace(parsed_options=None)
    items = schedulable_tasks(list(user_classes.values()), environment)
    return [{"task": item.label, "weight": item.weight} for item in items]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_perfsig.load.arrivals")
    parser.add_argument("--check", metavar="LOCUSTFILE", required=True)
    args = parser.parse_args(argv)
    print(json.dumps({"tasks": check(args.check)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
