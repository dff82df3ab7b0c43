"""The serving bench's trained model: its held-out images are never trained or calibrated on."""

from __future__ import annotations

from bench.trained_model import split
from imgcls.predict import CALIBRATION_IMAGES, PROBE_IMAGES
from training.sample_data import load_digits


def test_train_smoke_and_held_out_digits_are_disjoint() -> None:
    _, labels = load_digits()
    train, smoke, held_out = split(labels, seed=0)
    assert len(smoke) == PROBE_IMAGES + CALIBRATION_IMAGES and len(held_out) == 270
    assert not set(train) & set(smoke) and not set(train) & set(held_out)
    assert not set(smoke) & set(held_out)
    assert [int(labels[i]) for i in smoke[:PROBE_IMAGES]] == list(range(PROBE_IMAGES))
    assert sorted({int(labels[i]) for i in train[:100]}) == list(range(10))
