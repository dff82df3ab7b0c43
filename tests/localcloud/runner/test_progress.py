"""localcloud.runner.progress.Follower: the end of an execution is noticed within the cheap
status check's period, not a whole round of updates later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from localcloud.runner.progress import Follower
from localcloud.runtime.connection import Connection

ROLE = "arn:aws:iam::123456789012:role/sfn"


@pytest.fixture
def conn() -> Iterator[Connection]:
    saved = default_user_config.get("stepfunctions")
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield Connection(f"http://127.0.0.1:{server.get_host_and_port()[1]}", "us-east-1")
    finally:
        server.stop()
        if saved is None:
            default_user_config.pop("stepfunctions", None)
        else:
            default_user_config["stepfunctions"] = saved


def test_the_end_is_noticed_between_full_rounds(conn: Connection) -> None:
    sfn = conn.client("stepfunctions")
    definition = {
        "StartAt": "Pause",
        "States": {
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
            "Done": {"Type": "Pass", "End": True},
        },
    }
    arn = sfn.create_state_machine(name="follow", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    lines: list[str] = []
    follower = Follower(conn, execution, endpoint_name=None, out=lines.append)
    pool = ThreadPoolExecutor(1)
    following = pool.submit(follower.follow, timeout=120, interval=60, end_check=0.1)
    try:  # the end is noticed after the 1 s wait, within the first 60 s round
        description = following.result(timeout=30)
    finally:
        pool.shutdown(wait=False)
    assert description["status"] == "SUCCEEDED"
    assert follower.events[-1]["type"] == "ExecutionSucceeded"  # the run renders these
    assert any("-> Done" in line for line in lines)  # the last full round showed the end
