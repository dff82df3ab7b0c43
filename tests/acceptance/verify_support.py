"""Running `python -m tools.verify_aws` from a test, with no AWS configuration of the
machine's (no variables, no files, no instance metadata) unless the test adds it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bare_environment(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def fake_sam(folder: Path, body: str) -> Path:
    """A `sam` that runs ``body`` (a shell script) instead of building or deploying."""
    sam = folder / "sam"
    sam.write_text(f"#!/bin/sh\n{body}\n")
    sam.chmod(0o755)
    return sam
