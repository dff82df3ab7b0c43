"""``upload``'s check of a data set before it is uploaded: the layout train.py requires and
an archive that opens, by the same rules and in the same words as the training job (which
would otherwise fail 30 s later, after starting its hosts).

The rules live in training/imgcls/layout.py, which imports only the standard library; it
is loaded here on its own, as the ``imgcls`` package's ``__init__`` imports torch.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from localcloud.runtime.settings import PROJECT_ROOT

LAYOUT_FILE = PROJECT_ROOT / "training" / "imgcls" / "layout.py"
_MODULE = "localcloud_dataset_layout"
TRIGGER_SUFFIXES = (".tar.gz", ".tgz", ".zip")  # what the template's rule starts a run for


class DatasetRefused(ValueError):
    """The data set would fail its training job; the message says why, in one sentence."""


def _layout() -> ModuleType:
    if _MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_MODULE, LAYOUT_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module  # dataclasses look their module up while defining
        spec.loader.exec_module(module)
    return sys.modules[_MODULE]


def check_dataset(path: Path) -> str:
    """What the data set holds (one line), or DatasetRefused: ``path`` is a folder with
    train/ valid/ test/ (or one top folder holding them) or a .zip/.tar.gz/.tgz of one."""
    layout = _layout()
    try:
        if path.is_dir():
            entries, where = layout.folder_entries(path), str(path)
        elif layout.archive_suffix(path.name) is None:
            raise DatasetRefused(f"{path} is not a .zip, .tar.gz or .tgz archive or a folder")
        else:
            entries, where = layout.archive_entries(path), path.name
        found = layout.check_layout(entries, where)
    except layout.DatasetError as exc:
        raise DatasetRefused(str(exc)) from None
    counts = "/".join(str(sum(map(len, found.images[s].values()))) for s in layout.SPLITS)
    return f"{len(found.classes)} classes; train/valid/test: {counts} images"


def trigger_warning(key: str, prefix: str) -> str | None:
    """Why an upload to ``key`` starts no run (outside the rule's prefix or suffixes), or None."""
    if key.startswith(prefix) and key.endswith(TRIGGER_SUFFIXES):
        return None
    return (
        f"{key} is outside the trigger ({prefix}*{{{','.join(TRIGGER_SUFFIXES)}}}): "
        "it is uploaded but starts no run"
    )
