"""Training and serving code.

SageMaker runs ``train.py`` as a script from its code directory and the inference
toolkit imports ``inference.py`` from ``model/code``; both find the ``imgcls`` package
beside them. Putting this directory on ``sys.path`` gives ``python -m training.train``
and the tests the same view.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
