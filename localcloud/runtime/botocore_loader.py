"""One botocore data loader for every botocore session in the local cloud's process.

botocore caches the JSON files it reads (endpoints, service models) per loader, and each
session makes its own loader. The local cloud's process makes many sessions: moto makes
them at import and per service, the deploy and the SageMaker emulation make their own.
Measured at its start: 142 file loads taking 1.2 s of a 4.4 s start, endpoints.json
alone read 5 times (0.6 s), sagemaker's model 3 times. Sharing one loader per search
path reads each file once, which is what botocore does within one session. moto's own
model loader (moto.core.loaders, which adds its "moto-extras") is a separate class and
stays separate.

Installed before moto is imported: moto builds sessions at import time.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_installed = False


class _Paths(list):  # type: ignore[type-arg]
    """A loader's search paths; boto3 appends its own on each session: add it once."""

    def append(self, path: Any) -> None:
        if path not in self:
            super().append(path)


def install() -> None:
    """Make ``botocore.session`` create one loader per data path, shared (idempotent)."""
    global _installed
    import botocore.session
    from botocore import loaders

    with _lock:
        if _installed:
            return
        create = loaders.create_loader
        shared: dict[str | None, loaders.Loader] = {}

        def create_shared(search_path_string: str | None = None) -> loaders.Loader:
            with _lock:
                if search_path_string not in shared:
                    loader = create(search_path_string)
                    loader._search_paths = _Paths(loader.search_paths)
                    shared[search_path_string] = loader
                return shared[search_path_string]

        botocore.session.create_loader = create_shared
        _installed = True
