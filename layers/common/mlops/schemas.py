"""JSON schemas of the state inputs (the ``Parameters`` of each Task in the ASL).

They catch a mismatch between the state machine and a function at the function's door,
with the field's name, instead of as a KeyError deep inside.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string", "minLength": 1}
_EXEC = {"execution_arn": _STR}
_RUN_ID = {"run_id": _STR}
_ENDPOINT_NAME = {"endpoint_name": _STR}

RUN: dict[str, Any] = {
    "type": "object",
    "required": [
        "run_id",
        "deployment_id",
        "dataset",
        "training",
        "quality_gate",
        "model",
        "endpoint",
        "autoscaling",
        "smoke_test",
    ],
    "properties": {
        "run_id": _STR,
        "dataset": {"type": "object", "required": ["uri", "version"]},
        "training": {
            "type": "object",
            "required": ["job_name", "image", "instance_type", "instance_count", "hyperparameters"],
        },
        "endpoint": {
            "type": "object",
            "required": ["endpoint_name", "endpoint_config_name", "variant_name", "instance_type"],
        },
        "model": {"type": "object", "required": ["model_name", "image"]},
    },
}

DEPLOYMENT: dict[str, Any] = {
    "type": "object",
    "required": [
        "action",
        "endpoint_name",
        "endpoint_config_name",
        "variant_name",
        "previous_endpoint_config_name",
        "created_endpoint",
    ],
}


def _obj(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


PREPARE_RUN = _obj(["trigger", "execution_arn"], {"trigger": {}, **_EXEC})
_POLL = {"poll_seconds": {"type": "integer", "minimum": 0}}
_DEADLINES = {
    "deadlines": _obj(
        ["deploy", "rollback"], {"deploy": {"type": "integer"}, "rollback": {"type": "integer"}}
    )
}
START_TRAINING = _obj(["run", "execution_arn", "poll_seconds"], {"run": RUN, **_POLL, **_EXEC})
_NAME_OR_NULL = {"anyOf": [_STR, {"type": "null"}]}
# A tuning run names its tuning job; its training job is known once that completes.
CHECK_TRAINING = _obj(
    ["training_job_name", "poll_seconds"],
    {
        "training_job_name": _NAME_OR_NULL,
        "tuning_job_name": _NAME_OR_NULL,
        **_POLL,
        **_RUN_ID,
        **_EXEC,
    },
)
QUALITY_GATE = _obj(
    ["metrics", "gate", "training_job_name"],
    {
        "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
        "gate": _obj(["metric", "min_value"], {"metric": _STR, "min_value": {"type": "number"}}),
        "training_job_name": _STR,
        "champion": {"type": ["string", "null"]},
        **_RUN_ID,
    },
)
ACQUIRE_LOCK = _obj(
    ["endpoint_name", "execution_arn", "run_id", "attempts", "max_attempts", "poll_seconds"],
    {
        **_ENDPOINT_NAME,
        **_EXEC,
        **_RUN_ID,
        **_POLL,
        "attempts": {"type": "integer", "minimum": 0},
        "max_attempts": {"type": "integer", "minimum": 1},
    },
)
RELEASE_LOCK = _obj(["endpoint_name", "execution_arn"], {**_ENDPOINT_NAME, **_EXEC})
DEPLOY_MODEL = _obj(
    ["run", "model_artifact", "execution_arn", "deadlines"],
    {
        "run": RUN,
        "model_artifact": _STR,
        "model_package_arn": {"type": ["string", "null"]},
        **_DEADLINES,
        **_EXEC,
    },
)
REGISTER_MODEL = _obj(
    ["run", "training_job_name", "gate", "execution_arn"],
    {"run": RUN, "training_job_name": _STR, "gate": {"type": "object"}, **_EXEC},
)
REJECT_MODEL = _obj(
    ["model_package_arn", "failure"],
    {"model_package_arn": _STR, "failure": {"type": "object"}},
)
CHECK_ENDPOINT = _obj(["deployment", "deadlines"], {"deployment": DEPLOYMENT, **_DEADLINES})
ATTACH_AUTOSCALING = _obj(
    ["deployment", "autoscaling"],
    {
        "deployment": DEPLOYMENT,
        "autoscaling": {
            "type": "object",
            "required": [
                "min_capacity",
                "max_capacity",
                "target_invocations_per_instance",
                "scale_in_cooldown_seconds",
                "scale_out_cooldown_seconds",
            ],
        },
    },
)
SMOKE_TEST = _obj(
    ["model_artifact", "smoke_test", "run_id"],
    {
        "model_artifact": _STR,
        "smoke_test": _obj(["min_accuracy"], {"min_accuracy": {"type": "number"}}),
        **_RUN_ID,
    },
)
ROLLBACK = _obj(
    ["run", "deployment", "deadlines"], {"run": RUN, "deployment": DEPLOYMENT, **_DEADLINES}
)
SUMMARIZE_RUN = _obj(
    ["state"],
    {"state": _obj(["run", "training", "deployment"], {"run": RUN, "deployment": DEPLOYMENT})},
)

DESCRIBE_FAILURE = _obj(["state"], {"state": {"type": "object"}, **_EXEC})
