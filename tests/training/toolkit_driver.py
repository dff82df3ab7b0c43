"""Drive the SageMaker PyTorch inference toolkit's HandlerService on a model directory.

Run as ``python -I toolkit_driver.py MODEL_DIR REQUESTS_JSON`` (isolated: neither the
repository nor training/ is on sys.path, only the model's ``code/``, as in the serving
container). REQUESTS_JSON is a list of ``{"headers": {...}, "body": "<base64>"}``; one
JSON line per request is printed: ``{"status": [code, phrase] | null, "content_type",
"body"}``. The fake context has what the toolkit reads from TorchServe's ``Context``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path


class RequestProcessor:
    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


class Context:
    """The parts of ``ts.context.Context`` the toolkit touches."""

    model_name = "model"

    def __init__(self, model_dir: str) -> None:
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_processor: list[RequestProcessor] = []
        self.status: tuple[int, str] | None = None
        self.content_type: str | None = None

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)

    def set_response_content_type(self, index: int, content_type: str) -> None:
        self.content_type = content_type


def main(model_dir: str, requests_file: str) -> None:
    # What the container does before TorchServe starts the worker.
    os.environ["SAGEMAKER_PROGRAM"] = "inference.py"
    sys.path.insert(0, str(Path(model_dir) / "code"))
    from sagemaker_pytorch_serving_container.handler_service import HandlerService

    service = HandlerService()
    context = Context(model_dir)
    service.initialize(context)
    for request in json.loads(Path(requests_file).read_text()):
        context.request_processor = [RequestProcessor(request["headers"])]
        context.status = context.content_type = None
        # TorchServe hands bodies over as bytearray (decode_input_request=false)
        data = [{"body": bytearray(base64.b64decode(request["body"]))}]
        (body,) = service.handle(data, context)
        print(
            json.dumps(
                {
                    "status": context.status,
                    "content_type": context.content_type,
                    "body": body if isinstance(body, str) else body.decode(),
                }
            )
        )
    loaded = sys.modules["imgcls"].__file__
    print(json.dumps({"imgcls": loaded}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
