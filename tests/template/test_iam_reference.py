"""The reference oracle of tests/iam.py: what a call needs is read from the Service
Authorization Reference data (iam-data), not from localcloud.services.iam.request_context, so a gap
in that mapping still shows as a missing permission (every FUNCTION module's recorded calls are
checked with it at teardown, see tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import ACCOUNT, REGION
from tests.iam import Call, reference_actions, reference_gaps

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
UPDATE = Call("sagemaker", "UpdateEndpoint", {"EndpointName": "ep", "EndpointConfigName": "c"})


def allow(action: str, *resources: str) -> dict[str, object]:
    return {"Effect": "Allow", "Action": action, "Resource": list(resources)}


def test_every_resource_type_the_reference_requires_must_be_granted() -> None:
    # UpdateEndpoint acts on the endpoint and on the new endpoint config
    both = [allow("sagemaker:UpdateEndpoint", f"{ARN}:endpoint/ep", f"{ARN}:endpoint-config/c-*")]
    assert reference_gaps(both, [UPDATE]) == []
    only_endpoint = [allow("sagemaker:UpdateEndpoint", f"{ARN}:endpoint/ep")]
    assert reference_gaps(only_endpoint, [UPDATE]) == [
        f"sagemaker:UpdateEndpoint needs sagemaker:UpdateEndpoint on {ARN}:endpoint-config/*"
    ]
    other_action = [allow("sagemaker:Describe*", "*")]
    assert len(reference_gaps(other_action, [UPDATE])) == 2


def test_an_action_without_resource_types_needs_a_statement_on_star() -> None:
    token = Call("ecr", "GetAuthorizationToken", {})
    assert reference_gaps([allow("ecr:GetAuthorizationToken", "*")], [token]) == []
    on_an_arn = [allow("ecr:GetAuthorizationToken", f"arn:aws:ecr:{REGION}:{ACCOUNT}:*")]
    assert reference_gaps(on_an_arn, [token]) == [
        "ecr:GetAuthorizationToken needs ecr:GetAuthorizationToken on *"
    ]


def test_alternatives_the_reference_marks_required_alike_follow_the_arn_passed() -> None:
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:machine:run-1"
    describe = Call("stepfunctions", "DescribeExecution", {"executionArn": execution})
    granted = [allow("states:DescribeExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:*")]
    assert reference_gaps(granted, [describe]) == []


def test_a_call_the_reference_does_not_name_must_be_mapped_by_hand() -> None:
    assert reference_actions("s3", "HeadObject") == ("s3:GetObject",)
    assert reference_actions("sagemaker", "CreateModel") == ("sagemaker:CreateModel",)
    with pytest.raises(AssertionError, match="REFERENCE_ACTIONS"):
        reference_actions("s3", "SelectObjectContentish")
