"""The console's HTTP server: the page (static files) and a small JSON API over the local
cloud's AWS APIs. Runs on a thread of ``python -m localcloud up``/``run``; 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localcloud.console import plots, sagemaker_data, tuning_data
from localcloud.console.data import NotFound, Reader

log = logging.getLogger("localcloud.console")
STATIC = Path(__file__).resolve().parent / "static"
PLOT_SCAN_S = 5.0
FINISHED_JOB = ("Completed", "Failed", "Stopped")


class BadRequest(ValueError):
    pass


class Console:
    """The console for one local cloud: ``start()`` serves it, ``stop()`` ends it (bounded)."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        *,
        state_dir: Path | None = None,
        port: int = 0,
        title: str = "local cloud",
    ) -> None:
        self.reader = Reader(endpoint_url, region)
        self.state_dir = state_dir
        self.title = title
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._plotted: dict[str, str] = {}  # job name -> the status its PNG shows
        self._blank: set[str] = set()  # failed jobs with no epoch to draw: no PNG
        self._plot_lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._server is not None, "the console is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"console": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="console",
            daemon=True,
        )
        serve.start()
        self._threads.append(serve)
        if self.state_dir is not None:
            plotter = threading.Thread(target=self._plot_loop, name="console-plots", daemon=True)
            plotter.start()
            self._threads.append(plotter)
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    # ------------------------------------------------------------ plots for the terminal
    def plot_path(self, job_name: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "plots" / f"{job_name}.png"

    def write_plots(self) -> list[Path]:
        """PNG training curves (state dir) of every finished job, drawn once each; returns
        the files of all finished jobs."""
        if self.state_dir is None:
            return []
        files = []
        clients = self.reader.clients
        with self._plot_lock:  # the background scan and `run`'s final call
            for job in sagemaker_data.training_jobs(clients):
                if job["status"] not in FINISHED_JOB:
                    continue
                path = self.plot_path(job["name"])
                drawn = self._plotted.get(job["name"]) == job["status"]
                if not drawn or not (path.is_file() or job["name"] in self._blank):
                    described = sagemaker_data.describe_job(clients, job["name"])
                    metrics, _ = sagemaker_data.job_metrics(clients, described)
                    self._plotted[job["name"]] = job["status"]
                    if not metrics.names and job["status"] != "Completed":
                        self._blank.add(job["name"])  # failed before its first epoch
                        continue
                    plots.write_png(metrics, f"{job['name']} ({job['status']})", path)
                if path.is_file():
                    files.append(path)
        return files

    def _plot_loop(self) -> None:
        while not self._stopping.wait(PLOT_SCAN_S):
            try:
                self.write_plots()
            except (ClientError, BotoCoreError, OSError) as exc:
                log.warning("writing training plots failed: %s", exc)

    # ------------------------------------------------------------ the JSON API
    def api(self, path: str, query: dict[str, str]) -> tuple[Any, str]:
        """(body, content type) for an API path; raises NotFound/BadRequest."""
        clients = self.reader.clients
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")[1:]]
        match parts:
            case ["overview"]:
                return {
                    "title": self.title,
                    "state_machines": self.reader.state_machines(),
                    "endpoints": sagemaker_data.endpoints(clients),
                    "time": time.time(),
                }, "json"
            case ["executions"]:
                return self.reader.executions(), "json"
            case ["execution"]:
                return self.reader.execution(_required(query, "arn")), "json"
            case ["training-jobs"]:
                return sagemaker_data.training_jobs(clients), "json"
            case ["training-jobs", name]:
                return sagemaker_data.training_job(clients, name), "json"
            case ["training-jobs", name, "plot.svg"]:
                return sagemaker_data.training_plot(clients, name, "svg"), "image/svg+xml"
            case ["training-jobs", name, "plot.png"]:
                return sagemaker_data.training_plot(clients, name, "png"), "image/png"
            case ["endpoints"]:
                return sagemaker_data.endpoints(clients), "json"
            case ["endpoints", name]:
                return sagemaker_data.endpoint(clients, name), "json"
            case ["registry"]:
                return sagemaker_data.registry(clients), "json"
            case ["tuning-jobs"]:
                return tuning_data.tuning_jobs(clients), "json"
            case ["tuning-jobs", name]:
                return tuning_data.tuning_job(clients, name), "json"
            case ["tuning-jobs", name, "plot.svg"]:
                return tuning_data.tuning_plot(clients, name, "svg"), "image/svg+xml"
        raise NotFound(f"no such API: {path}")


def _required(query: dict[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise BadRequest(f"the query parameter {name!r} is required")
    return value


class _Handler(BaseHTTPRequestHandler):
    console: Console
    server_version = "localcloud-console"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path.startswith("/api/"):
                body, kind = self.console.api(url.path, query)
                if kind == "json":
                    self._send(HTTPStatus.OK, json.dumps(body, default=str).encode(), kind)
                else:
                    self._send(HTTPStatus.OK, body, kind)
            else:
                self._static(url.path)
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except BadRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            self._error(HTTPStatus.BAD_GATEWAY, f"{error.get('Code')}: {error.get('Message')}")
        except BotoCoreError as exc:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"the local cloud did not answer: {exc}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # one line to the page; the traceback to the log
            log.exception("console request %s failed", self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("/", "/index.html") else path.lstrip("/")
        target = (STATIC / name).resolve()
        if STATIC not in target.parents or not target.is_file():
            raise NotFound(f"no such page: {path}")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, target.read_bytes(), kind)

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": status.phrase, "message": message}).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, body, "json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        content_type = "application/json" if kind == "json" else kind
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
