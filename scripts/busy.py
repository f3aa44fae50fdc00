"""Run a command with CPU-burning processes beside it: the test suite must hold on a busy
machine (CI runners are noisy).

    python scripts/busy.py [--burners 2] [--runs 3] -- COMMAND...

Starts ``--burners`` processes that spin on a core each, runs COMMAND ``--runs`` times in a
row (stopping at the first failure) and stops the burners whatever happens. Exit code: the
first failing run's, else 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burners", type=int, default=2, help="CPU-burning processes (default 2)")
    parser.add_argument("--runs", type=int, default=1, help="times to run the command in a row (default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, args.burners))
    ]
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            code = subprocess.call(command)
            print(
                f"busy: run {run}/{args.runs} beside {len(burners)} burners: exit {code} "
                f"in {time.monotonic() - started:.0f} s",
                flush=True,
            )
            if code != 0:
                return code
        return 0
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


if __name__ == "__main__":
    sys.exit(main())
