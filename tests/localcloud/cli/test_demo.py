"""The pieces of ``python -m localcloud demo canary`` that need no local cloud: the model
version with other handlers, recognising a model by its answers, the summary, the command
line. The demo's watcher, traffic and repackaging run for real in the canary tests of
test_pipeline_e2e.py and test_faults.py."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from localcloud.cli import commands, demo, model_version_builder, probe_traffic
from tests.data_helpers import tar_gz


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_new_handlers_replace_code_inference_and_keep_the_old_one_importable() -> None:
    source = tar_gz(
        {"model.pt": b"weights", "code/inference.py": b"old = 1\n", "code/imgcls/x.py": b""}
    )
    members = _members(model_version_builder.with_handlers(source, "new = 2\n"))
    assert members["code/inference.py"] == b"new = 2\n"
    assert members["code/previous_inference.py"] == b"old = 1\n"
    assert members["model.pt"] == b"weights" and "code/imgcls/x.py" in members
    # repackaging a repackaged model keeps one previous version, not a chain
    again = _members(
        model_version_builder.with_handlers(
            model_version_builder.with_handlers(source, "a\n"), "b\n"
        )
    )
    assert (again["code/inference.py"], again["code/previous_inference.py"]) == (b"b\n", b"a\n")


def test_a_model_without_serving_code_cannot_be_repackaged() -> None:
    with pytest.raises(ValueError, match=r"no code/inference\.py"):
        model_version_builder.with_handlers(tar_gz({"model.pt": b"w"}), "x\n")


def _answer(probe: probe_traffic.Probe, logits: tuple[float, ...] | None, status: int = 200):
    return probe_traffic.Answer(0.0, probe, status, logits)


def test_answers_are_attributed_to_the_model_that_gives_them(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    jpeg, png = probe_traffic.probes([path])
    assert (jpeg.content_type, png.content_type) == ("image/jpeg", "image/png")
    assert png.body.startswith(b"\x89PNG")
    prints = probe_traffic.Fingerprints()
    assert prints.learn("A", [_answer(jpeg, (1.0, -1.0))]) == 1
    assert prints.identify(_answer(png, (1.0002, -1.0))) == "A"  # same pixels, same model
    assert prints.identify(_answer(jpeg, (0.5, -0.5))) == probe_traffic.UNKNOWN
    assert prints.identify(_answer(jpeg, None, 502)) == probe_traffic.FAILED
    answers = [_answer(jpeg, (1.0, -1.0)), _answer(png, (0.2, 0.1)), _answer(png, None, 502)]
    counts = prints.shares(answers, unknown_as="B")
    assert counts == {"A": 1, "B": 1, probe_traffic.FAILED: 1}
    assert probe_traffic.describe_shares(counts) == "A 33%, B 33%, failed 33% of 3"
    assert probe_traffic.summary(answers)["png"] == {"requests": 2, "failed": 1}


def test_the_demo_went_as_shown_only_if_c_was_rolled_back_to_b() -> None:
    a = demo.Phase("A", "trained", status="SUCCEEDED", endpoint_config="ep-a")
    b = demo.Phase("B", "retrained", status="SUCCEEDED", endpoint_config="ep-b")
    c = demo.Phase("C", "jpeg only", status="FAILED", endpoint_config="ep-b")
    c.alarms = ["s-endpoint-5xx"]
    assert demo.as_expected([a, b, c])
    assert not demo.as_expected([a, b, demo.Phase("C", "x", status="SUCCEEDED")])
    text = demo.summary([a, b, c], None)
    assert "model C (jpeg only): FAILED" in text and "s-endpoint-5xx" in text


def test_the_demo_command_line() -> None:
    args = commands.build_parser().parse_args(["demo", "canary", "--data", "d"])
    assert (args.scenario, args.data, args.handler) == ("canary", Path("d"), commands.cmd_demo)
    with pytest.raises(SystemExit) as exit_:
        commands.build_parser().parse_args(["demo", "linear"])
    assert exit_.value.code == 2
