"""The local console: a web page for executions (the state machine's graph coloured by the
history, each state's input, output, error and cause, the event history), training jobs
(status, hosts, log, metric curves per epoch), endpoints (config, variants, instances,
scaling, invocations and errors per minute) and the model registry.

It reads the local cloud's AWS APIs like any script would; ``python -m localcloud up`` and
``run`` serve it (see docs/console.md). Training curves are also written as PNG files to
``<state dir>/plots/<job>.png`` for terminal users.
"""

from localcloud.console.page_server import Console

__all__ = ["Console"]
