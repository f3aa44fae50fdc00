"""Production "real users": the staging loop plus another invoke, as in the original system.

Think time PERFSIG_THINK_S (default 0.5 s), as for staging.
"""

import os
import random

from locust import FastHttpUser, between, task

THINK_S = float(os.environ.get("PERFSIG_THINK_S", "0.5"))


class RealUser(FastHttpUser):
    wait_time = between(THINK_S * 0.5, THINK_S * 1.5)

    @task
    def visit(self) -> None:
        self.client.get("/", name="/")
        self.client.get("/version", name="/version")
        self.client.get(f"/api/echo?text=user{random.randint(0, 999)}", name="/api/echo")
        self.client.get("/api/invoke", name="/api/invoke")
        self.client.get("/api/invoke", name="/api/invoke")
