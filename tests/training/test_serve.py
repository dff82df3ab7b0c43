"""serve.py in a subprocess: the SageMaker hosting contract over real HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import inference
import pytest
import torch

from tests.training.serving_helpers import (
    CLASSES,
    GATED_HANDLERS,
    REPO,
    TRAINING,
    ServerProcess,
    image_bytes,
    make_model_dir,
    model_with_handlers,
)

IMAGE_SIZE = 32
JPEG = {"Content-Type": "image/jpeg"}

FAULTY_HANDLERS = """
from bundled import input_fn, model_fn, predict_fn  # noqa: F401


def output_fn(prediction, accept):
    raise RuntimeError("boom at /secret/internal/path")
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"), IMAGE_SIZE)


@pytest.fixture(scope="module")
def server(model_dir):
    # a long batch delay so that concurrent requests really share forward passes
    with ServerProcess(
        model_dir, "--max-batch-delay-ms", "100", "--max-body-bytes", "200000"
    ) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def local_model(model_dir):
    return inference.model_fn(str(model_dir))


def local_logits(local_model, raw: bytes) -> torch.Tensor:
    return inference.predict_fn(inference.input_fn(raw, "image/jpeg"), local_model).logits


def test_jpeg_request(server, local_model):
    raw = image_bytes(seed=11)
    status, body = server.request("POST", "/invocations", raw, JPEG)
    assert status == 200
    assert [p["label"] for p in body["predictions"]] != []
    assert torch.allclose(
        torch.tensor(body["logits"][0]), local_logits(local_model, raw), atol=1e-5
    )


def test_json_request(server, local_model):
    raw = image_bytes(seed=12)
    doc = json.dumps({"image": base64.b64encode(raw).decode(), "top_k": 2}).encode()
    status, body = server.request(
        "POST", "/invocations", doc, {"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 200
    assert len(body["predictions"]) == 2
    assert body["predictions"][0]["label"] in CLASSES
    assert torch.allclose(
        torch.tensor(body["logits"][0]), local_logits(local_model, raw), atol=1e-5
    )


def test_concurrent_requests_get_their_own_answers(server, local_model):
    images = [image_bytes(size=(40 + s, 36), seed=100 + s) for s in range(16)]

    def post(raw):
        return server.request("POST", "/invocations", raw, JPEG)

    with ThreadPoolExecutor(len(images)) as pool:
        responses = list(pool.map(post, images))
    for raw, (status, body) in zip(images, responses, strict=True):
        assert status == 200
        expected = local_logits(local_model, raw)
        assert torch.allclose(torch.tensor(body["logits"][0]), expected, atol=1e-4)
    assert len({json.dumps(body["logits"]) for _, body in responses}) == len(images)


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error"),
    [
        ("POST", "/invocations", b"not an image", JPEG, 400, "bad_request"),
        ("POST", "/invocations", b"", JPEG, 400, "bad_request"),
        ("POST", "/invocations", b"{", {"Content-Type": "application/json"}, 400, "bad_request"),
        (
            "POST",
            "/invocations",
            b"\xff\xfe",
            {"Content-Type": "application/json"},
            400,
            "bad_request",
        ),
        (
            "POST",
            "/invocations",
            b"x",
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/invocations",
            image_bytes(),
            {**JPEG, "Accept": "text/csv"},
            406,
            "not_acceptable",
        ),
        ("POST", "/invocations", b"x" * 200_001, JPEG, 413, "payload_too_large"),
        ("POST", "/elsewhere", b"x", JPEG, 404, "not_found"),
        ("GET", "/elsewhere", None, {}, 404, "not_found"),
        ("PUT", "/invocations", b"x", JPEG, 501, "not_implemented"),
    ],
)
def test_error_responses(server, method, path, body, headers, status, error):
    got_status, got = server.request(method, path, body, headers)
    assert (got_status, got["error"]) == (status, error)
    assert got["message"]


def test_url_request_is_refused_with_advice(server):
    doc = json.dumps({"url": "http://169.254.169.254/latest/meta-data/"}).encode()
    status, body = server.request("POST", "/invocations", doc, {"Content-Type": "application/json"})
    assert status == 400
    assert "does not download" in body["message"] and "base64" in body["message"]


def test_keep_alive_survives_errors(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        for body, expected in ((b"junk", 400), (image_bytes(), 200), (b"x" * 200_001, 413)):
            connection.request("POST", "/invocations", body=body, headers=JPEG)
            response = connection.getresponse()
            response.read()
            assert response.status == expected
        # after a 413 the server closes the connection (the body was never read)
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


def test_oversized_body_refused_before_it_is_sent(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "image/jpeg")
        connection.putheader("Content-Length", "300000")
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"] == "payload_too_large"
    finally:
        connection.close()


def test_missing_content_length(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "image/jpeg")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 411
    finally:
        connection.close()


def test_ping_is_503_until_the_model_is_loaded_then_sigterm_stops(tmp_path):
    model_dir = model_with_handlers(tmp_path / "gated", GATED_HANDLERS, IMAGE_SIZE)
    with ServerProcess(model_dir) as srv:
        assert srv.request("GET", "/ping")[0] == 503
        status, body = srv.request("POST", "/invocations", image_bytes(), JPEG)
        assert (status, body["error"]) == (503, "unavailable")
        (model_dir / "release").touch()
        srv.wait_ready()
        assert srv.request("POST", "/invocations", image_bytes(), JPEG)[0] == 200
        assert srv.stop() == 0
        assert "stopping" in srv.output()


def test_handler_fault_is_a_500_without_details(tmp_path):
    model_dir = model_with_handlers(tmp_path / "faulty", FAULTY_HANDLERS, IMAGE_SIZE)
    with ServerProcess(model_dir) as srv:
        srv.wait_ready()
        status, body = srv.request("POST", "/invocations", image_bytes(), JPEG)
        assert (status, body["error"]) == (500, "internal_error")
        assert "secret" not in json.dumps(body)
        srv.stop()
        log = srv.output()
    assert "RuntimeError: boom at /secret/internal/path" in log  # logged with its traceback


def test_bundled_handlers_serve_a_model_without_code(tmp_path, local_model):
    model_dir = make_model_dir(tmp_path / "nocode", IMAGE_SIZE)
    for path in sorted((model_dir / "code").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (model_dir / "code").rmdir()
    with ServerProcess(model_dir) as srv:
        srv.wait_ready()
        raw = image_bytes(seed=13)
        status, body = srv.request("POST", "/invocations", raw, JPEG)
        srv.stop()
        assert "handlers from " + str(TRAINING / "inference.py") in srv.output()
    assert status == 200
    expected = local_logits(local_model, raw)
    assert torch.allclose(torch.tensor(body["logits"][0]), expected, atol=1e-5)


def run_serve(model_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.serve", "--model-dir", str(model_dir), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_model_dir_fails_fast(tmp_path):
    result = run_serve(tmp_path / "absent")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_not_a_model_dir_fails_fast(tmp_path):
    result = run_serve(tmp_path)
    assert result.returncode == 2
    assert "no model.json" in result.stderr


def test_corrupt_weights_exit_non_zero(tmp_path):
    model_dir = make_model_dir(tmp_path / "corrupt", IMAGE_SIZE)
    (model_dir / "model.pth").write_bytes(b"not a checkpoint")
    result = run_serve(model_dir)
    assert result.returncode == 1
    assert "cannot load the model" in result.stderr
