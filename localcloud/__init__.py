"""The embedded local cloud: the SAM stack on moto, with real Lambda, SageMaker and HTTP API.

The local cloud builds API Gateway events with the pipeline's own ``mlops.http_events``,
which lives in the common layer (``layers/common``); that directory goes on ``sys.path``
here, as pytest's ``pythonpath`` does for the tests. See docs/local-mode.md.
"""

import sys
from pathlib import Path

_COMMON_LAYER = str(Path(__file__).resolve().parents[1] / "layers" / "common")
if _COMMON_LAYER not in sys.path:
    sys.path.append(_COMMON_LAYER)
