"""``python -m localcloud``: see ``localcloud.cli.commands``."""

import sys

from localcloud.cli.commands import main

sys.exit(main())
