"""The baseline for bench.serving: the original course handler behind the same contract.

It predicts the way the course's inference script did (PIL open, ``Resize(224)`` of the
short side without a crop, ``ToTensor``, ``torch.no_grad``, one image per forward pass,
raw logits as JSON), hosted on a threaded stdlib server with ``GET /ping`` and
``POST /invocations``. Only for measuring against; never used to serve.

    python -m bench.baseline_server --model-dir DIR --port PORT
"""

from __future__ import annotations

import argparse
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from PIL import Image

import training  # noqa: F401  (puts training/ on sys.path)

# isort: split
import imgcls  # noqa: F401  (first: its guard makes torchvision importable)
from imgcls.model import load_model

# isort: split
from torchvision import transforms as T

TRANSFORM = T.Compose([T.Resize(224), T.ToTensor()])


def make_handler(model: torch.nn.Module, device: torch.device) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out as two writes: with Nagle on, the body waited for the
        # client's delayed ACK (up to 40 ms per response on Linux)
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._reply(200, b"{}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            image = Image.open(io.BytesIO(body))
            with torch.no_grad():
                logits = model(TRANSFORM(image).unsqueeze(0).to(device))
            self._reply(200, json.dumps(logits.tolist()).encode())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as serve.py
    model, _ = load_model(args.model_dir, device)
    ThreadingHTTPServer.request_queue_size = 128  # as serve.py: no resets under bursts
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(model, device))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
