"""ReleaseLock: only the holder's release removes the lock; releasing twice is harmless."""

from __future__ import annotations

import time

import pytest

from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import create_lock_table, hold_lock
from tests.template_support import LOCK_TABLE, set_function_environment

FUNCTION = "ReleaseLockFunction"
EVENT = load_event("release_lock/release.json")


@pytest.mark.parametrize(("held_by_me", "released"), [(True, True), (False, False)])
def test_release(aws: AwsRecorder, monkeypatch, held_by_me: bool, released: bool) -> None:
    set_function_environment(monkeypatch, FUNCTION)
    dynamodb = create_lock_table(LOCK_TABLE)
    holder = EVENT["execution_arn"] if held_by_me else "arn:aws:states:::execution:m:other"
    hold_lock(dynamodb, LOCK_TABLE, EVENT["endpoint_name"], holder, time.time() + 60)
    app = load_handler("release_lock")

    assert aws.invoke(app, EVENT) == {"released": released}
    item = dynamodb.get_item(TableName=LOCK_TABLE, Key={"lock_id": {"S": EVENT["endpoint_name"]}})
    assert ("Item" in item) is not released
    assert aws.invoke(app, EVENT) == {"released": False}
