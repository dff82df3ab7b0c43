"""Make ``import torchvision`` work where its compiled extension cannot load.

The torchvision 0.28.0 wheel on PyPI is a CUDA build. On a CPU-only torch its ``_C``
extension fails to load, and ``import torchvision`` then dies registering fake kernels
for ``torchvision::nms``/``qnms``, ops that the missing extension would have defined.
Declaring the two op schemas lets the import finish; models, transforms and datasets
work (only ``ops.nms`` and ``io.decode_*`` stay unavailable, and nothing here uses them).

Where the extension loads (SageMaker containers, GPU hosts) this does nothing beyond
what torchvision's own import does: it loads the same library.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragment: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidates = sorted(Path(spec.submodule_search_locations[0]).glob("_C*.so"))
    return candidates[0] if candidates else None


def ensure_importable() -> None:
    """Run before the first ``import torchvision``; idempotent."""
    global _fragment
    if "torchvision" in sys.modules or _fragment is not None:
        return
    path = _extension_path()
    if path is None:
        return  # no compiled extension at all: nothing to stand in for
    try:
        torch.ops.load_library(str(path))
        return
    except OSError:
        pass
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _fragment.define(schema)
