"""Image preprocessing shared by training and serving (ImageNet normalisation), and the
training augmentation presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# --augment presets:
#   standard  RandomResizedCrop (area scale crop_scale..1) + horizontal flips: photos whose
#             subject may sit anywhere at any size and that mean the same mirrored (dogs)
#   light     resize as evaluation does, then a random crop of image_size (a shift of a
#             few pixels, same scale as evaluation), no flips: small, centred or
#             non-photographic images (digits, icons, scans) where a crop loses the subject
#             and a mirror changes the class
#   none      exactly the evaluation transform
AUGMENT_PRESETS = ("standard", "light", "none")
DEFAULT_CROP_SCALE = 0.08  # torchvision's RandomResizedCrop default


def resize_size_for(image_size: int) -> int:
    """The short side to resize to before the center crop (256 for 224, as torchvision)."""
    return round(image_size * 256 / 224)


@dataclass(frozen=True)
class Augmentation:
    """What the training transform does; recorded in model.json as ``augmentation``."""

    preset: str = "standard"
    crop_scale: float = DEFAULT_CROP_SCALE  # smallest crop area (standard only)
    flip: bool = True  # random horizontal flips

    def __post_init__(self) -> None:
        if self.preset not in AUGMENT_PRESETS:
            raise ValueError(f"unknown --augment {self.preset!r}; choose one of {AUGMENT_PRESETS}")
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"--crop-scale must be in (0, 1], got {self.crop_scale}")

    @classmethod
    def of(cls, preset: str, crop_scale: float | None, flip: bool | None) -> Augmentation:
        """A preset with its defaults (flips on for standard only) and any overrides."""
        return cls(
            preset,
            DEFAULT_CROP_SCALE if crop_scale is None else crop_scale,
            preset == "standard" if flip is None else flip,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _to_tensor() -> list[Any]:
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def _steps(image_size: int, aug: Augmentation) -> tuple[list[Any], list[Any]]:
    """The transform's PIL steps before tensor conversion: (deterministic, random)."""
    if aug.preset == "standard":
        fixed: list[Any] = []
        varying: list[Any] = [T.RandomResizedCrop(image_size, scale=(aug.crop_scale, 1.0))]
    elif aug.preset == "light":
        fixed, varying = [T.Resize(resize_size_for(image_size))], [T.RandomCrop(image_size)]
    else:
        fixed, varying = [T.Resize(resize_size_for(image_size)), T.CenterCrop(image_size)], []
    if aug.flip:
        varying.append(T.RandomHorizontalFlip())
    return fixed, varying


EVALUATION = Augmentation("none", flip=False)


def train_transform(image_size: int, augmentation: Augmentation | None = None) -> T.Compose:
    fixed, varying = _steps(image_size, augmentation or Augmentation())
    return T.Compose(fixed + varying + _to_tensor())


def eval_transform(image_size: int) -> T.Compose:
    fixed, _ = _steps(image_size, EVALUATION)
    return T.Compose(fixed + _to_tensor())


@dataclass(frozen=True)
class Stages:
    """A transform cut where it stops being deterministic: ``fixed`` (PIL image -> uint8
    tensor) gives the same output every time, so it can run once per image and be kept;
    ``varying`` (that tensor -> the normalised float tensor) runs on every use. Together
    they give exactly what the one-piece transform gives (the crops and flips draw the same
    random numbers)."""

    fixed: T.Compose
    varying: T.Compose


def stages(image_size: int, augmentation: Augmentation = EVALUATION) -> Stages | None:
    """``train_transform`` (or, by default, ``eval_transform``) as :class:`Stages`; None
    where the first step is already random (``standard`` crops the full image)."""
    fixed, varying = _steps(image_size, augmentation)
    if not fixed:
        return None
    return Stages(
        T.Compose([*fixed, T.PILToTensor()]),
        T.Compose(
            [*varying, T.ConvertImageDtype(torch.float32), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        ),
    )
