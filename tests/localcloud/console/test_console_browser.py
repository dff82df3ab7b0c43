"""The console in a real browser: ``python -m localcloud up`` runs the real pipeline on a
tiny data set (one success, one failure); headless Chromium (Debian's ``chromium``, driven
by Playwright) checks what a person would see. Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.runner.execution_history import readable_cause
from localcloud.runner.pipeline_run import upload
from localcloud.runner.progress import wait_for_execution
from localcloud.runtime import processes
from localcloud.runtime.connection import Connection, connect
from tests.data_helpers import make_archive, write_image_folder
from tests.localcloud.pipeline_support import finish

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "console"
EPOCHS = 3
HYPERPARAMETERS = {
    "arch": "resnet18",
    "weights": "none",
    "fine-tune": "all",
    "image-size": 32,
    "epochs": EPOCHS,
    "batch-size": 16,
    "learning-rate": 0.002,
    "num-workers": 0,
    "log-interval": 0,
    "smoke-images": 8,
}
OVERRIDES = {
    "TrainingHyperparameters": json.dumps(HYPERPARAMETERS),
    "TrainingInstanceCount": "1",
    "MinValidationAccuracy": "0.5",
    "SmokeTestMinAccuracy": "0.5",
    "PollIntervalSeconds": "3",  # the least that fits a canary (mlops/run_plan.py)
}
START_TIMEOUT_S = 180
EXECUTION_TIMEOUT_S = 300
PAGE_TIMEOUT_MS = 30_000


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("the console's browser test needs Chromium: apt-get install chromium")
    return found


class UpProcess:
    """``python -m localcloud up`` in the background; its printed lines, read on a thread."""

    def __init__(self, state_dir: Path) -> None:
        argv = [sys.executable, "-m", "localcloud", "up", "--state-dir", str(state_dir)]
        argv += ["--stack-name", "console"]
        for name, value in OVERRIDES.items():
            argv += ["--parameter", f"{name}={value}"]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        output = "\n".join(self.lines[-30:])
        pytest.fail(f"`localcloud up` printed no {pattern!r} line:\n{output}")

    def stop(self) -> list[int]:
        """Ctrl-C's path (SIGTERM unwinds the same way); returns processes left behind."""
        started = [self.proc.pid, *processes.descendants(self.proc.pid)]
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            processes.kill(self.proc)
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        processes.wait_until(
            lambda: not [p for p in started if Path(f"/proc/{p}").exists()], 20, interval=0.2
        )
        return [pid for pid in started if Path(f"/proc/{pid}").exists()]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("console-cloud")
    process = UpProcess(state_dir)
    try:
        url = process.wait_for(r"Console\s+(http://127\.0\.0\.1:\d+/)", START_TIMEOUT_S)[1]
        yield {"url": url, "state_dir": state_dir, "conn": connect(state_dir), "up": process}
    finally:
        leaked = process.stop()
        assert leaked == [], f"processes left after `up` stopped: {leaked}"


@pytest.fixture(scope="module")
def runs(up: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One successful run through an upload, one run rejected at once (a missing data set);
    the page is watched while the first one runs."""
    conn: Connection = up["conn"]
    root = write_image_folder(
        tmp_path_factory.mktemp("data") / "colours",
        classes=("cat", "dog"),
        counts={"train": 32, "valid": 8, "test": 8},
    )
    archive = make_archive(root, root.parent / "colours.tar.gz")
    after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    upload(conn, archive, "datasets/colours.tar.gz")
    good = wait_for_execution(conn, conn.the_state_machine(), after, timeout=30)
    sfn = conn.client("stepfunctions")
    bad = sfn.start_execution(
        stateMachineArn=conn.the_state_machine(),
        name="missing-data-set",
        input=json.dumps({"dataset": f"s3://{conn.the_bucket()}/datasets/missing.tar.gz"}),
    )["executionArn"]
    return {"good": good, "bad": bad}


@pytest.fixture(scope="module")
def browser(up: dict[str, Any]) -> Iterator[Any]:
    """Headless Chromium; after it closes, nothing it started may be left (the local
    cloud's own processes, under ``up``, are checked when it stops)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cloud = up["up"].proc.pid

    def ours() -> set[int]:
        return set(processes.descendants(os.getpid())) - {cloud, *processes.descendants(cloud)}

    before = ours()
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield instance
        finally:
            instance.close()
    gone = processes.wait_until(lambda: not ours() - before, 10, interval=0.2)
    assert gone, f"browser processes left: {ours() - before}"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"), full_page=False)
        context.close()


def asl_states(conn: Connection, arn: str) -> list[str]:
    sfn = conn.client("stepfunctions")
    machine = sfn.describe_execution(executionArn=arn)["stateMachineArn"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"])
    return list(definition["States"])


def test_a_live_run_progresses_on_the_page_and_ends_as_its_history_says(
    up: dict[str, Any], runs: dict[str, Any], page: Any
) -> None:
    conn: Connection = up["conn"]
    page.goto(up["url"])
    page.wait_for_selector(f'#executions tr[data-arn="{runs["good"]}"]')
    page.click(f'#executions tr[data-arn="{runs["good"]}"] a')
    page.wait_for_selector("#graph svg .node")
    # while it runs, a state is shown in progress (training takes a while)
    if (
        conn.client("stepfunctions").describe_execution(executionArn=runs["good"])["status"]
        == "RUNNING"
    ):
        page.wait_for_selector('#graph .node[data-status="running"]')
        page.screenshot(path=str(ARTIFACTS / "execution-running.png"), full_page=False)
    description = finish(conn, runs["good"], EXECUTION_TIMEOUT_S)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    # the page follows by itself (no reload) until the execution ends
    page.wait_for_selector('h1 .badge[data-status="SUCCEEDED"]')
    page.wait_for_selector('#graph .node[data-state="__end__"][data-status="succeeded"]')
    drawn = page.eval_on_selector_all("#graph .node", "els => els.map(e => e.dataset.state)")
    assert sorted(set(drawn) - {"__start__", "__end__"}) == sorted(asl_states(conn, runs["good"]))
    history = conn.client("stepfunctions").get_execution_history(
        executionArn=runs["good"], maxResults=1000
    )["events"]
    entered = {e["stateEnteredEventDetails"]["name"] for e in history if "Entered" in e["type"]}
    statuses = dict(
        page.eval_on_selector_all(
            "#graph .node", "els => els.map(e => [e.dataset.state, e.dataset.status])"
        )
    )
    ends = {"__start__", "__end__"}
    assert {name for name, s in statuses.items() if s == "succeeded"} - ends == entered
    assert {statuses[name] for name in statuses.keys() - entered - ends} <= {"not-reached"}
    assert page.locator("#event-history tbody tr").count() == len(history)
    page.click('#graph .node[data-state="CheckTraining"]')
    runs_text = page.inner_text("#state-runs")
    entries = [e.get("stateEnteredEventDetails", {}).get("name") for e in history]
    assert runs_text.startswith(f"{entries.count('CheckTraining')} time")
    page.screenshot(path=str(ARTIFACTS / "execution-succeeded.png"), full_page=False)


def test_the_failed_state_is_marked_failed_with_its_cause(
    up: dict[str, Any], runs: dict[str, Any], page: Any
) -> None:
    conn: Connection = up["conn"]
    description = finish(conn, runs["bad"], EXECUTION_TIMEOUT_S)
    assert description["status"] == "FAILED"
    history = conn.client("stepfunctions").get_execution_history(executionArn=runs["bad"])["events"]
    failed_state = [e for e in history if e["type"] == "FailStateEntered"][-1][
        "stateEnteredEventDetails"
    ]["name"]
    page.goto(f"{up['url']}#/execution/{runs['bad']}")
    node = page.wait_for_selector(f'#graph .node[data-state="{failed_state}"]')
    assert node.get_attribute("data-status") == "failed"
    node.click()
    cause = page.inner_text("#state-cause")
    assert cause == readable_cause(description["cause"])
    assert page.inner_text("#state-error") == description["error"]
    assert description["error"] in page.inner_text("#execution-failure")
    page.screenshot(path=str(ARTIFACTS / "execution-failed.png"), full_page=False)


def test_training_plot_has_one_point_per_epoch_and_a_png_in_the_state_dir(
    up: dict[str, Any], runs: dict[str, Any], page: Any
) -> None:
    conn: Connection = up["conn"]
    finish(conn, runs["good"], EXECUTION_TIMEOUT_S)
    job = conn.client("sagemaker").list_training_jobs()["TrainingJobSummaries"][0]
    name = job["TrainingJobName"]
    page.goto(f"{up['url']}#/training")
    page.click(f'#training-jobs a:text("{name}")')
    page.wait_for_selector("#plot svg")
    curves = page.eval_on_selector_all(
        '#plot svg g[id^="curve-"]', "els => els.map(g => [g.id, g.querySelectorAll('use').length])"
    )
    assert {c for c, _ in curves} >= {"curve-train_loss", "curve-valid_loss", "curve-valid_acc"}
    assert all(points == EPOCHS for _, points in curves), curves
    assert page.locator("#epochs tbody tr").count() == EPOCHS
    assert "algo-1" in page.inner_text("#hosts")
    page.screenshot(path=str(ARTIFACTS / "training-job.png"), full_page=True)
    png = up["state_dir"] / "plots" / f"{name}.png"
    assert processes.wait_until(png.is_file, 20, interval=0.5), f"{png} was not written"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(png, ARTIFACTS / "training-curves.png")


def test_endpoint_page_shows_its_instances(
    up: dict[str, Any], runs: dict[str, Any], page: Any
) -> None:
    conn: Connection = up["conn"]
    finish(conn, runs["good"], EXECUTION_TIMEOUT_S)
    live = conn.client("sagemaker").describe_endpoint(EndpointName="image-classifier")
    page.goto(f"{up['url']}#/endpoints")
    page.wait_for_selector("#variants")
    count = live["ProductionVariants"][0]["CurrentInstanceCount"]
    assert page.inner_text("#variants .current-instances") == str(count)
    assert page.inner_text("#endpoint-config") == live["EndpointConfigName"]
    assert page.locator("#instances .instance-id").count() >= count
    page.screenshot(path=str(ARTIFACTS / "endpoint.png"), full_page=False)
