"""Pack the training code into SageMaker's sourcedir.tar.gz, byte-for-byte reproducibly.

The archive holds train.py at its root (SageMaker script mode), the serving handlers and
the library they share, and nothing else. Sorted names, zeroed times and owners and fixed
modes make the bytes a function of the file contents only, so the archive's sha256 names
it in S3 and an unchanged code layer is never uploaded twice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import ConfigurationError

ENTRY_POINT = "train.py"
METRIC_DEFINITIONS = "metric_definitions.json"
FILES = (ENTRY_POINT, "inference.py", METRIC_DEFINITIONS)
PACKAGES = ("imgcls",)
_SKIP_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class SourceDir:
    archive: bytes
    sha256: str
    files: tuple[str, ...]


def collect_files(code_dir: Path) -> list[tuple[str, Path]]:
    """(archive name, path) of every file that goes into the archive, sorted by name."""
    missing = [name for name in (*FILES, *PACKAGES) if not (code_dir / name).exists()]
    if missing:
        raise ConfigurationError(f"training code in {code_dir} lacks {', '.join(missing)}")
    entries = [(name, code_dir / name) for name in FILES]
    for package in PACKAGES:
        for path in (code_dir / package).rglob("*"):
            relative = path.relative_to(code_dir)
            if (
                path.is_file()
                and not _SKIP_DIRS.intersection(relative.parts)
                and not path.name.endswith(_SKIP_SUFFIXES)
            ):
                entries.append((relative.as_posix(), path))
    return sorted(entries)


def build_sourcedir(code_dir: Path) -> SourceDir:
    entries = collect_files(code_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in entries:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    payload = compressed.getvalue()
    return SourceDir(
        payload, hashlib.sha256(payload).hexdigest(), tuple(name for name, _ in entries)
    )


def load_metric_definitions(code_dir: Path) -> list[dict[str, str]]:
    """The MetricDefinitions train.py's metric lines are parsed with (single source)."""
    path = code_dir / METRIC_DEFINITIONS
    try:
        definitions: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    if not isinstance(definitions, list) or not all(
        isinstance(item, dict) and set(item) == {"Name", "Regex"} for item in definitions
    ):
        raise ConfigurationError(f"{path} must be a list of {{Name, Regex}} objects")
    return definitions
