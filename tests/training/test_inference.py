"""inference.py, the SageMaker serving handlers, called the way the toolkit calls them."""

from __future__ import annotations

import base64
import io
import json

import inference
import pytest
import torch
from PIL import Image

from imgcls.errors import InputError
from imgcls.imaging import decode_image
from imgcls.transforms import eval_transform
from tests.training.serving_helpers import CLASSES, image_bytes, make_model_dir

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return inference.model_fn(str(make_model_dir(tmp_path_factory.mktemp("model"), IMAGE_SIZE)))


def invoke(model, body, content_type="image/jpeg", accept="application/json"):
    data = inference.input_fn(body, content_type)
    prediction = inference.predict_fn(data, model)
    text, response_type = inference.output_fn(prediction, accept)
    assert response_type == "application/json"
    return json.loads(text)


def reference_logits(model, raw: bytes) -> torch.Tensor:
    tensor = eval_transform(IMAGE_SIZE)(Image.open(io.BytesIO(raw)).convert("RGB"))
    with torch.inference_mode():
        return model.net(tensor.unsqueeze(0))[0]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "content_type",
    [
        "image/jpeg",
        "application/x-image",
        "application/octet-stream",
        "IMAGE/JPEG; foo=bar",
    ],
)
def test_raw_image_content_types(model, content_type):
    raw = image_bytes(seed=1)
    body = invoke(model, raw, content_type)
    assert len(body["predictions"]) == len(CLASSES)  # default 5, capped at 4 classes
    assert torch.allclose(torch.tensor(body["logits"][0]), reference_logits(model, raw), atol=1e-5)


def test_response_shape_and_order(model):
    body = invoke(model, image_bytes(seed=2))
    predictions = body["predictions"]
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    logits = body["logits"][0]
    assert len(body["logits"]) == 1 and len(logits) == len(CLASSES)
    for p in predictions:
        assert p["label"] == CLASSES[p["index"]]
    assert predictions[0]["index"] == max(range(len(logits)), key=logits.__getitem__)


def test_png_and_other_modes(model):
    for mode in ("RGB", "RGBA", "L", "P"):
        raw = image_bytes(seed=3, fmt="PNG", mode=mode)
        body = invoke(model, raw, "image/png")
        assert torch.allclose(
            torch.tensor(body["logits"][0]), reference_logits(model, raw), atol=1e-5
        )
    cmyk = image_bytes(seed=3, mode="CMYK")
    assert len(invoke(model, cmyk)["predictions"]) == len(CLASSES)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_json_base64_with_top_k(model, content_type):
    raw = image_bytes(seed=4)
    doc = json.dumps({"image": b64(raw), "top_k": 2})
    # the toolkit hands exact application/json over as str, anything else as bytes
    body = invoke(model, doc if content_type == "application/json" else doc.encode(), content_type)
    assert len(body["predictions"]) == 2
    assert torch.allclose(torch.tensor(body["logits"][0]), reference_logits(model, raw), atol=1e-5)


def test_json_data_url(model):
    doc = json.dumps({"image": "data:image/jpeg;base64," + b64(image_bytes(seed=4))})
    assert len(invoke(model, doc, "application/json")["predictions"]) == len(CLASSES)


def test_top_k_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TOP_K", "1")
    model = inference.model_fn(str(make_model_dir(tmp_path, IMAGE_SIZE)))
    assert len(invoke(model, image_bytes())["predictions"]) == 1


def test_bad_top_k_env_fails_model_load(tmp_path, monkeypatch):
    monkeypatch.setenv("TOP_K", "five")
    with pytest.raises(ValueError, match="TOP_K"):
        inference.model_fn(str(make_model_dir(tmp_path, IMAGE_SIZE)))


def test_accept_negotiation(model):
    prediction = inference.predict_fn(inference.input_fn(image_bytes(), "image/jpeg"), model)
    for accept in (None, "", "*/*", "application/*", "text/html, application/json;q=0.5"):
        assert inference.output_fn(prediction, accept)[1] == "application/json"
    for accept in ("text/csv", "application/json;q=0"):
        with pytest.raises(InputError) as caught:
            inference.output_fn(prediction, accept)
        assert caught.value.status_code == 406
        assert "application/json" in str(caught.value)


TRUNCATED = image_bytes(size=(64, 64), seed=5)[:300]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"", "image/jpeg", 400, "empty"),
        (b"hello, not an image", "image/jpeg", 400, "not an image"),
        (TRUNCATED, "image/jpeg", 400, "could not be decoded"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "image/jpeg", 400, "not an image"),
        ("", "application/json", 400, "empty"),
        ("{not json", "application/json", 400, "not valid JSON"),
        ("[1, 2]", "application/json", 400, "must be an object"),
        ('{"top_k": 3}', "application/json", 400, 'no "image"'),
        ('{"image": "***"}', "application/json", 400, "not valid base64"),
        ('{"image": 5}', "application/json", 400, "base64 string"),
        ('{"image": ""}', "application/json", 400, "empty"),
        ('{"url": "http://169.254.169.254/"}', "application/json", 400, "does not download"),
        ('{"image": "aGk=", "top_k": 0}', "application/json", 400, "top_k"),
        ('{"image": "aGk=", "top_k": true}', "application/json", 400, "top_k"),
        ('{"image": "aGk=", "top_k": "3"}', "application/json", 400, "top_k"),
        ('{"image": "aGk="}', "application/json", 400, "not an image"),
        (b"raw", "text/plain", 415, "unsupported content type"),
        (b"raw", None, 415, "unsupported content type"),
    ],
)
def test_bad_requests(model, body, content_type, status, words):
    with pytest.raises(InputError) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == status
    assert words in str(caught.value)


def test_url_error_says_how_to_send(model):
    with pytest.raises(InputError, match="base64"):
        inference.input_fn('{"url": "https://example.com/cat.jpg"}', "application/json")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb(model, monkeypatch):
    raw = image_bytes(size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)  # PIL would only warn
    with pytest.raises(InputError, match="too large") as caught:
        inference.input_fn(raw, "image/jpeg")
    assert caught.value.status_code == 413
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # PIL raises its own error
    with pytest.raises(InputError, match="too large") as caught:
        inference.input_fn(raw, "image/png")
    assert caught.value.status_code == 413


def test_preprocessing_equals_eval_transform(model):
    raw = image_bytes(size=(50, 45), seed=6)  # under twice the resize: no draft scaling
    expected = eval_transform(IMAGE_SIZE)(Image.open(io.BytesIO(raw)).convert("RGB"))
    actual = inference.input_fn(raw, "image/jpeg").tensor
    assert actual.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(actual[0], expected)


def test_exif_orientation_is_applied(model):
    image = Image.open(io.BytesIO(image_bytes(size=(60, 40), seed=7, fmt="PNG")))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = io.BytesIO()
    image.save(out, "PNG", exif=exif)
    upright = image.transpose(Image.Transpose.ROTATE_270)
    actual = inference.input_fn(out.getvalue(), "image/png").tensor
    assert torch.equal(actual[0], eval_transform(IMAGE_SIZE)(upright))


def test_large_jpeg_decodes_in_draft_mode():
    raw = image_bytes(size=(1200, 900), seed=8)
    image = decode_image(raw, min_side=100)
    assert image.size == (150, 113)  # libjpeg's 1/8 scale: the smallest that covers 100
    assert image.mode == "RGB"


def test_draft_decoding_stays_close_to_full_decoding():
    # smooth content, as photos are: draft and full decoding then agree closely
    channels = [Image.linear_gradient("L"), Image.radial_gradient("L"), Image.new("L", (1, 1), 90)]
    photo = Image.merge("RGB", [c.resize((800, 600)) for c in channels])
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=95)
    full = eval_transform(IMAGE_SIZE)(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    drafted = eval_transform(IMAGE_SIZE)(decode_image(out.getvalue(), min_side=37))
    assert (full - drafted).abs().mean() < 0.05


def test_batch_prediction_matches_single(model):
    items = [inference.input_fn(image_bytes(seed=s), "image/jpeg") for s in range(3)]
    batched = inference.predict_batch_fn(items, model)
    for item, prediction in zip(items, batched, strict=True):
        single = inference.predict_fn(item, model)
        assert torch.allclose(prediction.logits, single.logits, atol=1e-5)
