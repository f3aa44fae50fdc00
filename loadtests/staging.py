"""Staging load: the original pipeline's test script, one loop of the app's main pages.

Each user requests /, /version, /api/echo and /api/invoke, then thinks for PERFSIG_THINK_S
seconds (default 0.5; the original looped every 5 s, far too slow for a gate of seconds).
Endpoint names carry no query string so that samples group by endpoint.
"""

import os
import random

from locust import FastHttpUser, between, task

THINK_S = float(os.environ.get("PERFSIG_THINK_S", "0.5"))


class StagingUser(FastHttpUser):
    wait_time = between(THINK_S * 0.5, THINK_S * 1.5)

    @task
    def main_loop(self) -> None:
        self.client.get("/", name="/")
        self.client.get("/version", name="/version")
        self.client.get(f"/api/echo?text=perfsig{random.randint(0, 999)}", name="/api/echo")
        self.client.get("/api/invoke", name="/api/invoke")
