"""A standalone train.py run end to end, and the pieces of the training loop."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imgcls import engine
from imgcls.model import WeightsError, build_model, load_model, set_trainable
from tests.training.conftest import FAST_FLAGS, REPO, run_train

METRIC_DEFINITIONS = json.loads((REPO / "training" / "metric_definitions.json").read_text())


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """One 2-epoch run on the tiny data set: (result, model dir, output dir)."""
    base = tmp_path_factory.mktemp("run")
    model_dir, output_dir = base / "model", base / "output"
    result = run_train(
        [
            "--data-dir", str(tiny_data), "--model-dir", str(model_dir),
            "--output-dir", str(output_dir), "--epochs", "2", "--early-stopping-patience", "0",
            *FAST_FLAGS,
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result, model_dir, output_dir


def test_stdout_holds_exactly_the_metric_lines(trained) -> None:
    result, _, _ = trained
    lines = result.stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [
        ["[metrics]", "epoch=1"],
        ["[metrics]", "epoch=2"],
        ["[final]", lines[-1].split(" ")[1]],
    ]
    number = r"[0-9]+\.[0-9]{6}"
    keys = ("train_loss", "train_acc", "valid_loss", "valid_acc")
    assert re.fullmatch(r"\[metrics\] epoch=2 " + " ".join(f"{k}={number}" for k in keys), lines[1])
    keys = ("valid_loss", "valid_acc", "test_loss", "test_acc")
    assert re.fullmatch(r"\[final\] " + " ".join(f"{k}={number}" for k in keys), lines[2])


def test_metric_definitions_extract_the_run_metrics(trained) -> None:
    """What SageMaker would record from the log: every value of each metric, in order."""
    result, _, output_dir = trained
    metrics = json.loads((output_dir / "metrics.json").read_text())
    log = result.stdout + result.stderr  # SageMaker reads both streams
    found = {d["Name"]: [float(v) for v in re.findall(d["Regex"], log)] for d in METRIC_DEFINITIONS}
    history, final = metrics["history"], metrics["final"]
    assert set(found) == {
        "epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "test_loss", "test_acc",
        "champion_test_acc", "champion_comparable",
    }  # fmt: skip
    assert found["champion_test_acc"] == found["champion_comparable"] == []  # no champion: no line
    assert found["epoch"] == [1, 2]
    for key in ("train_loss", "train_acc"):
        assert found[key] == pytest.approx([row[key] for row in history], abs=1e-6)
    for key in ("valid_loss", "valid_acc"):  # per epoch, then the saved model's in [final]
        expected = [row[key] for row in history] + [final[key]]
        assert found[key] == pytest.approx(expected, abs=1e-6)
    for key in ("test_loss", "test_acc"):
        assert found[key] == pytest.approx([final[key]], abs=1e-6)


def test_model_dir_is_complete_and_loads(trained, tiny_data: Path) -> None:
    _, model_dir, output_dir = trained
    model, meta = load_model(model_dir)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert meta["format"] == 1
    assert (meta["arch"], meta["num_classes"], meta["classes"]) == (
        "resnet18",
        3,
        ["cat", "dog", "owl"],
    )
    assert (meta["image_size"], meta["resize_size"], meta["head"]) == (32, 37, "linear")
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["hyperparameters"]["data_dir"] == str(tiny_data)
    assert meta["hyperparameters"]["fine_tune"] == "all"
    assert set(meta["versions"]) == {"torch", "torchvision", "python"}
    assert datetime.fromisoformat(meta["trained_at"]).tzinfo is not None
    final = json.loads((output_dir / "metrics.json").read_text())["final"]
    assert meta["metrics"] == final
    assert 0 <= final["test_acc"] <= 1 and final["epoch"] in (1, 2)


def test_model_dir_carries_the_serving_code(trained) -> None:
    _, model_dir, _ = trained
    code = model_dir / "code"
    assert (code / "imgcls" / "__init__.py").is_file()
    assert (code / "imgcls" / "model.py").read_text() == (
        REPO / "training" / "imgcls" / "model.py"
    ).read_text()
    assert not list(code.rglob("__pycache__"))
    assert (code / "inference.py").is_file() == (REPO / "training" / "inference.py").is_file()


def test_smoke_set_spreads_test_images_over_classes(trained) -> None:
    _, model_dir, _ = trained
    smoke = json.loads((model_dir / "smoke_set.json").read_text())
    assert smoke["format"] == 1
    items = smoke["items"]
    assert [item["label"] for item in items] == ["cat", "dog", "owl", "cat", "dog"]
    assert [item["index"] for item in items] == [0, 1, 2, 0, 1]
    for item in items:
        assert item["content_type"] == "image/jpeg"
        image = Image.open(io.BytesIO(base64.b64decode(item["image"])))
        assert image.format == "JPEG" and max(image.size) <= 512


def test_bad_data_ends_with_one_readable_line(tiny_data: Path, tmp_path: Path) -> None:
    data = shutil.copytree(tiny_data, tmp_path / "data")
    shutil.rmtree(data / "valid")
    output = tmp_path / "opt_ml_output"
    (output / "data").mkdir(parents=True)
    result = run_train(
        ["--data-dir", str(data), "--model-dir", str(tmp_path / "model"), *FAST_FLAGS],
        env={"SM_OUTPUT_DATA_DIR": str(output / "data")},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(f"data set at {data} has no valid/ folder (found: test, train)")
    )
    assert (
        output / "failure"
    ).read_text() == f"data set at {data} has no valid/ folder (found: test, train)"
    assert not (tmp_path / "model").exists()


def test_no_failure_file_outside_sagemaker(tiny_data: Path, tmp_path: Path) -> None:
    result = run_train(
        ["--data-dir", str(tmp_path / "missing"), "--model-dir", str(tmp_path / "m")]
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert not list(tmp_path.rglob("failure"))


@pytest.mark.parametrize(
    ("fine_tune", "parts"),
    [("head", {"fc"}), ("last-block", {"layer4", "fc"}), ("all", None)],
)
def test_fine_tune_chooses_what_trains(fine_tune: str, parts: set[str] | None) -> None:
    model = build_model("resnet18", 4)
    trainable = set_trainable(model, fine_tune)
    names = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert names == (parts or {name.split(".")[0] for name, _ in model.named_parameters()})
    assert len(trainable) == sum(p.requires_grad for p in model.parameters())


def test_a_frozen_backbone_does_not_change_while_the_head_trains() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 3)
    set_trainable(model, "head")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    engine.train_one_epoch(
        model, DataLoader(data, batch_size=4), nn.CrossEntropyLoss(), optimizer,
        torch.device("cpu"), amp=False, epoch=1,
    )  # fmt: skip
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc"}  # BatchNorm running statistics included


class _Fixed(nn.Module):
    """Logits that favour class 0 for every input (the input is ignored)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0]]).repeat(len(x), 1) + 0 * x.sum()


def test_metrics_are_weighted_by_samples_not_batches() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])  # batches of 4, 4 and 2
    loader = DataLoader(TensorDataset(torch.zeros(10, 1), labels), batch_size=4)
    totals = engine.evaluate(_Fixed(), loader, nn.CrossEntropyLoss(), torch.device("cpu"), False)
    result = engine.summarise(totals)
    expected_loss = nn.CrossEntropyLoss()(torch.tensor([[2.0, 0.0]]).repeat(10, 1), labels)
    assert result.count == 10
    assert result.acc == pytest.approx(0.6)  # batch means would average to (1 + 0 + 1) / 3
    assert result.loss == pytest.approx(expected_loss.item())


def test_weights_from_a_file_initialise_the_backbone(tmp_path: Path) -> None:
    source = build_model("resnet18", 7)
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "w.pth")
    model = build_model("resnet18", 3, weights=str(tmp_path / "w.pth"))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: build_model("resnet34", 3).state_dict(), "does not fit resnet18: .* missing"),
        (lambda: {"conv1.weight": torch.zeros(1)}, "does not fit resnet18: .*size mismatch"),
        (lambda: [1, 2, 3], "holds a list, not a state_dict"),
        (None, "is not a readable state_dict"),
    ],
    ids=["other-arch", "wrong-shape", "not-a-dict", "garbage"],
)
def test_unusable_weights_files_are_named(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "w.pth"
    if content is None:
        path.write_bytes(b"not a torch file")
    else:
        torch.save(content(), path)
    with pytest.raises(WeightsError, match=message):
        build_model("resnet18", 3, weights=str(path))
