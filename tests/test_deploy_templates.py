"""The deployment templates: deploy/pipeline.yaml passes cfn-lint and has the original pipeline's
shape; deploy/buildspec.yml runs the gate, publishes its JUnit report and decides the approval;
the store persists in S3 between builds; each deployment is recorded; deploy/appspec.yml and its
hooks start the sample app on a stage.

cfn-lint is a dev dependency: without it the lint test is skipped locally and fails in CI
(``CI`` set), so a CI image that lacks it cannot silently skip the check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_perfsig.monspec import load_monspec

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PIPELINE_TEMPLATE = DEPLOY / "pipeline.yaml"
BUILDSPEC = DEPLOY / "buildspec.yml"
EVENT_BUILDSPEC = DEPLOY / "buildspec-deployment-event.yml"
APPSPEC = DEPLOY / "appspec.yml"
STORE_URL = {"Fn::Sub": "s3://${StoreBucket}/${StoreKey}"}


# --------------------------------------------------------------------------- loading


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short intrinsic forms: ``!Ref X`` -> ``{"Ref": "X"}``,
    ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``, ``!Sub s`` -> ``{"Fn::Sub": s}``..."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(PIPELINE_TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)


@pytest.fixture(scope="module")
def buildspec() -> dict[str, Any]:
    data = yaml.safe_load(BUILDSPEC.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _stages(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    return {stage["Name"]: stage["Actions"] for stage in pipeline["Properties"]["Stages"]}


def _sub_json(value: Any) -> Any:
    """The JSON inside a ``!Sub`` string (or ``!Sub [string, variables]``), ``${...}`` replaced
    by placeholders."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    if isinstance(text, list):
        text = text[0]
    return json.loads(re.sub(r"\$\{[^}]+\}", "PLACEHOLDER", text))


def _sub_variables(value: Any) -> dict[str, Any]:
    """The variables of a ``!Sub [string, variables]``."""
    sub = value["Fn::Sub"]
    return sub[1] if isinstance(sub, list) else {}


def _environment(action: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["value"] for v in _sub_json(action["Configuration"]["EnvironmentVariables"])}


def _project_environment(project: dict[str, Any]) -> dict[str, Any]:
    return {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}


# --------------------------------------------------------------------------- cfn-lint


@pytest.fixture(scope="module")
def cfnlint_api() -> Any:
    try:
        import cfnlint.api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(
                "cfn-lint is not installed, and CI must lint deploy/pipeline.yaml: pip install cfn-lint"
            )
        pytest.skip("cfn-lint is not installed (pip install cfn-lint)")
    return cfnlint.api


def test_pipeline_template_passes_cfn_lint(cfnlint_api: Any) -> None:
    matches = cfnlint_api.lint_file(PIPELINE_TEMPLATE, cfnlint_api.ManualArgs(regions=["us-east-1"]))
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in errors)


def test_cfn_lint_catches_a_broken_template(cfnlint_api: Any, tmp_path: Path) -> None:
    """The lint test can fail: a table without its key schema is an error."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "Resources:\n  Table:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PAY_PER_REQUEST\n"
    )
    matches = cfnlint_api.lint_file(broken, cfnlint_api.ManualArgs(regions=["us-east-1"]))
    assert any(m.rule.id.startswith("E") for m in matches)


# --------------------------------------------------------------------------- the pipeline's shape


def test_pipeline_has_the_original_shape(template: dict[str, Any]) -> None:
    stages = _stages(template)
    assert list(stages) == ["Source", "Staging", "Production"]
    (source,) = stages["Source"]
    assert source["ActionTypeId"]["Provider"] == "S3"
    for stage in ("Staging", "Production"):
        kinds = {
            a["Name"]: (a["ActionTypeId"]["Category"], a["ActionTypeId"]["Provider"]) for a in stages[stage]
        }
        assert kinds == {
            f"Deploy{stage}": ("Deploy", "CodeDeploy"),
            f"Record{stage}Deployment": ("Build", "CodeBuild"),
            f"Gate{stage}": ("Build", "CodeBuild"),
            f"Approve{stage}": ("Approval", "Manual"),
        }


@pytest.mark.parametrize("stage", ["Staging", "Production"])
def test_gate_runs_beside_the_approval_it_decides(template: dict[str, Any], stage: str) -> None:
    """The gate can only decide an approval that is waiting while it runs: same runOrder, after
    the deployment; and the gate is told the approval's name."""
    actions = {a["Name"]: a for a in _stages(template)[stage]}
    deploy, gate, approve = actions[f"Deploy{stage}"], actions[f"Gate{stage}"], actions[f"Approve{stage}"]
    assert deploy["RunOrder"] < gate["RunOrder"] == approve["RunOrder"]
    variables = _environment(gate)
    assert variables["STAGE"] == stage
    assert variables["APPROVAL_ACTION"] == f"Approve{stage}"
    assert variables["STAGE_URL"] == "PLACEHOLDER"
    text = gate["Configuration"]["EnvironmentVariables"]["Fn::Sub"]
    text = text[0] if isinstance(text, list) else text
    assert f"${{{stage}Url}}" in text  # the stage's own URL...
    others = {"Staging", "Production"} - {stage}
    assert not any(f"${{{other}Url}}" in text for other in others)  # ...and no other environment's


def test_no_gate_puts_load_on_an_environment_it_does_not_test(
    template: dict[str, Any], buildspec: dict[str, Any]
) -> None:
    """The Staging gate never loads Production: the buildspec passes only the stage's URL, and
    the pipeline's monspec gives no environment a URL of its own."""
    args = _pytest_command(buildspec)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--perfsig-url"] == ["$STAGE=$STAGE_URL"]
    assert "COMPARE_URL" not in BUILDSPEC.read_text() and "COMPARE_URL" not in PIPELINE_TEMPLATE.read_text()
    monspec = load_monspec(ROOT / template["Parameters"]["MonspecPath"]["Default"])
    for entity in monspec.entities.values():
        assert all(env.url is None for env in entity.environments.values())


def test_each_gate_judges_a_comparison_of_the_pipeline_monspec(template: dict[str, Any]) -> None:
    """Staging: with a metric source, Production's monitoring in the same window; without one,
    Production's latest passed run from the store. Production: its own previous passed run. The
    stored-run comparisons approve the very first deployment by policy."""
    stages = {name: {a["Name"]: a for a in actions} for name, actions in _stages(template).items()}
    staging, production = stages["Staging"]["GateStaging"], stages["Production"]["GateProduction"]
    assert _environment(staging)["COMPARISON"] == "PLACEHOLDER"
    assert _sub_variables(staging["Configuration"]["EnvironmentVariables"]) == {
        "Comparison": {"Fn::If": ["HasMetricSource", "StagingToProduction", "StagingToProductionHistory"]}
    }
    assert template["Conditions"]["HasMetricSource"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "MetricSource"}, ""]}]
    }
    assert _environment(production)["COMPARISON"] == "ProductionToPreviousRun"
    path = template["Parameters"]["MonspecPath"]["Default"]
    assert path == "deploy/pipeline-monspec.json"
    (entity,) = load_monspec(ROOT / path).entities.values()
    comparisons = {c.name: c for c in entity.comparisons}
    same_window = comparisons["StagingToProduction"]
    assert (same_window.source, same_window.compare, same_window.baseline) == ("Staging", "Production", None)
    for name, source in (
        ("StagingToProductionHistory", "Staging"),
        ("ProductionToPreviousRun", "Production"),
    ):
        comparison = comparisons[name]
        assert (comparison.source, comparison.compare) == (source, "Production")
        assert comparison.baseline == "latest_passed" and comparison.first_run == "approve"


def test_the_store_persists_in_s3_between_builds(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    bucket = resources["StoreBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket" and bucket["DeletionPolicy"] == "Retain"
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    gate = _project_environment(resources["GateProject"])
    assert gate["PERFSIG_STORE"] == STORE_URL
    assert gate["PERFSIG_SOURCE"] == {"Ref": "MetricSource"}
    assert gate["PERFSIG_VERSION"] == {"Ref": "PerfsigVersion"}
    assert _project_environment(resources["DeploymentEventProject"])["PERFSIG_STORE"] == STORE_URL
    worker = resources["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker["PERFSIG_STORE"] == STORE_URL and worker["PERFSIG_STORE_WORKDIR"].startswith("/tmp/")
    # Exactly that object may be read and written, and the bucket listed (so that a store not
    # created yet is "missing", not "access denied"), by every role that opens the store.
    for role in ("GateRole", "DeploymentEventRole", "WorkerRole"):
        statements = {s["Sid"]: s for s in _statements(resources[role])}
        assert statements["Store"]["Action"] == ["s3:GetObject", "s3:PutObject"]
        assert statements["Store"]["Resource"] == {"Fn::Sub": "${StoreBucket.Arn}/${StoreKey}"}
        assert statements["StoreBucket"]["Action"] == "s3:ListBucket"
        assert statements["StoreBucket"]["Resource"] == {"Fn::GetAtt": ["StoreBucket", "Arn"]}
    assert template["Outputs"]["StoreUrl"]["Value"] == STORE_URL


@pytest.mark.parametrize("stage", ["Staging", "Production"])
def test_each_deployment_is_recorded_in_the_store(template: dict[str, Any], stage: str) -> None:
    """After each deploy, a CodeBuild action runs `perfsig deployment-event` for the stage's
    deployment group, writing to the persisted store: what self-healing rolls back from."""
    actions = {a["Name"]: a for a in _stages(template)[stage]}
    deploy, record = actions[f"Deploy{stage}"], actions[f"Record{stage}Deployment"]
    assert deploy["RunOrder"] < record["RunOrder"]
    assert record["Configuration"]["ProjectName"] == {"Ref": "DeploymentEventProject"}
    text = record["Configuration"]["EnvironmentVariables"]["Fn::Sub"]
    assert _environment(record)["STAGE"] == stage
    assert '"APPLICATION","value":"${Application}"' in text
    assert f'"DEPLOYMENT_GROUP","value":"${{{stage}DeploymentGroup}}"' in text
    group = template["Resources"][f"{stage}DeploymentGroup"]["Properties"]["DeploymentGroupName"]
    assert group == stage  # the sample app's stage is its deployment group's name
    project = template["Resources"]["DeploymentEventProject"]["Properties"]
    assert project["Source"] == {"Type": "CODEPIPELINE", "BuildSpec": "deploy/buildspec-deployment-event.yml"}
    granted = {a for s in _statements(template["Resources"]["DeploymentEventRole"]) for a in _actions(s)}
    assert {"codedeploy:GetDeploymentGroup", "codedeploy:GetDeployment"} <= granted
    pipeline_role = {s["Sid"]: s for s in _statements(template["Resources"]["PipelineRole"])}
    assert {"Fn::GetAtt": ["DeploymentEventProject", "Arn"]} in pipeline_role["Gate"]["Resource"]


def test_the_deployment_event_buildspec(template: dict[str, Any]) -> None:
    spec = yaml.safe_load(EVENT_BUILDSPEC.read_text(encoding="utf-8"))
    assert str(spec["version"]) == "0.2"
    (script,) = spec["phases"]["build"]["commands"]
    assert "aws deploy get-deployment-group" in script
    assert "deploymentGroupInfo.lastSuccessfulDeployment.deploymentId" in script
    command = shlex.split(script[script.index("perfsig deployment-event") :].replace("\\\n", " "))
    assert command[:2] == ["perfsig", "deployment-event"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {
        "--stage": "$STAGE",
        "--pipeline": "${CODEBUILD_INITIATOR#codepipeline/}",
        "--codedeploy-deployment-id": "$DEPLOYMENT_ID",
        "--application": "$APPLICATION",
        "--deployment-group": "$DEPLOYMENT_GROUP",
        "--store": "$PERFSIG_STORE",
    }
    assert spec["phases"]["install"]["commands"] == [
        'python -m pip install "pytest-perfsig[aws]==${PERFSIG_VERSION}"'
    ]
    assert spec["cache"]["paths"] == ["/root/.cache/pip/**/*"]


def test_validation_table(template: dict[str, Any]) -> None:
    (table,) = _resources(template, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert template["Parameters"][props["TableName"]["Ref"]]["Default"] == "BuildValidationRequests"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [
        {"AttributeName": "PipelineName", "KeyType": "HASH"},
        {"AttributeName": "Timestamp", "KeyType": "RANGE"},
    ]
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == {
        ("PipelineName", "S"),
        ("Timestamp", "N"),
    }


def test_scheduled_worker(template: dict[str, Any]) -> None:
    (function_name, function), *_ = _resources(template, "AWS::Lambda::Function").items()
    assert function["Properties"]["Handler"] == "pytest_perfsig.lambdas.worker_handler"
    assert set(function["Properties"]["Code"]) == {"S3Bucket", "S3Key"}
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["PERFSIG_REGISTRY"] == {"Fn::Sub": "dynamodb:${ValidationTable}"}  # see lambdas.py
    rules = [
        r
        for r in _resources(template, "AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    (rule,) = rules
    assert rule["Properties"]["ScheduleExpression"] == "rate(2 minutes)"
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [function_name, "Arn"]}
    (permission,) = _resources(template, "AWS::Lambda::Permission").values()
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    """No wildcard actions, no ``Resource: "*"``; approvals only on the two approval actions."""
    roles = _resources(template, "AWS::IAM::Role")
    for name, role in roles.items():
        for statement in _statements(role) if "Policies" in role["Properties"] else []:
            assert all("*" not in action for action in _actions(statement)), (name, statement)
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            assert "*" not in resources, (name, statement)
            if "codepipeline:PutApprovalResult" in _actions(statement):
                arns = sorted(r["Fn::Sub"].rsplit(":", 1)[1] for r in resources)
                assert arns == [
                    "${PipelineName}/Production/ApproveProduction",
                    "${PipelineName}/Staging/ApproveStaging",
                ]
    granted = {
        name: {a for s in _statements(role) for a in _actions(s)}
        for name, role in roles.items()
        if "Policies" in role["Properties"]
    }
    approval_calls = {
        "codepipeline:GetPipeline",
        "codepipeline:GetPipelineState",
        "codepipeline:PutApprovalResult",
    }
    assert approval_calls <= granted["GateRole"]
    assert approval_calls <= granted["WorkerRole"]
    assert {"dynamodb:Query", "dynamodb:UpdateItem", "codedeploy:CreateDeployment"} <= granted["WorkerRole"]
    assert not any(a.startswith("dynamodb:") for a in granted["GateRole"])


# --------------------------------------------------------------------------- buildspec


def _pytest_command(buildspec: dict[str, Any]) -> list[str]:
    commands = [c for c in buildspec["phases"]["build"]["commands"] if c.lstrip().startswith("pytest ")]
    assert len(commands) == 1, buildspec["phases"]["build"]["commands"]
    return shlex.split(commands[0])


def test_buildspec_runs_the_gate_and_decides_the_approval(buildspec: dict[str, Any]) -> None:
    assert str(buildspec["version"]) == "0.2"
    args = _pytest_command(buildspec)
    assert "--monspec=$MONSPEC" in args and "--stage=$STAGE" in args
    assert args[args.index("--perfsig-url") + 1] == "$STAGE=$STAGE_URL"
    assert args[args.index("--perfsig-approve") + 1] == "$APPROVAL_ACTION"
    assert "--junitxml=reports/perfsig.xml" in args
    assert "--perfsig-html=reports/perfsig.html" in args
    # Each only when its variable is set (test_buildspec_expands_like_codebuild_does).
    command = BUILDSPEC.read_text(encoding="utf-8")
    for variable, option in (
        ("PERFSIG_STORE", "--perfsig-store"),
        ("PERFSIG_SOURCE", "--perfsig-source"),
        ("COMPARISON", "--perfsig-comparison"),
    ):
        assert f'${{{variable}:+{option} "${variable}"}}' in command
    defaults = buildspec["env"]["variables"]
    assert defaults["APPROVAL_ACTION"] == "ApproveStaging" and defaults["STAGE"] == "Staging"
    assert defaults["MONSPEC"] == "deploy/pipeline-monspec.json"
    assert (ROOT / defaults["MONSPEC"]).is_file()


def test_buildspec_installs_the_plugin_pinned_and_caches_pip(
    buildspec: dict[str, Any], template: dict[str, Any]
) -> None:
    """The plugin at PERFSIG_VERSION, not the project under test (``-e .``); boto3 with the aws
    extra; pip's downloads cached between builds (buildspec paths + the project's local cache)."""
    install = buildspec["phases"]["install"]["commands"]
    assert install == ['python -m pip install "pytest-perfsig[aws]==${PERFSIG_VERSION}"']
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert buildspec["env"]["variables"]["PERFSIG_VERSION"] == version
    assert template["Parameters"]["PerfsigVersion"]["Default"] == version
    assert re.fullmatch(template["Parameters"]["PerfsigVersion"]["AllowedPattern"], version)
    assert buildspec["cache"]["paths"] == ["/root/.cache/pip/**/*"]
    for name in ("GateProject", "DeploymentEventProject"):
        assert template["Resources"][name]["Properties"]["Cache"] == {
            "Type": "LOCAL",
            "Modes": ["LOCAL_CUSTOM_CACHE"],
        }


def test_buildspec_expands_like_codebuild_does(buildspec: dict[str, Any]) -> None:
    """The command as the shell expands it: empty variables leave their options out."""
    (command,) = [c for c in buildspec["phases"]["build"]["commands"] if c.lstrip().startswith("pytest ")]
    env = {
        "PATH": os.environ["PATH"],
        **{k: str(v) for k, v in buildspec["env"]["variables"].items()},
        "STAGE_URL": "http://10.0.0.5:8080",
        "CODEBUILD_BUILD_URL": "https://build",
    }
    bare = _expand(command, env)
    assert (
        "--perfsig-store" not in bare
        and "--perfsig-source" not in bare
        and "--perfsig-comparison" not in bare
    )
    env.update(PERFSIG_STORE="s3://b/k.db", PERFSIG_SOURCE="prometheus://p:9090", COMPARISON="A B")
    full = _expand(command, env)
    assert full[full.index("--perfsig-store") + 1] == "s3://b/k.db"
    assert full[full.index("--perfsig-source") + 1] == "prometheus://p:9090"
    assert full[full.index("--perfsig-comparison") + 1] == "A B"
    assert full[full.index("--perfsig-url") + 1] == "Staging=http://10.0.0.5:8080"


def _expand(command: str, env: dict[str, str]) -> list[str]:
    script = f'set -- {command.removeprefix("pytest ")}; printf "%s\\0" "$@"'
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


def test_buildspec_publishes_the_junit_report_and_the_html(buildspec: dict[str, Any]) -> None:
    (report,) = buildspec["reports"].values()
    assert report["file-format"] == "JUNITXML"
    base = report.get("base-directory", ".")
    assert [f"{base}/{f}" for f in report["files"]] == ["reports/perfsig.xml"]
    artifacts = buildspec["artifacts"]
    assert "perfsig.html" in artifacts["files"] and artifacts["base-directory"] == "reports"


def test_pipeline_runs_these_buildspecs(template: dict[str, Any]) -> None:
    projects = _resources(template, "AWS::CodeBuild::Project")
    assert projects["GateProject"]["Properties"]["Source"] == {
        "Type": "CODEPIPELINE",
        "BuildSpec": "deploy/buildspec.yml",
    }
    for project in projects.values():
        assert (DEPLOY.parent / project["Properties"]["Source"]["BuildSpec"]).is_file()


# --------------------------------------------------------------------------- appspec


@pytest.fixture(scope="module")
def appspec() -> dict[str, Any]:
    data = yaml.safe_load(APPSPEC.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_appspec_structure(appspec: dict[str, Any]) -> None:
    """CodeDeploy's EC2/on-premises appspec: version 0.0 (a number in YAML), linux, the bundle
    copied, and hooks whose scripts exist in the bundle and are executable."""
    assert appspec["version"] == 0.0 and appspec["os"] == "linux"
    assert appspec["files"] == [{"source": "/", "destination": "/opt/perfsig-sample-app"}]
    hooks = appspec["hooks"]
    assert set(hooks) == {"ApplicationStop", "AfterInstall", "ApplicationStart", "ValidateService"}
    for name, steps in hooks.items():
        for step in steps:
            script = ROOT / step["location"]  # locations are relative to the bundle's root
            assert script.is_file(), (name, step)
            assert os.access(script, os.X_OK), f"{script} is not executable"
            assert 0 < step["timeout"] <= 3600
            assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    start = (ROOT / hooks["ApplicationStart"][0]["location"]).read_text()
    assert '-m sample_app --stage "$STAGE"' in start
    assert 'STAGE="${DEPLOYMENT_GROUP_NAME:-Staging}"' in (DEPLOY / "scripts" / "app.env").read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.e2e
def test_appspec_hooks_start_validate_and_stop_the_app(appspec: dict[str, Any], tmp_path: Path) -> None:
    """The hooks as CodeDeploy runs them for the Production group, against this checkout (its
    virtualenv instead of the one AfterInstall builds), on loopback."""
    port = _free_port()
    env = {
        **os.environ,
        "DEPLOYMENT_GROUP_NAME": "Production",
        "PERFSIG_APP_DIR": str(ROOT),
        "PERFSIG_APP_VENV": str(Path(sys.executable).parent.parent),
        "PERFSIG_APP_HOST": "127.0.0.1",
        "PERFSIG_APP_PORT": str(port),
        "PERFSIG_APP_RUN_DIR": str(tmp_path / "run"),
        "PERFSIG_APP_LOG_DIR": str(tmp_path / "log"),
        "BUILD_NUMBER": "3",
    }

    def hook(name: str) -> subprocess.CompletedProcess[str]:
        (step,) = appspec["hooks"][name]
        return subprocess.run(
            [str(ROOT / step["location"])], env=env, capture_output=True, text=True, timeout=60
        )

    assert hook("ApplicationStop").returncode == 0  # nothing running yet: nothing to stop
    try:
        started = hook("ApplicationStart")
        assert started.returncode == 0, started.stderr
        validated = hook("ValidateService")
        assert validated.returncode == 0, validated.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as answer:
            assert json.loads(answer.read()) == {"build": 3, "stage": "Production", "production": True}
    finally:
        stopped = hook("ApplicationStop")
    assert stopped.returncode == 0 and not (tmp_path / "run" / "app.pid").exists()
    env["PERFSIG_APP_VALIDATE_TRIES"] = "2"
    assert hook("ValidateService").returncode == 1  # and a stage that does not answer fails validation
