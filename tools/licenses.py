"""``make licenses``: THIRD_PARTY.md, every dependency's licence, from the installed packages.

Python packages are those constraints.txt pins (what `make run` and `make test` install),
read from their installed metadata: the SPDX ``License-Expression``, else the trove
classifiers or ``License`` field, else the licence file they ship. A package is ``runtime``
when requirements.txt needs it (directly or through its dependencies), else ``test``. Node
packages come from package-lock.json (``dev`` ones are test tools).

Every licence must be on ALLOWED (an ``A OR B`` expression needs one allowed side), or the
package must be in ACCEPTED with the reason. ``python -m tools.licenses --check`` fails on
a licence outside them or a THIRD_PARTY.md that is not what the packages say.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "THIRD_PARTY.md"
# Permissive and file-level (weak) copyleft licences: usable in an Apache-2.0 project.
ALLOWED = {
    "0BSD", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "Artistic-2.0", "BSD-2-Clause",
    "BSD-3-Clause", "BSL-1.0", "CC0-1.0", "CNRI-Python", "EPL-1.0", "HPND", "ISC",
    "LGPL-2.1", "LGPL-2.1-or-later", "LGPL-3.0", "MIT", "MIT-0", "MIT-CMU", "MPL-2.0",
    "PSF-2.0", "Python-2.0", "Unlicense", "ZPL-2.1", "Zlib",
}  # fmt: skip
SETUP = {"uv"}  # what the Makefile installs the rest with
# Outside ALLOWED, accepted for a stated use only.
ACCEPTED = {
    "@cloud-copilot/iam-simulate": "the local cloud's IAM evaluator",
    "@cloud-copilot/iam-policy": "a dependency of iam-simulate",
    "@cloud-copilot/iam-utils": "a dependency of iam-simulate",
}
ACCEPTED_NOTE = (
    "AGPL-3.0-or-later, accepted for the local mode only: it runs unmodified, as a separate "
    "node process installed from the npm registry (localcloud/services/iam/helper.mjs talks to it "
    "over a pipe); it is never part of a Lambda package, a layer or a model artifact "
    "(tests/test_licenses.py checks the code they are built from), and "
    "`python -m localcloud up --no-iam` runs without it."
)
_CLASSIFIERS = {
    "Apache Software License": "Apache-2.0",
    "MIT License": "MIT",
    "BSD License": "BSD-3-Clause",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Artistic License": "Artistic-2.0",
    "MIT No Attribution License (MIT-0)": "MIT-0",
}
_NAMES = {  # free-text License fields, as packages write them
    "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "apache license version 2.0": "Apache-2.0",
    "mit": "MIT", "mit license": "MIT", "bsd": "BSD-3-Clause", "bsd-3-clause": "BSD-3-Clause",
    "bsd-2-clause": "BSD-2-Clause", "bsd license": "BSD-3-Clause", "isc license": "ISC",
    "psf-2.0": "PSF-2.0", "mpl-2.0": "MPL-2.0", "mpl-2.0 and mit": "MPL-2.0 AND MIT",
    "gplv2 | eplv1": "GPL-2.0-only OR EPL-1.0", "dual license": "Apache-2.0 AND BSD-3-Clause",
}  # fmt: skip


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    licence: str
    kind: str  # setup | runtime | test | local mode (node) | test (node)

    @property
    def allowed(self) -> bool:
        return self.name in ACCEPTED or any(
            all(part.strip("() ") in ALLOWED for part in side.split(" AND "))
            for side in self.licence.split(" OR ")
        )


def _from_file(dist: metadata.Distribution) -> str | None:
    for file in dist.files or []:
        if re.search(r"(LICEN[CS]E|COPYING)[^/]*$", str(file), re.I):
            try:
                text = Path(str(dist.locate_file(file))).read_text(errors="replace")
            except OSError:
                continue
            if "Apache License" in text and "Version 2.0" in text:
                return "Apache-2.0"
            if "Permission is hereby granted, free of charge" in text:
                return "MIT"
            if "Redistribution and use in source and binary forms" in text:
                return "BSD-3-Clause" if "Neither the name" in text else "BSD-2-Clause"
    return None


def licence_of(dist: metadata.Distribution) -> str:
    """The package's licence as an SPDX expression (UNKNOWN if nothing says)."""
    meta = dist.metadata
    if meta.get("License-Expression"):
        return str(meta["License-Expression"])
    raw = " ".join((meta.get("License") or "").split()).lower()
    if raw in _NAMES:
        return _NAMES[raw]
    classified = [
        _CLASSIFIERS[c.rsplit(" :: ", 1)[-1]]
        for c in meta.get_all("Classifier") or []
        if c.startswith("License :: OSI Approved :: ") and c.rsplit(" :: ", 1)[-1] in _CLASSIFIERS
    ]
    if classified:
        return " OR ".join(dict.fromkeys(classified))
    return _from_file(dist) or "UNKNOWN"


def _requirements(path: Path) -> list[Requirement]:
    """A requirements file's requirements, extras kept (``-r``/``-c`` lines skipped)."""
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def _closure(roots: Iterable[Requirement]) -> set[str]:
    """The names ``roots`` need, transitively, as installed (markers and extras honoured)."""
    seen: set[str] = set()
    todo = [(r, tuple(sorted(r.extras))) for r in roots]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.update({key, name})
        for text in dist.requires or []:
            needed = Requirement(text)
            environment = {"extra": ""}
            if needed.marker and not any(
                needed.marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras)
            ):
                continue
            todo.append((needed, tuple(sorted(needed.extras))))
    return {name for name in seen if "[" not in name}


def python_dependencies() -> list[Dependency]:
    runtime = _closure(_requirements(REPO / "requirements.txt"))
    found = []
    pinned = {canonicalize_name(r.name) for r in _requirements(REPO / "constraints.txt")}
    for name in sorted(pinned):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # pinned for a platform or extra this environment does not use
        kind = "setup" if name in SETUP else "runtime" if name in runtime else "test"
        version = dist.version.split("+")[0]  # a build's local label (+cpu) is no other licence
        found.append(Dependency(name, version, licence_of(dist), kind))
    return found


def node_dependencies() -> list[Dependency]:
    lock = json.loads((REPO / "package-lock.json").read_text())
    found = []
    for path, package in sorted(lock.get("packages", {}).items()):
        if not path:
            continue
        name = path.rsplit("node_modules/", 1)[-1]
        kind = "test (node)" if package.get("dev") else "local mode (node)"
        licence = package.get("license") or "UNKNOWN"
        found.append(Dependency(name, package.get("version", "?"), licence, kind))
    return found


def render(dependencies: list[Dependency]) -> str:
    lines = [
        "# Third-party licences",
        "",
        "This project is Apache-2.0 (LICENSE). The packages it installs, with their licences,",
        "as `make licenses` (tools/licenses.py) reads them from the installed metadata; a test",
        "keeps this file equal to what it generates. `setup`: the installer; `runtime`: what",
        "`make run` installs; `test`: what `make test` adds; node packages come from",
        "package-lock.json.",
        "",
        f"**The IAM evaluator's packages** ({', '.join(sorted(ACCEPTED))}) are {ACCEPTED_NOTE}",
        "",
        "| Package | Version | Licence | Used for |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {d.name} | {d.version} | {d.licence} | {d.kind} |" for d in dependencies]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.licenses", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="only check: write nothing, fail on a difference"
    )
    args = parser.parse_args(argv)
    dependencies = python_dependencies() + node_dependencies()
    refused = [d for d in dependencies if not d.allowed]
    for dep in refused:
        print(f"licenses: {dep.name} {dep.version} is {dep.licence}: not allowed", file=sys.stderr)
    text = render(dependencies)
    if args.check:
        if OUTPUT.read_text() != text:
            print("licenses: THIRD_PARTY.md is out of date: run `make licenses`", file=sys.stderr)
            return 1
    else:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.name}: {len(dependencies)} packages")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
