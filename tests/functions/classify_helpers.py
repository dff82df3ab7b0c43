"""Helpers for the classify function's tests: images, a local image server, a fake DNS.

The URL guard refuses loopback addresses, so tests never weaken it: a fake public host
name resolves (through ``FetchPolicy.resolve``) to a public address,
and ``FetchPolicy.connect`` routes that one address to the local server. Everything the
guard checks is what it would check in production.
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from mlops.url_fetch import FetchPolicy

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_HOST = "images.example.test"
PUBLIC_IP = "93.184.215.14"  # public (is_global); never contacted: connect() maps it locally
ENV = {
    "ENDPOINT_NAME": "imgcls-test",
    "ENDPOINT_TIMEOUT_SECONDS": "25",
    "URL_FETCH_TIMEOUT_SECONDS": "5",
    "MAX_IMAGE_BYTES": "200000",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "classify",
    "POWERTOOLS_METRICS_NAMESPACE": "ImagePipelineTest",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def image_bytes(fmt: str = "JPEG", size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(buf, format=fmt)
    return buf.getvalue()


def load_classify_app() -> ModuleType:
    """functions/classify/app.py as a fresh module (it reads the env at import)."""
    path = ROOT / "functions" / "classify" / "app.py"
    spec = importlib.util.spec_from_file_location("classify_app_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeContext:
    """The LambdaContext attributes Powertools reads."""

    function_name: str = "classify"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:classify"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    remaining_ms: int = 29_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class ImageServer:
    port: int
    routes: dict[str, Route]
    stop: threading.Event
    requests: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path)


@contextmanager
def image_server(tls: ssl.SSLContext | None = None) -> Iterator[ImageServer]:
    """A local HTTP(S) server on a free port; add routes to ``server.routes``."""
    stop = threading.Event()
    state = ImageServer(0, {}, stop)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.headers.get("Host", ""), self.path))
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
            else:
                route(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        stop.set()  # releases routes that wait
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_bytes(body: bytes, content_type: str = "image/jpeg", status: int = 200) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def declaring(length: str, body: bytes) -> Route:
    """``body`` as an image with ``length`` in its Content-Length field, then the end of the
    connection."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", length)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


@dataclass
class FakeNetwork:
    """DNS answers by host, and a connector that reaches ``server`` for the public IP only."""

    server: ImageServer
    hosts: dict[str, list[str]]
    resolved: list[str] = field(default_factory=list)
    connected: list[tuple[str, int]] = field(default_factory=list)

    def resolve(self, host: str, port: int, timeout: float) -> list[str]:
        self.resolved.append(host)
        if host not in self.hosts:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.hosts[host]

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        self.connected.append((address, port))
        if address != PUBLIC_IP:
            raise ConnectionRefusedError(f"test network has no route to {address}")
        return socket.create_connection(("127.0.0.1", self.server.port), timeout=timeout)

    def policy(self, **overrides: Any) -> FetchPolicy:
        settings: dict[str, Any] = {"max_bytes": 200_000, "timeout": 5.0}
        settings.update(overrides)
        return FetchPolicy(resolve=self.resolve, connect=self.connect, **settings)


def self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for ``host``, its own CA: trust it with ``cafile=cert.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def client_tls(cert_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``cert_file`` (as the system store would a CA)."""
    return ssl.create_default_context(cafile=str(cert_file))
