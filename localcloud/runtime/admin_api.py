"""The local cloud's own API, beside AWS's, for what happens on AWS that no AWS API asks
for: ``POST /_localcloud/spot-interruptions`` with ``{"TrainingJobName": NAME}`` reclaims a
managed spot training job's capacity (``python -m localcloud interrupt NAME`` calls it).

Answers are JSON: 200 with what was done, 400 ``{"message"}`` for a request the local
cloud refuses (unknown job, not a spot job, not training), 404 for another path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

PREFIX = "/_localcloud/"
SPOT_INTERRUPTIONS = PREFIX + "spot-interruptions"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _reply(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def wrap(app: WsgiApp) -> WsgiApp:
    """``app`` (moto's dispatcher) with the local cloud's own paths in front of it."""

    def admin(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(PREFIX):
            return app(environ, start_response)
        if path != SPOT_INTERRUPTIONS or environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, "404 Not Found", {"message": f"no {path} here"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            name = json.loads(environ["wsgi.input"].read(length) or b"{}")["TrainingJobName"]
        except (ValueError, KeyError, TypeError):
            return _reply(
                start_response, "400 Bad Request", {"message": 'send {"TrainingJobName": NAME}'}
            )
        from localcloud.services import sagemaker

        try:
            sagemaker.interrupt_training_job(str(name))
        except (KeyError, ValueError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            return _reply(start_response, "400 Bad Request", {"message": str(message)})
        return _reply(start_response, "200 OK", {"interrupted": name})

    return admin
