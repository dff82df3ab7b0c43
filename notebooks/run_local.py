"""Run notebooks/train_and_deploy.ipynb headless against the local cloud (``make notebook``).

    python -m notebooks.run_local [--state-dir DIR] [--data DIR] [--out FILE]

Uses the local cloud that ``python -m localcloud up`` runs for the state dir, else starts one
(stopped at the end). The notebook gets the environment ``up`` prints, plus the SDK's local
settings (no role validation, no telemetry); every cell's output is printed as it runs and
the executed notebook, outputs included, is written to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "train_and_deploy.ipynb"
SDK_DEFAULTS = REPO / "notebooks" / "sdk-defaults.yaml"
CELL_TIMEOUT_S = 3600


def notebook_environment(connection: Any, state_file: Path) -> dict[str, str]:
    """What the notebook needs to run against a local cloud."""
    return {
        **connection.environment(),
        "LOCALCLOUD_STATE": str(state_file),
        "SAGEMAKER_VALIDATE_ROLE": "false",  # the SDK's role check calls IAM/STS on AWS
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(SDK_DEFAULTS),  # TelemetryOptOut
    }


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cell_text(cell: Mapping[str, Any]) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        else:
            parts.append(output.get("text") or "")
    return "".join(parts)


def execute(
    env: Mapping[str, str],
    *,
    out: Path | None = None,
    echo: Callable[[str], None] = lambda text: None,
    notebook: Path = NOTEBOOK,
    timeout: int = CELL_TIMEOUT_S,
) -> str:
    """Execute the notebook with ``env`` in its kernel's environment; what its cells printed.
    Raises nbclient's CellExecutionError on a failing cell (the outputs are still saved)."""
    import nbclient
    import nbformat

    nb = nbformat.read(notebook, as_version=4)

    def executed(cell: Any, cell_index: int, **_: Any) -> None:
        text = cell_text(cell)
        if text:
            echo(text)

    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
        on_cell_executed=executed,
    )
    try:
        with _environ(env):
            client.execute()
    finally:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out)
    return "\n".join(cell_text(cell) for cell in nb.cells if cell.cell_type == "code")


def main(argv: list[str] | None = None) -> int:
    from localcloud.runtime.connection import from_state
    from localcloud.runtime.launcher import LaunchError, LocalCloudProcess
    from localcloud.runtime.settings import DEFAULT_STATE_DIR, Settings
    from localcloud.runtime.statefile import STATE_FILE, read_state

    parser = argparse.ArgumentParser(
        prog="python -m notebooks.run_local",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="the local cloud's state dir (default: %(default)s)",
    )
    parser.add_argument("--data", type=Path, help="data set folder (default: the digits)")
    parser.add_argument("--out", type=Path, help="executed notebook (default: in the state dir)")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    out = args.out or state_dir / "notebook" / NOTEBOOK.name
    cloud = None
    state = read_state(state_dir)
    if state is None:
        print(f"Starting a local cloud (state in {state_dir})...", flush=True)
        cloud = LocalCloudProcess(Settings(state_dir=state_dir))
        try:
            connection = cloud.start()
        except LaunchError as exc:
            print(f"notebook: {exc}", file=sys.stderr)
            return 2
    else:
        print(f"Using the local cloud at {state['endpoint_url']}", flush=True)
        connection = from_state(state)
    env = notebook_environment(connection, state_dir / STATE_FILE)
    env["NOTEBOOK_WORK_DIR"] = str(state_dir / "notebook")
    if args.data:
        env["DATA_DIR"] = str(args.data.resolve())
    try:
        execute(env, out=out, echo=lambda text: print(text, end="", flush=True))
    except Exception as exc:  # a failing cell: its error, not nbclient's traceback
        print(f"notebook: a cell failed: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
        print(f"notebook: the executed notebook is {out}", file=sys.stderr)
        return 1
    finally:
        if cloud is not None:
            cloud.stop()
    print(f"executed notebook (with outputs): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
