"""The local SageMaker's data capture across updates: RetainAllVariantProperties keeps the
endpoint's capture (SageMaker retains DataCaptureConfig as a variant property), an update
without it takes the new config's (localcloud/services/sagemaker/capture.py)."""

from __future__ import annotations

from typing import Any

from localcloud.services.sagemaker.hosting import ENDPOINTS
from tests.conftest import ACCOUNT
from tests.localcloud.sagemaker_support import REGION, VARIANT, wait_endpoint, wait_for
from tests.localcloud.services.sagemaker.test_sagemaker import BUCKET, Local, add_model, aws  # noqa: F401


def capturing(local: Local, version: str, percent: int) -> str:
    """An endpoint config serving the model ``add_model`` made, capturing ``percent``."""
    name = f"config-{version}-capture-{percent}"
    local.sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": VARIANT,
                "ModelName": f"model-{version}",
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": percent,
            "DestinationS3Uri": f"s3://{BUCKET}/data-capture/",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )
    return name


def in_effect(local: Local) -> dict[str, Any] | None:
    """The capture in effect once the change is done (its old fleet stopped too: the local
    SageMaker takes the next change only then)."""
    endpoint = wait_endpoint(local.sagemaker, "ep")
    assert endpoint["EndpointStatus"] == "InService"
    runtime = ENDPOINTS.get((ACCOUNT, REGION, "ep"))
    assert runtime is not None
    wait_for(lambda: runtime.busy, lambda busy: not busy, 30)
    return endpoint.get("DataCaptureConfig")


def test_an_update_keeps_the_capture_it_retains_and_takes_the_new_one_otherwise(
    aws: Local,  # noqa: F811
) -> None:
    add_model(aws, "v1")
    aws.sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName=capturing(aws, "v1", 10))
    assert in_effect(aws) == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 10,
        "DestinationS3Uri": f"s3://{BUCKET}/data-capture/",
    }
    add_model(aws, "v2")
    aws.sagemaker.update_endpoint(
        EndpointName="ep",
        EndpointConfigName=capturing(aws, "v2", 50),
        RetainAllVariantProperties=True,
    )
    retained = in_effect(aws)
    assert retained is not None and retained["CurrentSamplingPercentage"] == 10
    add_model(aws, "v3")
    aws.sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName=capturing(aws, "v3", 50))
    taken = in_effect(aws)
    assert taken is not None and taken["CurrentSamplingPercentage"] == 50
    # and a config with no capture turns it off (SageMaker then shows none)
    aws.sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="config-v1")
    assert in_effect(aws) is None
