"""Open load model: a constant arrival rate per endpoint, whatever the stage's response times.

PERFSIG_ARRIVAL_RATE requests per second go to each endpoint (default 10). One scheduling user
sends each request at its intended time in its own greenlet, so a slow answer never delays the
next send; the request's ``context`` carries that intended time, and the gate's capture
measures latency from it (no coordinated omission). Use it through
``pytest --perfsig-arrival-rate=R``, which selects this file and records the model.
"""

import os
import time

import gevent.pool
from locust import FastHttpUser, constant, task

RATE = float(os.environ.get("PERFSIG_ARRIVAL_RATE", "10"))
MAX_IN_FLIGHT = int(os.environ.get("PERFSIG_MAX_IN_FLIGHT", "1000"))
ENDPOINTS = [
    ("/", "/"),
    ("/version", "/version"),
    ("/api/echo?text=open", "/api/echo"),
    ("/api/invoke", "/api/invoke"),
]


class ArrivalScheduler(FastHttpUser):
    fixed_count = 1
    wait_time = constant(0)
    concurrency = 50  # connections of the client's pool

    @task
    def schedule(self) -> None:
        interval = 1.0 / (RATE * len(ENDPOINTS))
        in_flight = gevent.pool.Pool(size=MAX_IN_FLIGHT)
        start = time.time()
        sent = 0
        while True:
            intended = start + sent * interval
            delay = intended - time.time()
            if delay > 0:
                gevent.sleep(delay)
            path, name = ENDPOINTS[sent % len(ENDPOINTS)]
            in_flight.spawn(self.client.get, path, name=name, context={"perfsig_intended": intended})
            sent += 1
