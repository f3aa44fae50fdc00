"""The shipped pipeline, end to end, with AWS simulated by moto (in-process ``mock_aws``): the
gates run as the buildspec runs them (its pytest command, expanded by the shell with the variables
the template sets), against the real sample app on loopback, with the store persisted in moto's
S3 between gates (``--perfsig-store s3://...``), and each deployment made on moto's CodeDeploy and
recorded with ``perfsig deployment-event``.

1. Staging: deploy build 1, record it, gate (StagingToProductionHistory): no Production run has
   passed yet, so the first run is approved by policy.
2. Production: deploy build 1, record it, gate (ProductionToPreviousRun): first run, approved by
   policy.
3. Production again, build 1: compared with the run stored by step 2 (downloaded from S3): approved.
4. Production, build 2 (every second /api/invoke fails): compared with the stored passed run of
   step 3: rejected.
5. Staging, build 3 (the next execution): Staging against Production's latest passed run in the
   store (step 3's; step 4 did not pass), with no load on Production: approved.

The approvals go through a botocore Stubber: moto implements neither GetPipelineState nor
PutApprovalResult (tests/test_approval_hook.py does the same); each expected request pins the
decision sent.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpcore  # noqa: F401  (imported before pytester's in-process runs snapshot sys.modules)
import httpx  # noqa: F401
import pytest
import yaml
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pytest_perfsig.aws import clients
from pytest_perfsig.cli import main as perfsig
from pytest_perfsig.gate.policies import FIRST_RUN_APPROVED
from sample_app.launcher import RunningApp

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PIPELINE = "perfsig-pipeline"
APPLICATION = "perfsig-sample-app"
STORE_BUCKET = "perfsig-pipeline-store"
STORE = f"s3://{STORE_BUCKET}/perfsig/perfsig.db"
SOURCE_BUCKET = "perfsig-pipeline-source"
# Ten seconds of load per gate: on a busy machine Locust's first request comes a second or more
# after its --run-time clock starts, and a shorter load leaves the end of the judged window empty
# ("stopped answering"). The app's simulated latency dwarfs the machine's jitter.
LOAD = ["--perfsig-duration=10", "--perfsig-users=6", "--perfsig-spawn-rate=6"]
LATENCY_MS = 25.0


def template() -> dict[str, Any]:
    from tests.test_deploy_templates import _CfnLoader

    return yaml.load((DEPLOY / "pipeline.yaml").read_text(encoding="utf-8"), Loader=_CfnLoader)


def gate_variables(stage: str, stage_url: str) -> dict[str, str]:
    """The variables CodeBuild gives the gate of ``stage``: the project's, then the action's
    (as the template sets them, without a MetricSource), then CodeBuild's own."""
    from tests.test_deploy_templates import _environment, _sub_variables

    stages = {s["Name"]: s["Actions"] for s in template()["Resources"]["Pipeline"]["Properties"]["Stages"]}
    (gate,) = [a for a in stages[stage] if a["Name"] == f"Gate{stage}"]
    action = _environment(gate)
    if action["COMPARISON"] == "PLACEHOLDER":  # !If [HasMetricSource, same window, stored history]
        action["COMPARISON"] = _sub_variables(gate["Configuration"]["EnvironmentVariables"])["Comparison"][
            "Fn::If"
        ][2]
    assert action["STAGE_URL"] == "PLACEHOLDER"
    return {
        **yaml.safe_load((DEPLOY / "buildspec.yml").read_text())["env"]["variables"],
        "PERFSIG_STORE": STORE,
        "PERFSIG_SOURCE": "",
        **{k: v for k, v in action.items() if k != "PERFSIG_BUILD"},
        "STAGE_URL": stage_url,
        "CODEBUILD_BUILD_URL": f"https://console.example/codebuild/{stage}",
    }


def buildspec_command(variables: dict[str, str]) -> list[str]:
    """The buildspec's pytest command as the shell expands it (without ``pytest`` itself)."""
    (command,) = [
        c
        for c in yaml.safe_load((DEPLOY / "buildspec.yml").read_text())["phases"]["build"]["commands"]
        if c.lstrip().startswith("pytest ")
    ]
    script = f'set -- {command.removeprefix("pytest ")}; printf "%s\\0" "$@"'
    env = {"PATH": os.environ["PATH"], **{k: str(v) for k, v in variables.items()}}
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


# --------------------------------------------------------------------------- AWS, simulated


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("CODEBUILD_INITIATOR", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (STORE_BUCKET, SOURCE_BUCKET):
            s3.create_bucket(Bucket=bucket)
        codedeploy = boto3.client("codedeploy", region_name="us-east-1")
        codedeploy.create_application(applicationName=APPLICATION, computePlatform="Server")
        for group in ("Staging", "Production"):
            codedeploy.create_deployment_group(
                applicationName=APPLICATION,
                deploymentGroupName=group,
                serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
                ec2TagFilters=[{"Key": "Environment", "Value": group, "Type": "KEY_AND_VALUE"}],
            )
        yield


def upload_bundle(build: int) -> dict[str, Any]:
    """The source bundle of a build, as deploy/README.md builds it (appspec.yml at its root)."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as bundle:
        bundle.write(DEPLOY / "appspec.yml", "appspec.yml")
        for script in sorted((DEPLOY / "scripts").iterdir()):
            bundle.write(script, f"deploy/scripts/{script.name}")
        bundle.writestr("BUILD_NUMBER", f"{build}\n")
    key = f"app-build{build}.zip"
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=SOURCE_BUCKET, Key=key, Body=data.getvalue()
    )
    return {"revisionType": "S3", "s3Location": {"bucket": SOURCE_BUCKET, "key": key, "bundleType": "zip"}}


def deploy(
    stage: str, build: int, sample_app: Callable[..., RunningApp], running: dict[str, RunningApp]
) -> str:
    """DeployX (CodeDeploy on moto; the app itself started here), then RecordXDeployment:
    ``perfsig deployment-event`` into the persisted store. The deployment's id."""
    codedeploy = boto3.client("codedeploy", region_name="us-east-1")
    deployment_id = str(
        codedeploy.create_deployment(
            applicationName=APPLICATION, deploymentGroupName=stage, revision=upload_bundle(build)
        )["deploymentId"]
    )
    if stage in running:
        running.pop(stage).stop()
    running[stage] = sample_app(stage, build=build, latency_ms=LATENCY_MS)
    args = [
        "deployment-event",
        "--stage",
        stage,
        "--pipeline",
        PIPELINE,
        "--codedeploy-deployment-id",
        deployment_id,
        "--application",
        APPLICATION,
        "--deployment-group",
        stage,
        "--store",
        STORE,
    ]
    assert perfsig(args) == 0
    return deployment_id


# --------------------------------------------------------------------------- approvals


def _action(name: str, category: str, provider: str, run_order: int) -> dict[str, Any]:
    return {
        "name": name,
        "runOrder": run_order,
        "actionTypeId": {"category": category, "owner": "AWS", "provider": provider, "version": "1"},
    }


PIPELINE_DEFINITION = {
    "pipeline": {
        "name": PIPELINE,
        "roleArn": "arn:aws:iam::123456789012:role/pipeline",
        "version": 1,
        "artifactStore": {"type": "S3", "location": "artifacts"},
        "stages": [
            {"name": "Source", "actions": [_action("Source", "Source", "S3", 1)]},
            *[
                {
                    "name": stage,
                    "actions": [
                        _action(f"Deploy{stage}", "Deploy", "CodeDeploy", 1),
                        _action(f"Record{stage}Deployment", "Build", "CodeBuild", 2),
                        _action(f"Gate{stage}", "Build", "CodeBuild", 2),
                        _action(f"Approve{stage}", "Approval", "Manual", 2),
                    ],
                }
                for stage in ("Staging", "Production")
            ],
        ],
    },
}


class Summary:
    """Matches any summary, and keeps it."""

    value = ""

    def __eq__(self, other: object) -> bool:
        self.value = str(other)
        return True


@pytest.fixture
def codepipeline(monkeypatch: pytest.MonkeyPatch, aws: None) -> Iterator[Stubber]:
    client = boto3.client("codepipeline", region_name="us-east-1")
    stubber = Stubber(client)
    monkeypatch.setattr(clients, "codepipeline_client", lambda region=None: client)
    with stubber:
        yield stubber


def expect_decision(stubber: Stubber, stage: str, status: str) -> Summary:
    action = f"Approve{stage}"
    state = {
        "pipelineName": PIPELINE,
        "stageStates": [
            {
                "stageName": stage,
                "actionStates": [
                    {
                        "actionName": action,
                        "latestExecution": {"status": "InProgress", "token": f"token-{stage}"},
                    }
                ],
            }
        ],
    }
    stubber.add_response("get_pipeline", PIPELINE_DEFINITION, {"name": PIPELINE})
    stubber.add_response("get_pipeline_state", state, {"name": PIPELINE})
    summary = Summary()
    stubber.add_response(
        "put_approval_result",
        {"approvedAt": "2026-11-28T00:00:00Z"},
        {
            "pipelineName": PIPELINE,
            "stageName": stage,
            "actionName": action,
            "result": {"summary": summary, "status": status},
            "token": f"token-{stage}",
        },
    )
    return summary


# --------------------------------------------------------------------------- the store


def persisted(tmp_path: Path) -> sqlite3.Connection:
    """The store as it is in (moto's) S3 now."""
    target = tmp_path / "persisted.db"
    body = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket=STORE_BUCKET, Key="perfsig/perfsig.db"
    )
    target.write_bytes(body["Body"].read())
    return sqlite3.connect(f"file:{target}?mode=ro", uri=True)


def verdict_records(db: sqlite3.Connection, gate_id: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT record FROM verdicts WHERE gate_id = ?", (gate_id,)).fetchall()
    return [json.loads(row[0]) for row in rows]


# --------------------------------------------------------------------------- the flow


def test_the_pipeline_from_first_deployment_to_a_rejected_build(
    gate_dir: pytest.Pytester,
    codepipeline: Stubber,
    sample_app: Callable[..., RunningApp],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the verdict table shows its rule column, with the policy note
    shutil_copy(DEPLOY / "pipeline-monspec.json", gate_dir.path / "deploy" / "pipeline-monspec.json")
    running: dict[str, RunningApp] = {}
    deployments: list[tuple[str, str]] = []

    def gate(stage: str, build: int, decision: str) -> tuple[pytest.RunResult, Summary]:
        summary = expect_decision(codepipeline, stage, decision)
        args = buildspec_command(gate_variables(stage, running[stage].url))
        result = gate_dir.runpytest_inprocess(
            *args,
            *LOAD,
            f"--perfsig-pipeline={PIPELINE}",
            f"--perfsig-build=build-{build}",
            "-p",
            "no:cacheprovider",
        )
        codepipeline.assert_no_pending_responses()
        result.stdout.fnmatch_lines([f"*perfsig: {PIPELINE}/Approve{stage}: *{decision}*"])
        result.stdout.fnmatch_lines([f"*perfsig: store saved to {STORE}*"])
        return result, summary

    # 1. Staging, build 1: no Production run has passed yet.
    deployments.append(("Staging", deploy("Staging", 1, sample_app, running)))
    staging, summary = gate("Staging", 1, "Approved")
    assert staging.ret == pytest.ExitCode.OK, staging.stdout.str()
    staging.stdout.fnmatch_lines([f"*PASS*StagingToProductionHistory::*{FIRST_RUN_APPROVED}*"])
    assert "pass" in summary.value.lower()

    # 2. Production, build 1: its first gate.
    deployments.append(("Production", deploy("Production", 1, sample_app, running)))
    first, _ = gate("Production", 1, "Approved")
    assert first.ret == pytest.ExitCode.OK, first.stdout.str()
    first.stdout.fnmatch_lines([f"*PASS*ProductionToPreviousRun::*{FIRST_RUN_APPROVED}*"])

    # 3. Production, build 1 again: compared with the run step 2 stored (this pytest session
    # starts from the store in S3, as a new CodeBuild container would).
    second, _ = gate("Production", 1, "Approved")
    assert second.ret == pytest.ExitCode.OK, second.stdout.str()
    assert FIRST_RUN_APPROVED not in second.stdout.str()

    # 4. Production, build 2: rejected against the stored passed run.
    deployments.append(("Production", deploy("Production", 2, sample_app, running)))
    third, summary = gate("Production", 2, "Rejected")
    assert third.ret == pytest.ExitCode.TESTS_FAILED
    third.stdout.fnmatch_lines(
        ["*VIOLATION*ProductionToPreviousRun::/api/invoke::servicemethod.failurerate*"]
    )
    assert "violation" in summary.value.lower()

    # 5. Staging, the next build: compared with Production's stored history, not loaded.
    deployments.append(("Staging", deploy("Staging", 3, sample_app, running)))
    staging_next, _ = gate("Staging", 3, "Approved")
    assert staging_next.ret == pytest.ExitCode.OK, staging_next.stdout.str()
    assert "perfsig: Production:" not in staging_next.stdout.str()  # no load run for Production

    # Everything is in the persisted store; no working copy is left behind.
    with persisted(tmp_path) as db:
        gates = db.execute("SELECT gate_id, stage, build, status FROM gates ORDER BY started_at").fetchall()
        assert [(stage, build, status) for _, stage, build, status in gates] == [
            ("Staging", "build-1", "pass"),
            ("Production", "build-1", "pass"),
            ("Production", "build-1", "pass"),
            ("Production", "build-2", "violation"),
            ("Staging", "build-3", "pass"),
        ]
        staging_id, first_id, second_id, third_id, staging_next_id = (row[0] for row in gates)
        assert db.execute("SELECT env FROM runs WHERE gate_id = ?", (staging_next_id,)).fetchall() == [
            ("Staging",)
        ]
        for gate_id in (staging_id, first_id):
            judged = [r for r in verdict_records(db, gate_id) if r["status"] != "skipped"]
            # Every stored-run comparison was a first run; static limits are judged as usual.
            assert all(
                r["details"] == {"first_run": True, "policy": "approve", "reason": ANY}
                for r in judged
                if r["rule"] == FIRST_RUN_APPROVED
            )
            assert sum(r["rule"] == FIRST_RUN_APPROVED for r in judged) == len(judged) - 1
        (first_run,) = db.execute(
            "SELECT run_id FROM runs WHERE gate_id = ? AND env = 'Production'", (first_id,)
        ).fetchall()
        (second_run,) = db.execute(
            "SELECT run_id FROM runs WHERE gate_id = ? AND env = 'Production'", (second_id,)
        ).fetchall()
        baselines = {r["baseline"] for r in verdict_records(db, second_id) if r.get("baseline")}
        assert baselines == {f"run {first_run[0]}"}
        baselines = {r["baseline"] for r in verdict_records(db, third_id) if r.get("baseline")}
        assert baselines == {f"run {second_run[0]}"}
        baselines = {r["baseline"] for r in verdict_records(db, staging_next_id) if r.get("baseline")}
        assert baselines == {f"run {second_run[0]}"}  # Production's latest passed run
        events = db.execute(
            "SELECT env, pipeline, deployment_id, application, deployment_group, revision "
            "FROM deployment_events ORDER BY ts"
        ).fetchall()
    assert [(env, deployment) for env, _, deployment, _, _, _ in events] == deployments
    assert all(e[1] == PIPELINE and e[3] == APPLICATION and e[4] == e[0] for e in events)
    revisions = [json.loads(e[5])["s3Location"]["key"] for e in events]  # from GetDeployment
    assert revisions == ["app-build1.zip", "app-build1.zip", "app-build2.zip", "app-build3.zip"]
    assert not list((gate_dir.path / ".perfsig").rglob("*.db*"))


def shutil_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


class PutDenied:
    """S3 as a role without s3:PutObject sees it: reads from moto, every write refused."""

    def __init__(self) -> None:
        self.reads = boto3.client("s3", region_name="us-east-1")
        self.writes = boto3.client("s3", region_name="us-east-1")
        self.stubber = Stubber(self.writes)
        self.stubber.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
        self.stubber.activate()
        self.meta = self.reads.meta
        self.get_object = self.reads.get_object
        self.put_object = self.writes.put_object


def test_a_gate_whose_store_cannot_be_saved_is_rejected_and_keeps_its_results(
    gate_dir: pytest.Pytester,
    codepipeline: Stubber,
    sample_app: Callable[..., RunningApp],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A passing gate whose history cannot be saved is an error (as a verdict that could not be
    stored): the approval is rejected, the run exits 1, and the working file with everything the
    gate measured stays where the message says."""
    shutil_copy(DEPLOY / "pipeline-monspec.json", gate_dir.path / "deploy" / "pipeline-monspec.json")
    denied = PutDenied()
    monkeypatch.setattr(clients, "s3_client", lambda region=None: denied)
    running = {"Production": sample_app("Production", build=1, latency_ms=LATENCY_MS)}
    summary = expect_decision(codepipeline, "Production", "Rejected")
    args = buildspec_command(gate_variables("Production", running["Production"].url))
    result = gate_dir.runpytest_inprocess(
        *args, *LOAD, f"--perfsig-pipeline={PIPELINE}", "-p", "no:cacheprovider"
    )
    codepipeline.assert_no_pending_responses()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=7, skipped=1)  # every check passed...
    out = result.stdout.str()
    assert "for Production: ERROR" in out  # ...but the gate did not
    message = next(line for line in out.splitlines() if "was not saved" in line)
    assert (
        f"the store {STORE} was not saved: S3 PutObject {STORE} (us-east-1) failed: AccessDenied" in message
    )
    assert "needs s3:PutObject" in message
    kept = Path(message.rsplit(" are in ", 1)[1].strip())
    kept = kept if kept.is_absolute() else gate_dir.path / kept
    assert "was not saved" in summary.value
    with sqlite3.connect(f"file:{kept}?mode=ro", uri=True) as db:
        ((status, text),) = db.execute("SELECT status, summary FROM gates").fetchall()
        assert status == "error" and "was not saved" in text
        assert db.execute("SELECT COUNT(*) FROM verdicts WHERE status = 'pass'").fetchone()[0] == 7
        assert db.execute("SELECT COUNT(DISTINCT run_id) FROM sample_chunks").fetchone()[0] == 1
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=STORE_BUCKET).get("KeyCount") == 0  # nothing half-written
