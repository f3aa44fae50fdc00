"""The demo gate: start the sample app as Staging (build BUILD, default 2) and Production
(build 1) on free loopback ports, run the performance gate for Staging, stop the apps.

    python scripts/demo.py [--build N] [pytest args...]

Exit code: the gate's (0 approved, 1 rejected, other: could not judge).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sample_app.launcher import start_app  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--build",
        type=int,
        default=int(os.environ.get("BUILD", "2")),
        help="build deployed to Staging (env BUILD; default 2, the bad one)",
    )
    parser.add_argument("--production-build", type=int, default=1)
    args, pytest_args = parser.parse_known_args()
    work = ROOT / ".perfsig" / "demo"
    print(
        f"demo: starting sample_app Staging build {args.build} and Production build {args.production_build}",
        flush=True,
    )
    with (
        start_app("Staging", args.build, work) as staging,
        start_app("Production", args.production_build, work) as production,
    ):
        print(f"demo: Staging at {staging.url}, Production at {production.url}", flush=True)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "--monspec=monspec.json",
            "--stage=Staging",
            f"--perfsig-url=Staging={staging.url}",
            f"--perfsig-url=Production={production.url}",
            f"--perfsig-build={args.build}",
            f"--junitxml={work / 'junit.xml'}",
            f"--perfsig-html={work / 'report.html'}",
            *pytest_args,
        ]
        print("demo: " + " ".join(command[2:]), flush=True)
        code = subprocess.call(command, cwd=ROOT)
    verdict = {0: "APPROVED", 1: "REJECTED"}.get(code, f"NOT JUDGED (pytest exit code {code})")
    print(
        f"demo: build {args.build} on Staging: {verdict}; report {work / 'report.html'}, "
        f"JUnit XML {work / 'junit.xml'}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
