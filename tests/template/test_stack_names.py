"""Stack names: what the template's names become under a long stack name, as CloudFormation
makes them (the local cloud's physical names: a shortened stack name in generated names)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from localcloud.cloudformation.intrinsics import Pseudo, Resolver
from localcloud.cloudformation.physical_names import PhysicalNames
from localcloud.cloudformation.template import load_template, resolve_parameters, resolve_stack
from tests.conftest import REGION, REPO

# CloudFormation's longest stack name is 128 characters.
NAMES = ["mlops", "image-classifier-" + "x" * 39, "s" + "-long" * 25]


def resolved(stack_name: str, logical_id: str) -> dict[str, Any]:
    """A resource's properties as CloudFormation resolves them under ``stack_name``."""
    template = load_template(REPO / "template.yaml")
    pseudo = Pseudo(region=REGION, stack_name=stack_name)
    parameters = resolve_parameters(template["Parameters"], {})
    names = PhysicalNames(template, pseudo)
    names.resolver = Resolver(template, parameters, pseudo, names)
    return names.resolver.value(template["Resources"][logical_id]["Properties"])


def admits(statement: dict[str, Any], source_arn: str) -> bool:
    (operator, keys), *others = statement["Condition"].items()
    assert not others and operator in ("ArnEquals", "ArnLike")
    patterns = keys["aws:SourceArn"]
    patterns = patterns if isinstance(patterns, list) else [patterns]
    if operator == "ArnEquals":
        return source_arn in patterns
    return any(fnmatchcase(source_arn, pattern) for pattern in patterns)


@pytest.mark.parametrize("stack_name", NAMES, ids=len)
def test_the_dead_letter_queue_admits_the_triggers_rules_whatever_the_stack_name(
    stack_name: str,
) -> None:
    # EventBridge sends an event it could not deliver to the rule's dead-letter queue only
    # if the queue's policy admits the rule (aws:SourceArn): the rules' generated names
    # start with the stack name only while it is short.
    stack = resolve_stack(REPO / "template.yaml", region=REGION, stack_name=stack_name)
    policy = resolved(stack_name, "TriggerDeadLetterQueuePolicy")["PolicyDocument"]
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert len(stack.rules) == 2
    for rule in stack.rules:
        assert admits(statement, rule.arn), f"{rule.arn} is not admitted"


def test_a_stack_name_over_56_characters_is_refused_as_cloudformation_refuses_it() -> None:
    # <stack>-models names the model package group, which SageMaker limits to 63
    # characters: CloudFormation's CREATE_FAILED, and the same refusal locally.
    from moto.moto_server.threaded_moto_server import (
        DomainDispatcherApplication,
        create_backend_app,
    )

    from localcloud import validation
    from localcloud.cloudformation.deployer import clients_for, deploy
    from localcloud.cloudformation.intrinsics import TemplateError

    longest = resolve_stack(REPO / "template.yaml", region=REGION, stack_name="s" * 56)
    [group] = longest.of_type("AWS::SageMaker::ModelPackageGroup")
    assert len(group.name) == 63
    stack = resolve_stack(REPO / "template.yaml", region=REGION, stack_name="s" * 57)
    app = DomainDispatcherApplication(lambda service: validation.wrap(create_backend_app(service)))
    with pytest.raises(TemplateError) as refused:
        deploy(stack, clients_for("http://127.0.0.1:1", REGION, app))
    assert str(refused.value).startswith("deploying ModelPackageGroup: ")
    assert (
        "at 'modelPackageGroupName' failed to satisfy constraint: Member must have length "
        "less than or equal to 63" in str(refused.value)
    )
