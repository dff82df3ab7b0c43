"""template.yaml and the state machine: valid, linted, wired together, least privilege."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mlops.run_plan import PlanSettings
from tests.conftest import REPO
from tests.parts_support import missing_part
from tests.statemachine.harness import ASL, definition, placeholders
from tests.template_support import function_environment, template

BIN = REPO / ".venv" / "bin"
OFFLINE_AWS = {
    "SAM_CLI_TELEMETRY": "0",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def run(command: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **OFFLINE_AWS, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


def state_machine() -> dict[str, Any]:
    (machine,) = resources("AWS::Serverless::StateMachine").values()
    return machine["Properties"]


def test_sam_validate_lint() -> None:
    result = run([str(BIN / "sam"), "validate", "--lint", "--template", "template.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint() -> None:
    result = run([str(BIN / "cfn-lint"), "template.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_substituted_definition_passes_asl_validator(tmp_path: Path) -> None:
    path = tmp_path / "definition.json"
    path.write_text(definition())
    result = run([str(REPO / "node_modules" / ".bin" / "asl-validator"), "--json-path", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_definition_file_stays_valid_json_before_substitution() -> None:
    json.loads(ASL.read_text())  # placeholders only inside strings


def test_placeholders_and_substitutions_match_and_bind_every_task() -> None:
    substitutions = state_machine()["DefinitionSubstitutions"]
    assert placeholders(ASL.read_text()) == set(substitutions)
    functions = resources("AWS::Serverless::Function")
    for name, value in substitutions.items():
        if name.endswith("FunctionArn"):
            assert value == {"Fn::GetAtt": [f"{name.removesuffix('Arn')}", "Arn"]}
            assert f"{name.removesuffix('Arn')}" in functions
    states = json.loads(ASL.read_text())["States"]
    for state in states.values():
        if state["Type"] == "Task":
            assert re.fullmatch(r"\$\{[A-Za-z]+FunctionArn\}", state["Resource"])
    # Every pipeline function is a state (the inference function is behind the API).
    tasks = {
        s["Resource"][2:-1].removesuffix("Arn") for s in states.values() if s["Type"] == "Task"
    }
    assert tasks == set(functions) - {"ClassifyFunction"}


def _targets(state: dict[str, Any]) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    targets += [c["Next"] for c in state.get("Choices", [])]
    targets += [c["Next"] for c in state.get("Catch", [])]
    return [t for t in targets if t]


def test_every_transition_exists_and_every_state_is_reachable() -> None:
    asl = json.loads(ASL.read_text())
    states = asl["States"]
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        assert name in states, f"transition to missing state {name}"
        if name not in seen:
            seen.add(name)
            todo.extend(_targets(states[name]))
    assert seen == set(states)
    # JSONPath only, and only the state types moto's interpreter and the project allow.
    assert "QueryLanguage" not in asl
    allowed = {"Task", "Wait", "Choice", "Fail", "Succeed", "Pass"}
    assert {s["Type"] for s in states.values()} <= allowed
    for name, state in states.items():
        assert "Assign" not in state and ".sync" not in state.get("Resource", ""), name
        if state["Type"] == "Task":
            retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert {"AwsThrottlingError", "Lambda.TooManyRequestsException"} <= retried, name
        if state["Type"] == "Wait":
            # the configured poll, or the training loop's growing wait (mlops/polling.py)
            path = state["SecondsPath"]
            assert path.startswith("$.config.") or path == "$.training.next_poll_seconds", name


def test_retried_error_names_are_the_exception_classes() -> None:
    from mlops import errors

    states = json.loads(ASL.read_text())["States"].values()
    names = {e for s in states for r in s.get("Retry", []) for e in r["ErrorEquals"]}
    custom = {n for n in names if not n.startswith(("Lambda.", "States."))}
    assert custom and all(isinstance(getattr(errors, n, None), type) for n in custom)


def test_the_plan_reads_its_settings_from_the_template_defaults() -> None:
    settings = PlanSettings.from_env(function_environment("PrepareRunFunction"))
    assert (
        settings.training_instance_count == 2 and settings.endpoint_instance_type == "ml.m5.large"
    )
    assert settings.hyperparameters["arch"] == "resnet50"
    assert settings.training_image == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-cpu-py313"
    )


def test_least_privilege() -> None:
    text = (REPO / "template.yaml").read_text()
    assert "FullAccess" not in text
    for logical_id, resource in template()["Resources"].items():
        properties = resource.get("Properties", {})
        statements = [
            s
            for policy in properties.get("Policies", [])
            if isinstance(policy, dict)
            for s in policy.get("Statement", policy.get("PolicyDocument", {}).get("Statement", []))
        ]
        for statement in statements:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            for action in actions:
                if statement["Effect"] == "Allow":
                    assert action != "*" and not action.endswith(":*"), (logical_id, action)
    for name, function in resources("AWS::Serverless::Function").items():
        assert "Role" not in function["Properties"], f"{name} must get its own generated role"


def test_the_trigger_requires_the_prefix_and_an_archive_suffix() -> None:
    pattern = state_machine()["Events"]["DatasetUploaded"]["Properties"]["Pattern"]
    keys = pattern["detail"]["object"]["key"]
    assert [k["wildcard"]["Fn::Sub"] for k in keys] == [
        "${DatasetPrefix}*.zip",
        "${DatasetPrefix}*.tar.gz",
        "${DatasetPrefix}*.tgz",
    ]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "DataBucket"}]


def _python313() -> str | None:
    """The folder of a real python3.13 (pyenv shims only work where 3.13 is selected)."""
    found = shutil.which("python3.13")
    if found and "shims" not in found:
        return str(Path(found).parent)
    candidates = sorted((Path.home() / ".pyenv" / "versions").glob("3.13*/bin/python3.13"))
    return str(candidates[-1].parent) if candidates else None


def test_sam_build_packages_both_layers(tmp_path: Path) -> None:
    python_dir = _python313()
    if python_dir is None:
        missing_part("sam build needs a python3.13 interpreter (the functions' runtime)")
    path = f"{python_dir}{os.pathsep}{os.environ['PATH']}"
    build = tmp_path / "build"
    result = run(
        [str(BIN / "sam"), "build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "c")],
        timeout=300,
        PATH=path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    common = build / "CommonLayer" / "python"
    assert (common / "mlops" / "observability.py").is_file()
    assert (common / "aws_lambda_powertools").is_dir()
    # No build method: sam package zips training/ as it is; it extracts to /opt.
    built = (build / "template.yaml").read_text()
    content_uri = re.search(r"TrainingCodeLayer:.*?ContentUri: (\S+)", built, re.S)
    assert content_uri is not None
    code = (build / content_uri.group(1)).resolve()
    assert (code / "train.py").is_file() and (code / "imgcls").is_dir()


def translated() -> dict[str, Any]:
    """The template as the SAM transform expands it (local code URIs stubbed as S3)."""
    import copy

    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    document = copy.deepcopy(template())
    for resource in document["Resources"].values():
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    return transform(document, {}, NoManagedPolicies())["Resources"]


def test_the_expanded_template_wires_layers_roles_and_the_trigger(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    expanded = translated()
    layers = expanded["StartTrainingFunction"]["Properties"]["Layers"]
    assert [ref["Ref"].rstrip("0123456789abcdef") for ref in layers] == [
        "CommonLayer",
        "TrainingCodeLayer",
    ]
    assert len(expanded["PrepareRunFunction"]["Properties"]["Layers"]) == 1
    for name, resource in expanded.items():
        if resource["Type"] == "AWS::IAM::Role":
            managed = resource["Properties"].get("ManagedPolicyArns", [])
            assert not any("FullAccess" in str(arn) for arn in managed), name
    rule = next(r for r in expanded.values() if r["Type"] == "AWS::Events::Rule")
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Ref": "TrainDeployStateMachine"}


def test_every_sample_event_is_used_by_a_test() -> None:
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for event in (REPO / "events").rglob("*.json"):
        relative = event.relative_to(REPO / "events")
        if relative.parts[0] == "classify":
            continue  # the inference function's events are checked by its own tests
        # Named in full, or by a parametrized f"<folder>/{case}.json" with "<case>" listed.
        templated = f'f"{relative.parent}/{{' in sources and f'"{relative.stem}"' in sources
        assert str(relative) in sources or templated, f"events/{relative} is used by no test"
