"""One place decides a gate's outcome: a gate whose verdicts could not be stored is an error on
every path, and no path sends ``Approved`` for it.

Storage fails for real: a trigger in the SQLite file aborts every insert into the verdicts
table, as a full disk or a broken file would. CodePipeline is a botocore Stubber (moto has
neither GetPipelineState nor PutApprovalResult); it pins the decision that is sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpcore  # noqa: F401  (imported before pytester's in-process runs snapshot sys.modules)
import httpx  # noqa: F401
import pytest
from botocore.stub import ANY, Stubber

from pytest_perfsig.aws import clients
from pytest_perfsig.gate.deferred import codepipeline_approver, work_once
from pytest_perfsig.registry import new_request
from pytest_perfsig.registry.sqlite import SqliteRegistry
from pytest_perfsig.store import RunRecord, SqliteStore
from sample_app.launcher import RunningApp

NOW = 1_800_000_000.0
PIPELINE = "perfsig-demo"
MONSPEC = json.dumps(
    {
        "Svc": {
            "environments": {"Staging": {}, "Production": {}},
            "comparisons": [
                {
                    "name": "StagingToProduction",
                    "source": "Staging",
                    "compare": "Production",
                    "scalefactorperc": {"default": 30},
                }
            ],
            "perfsignature": [{"timeseries": "service.failurerate", "aggregate": "avg"}],
        }
    }
)
DEFINITION = {
    "pipeline": {
        "name": PIPELINE,
        "roleArn": "arn:aws:iam::123456789012:role/pipeline",
        "version": 1,
        "artifactStore": {"type": "S3", "location": "bucket"},
        "stages": [
            {
                "name": "Source",
                "actions": [
                    {
                        "name": "Source",
                        "actionTypeId": {
                            "category": "Source",
                            "owner": "AWS",
                            "provider": "S3",
                            "version": "1",
                        },
                    }
                ],
            },
            {
                "name": "Staging",
                "actions": [
                    {
                        "name": "ApproveStaging",
                        "actionTypeId": {
                            "category": "Approval",
                            "owner": "AWS",
                            "provider": "Manual",
                            "version": "1",
                        },
                    }
                ],
            },
        ],
    }
}
STATE = {
    "pipelineName": PIPELINE,
    "stageStates": [
        {
            "stageName": "Staging",
            "actionStates": [
                {
                    "actionName": "ApproveStaging",
                    "latestExecution": {"status": "InProgress", "token": "tok-1"},
                }
            ],
        }
    ],
}


def break_verdict_storage(path: Path) -> None:
    """Every later insert into the verdicts table fails, as on a full disk."""
    SqliteStore(path).close()  # the schema exists
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER no_room BEFORE INSERT ON verdicts "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )


@pytest.fixture
def codepipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, Stubber]]:
    client = boto3.client(
        "codepipeline", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    monkeypatch.setattr(clients, "codepipeline_client", lambda region=None: client)
    with Stubber(client) as stubber:
        yield client, stubber


def expect(stubber: Stubber, decision: str) -> None:
    stubber.add_response("get_pipeline", DEFINITION, {"name": PIPELINE})
    stubber.add_response("get_pipeline_state", STATE, {"name": PIPELINE})
    stubber.add_response(
        "put_approval_result",
        {"approvedAt": "2026-11-28T00:00:00Z"},
        {
            "pipelineName": PIPELINE,
            "stageName": "Staging",
            "actionName": "ApproveStaging",
            "result": {"summary": ANY, "status": decision},
            "token": "tok-1",
        },
    )


def healthy_window(store: SqliteStore) -> None:
    """Staging and Production both without failures: a gate that would pass."""
    for env in ("Staging", "Production"):
        store.create_run(RunRecord(run_id=env, service="Svc", env=env, started_at=NOW, status="completed"))
        store.add_samples([(env, NOW + 2.0 * k, "Svc", env, "/", 10.0, 1, 200) for k in range(100)])


def test_deferred_validation_whose_verdicts_cannot_be_stored_is_rejected(
    tmp_path: Path, codepipeline: tuple[object, Stubber]
) -> None:
    client, stubber = codepipeline
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    healthy_window(store)
    registry = SqliteRegistry(store)
    registry.register(
        new_request(PIPELINE, "StagingToProduction", 5, MONSPEC, now=NOW, approval_action="ApproveStaging")
    )
    break_verdict_storage(path)
    expect(stubber, "Rejected")

    (done,) = work_once(registry, store, worker="w", approve=codepipeline_approver(client), now=NOW + 301)

    stubber.assert_no_pending_responses()  # Rejected was sent, nothing else
    assert done.status == "error"
    assert "not stored" in (done.reason or "") and "disk is full" in (done.reason or "")
    assert registry.recent()[0].status == "error"
    # The verdict itself was a pass: only the failed storage makes the gate an error.
    assert [r["status"] for r in registry.recent()[0].results or []] == ["pass"]


def test_deferred_validation_that_passes_is_approved(
    tmp_path: Path, codepipeline: tuple[object, Stubber]
) -> None:
    # The same request with working storage: the rejection above is the storage fault's doing.
    client, stubber = codepipeline
    store = SqliteStore(tmp_path / "s.db")
    healthy_window(store)
    registry = SqliteRegistry(store)
    registry.register(
        new_request(PIPELINE, "StagingToProduction", 5, MONSPEC, now=NOW, approval_action="ApproveStaging")
    )
    expect(stubber, "Approved")
    (done,) = work_once(registry, store, worker="w", approve=codepipeline_approver(client), now=NOW + 301)
    stubber.assert_no_pending_responses()
    assert done.status == "pass"


@pytest.mark.e2e
def test_gate_whose_verdicts_cannot_be_stored_is_rejected_and_fails(
    gate_dir: pytest.Pytester, codepipeline: tuple[object, Stubber], sample_app: Callable[..., RunningApp]
) -> None:
    _, stubber = codepipeline
    gate_dir.makefile(".json", monspec=MONSPEC)
    store = gate_dir.path / "broken.db"
    break_verdict_storage(store)
    staging, production = sample_app("Staging", build=1), sample_app("Production", build=1)
    expect(stubber, "Rejected")
    result = gate_dir.runpytest_inprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        f"--perfsig-url=Staging={staging.url}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-duration=3",
        "--perfsig-users=4",
        f"--perfsig-store={store}",
        "--perfsig-approve=ApproveStaging",
        f"--perfsig-pipeline={PIPELINE}",
    )
    stubber.assert_no_pending_responses()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)  # the check itself passed; the gate did not
    result.stdout.fnmatch_lines(["*gate * for Staging: ERROR*", f"*{PIPELINE}/ApproveStaging: *Rejected*"])


TWO_CHECKS = json.dumps(
    {
        "Svc": {
            "environments": {"Staging": {}, "Production": {}},
            "comparisons": [
                {
                    "name": "StagingToProduction",
                    "source": "Staging",
                    "compare": "Production",
                    "scalefactorperc": {"default": 30},
                }
            ],
            "perfsignature": [
                {"timeseries": "service.failurerate", "aggregate": "avg"},
                {"timeseries": "service.responsetime", "aggregate": "p90", "_upperlimit": 1000},
            ],
        }
    }
)


@pytest.mark.e2e
def test_partial_gate_is_rejected_unless_partial_gates_may_pass(
    gate_dir: pytest.Pytester, codepipeline: tuple[object, Stubber], sample_app: Callable[..., RunningApp]
) -> None:
    _, stubber = codepipeline
    gate_dir.makefile(".json", monspec=TWO_CHECKS)
    staging, production = sample_app("Staging", build=1), sample_app("Production", build=1)
    args = [
        "--monspec=monspec.json",
        "--stage=Staging",
        f"--perfsig-url=Staging={staging.url}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-duration=3",
        "--perfsig-users=4",
        "--perfsig-approve=ApproveStaging",
        f"--perfsig-pipeline={PIPELINE}",
        "-k",
        "failurerate",
    ]

    expect(stubber, "Rejected")
    partial = gate_dir.runpytest_inprocess(*args)
    stubber.assert_no_pending_responses()
    partial.assert_outcomes(passed=1, deselected=1)
    partial.stdout.fnmatch_lines(
        [
            "*gate * for Staging: PASS*",
            "*partial: 1 of 2 checks selected*",
            f"*{PIPELINE}/ApproveStaging: Rejected*",
        ]
    )

    expect(stubber, "Approved")
    allowed = gate_dir.runpytest_inprocess(*args, "--perfsig-allow-partial")
    stubber.assert_no_pending_responses()
    assert allowed.ret == pytest.ExitCode.OK
    allowed.stdout.fnmatch_lines([f"*{PIPELINE}/ApproveStaging: Approved*"])


def test_a_gate_stopped_by_x_says_why_it_is_incomplete(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".json", monspec=TWO_CHECKS.replace('"Staging": {}', '"Staging": {"url": "http://127.0.0.1:9"}')
    )
    result = pytester.runpytest_subprocess("--monspec=monspec.json", "--stage=Staging", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*gate * for Staging: ERROR*",
            "*incomplete: 1 of 2 selected checks were not judged (the session stopped early*",
        ]
    )
