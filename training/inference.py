"""SageMaker PyTorch serving handlers for models written by train.py.

The inference toolkit in the SageMaker PyTorch containers imports this file from
``model/code/`` (``SAGEMAKER_PROGRAM=inference.py``) next to ``code/imgcls``; serve.py
loads the same file on any other host. The contract (content types, the JSON response,
the errors) is in docs/architecture.md and docs/serving.md.

The toolkit calls ``input_fn`` without the model, yet decoding needs the model's image
size, so ``model_fn`` records the loaded classifier for it (one model per process, as
the toolkit runs it). ``predict_batch_fn`` is serve.py's extension: one forward pass for
several requests; the toolkit ignores it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from imgcls.predict import (
    Classifier,
    Prediction,
    load_classifier,
    predict_batch,
    response_body,
)
from imgcls.protocol import ImageRequest, negotiate, parse_request


class _Loaded:
    classifier: Classifier | None = None


@dataclass(frozen=True)
class PreparedImage:
    """What ``input_fn`` hands on: the model-ready tensor and the requested k."""

    tensor: torch.Tensor
    top_k: int | None


def model_fn(model_dir: str) -> Classifier:
    _Loaded.classifier = load_classifier(model_dir)
    return _Loaded.classifier


def model_warmup_fn(model_dir: str, model: Classifier) -> None:
    """One forward pass before the first request (the toolkit and serve.py call it)."""
    size = model.preprocess.image_size
    predict_batch(model, [torch.zeros(1, 3, size, size)], [None])


def input_fn(request_body: bytes | bytearray | str, content_type: str | None) -> PreparedImage:
    if _Loaded.classifier is None:
        raise RuntimeError("input_fn called before model_fn")
    request: ImageRequest = parse_request(request_body, content_type)
    return PreparedImage(_Loaded.classifier.preprocess(request.image), request.top_k)


def predict_fn(data: PreparedImage, model: Classifier) -> Prediction:
    return predict_batch_fn([data], model)[0]


def predict_batch_fn(items: Sequence[PreparedImage], model: Classifier) -> list[Prediction]:
    return predict_batch(model, [i.tensor for i in items], [i.top_k for i in items])


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    content_type = negotiate(accept)
    return json.dumps(response_body(prediction)), content_type
