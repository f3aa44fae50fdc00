"""The deployment templates: deploy/pipeline.yaml passes cfn-lint and has the original pipeline's
shape; deploy/buildspec.yml runs the gate, publishes its JUnit report and decides the approval.

cfn-lint is a dev dependency: without it the lint test is skipped locally and fails in CI
(``CI`` set), so a CI image that lacks it cannot silently skip the check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PIPELINE_TEMPLATE = DEPLOY / "pipeline.yaml"
BUILDSPEC = DEPLOY / "buildspec.yml"


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
    """The JSON inside a ``!Sub`` string, ``${...}`` replaced by placeholders."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return json.loads(re.sub(r"\$\{[^}]+\}", "PLACEHOLDER", text))


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
    variables = {v["name"]: v["value"] for v in _sub_json(gate["Configuration"]["EnvironmentVariables"])}
    assert variables["STAGE"] == stage
    assert variables["APPROVAL_ACTION"] == f"Approve{stage}"
    assert variables["STAGE_URL"] == "PLACEHOLDER"


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
    defaults = buildspec["env"]["variables"]
    assert defaults["APPROVAL_ACTION"] == "ApproveStaging" and defaults["STAGE"] == "Staging"
    assert defaults["MONSPEC"] == "monspec.json"
    install = " ".join(buildspec["phases"]["install"]["commands"])
    assert "pip install" in install and "[aws]" in install  # boto3 comes with the aws extra


def test_buildspec_publishes_the_junit_report_and_the_html(buildspec: dict[str, Any]) -> None:
    (report,) = buildspec["reports"].values()
    assert report["file-format"] == "JUNITXML"
    base = report.get("base-directory", ".")
    assert [f"{base}/{f}" for f in report["files"]] == ["reports/perfsig.xml"]
    artifacts = buildspec["artifacts"]
    assert "perfsig.html" in artifacts["files"] and artifacts["base-directory"] == "reports"


def test_pipeline_runs_this_buildspec(template: dict[str, Any]) -> None:
    (project,) = _resources(template, "AWS::CodeBuild::Project").values()
    assert project["Properties"]["Source"] == {"Type": "CODEPIPELINE", "BuildSpec": "deploy/buildspec.yml"}
    assert (DEPLOY.parent / project["Properties"]["Source"]["BuildSpec"]).is_file()
