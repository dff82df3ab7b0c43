"""The embedded local cloud: the SAM stack on moto, with real Lambda, SageMaker and HTTP API.

The local cloud builds API Gateway events with the pipeline's own ``mlops.http_events``,
which lives in the common layer (``layers/common``); that directory goes on ``sys.path``
here, as pytest's ``pythonpath`` does for the tests. Importing it also shares one botocore
data loader among the process's sessions (``shared_loader``). See docs/local-mode.md.
"""

import sys
from pathlib import Path

_COMMON_LAYER = str(Path(__file__).resolve().parents[1] / "layers" / "common")
if _COMMON_LAYER not in sys.path:
    sys.path.append(_COMMON_LAYER)

# Every botocore session in a local cloud process reads botocore's data files through one
# loader (see shared_loader): installed here, before anything imports moto.
from localcloud.runtime import botocore_loader  # noqa: E402

botocore_loader.install()
