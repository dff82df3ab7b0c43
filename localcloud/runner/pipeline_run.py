"""The one-shot pipeline run behind ``python -m localcloud run`` (and bench.pipeline):
start the local cloud, upload a data set, follow the execution the upload starts,
classify held-out images through the HTTP API, summarise, stop."""

from __future__ import annotations

import datetime
import json
import mimetypes
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.console.launch import start_console
from localcloud.console.page_server import Console
from localcloud.runner.execution_history import EXECUTION_ENDS, build_view, duration, render
from localcloud.runner.progress import Follower, wait_for_execution
from localcloud.runner.report import (
    Timings,
    describe_endpoint,
    execution_events,
    orchestration_parts,
    summary,
    training_job_of,
)
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from localcloud.runtime.settings import Settings

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
TRIGGER_WAIT_S = 30.0

Out = Callable[[str], None]


class CliError(Exception):
    """A problem to report in one line, without a traceback; ``status`` is the exit status
    (2: the user can act on it, 1: something failed that they cannot fix)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _print(text: str) -> None:
    print(text, flush=True)


def dataset_prefix(state: dict[str, Any] | None) -> str:
    parameters = (state or {}).get("parameters") or {}
    return str(parameters.get("DatasetPrefix", "datasets/"))


def as_archive(path: Path, workdir: Path) -> Path:
    """``path`` as an archive the pipeline accepts (folders are packed as .tar.gz)."""
    from training.sample_data import make_archive

    if path.is_dir():
        return make_archive(path, workdir / f"{path.name}.tar.gz")
    if not path.is_file():
        raise CliError(f"{path} does not exist")
    if not path.name.endswith(ARCHIVE_SUFFIXES):
        raise CliError(f"{path} is not a {', '.join(ARCHIVE_SUFFIXES)} archive or a folder")
    return path


def upload(conn: Connection, path: Path, key: str) -> None:
    conn.client("s3").upload_file(str(path), conn.the_bucket(), key)


def classify_route(conn: Connection) -> str:
    for route in conn.routes:
        method, _, path = route.partition(" ")
        if method == "POST":
            return path
    return "/classify"


def classify_file(conn: Connection, image: Path, query: str = "") -> tuple[int, Any]:
    content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
    return conn.post(classify_route(conn) + query, image.read_bytes(), content_type)


def classify_samples(conn: Connection, test_dir: Path, count: int, out: Out) -> tuple[int, int]:
    """Classify up to ``count`` held-out images (one per class); returns (right, total).

    It takes the last test image of each class (in name order): the smoke set takes the
    first ones (imgcls.artifacts.pick_smoke_samples, round-robin from the start), so these
    are images the smoke test did not see whenever a class has more test images than the
    smoke set takes from it (3 of the digits' 27)."""
    classes = sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    picks = [max(c.iterdir()) for c in classes if any(c.iterdir())][:count]
    if not picks:
        out(f"No held-out images under {test_dir} to classify.")
        return 0, 0
    out(f"Classifying {len(picks)} held-out images: POST {conn.api_url}{classify_route(conn)}")
    right = 0
    for image in picks:
        status, reply = classify_file(conn, image)
        truth = image.parent.name
        if status == 200:
            best = reply["predictions"][0]
            right += best["label"] == truth
            mark = "ok" if best["label"] == truth else "--"
            out(f"  {mark}  truth {truth:<8} predicted {best['label']} ({best['probability']:.2f})")
        else:
            out(f"  --  truth {truth:<8} HTTP {status}: {json.dumps(reply)[:200]}")
    out(f"  {right}/{len(picks)} correct")
    return right, len(picks)


@dataclass(frozen=True)
class RunOutcome:
    execution_arn: str
    description: dict[str, Any]
    timings: Timings
    classified: tuple[int, int]
    # where the orchestration's time went (report.orchestration_parts), stop excluded
    parts: tuple[tuple[str, float], ...] = ()
    # wall-clock times of the run's steps (began, cloud_up, ..., summarised)
    marks: dict[str, datetime.datetime] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.description["status"] == "SUCCEEDED"


def run_pipeline(
    settings: Settings,
    *,
    data: Path | None = None,
    classify: int = 10,
    timeout: float = 1800,
    out: Out = _print,
    console_port: int | None = None,
    keep_open: bool = False,
) -> RunOutcome:
    """``console_port`` (0: a free port) serves the console page during the run;
    ``keep_open`` keeps the local cloud and the page up after the summary until Ctrl-C."""
    began = time.monotonic()
    marks = {"began": _now()}
    cloud = LocalCloudProcess(settings)
    console = None
    with (
        tempfile.TemporaryDirectory(prefix="localcloud-run-") as tmp,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        # The data set is written and packed while the local cloud starts.
        prepared = pool.submit(prepare_dataset, settings, data, Path(tmp), out)
        out(f"Starting the local cloud (state in {settings.state_dir})...")
        conn = cloud.start()
        marks["cloud_up"] = _now()
        try:
            if console_port is not None or keep_open:
                console = start_console(conn, settings, console_port or 0)
                out(f"  Console page: {console.url}")
            dataset = prepared.result()
            marks["data_ready"] = max(_now(), marks["cloud_up"])
            outcome = _run(cloud, conn, dataset, began, marks, classify, timeout, out)
            if console is not None:
                for path in console.write_plots():
                    out(f"Training curves: {path}")
            if keep_open:
                _stay_open(cloud, console, out)
            return outcome
        finally:
            out("Stopping the local cloud...")
            if console is not None:
                console.stop()
            cloud.stop()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stay_open(cloud: LocalCloudProcess, console: Console | None, out: Out) -> None:
    where = f": the console is at {console.url}" if console else ""
    out(f"The local cloud stays up{where}. Ctrl-C stops everything.")
    try:
        while cloud.proc is not None and cloud.proc.poll() is None:
            time.sleep(0.5)
        out(f"the local cloud exited; see {cloud.log_path}")
    except KeyboardInterrupt:
        out("")


def prepare_dataset(
    settings: Settings, data: Path | None, tmp: Path, out: Out
) -> tuple[Path, Path | None]:
    """The archive to upload and the folder its held-out images come from (if known)."""
    if data is not None:
        return as_archive(data.resolve(), tmp), (data if data.is_dir() else None)
    from training.sample_data import make_archive, write_digits

    data_dir = settings.state_dir / "data" / "digits"
    if not (data_dir / "train").is_dir():
        counts = write_digits(data_dir)
        out(f"Sample data: digits {counts} -> {data_dir}")
    return make_archive(data_dir, tmp / "digits.tar.gz"), data_dir


def _run(
    cloud: LocalCloudProcess,
    conn: Connection,
    dataset: tuple[Path, Path | None],
    began: float,
    marks: dict[str, datetime.datetime],
    classify: int,
    timeout: float,
    out: Out,
) -> RunOutcome:
    state = cloud.state
    out(f"  up in {duration(time.monotonic() - began)}: {conn.endpoint_url}, API {conn.api_url}")
    if state.get("sagemaker_containers"):  # sandboxed hosts, or why they run as plain processes
        out(f"  SageMaker: {state['sagemaker_containers']}")
    out(f"  account profile {state.get('account_profile')} (quotas: localcloud/account.yaml)")
    iam = "enforced (each function, the state machine, the rule and SageMaker act as their role)"
    out(f"  IAM {iam if state.get('iam') == 'enforced' else 'not enforced (--no-iam)'}")
    archive, data_dir = dataset
    key = f"{dataset_prefix(state)}{archive.name}"
    uploaded_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    out(f"Uploading {archive.name} to s3://{conn.the_bucket()}/{key}")
    upload(conn, archive, key)
    execution_arn = wait_for_execution(conn, conn.the_state_machine(), uploaded_at, TRIGGER_WAIT_S)
    out(f"Execution {execution_arn.rsplit(':', 1)[-1]} started by the upload")
    endpoint_name = (state.get("parameters") or {}).get("EndpointName")
    follower = Follower(conn, execution_arn, endpoint_name=endpoint_name, out=out)
    description = follower.follow(timeout=timeout)
    marks["followed"] = _now()
    events = follower.events  # its last round ran after the end: the whole history
    if not events or events[-1]["type"] not in EXECUTION_ENDS:  # the end event was not in yet
        events = execution_events(conn, execution_arn)
    out("")
    out(render(build_view(events, description)))
    classified = (0, 0)
    if description["status"] == "SUCCEEDED" and data_dir is not None and classify > 0:
        out("")
        classified = classify_samples(conn, data_dir / "test", classify, out)
    marks["classified"] = _now()
    out("")
    text, timings = summary(conn, description, events, endpoint_name, time.monotonic() - began)
    out(text)
    marks["summarised"] = _now()
    job = training_job_of(conn, description)
    endpoint = describe_endpoint(conn, endpoint_name) if endpoint_name else None
    parts = orchestration_parts(marks, description, events, job, endpoint)
    return RunOutcome(execution_arn, description, timings, classified, tuple(parts), marks)
