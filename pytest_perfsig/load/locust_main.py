"""Entry point of the Locust process: ``python -m pytest_perfsig.load.locust_main <locust args>``.

Works with any plain locustfile: the sample capture and the open load model
(``--perfsig-arrival-rate``, see :mod:`.arrivals`) are attached here, not in the locustfile.
"""

from __future__ import annotations

import atexit
import sys


def main() -> int:
    import locust  # noqa: F401  (patches this process with gevent, as Locust expects)
    from locust import events
    from locust.main import main as locust_main

    from . import arrivals, inflight
    from .capture import install_from_environment

    arrivals.install(events)
    inflight.install(events)
    capture = install_from_environment(events)
    if capture is not None:
        atexit.register(capture.finish)  # rows of requests that finish after quitting, the end mark
    sys.argv[0] = "locust"
    try:
        locust_main()  # type: ignore[no-untyped-call]
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
