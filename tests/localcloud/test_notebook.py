"""The notebook, unchanged, against the local cloud: executed headless by nbclient on tiny
data; the test reads what its cells printed. Needs the bubblewrap sandbox (ModelTrainer's
jobs run /opt/ml/input/data/sm_drivers/sm_train.sh) and the SDK (requirements-dev.txt)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from localcloud.runtime.launcher import LocalCloudProcess
from localcloud.runtime.settings import Settings
from localcloud.services.sagemaker import container
from tests.data_helpers import write_image_folder
from tests.localcloud.sagemaker_support import assert_no_new_children, children
from tests.parts_support import import_part, missing_part

import_part("nbclient")
nbformat = import_part("nbformat")
import_part("sagemaker.train")
from notebooks import run_local  # noqa: E402

# The pipeline's hyperparameters, which the notebook trains with too: a few quick epochs.
HYPERPARAMETERS = {
    "arch": "resnet18", "weights": "none", "fine-tune": "all", "image-size": 32, "epochs": 2,
    "batch-size": 8, "learning-rate": 0.002, "early-stopping-patience": 0, "num-workers": 0,
    "log-interval": 0, "smoke-images": 6,
}  # fmt: skip
CELL_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def sandbox() -> None:
    box, reason = container.probe()
    if box is None:
        missing_part(f"the notebook's jobs need the bubblewrap sandbox: {reason}")


@pytest.mark.timeout(1800)  # two trainings, a tuning job of two more, two deployments
def test_the_notebook_runs_top_to_bottom_against_the_local_cloud(
    sandbox: None, tmp_path: Path
) -> None:
    before = children()
    data = write_image_folder(tmp_path / "data", counts={"train": 16, "valid": 6, "test": 4})
    settings = Settings(
        state_dir=tmp_path / "state",
        stack_name="image-classifier-pipeline",
        parameter_overrides=(
            f"TrainingHyperparameters={json.dumps(HYPERPARAMETERS)}",
            "MinValidationAccuracy=0.5",
            "SmokeTestMinAccuracy=0.5",
        ),
    )
    cloud = LocalCloudProcess(settings)
    connection = cloud.start()
    try:
        # what `python -m localcloud up` prints, plus the SDK's local settings
        env = run_local.notebook_environment(connection, settings.state_dir / "localcloud.json")
        env.update(DATA_DIR=str(data), NOTEBOOK_WORK_DIR=str(tmp_path / "work"))
        out = tmp_path / "executed.ipynb"
        try:
            printed = run_local.execute(env, out=out, timeout=CELL_TIMEOUT_S)
        except Exception:
            printed = "\n".join(map(run_local.cell_text, nbformat.read(out, as_version=4).cells))
            raise AssertionError(f"a cell failed; it printed:\n{printed[-6000:]}") from None
    finally:
        cloud.stop()
    assert re.search(r"training job imgcls-notebook-\S+: Completed on 2 hosts", printed), printed
    assert re.search(r"metric valid_acc\s+\d", printed), printed
    # the tuning section: the SDK's tuner, its trials real training jobs, and the best one
    assert re.search(r"tuning job imgcls-tune-\S+: Completed", printed), printed
    assert len(re.findall(r"trial imgcls-tune-\S+: learning-rate 0\.\d+ valid_acc", printed)) == 2
    assert re.search(r"best trial imgcls-tune-\S+: valid_acc \d", printed), printed
    assert re.search(r"endpoint imgcls-notebook-\S+: InService", printed), printed
    assert re.search(r"autoscaling endpoint/\S+/variant/AllTraffic: 1-3 instances", printed)
    assert re.search(r"reserved concurrency (\d+|none)", printed), printed
    assert re.search(r"endpoint: \S+ truth (\S+) predicted \1: correct", printed), printed
    assert re.search(r"execution \S+: SUCCEEDED", printed), printed
    assert "ReleaseLock" in printed and "SmokeTest" in printed  # the history, state by state
    assert re.search(r"HTTP API: truth \S+ predicted \S+ \(", printed), printed
    assert "cleaned up: endpoint imgcls-notebook-" in printed, printed
    assert_no_new_children(before)


def test_the_notebook_is_kept_without_outputs() -> None:
    notebook = nbformat.read(run_local.NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(cell.source for cell in code)
    # the same notebook on AWS and locally: nothing in it names the local cloud's endpoint
    assert "127.0.0.1" not in source and "localhost" not in source
    assert "instance_count=2" in source and "Torchrun()" in source
