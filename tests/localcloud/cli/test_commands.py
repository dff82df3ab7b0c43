"""``python -m localcloud`` as a newcomer uses it: the commands find the local cloud from the
line `up` prints, classify needs only the API URL, errors are one line, help says what is true.

A moto server stands in for the local cloud's AWS endpoint and a small HTTP server for its
HTTP API: what is under test is the command line, not the cloud behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from localcloud.cli import commands
from localcloud.runner.activity import Snapshot, changes, take
from localcloud.runtime.statefile import STATE_FILE, write_state
from tests.data_helpers import write_image_folder
from tests.moto_support import moto_server
from tools.costs import Prices

REPO = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/pipeline"
BUCKET = "pipeline-data"
PASS = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


@pytest.fixture(scope="module")
def aws_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def machine(aws_url: str) -> str:
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=aws_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = sfn.create_state_machine(name="pipeline", definition=PASS, roleArn=ROLE)[
        "stateMachineArn"
    ]
    for name in ("first-run", "second-run"):
        sfn.start_execution(stateMachineArn=arn, name=name, input="{}")
    s3(aws_url).create_bucket(Bucket=BUCKET)
    return arn


def s3(aws_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=aws_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def uploaded(aws_url: str) -> list[str]:
    listed = s3(aws_url).list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return sorted(o["Key"] for o in listed)


@pytest.fixture
def exported(
    tmp_path: Path, aws_url: str, machine: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Only what `up`'s export line sets, for a local cloud whose state dir is not the
    repository's default."""
    state_dir = tmp_path / "elsewhere"
    write_state(
        state_dir,
        {
            "pid": os.getpid(),
            "endpoint_url": aws_url,
            "region": REGION,
            "api_url": None,
            "state_machines": [machine],
            "buckets": [BUCKET],
            "parameters": {"DatasetPrefix": "datasets/"},
        },
    )
    env = {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "LOCALCLOUD_STATE": str(state_dir / STATE_FILE),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class FakeApi(BaseHTTPRequestHandler):
    """The HTTP API's contract: POST /classify answers what the test queued."""

    replies: list[tuple[int, Any]] = []
    paths: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FakeApi.paths.append(self.path)
        status, body = FakeApi.replies.pop(0)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeApi.replies, FakeApi.paths = [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "digit.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    return path


def test_executions_finds_the_cloud_from_the_exported_line_alone(
    exported: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert commands.main(["executions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "STARTED", "DURATION"]
    assert [line.split()[0] for line in lines[1:]] == ["first-run", "second-run"]


def test_the_state_dir_option_still_wins(
    exported: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ.pop("AWS_ENDPOINT_URL")
    assert commands.main(["executions", "--state-dir", str(tmp_path / "nothing-here")]) == 2
    assert "no local cloud is running for" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["", "/classify"])
def test_classify_needs_only_the_api_url(
    suffix: str, api: str, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The base URL or the stack's ApiUrl output (which ends in the route): both post to
    /classify, with no state dir and no AWS endpoint."""
    FakeApi.replies = [(200, {"predictions": [{"label": "7", "score": 0.9}]})]
    empty = str(tmp_path / "no-state")
    argv = ["classify", str(image), "--api-url", api + suffix, "--state-dir", empty]
    assert commands.main(argv) == 0
    assert FakeApi.paths == ["/classify?top_k=5"]
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == "7"


@pytest.mark.parametrize(
    ("status", "body", "exit_status"),
    [
        (415, {"error": "unsupported_media_type", "message": "send a JPEG or PNG"}, 2),
        (503, {"error": "no_model", "message": "no model is deployed yet"}, 2),
        (500, {"error": "internal", "message": "the function failed"}, 1),
    ],
)
def test_a_refused_image_is_one_line_on_stderr(
    status: int,
    body: dict[str, str],
    exit_status: int,
    api: str,
    image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    FakeApi.replies = [(status, body)]
    argv = ["classify", str(image), "--api-url", api, "--state-dir", str(tmp_path)]
    assert commands.main(argv) == exit_status
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        f"localcloud: the HTTP API answered {status}: {body['error']}: {body['message']}"
    ]


def test_help_lists_each_command_once_and_only_the_options_it_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        commands.main(["--help"])
    top = capsys.readouterr().out
    for command in ("up", "run", "upload", "executions", "history", "classify", "approve"):
        assert sum(line.split()[:1] == [command] for line in top.splitlines()) == 1, command
    for command, absent in (("executions", "--api-url"), ("history", "--bucket")):
        with pytest.raises(SystemExit):
            commands.main([command, "--help"])
        assert absent not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        commands.main(["classify", "--help"])
    assert "(default: 5)" in " ".join(capsys.readouterr().out.split())


def test_a_wrong_option_names_the_command_it_was_given_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        commands.main(["history", "--bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m localcloud history")
    assert "unrecognized arguments: --bogus" in err


def test_demo_usage_and_error_name_the_same_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        commands.main(["demo"])
    err = capsys.readouterr().err
    assert "required: scenario" in err
    assert err.split("\n")[-3].strip().endswith("scenario")  # the usage's last word


def test_a_closed_pipe_ends_the_command_quietly(exported: dict[str, str]) -> None:
    """`python -m localcloud executions | head -1`: the reader goes away early."""
    env = {**os.environ, **exported}
    code = (
        "import sys; from localcloud.cli import commands; sys.exit(commands.main(['executions']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


@pytest.fixture
def bucket_emptied(aws_url: str, machine: str) -> Iterator[None]:
    yield
    client = s3(aws_url)
    for key in uploaded(aws_url):
        client.delete_object(Bucket=BUCKET, Key=key)


def no_train(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def one_class(tmp_path: Path) -> Path:
    counts = {"train": 1, "valid": 1, "test": 1}
    return write_image_folder(tmp_path / "one-class", classes=("cat",), counts=counts)


def random_bytes(tmp_path: Path) -> Path:
    archive = tmp_path / "noise.tar.gz"
    archive.write_bytes(os.urandom(512))
    return archive


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (no_train, "has no train/ folder (found: nothing)"),
        (one_class, "train/ in {path} needs at least 2 class folders, found 1"),
        (random_bytes, "noise.tar.gz is not a readable tar.gz archive"),
    ],
    ids=["no-train", "one-class", "random-bytes"],
)
def test_upload_refuses_a_data_set_that_would_fail_its_training_job(
    make: Any,
    reason: str,
    exported: dict[str, str],
    aws_url: str,
    bucket_emptied: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path)
    assert commands.main(["upload", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("localcloud: not uploaded: "), err
    assert reason.format(path=path) in err[0]
    assert "--no-check" in err[0]
    assert uploaded(aws_url) == []
    # --no-check uploads it anyway, to exercise the pipeline's own checks
    assert commands.main(["upload", str(path), "--no-check"]) == 0
    assert len(uploaded(aws_url)) == 1


def test_upload_says_what_it_uploaded_and_warns_outside_the_trigger(
    exported: dict[str, str],
    aws_url: str,
    bucket_emptied: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    counts = {"train": 2, "valid": 1, "test": 1}
    folder = write_image_folder(tmp_path / "pets", classes=("cat", "dog"), counts=counts)
    assert commands.main(["upload", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == (
        f"uploaded s3://{BUCKET}/datasets/pets.tar.gz (2 classes; train/valid/test: 4/2/2 images)"
    )
    assert err == ""
    assert commands.main(["upload", str(folder), "--key", "elsewhere/pets.tar.gz"]) == 0
    out, err = capsys.readouterr()
    assert "elsewhere/pets.tar.gz is outside the trigger (datasets/*" in err
    assert "starts no run" in err
    assert uploaded(aws_url) == ["datasets/pets.tar.gz", "elsewhere/pets.tar.gz"]


def test_up_says_what_happens_one_line_per_event() -> None:
    quiet = Snapshot()
    running = Snapshot({"run-1": "RUNNING"}, {}, ("Creating", 0))
    deployed = Snapshot({"run-1": "SUCCEEDED"}, {1: "Approved"}, ("InService", 1))
    scaled = Snapshot(
        {"run-1": "SUCCEEDED", "run-2": "FAILED"}, {1: "Approved", 2: "Rejected"}, ("InService", 2)
    )
    assert changes(quiet, running, "ep") == [
        "run run-1 started",
        "endpoint ep: Creating, 0 instances",
    ]
    assert changes(running, deployed, "ep") == [
        "run run-1 SUCCEEDED",
        "model version 1 registered: Approved",
        "endpoint ep: InService, 1 instance",
    ]
    assert changes(deployed, scaled, "ep", cause=lambda name: f"{name} failed its smoke test") == [
        "run run-2 started",
        "run run-2 FAILED: run-2 failed its smoke test",
        "model version 2 registered: Rejected",
        "endpoint ep: InService, 2 instances",
    ]
    assert changes(scaled, scaled, "ep") == []
    approved = Snapshot(scaled.executions, {1: "Approved", 2: "Approved"}, scaled.endpoint)
    assert changes(scaled, approved, "ep") == ["model version 2: Rejected -> Approved"]


def test_up_reads_the_stack_it_watches(exported: dict[str, str], machine: str) -> None:
    conn = commands._connection(commands.build_parser().parse_args(["executions"]))
    outputs = {"ModelPackageGroupName": "not-yet", "EndpointName": "not-yet"}
    snapshot = take(conn, outputs)
    assert set(snapshot.executions) >= {"first-run", "second-run"}
    assert snapshot.versions == {}
    assert snapshot.endpoint is None


def test_the_settings_with_no_local_effect_are_one_line() -> None:
    notes = [
        "Dashboard (AWS::CloudWatch::Dashboard): no local effect",
        "PipelineRule: RetryPolicy, DeadLetterConfig not emulated",
        "Pipeline: Logging, Tracing not emulated",
    ]
    line = commands._not_emulated_line(notes)
    assert "\n" not in line
    assert line.startswith("3 template settings (Logging, Tracing not emulated; ")
    assert line.endswith("see docs/local-mode.md#what-is-emulated-and-what-is-not")


def test_history_wait_is_bounded_and_one_line(
    exported: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The fixture's executions never end (moto runs nothing): --wait gives up in one line."""
    assert commands.main(["history", "second-run", "--wait", "--timeout", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "still running after 1 s" in err[0], err


def test_up_and_run_use_the_exported_state_dir(exported: dict[str, str], tmp_path: Path) -> None:
    """A second `up` with the export line still set finds the first (already running)."""
    args = commands.build_parser().parse_args(["up"])
    assert args.state_dir == tmp_path / "elsewhere"


def test_history_prints_the_runs_cost_estimate(
    exported: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The estimate the console shows too (report.cost_estimate), with the prices' date."""
    assert commands.main(["history", "first-run"]) == 0
    out = capsys.readouterr().out
    assert "On AWS it would cost (estimate)" in out
    assert f"({Prices.load().caption}; tools/prices.json)" in out
