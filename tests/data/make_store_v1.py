"""Writes tests/data/store-v1.db: a store as the first release (store schema version 1) wrote
it, for the migration tests (tests/test_store.py, tests/test_report.py).

The store and registry code is taken from git (the commit before the store learned schema
version 2) into a temporary directory and imported from there, so the file is written by the
old code itself. What it holds:

- gate ``20261128T040927-v1gate`` (Staging, build 41, status violation) with its two load
  runs (Staging and Production, 100 samples each, compacted into column blocks);
- two verdicts in the old record format (``{"check_id": ..., **Verdict.to_record()}``, windows
  as text such as ``2026-11-28 04:09:28–04:09:37 UTC``): a pass judged by the Mann-Whitney
  judge (``details``) and a scale-rule violation;
- one finished validation request with the old status ``ok``.

Run from the repository root: ``python tests/data/make_store_v1.py`` (needs git and numpy).
"""

from __future__ import annotations

import importlib
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

REVISION = "ae28b12~1"
FILES = (
    "pytest_perfsig/errors.py",
    "pytest_perfsig/store/sqlite.py",
    "pytest_perfsig/registry/base.py",
    "pytest_perfsig/registry/sqlite.py",
)
PACKAGE = "perfsig_v1"  # the old package, under a name that cannot clash with the installed one

T0 = 1_795_838_967.0  # 2026-11-28 04:09:27 UTC
GATE = "20261128T040927-v1gate"
SVC = "SampleJSonService"
CMP = "StagingToProduction"


def window_text(start: float, end: float) -> str:
    """How the first release printed a window (its ``sources.base.Window.__str__``)."""
    first, last = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    end_fmt = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M:%S"
    return f"{first:%Y-%m-%d %H:%M:%S}–{last.strftime(end_fmt)} UTC"


def old_code(root: Path, into: Path) -> None:
    for name in FILES:
        text = subprocess.run(
            ["git", "show", f"{REVISION}:{name}"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        target = into / PACKAGE / Path(name).relative_to("pytest_perfsig")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for package in (into / PACKAGE, into / PACKAGE / "store", into / PACKAGE / "registry"):
        (package / "__init__.py").touch()


def record(check_id: str, **values: object) -> dict[str, object]:
    """A verdict record as the first release stored it: every key of its Verdict."""
    fields: dict[str, object] = {
        "status": "pass",
        "metric": "",
        "aggregate": "",
        "method": None,
        "unit": "",
        "source_env": "Staging",
        "compare_env": "Production",
        "message": "",
        "rule": "",
        "source_value": None,
        "compare_value": None,
        "limit": None,
        "source_samples": None,
        "compare_samples": None,
        "source_window": None,
        "compare_window": None,
        "details": None,
    }
    fields.update(values)
    return {"check_id": check_id, **fields}


def write(path: Path) -> None:
    sqlite_store = importlib.import_module(f"{PACKAGE}.store.sqlite")
    registry_base = importlib.import_module(f"{PACKAGE}.registry.base")
    registry_sqlite = importlib.import_module(f"{PACKAGE}.registry.sqlite")
    # The old code stamps gates and runs with time.time(): a clock at the gate's own times.
    now = [T0]
    sqlite_store.time = SimpleNamespace(time=lambda: now[0])
    store = sqlite_store.SqliteStore(path)
    for env, fail_every in (("Staging", 4), ("Production", 0)):
        run_id = f"{env}-v1run"
        store.create_run(
            sqlite_store.RunRecord(
                run_id=run_id,
                service=SVC,
                env=env,
                url="http://127.0.0.1:8081" if env == "Staging" else "http://127.0.0.1:8082",
                gate_id=GATE,
                build="41",
                locustfile="loadtests/staging.py",
                users=10,
                spawn_rate=10.0,
                duration_s=10.0,
                started_at=T0 - 0.5,
                ended_at=T0 + 10.5,
                status="completed",
                detail=f"{env} run",
            )
        )
        store.add_samples(
            [
                (
                    run_id,
                    T0 + k / 10,
                    SVC,
                    env,
                    "/api/invoke",
                    10.0 + k % 7,
                    0 if fail_every and k % fail_every == 0 else 1,
                    500 if fail_every and k % fail_every == 0 else 200,
                )
                for k in range(100)
            ]
        )
        store.compact_run(run_id)
        now[0] = T0 + 10.5
        store.finish_run(run_id, "completed", "100 requests")
    # The judged window: from the warm-up's end (1 s) to the last request.
    window = window_text(T0 + 1.0, T0 + 9.9)
    now[0] = T0 - 1.0
    store.create_gate(GATE, "monspec.json", "Staging", "41")
    verdicts = [
        record(
            f"{CMP}::service.responsetime[p90]",
            metric="service.responsetime",
            aggregate="p90",
            unit="ms",
            message="service.responsetime p90: shift +0.0 ms, not significant",
            rule="mannwhitney (exact, increase): p < 0.05 and shift beyond max(2 ms abs, 30% of Production)",
            source_value=15.0,
            compare_value=15.0,
            limit=4.5,
            source_samples=90,
            compare_samples=90,
            source_window=window,
            compare_window=window,
            details={"judge": "mannwhitney", "test": "exact", "p_value": 0.5, "shift": 0.0},
        ),
        record(
            f"{CMP}::service.failurerate[avg]",
            status="violation",
            metric="service.failurerate",
            aggregate="avg",
            unit="%",
            message="service.failurerate avg: Staging 24.4 % > limit 0.5 % (Production 0.0 % × 1.30 + 0.5 abs)",
            rule="upper: Production × 1.30 + 0.5 % abs",
            source_value=24.44,
            compare_value=0.0,
            limit=0.5,
            source_samples=90,
            compare_samples=90,
            source_window=window,
            compare_window=window,
        ),
    ]
    for verdict in verdicts:
        store.save_verdict(GATE, str(verdict["check_id"]), verdict)
    now[0] = T0 + 12.0
    store.finish_gate(
        GATE, "violation", {"counts": {"pass": 1, "violation": 1}, "problems": [verdicts[1]["message"]]}
    )
    registry = registry_sqlite.SqliteRegistry(store)
    request = registry_base.new_request(
        "payments-main", CMP, 5, "monspec.json", approval_action="ApproveStaging", now=T0 - 600
    )
    registry.register(request)
    assert registry.claim(request, "worker-1", T0, 600)
    assert registry.finish(
        request,
        "worker-1",
        registry_base.OK,
        results=verdicts[:1],
        reason=None,
        gate_id="20261128T035927-v1defer",
    )
    store.close()
    # The smallest file: the WAL folded in, small pages, no free ones; then WAL mode again,
    # as the old store left it.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA page_size=1024")
    db.execute("VACUUM")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    target = root / "tests" / "data" / "store-v1.db"
    with tempfile.TemporaryDirectory() as tmp:
        old_code(root, Path(tmp))
        sys.path.insert(0, tmp)
        scratch = Path(tmp) / "store-v1.db"
        write(scratch)
        target.write_bytes(scratch.read_bytes())
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
