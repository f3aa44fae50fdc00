"""Load generation: Locust, always in its own process (its gevent patching must not reach
the pytest process), with every request's raw sample captured into the store."""
