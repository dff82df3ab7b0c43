"""train.py's command line: SageMaker-style flags, env defaults, errors and --help."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.training.conftest import REPO, clean_env, train_command
from training.train import get_args_parser, learning_rate

ALL_FLAGS = (
    "--data-dir", "--model-dir", "--output-dir", "--checkpoint-dir", "--arch", "--weights",
    "--fine-tune", "--image-size", "--epochs", "--batch-size", "--learning-rate",
    "--weight-decay", "--early-stopping-patience", "--seed", "--num-workers", "--smoke-images",
    "--log-interval", "--amp", "--augment", "--crop-scale", "--flip", "--lr-schedule",
)  # fmt: skip


@pytest.fixture
def no_sagemaker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SM_CHANNEL_TRAINING", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_come_from_the_sagemaker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training")
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    args = get_args_parser().parse_args([])
    assert args.data_dir == "/opt/ml/input/data/training"
    assert args.model_dir == "/opt/ml/model"
    assert args.output_dir == "/opt/ml/output/data"
    assert (args.arch, args.weights, args.fine_tune, args.image_size) == (
        "resnet50",
        "imagenet",
        "head",
        224,
    )
    assert args.amp is True


@pytest.mark.usefixtures("no_sagemaker")
def test_standalone_defaults_need_only_the_data_dir() -> None:
    args = get_args_parser().parse_args(["--data-dir", "d"])
    assert (args.data_dir, args.model_dir, args.output_dir) == ("d", "model", "output")


@pytest.mark.usefixtures("no_sagemaker")
def test_data_dir_is_required_outside_sagemaker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        get_args_parser().parse_args([])
    assert exit_info.value.code == 2
    assert "--data-dir" in capsys.readouterr().err


@pytest.mark.usefixtures("no_sagemaker")
def test_sagemaker_style_flags_with_underscores_and_bool_values() -> None:
    args = get_args_parser().parse_args(
        [
            "--data_dir", "d", "--batch_size", "16", "--learning_rate", "0.01",
            "--early_stopping_patience=2", "--fine_tune", "last-block", "--amp", "False",
            "--epochs", "3", "--weights", "none",
        ]
    )  # fmt: skip
    assert args.batch_size == 16
    assert args.learning_rate == pytest.approx(0.01)
    assert args.early_stopping_patience == 2
    assert args.fine_tune == "last-block"
    assert args.amp is False
    assert (args.epochs, args.weights) == (3, "none")


@pytest.mark.usefixtures("no_sagemaker")
def test_weights_accepts_an_existing_file_only(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.pth"
    weights.write_bytes(b"x")
    assert get_args_parser().parse_args(["--data-dir", "d", "--weights", str(weights)]).weights == (
        str(weights)
    )
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--data-dir", "d", "--weights", str(tmp_path / "missing")])


@pytest.mark.parametrize(
    "flags",
    [
        ["--epochs", "0"],
        ["--batch-size", "-1"],
        ["--learning-rate", "0"],
        ["--amp", "maybe"],
        ["--arch", "vgg16"],
        ["--fine-tune", "everything"],
        ["--image-size", "8"],
        ["--epoch", "3"],  # abbreviations are refused, not guessed
    ],
)
@pytest.mark.usefixtures("no_sagemaker")
def test_bad_values_are_refused(flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        get_args_parser().parse_args(["--data-dir", "d", *flags])
    assert exit_info.value.code == 2


def test_unknown_flag_fails_and_names_it_in_the_failure_file(tmp_path: Path) -> None:
    output = tmp_path / "output"
    (output / "data").mkdir(parents=True)
    result = subprocess.run(
        train_command(["--data-dir", str(tmp_path), "--dropout", "0.5"]),
        cwd=REPO,
        env=clean_env({"SM_OUTPUT_DATA_DIR": str(output / "data")}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --dropout 0.5" in result.stderr
    assert "unrecognized arguments: --dropout 0.5" in (output / "failure").read_text()


def test_help_explains_every_flag() -> None:
    result = subprocess.run(
        train_command(["--help"]),
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    for flag in ALL_FLAGS:
        assert flag in result.stdout
    for env_var in ("SM_CHANNEL_TRAINING", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"):
        assert env_var in result.stdout


def test_the_learning_rate_schedule() -> None:
    parse = get_args_parser().parse_args
    constant = parse(["--data-dir", "d", "--learning-rate", "0.002", "--epochs", "4"])
    assert [learning_rate(constant, e) for e in (1, 2, 3, 4)] == [0.002] * 4
    cosine = parse(["--data-dir", "d", "--learning_rate", "0.002", "--epochs", "4",
                    "--lr_schedule", "cosine"])  # fmt: skip
    rates = [learning_rate(cosine, e) for e in (1, 2, 3, 4)]
    assert rates == pytest.approx(
        [0.002, 0.002 * (2 + 2**0.5) / 4, 0.001, 0.002 * (2 - 2**0.5) / 4]
    )
