"""``python -m localcloud``: run the pipeline on this machine, or talk to a running local cloud.

up                  start the local cloud (template deployed) and its console page
run                 sample data -> upload -> the pipeline -> classify -> summary, then stop
                    (--keep-open: keep it and the console page up afterwards)
upload PATH         upload a data set (folder or archive) to the bucket: starts a run
executions          list the state machine's executions
history [EXECUTION] one execution, state by state, and its output (default: the newest
                    run that did something: no-op runs are skipped)
classify URL|FILE   classify an image through the HTTP API
approve [PACKAGE]   approve a model package version (default: the newest pending one),
                    which starts a deploy-only run; --reject records it Rejected
interrupt JOB       reclaim a managed spot training job's capacity: it restarts from
                    its checkpoints
demo canary         models A, B (good) and C (faulty) through the canary under traffic:
                    B takes all traffic, an alarm rolls C back; then stop
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localcloud.cli.dataset_check import DatasetRefused, check_dataset, trigger_warning
from localcloud.cli.errors import report
from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.console.launch import add_console_arguments, start_console
from localcloud.runner.activity import Activity
from localcloud.runner.execution_history import (
    build_view,
    duration,
    is_no_op,
    render,
    render_output,
)
from localcloud.runner.pipeline_run import (
    CliError,
    as_archive,
    classify_file,
    classify_route,
    dataset_prefix,
    run_pipeline,
    upload,
)
from localcloud.runner.progress import Follower
from localcloud.runner.report import cost_estimate, execution_events
from localcloud.runtime.admin_api import SPOT_INTERRUPTIONS
from localcloud.runtime.connection import Connection, NotRunning, api_only, connect
from localcloud.runtime.launcher import LaunchError, LocalCloudProcess
from localcloud.runtime.settings import (
    STATE_VARIABLE,
    add_settings_arguments,
    default_state_dir,
    settings_from_args,
)
from localcloud.runtime.statefile import STATE_FILE, read_state


def _stop_on_sigterm() -> None:
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


# ---------------------------------------------------------------------------- commands
def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    cloud = LocalCloudProcess(settings)
    print(
        f"Starting the local cloud: deploying {settings.template.name} (the first start "
        "imports moto and starts the IAM evaluator: up to a minute)...",
        flush=True,
    )
    conn = cloud.start()
    stops = [cloud.stop]
    try:
        state = cloud.state
        print(f"Local cloud up: stack {state['stack_name']} in {conn.region}")
        print(f"  AWS endpoint  {conn.endpoint_url}")
        # LOCALCLOUD_STATE: where the commands, a notebook or a script find the stack
        env = {**conn.environment(), STATE_VARIABLE: str(settings.state_dir / STATE_FILE)}
        print("    export " + " ".join(f"{k}={v}" for k, v in env.items()))
        routes = ", ".join(conn.routes)
        print(f"  HTTP API      {conn.api_url}  ({routes})")
        prefix = dataset_prefix(state)
        print(f"  Data bucket   s3://{conn.the_bucket()}/{prefix}  (an archive there starts a run)")
        print(f"  State dir     {settings.state_dir}  (logs, executions, models, plots)")
        print(f"  IAM           {_iam_line(state)}")
        print(f"  SageMaker     {state.get('sagemaker_containers', '')}")
        print(f"  Account       {state.get('account_profile')}  (quotas: localcloud/account.yaml)")
        print(f"  Not emulated  {_not_emulated_line(state.get('not_emulated') or [])}")
        console = start_console(conn, settings, args.console_port)
        stops.append(console.stop)
        print(f"  Console       {console.url}  (executions, training, endpoint, registry)")
        print("Ctrl-C stops everything. What happens is printed below as it happens.", flush=True)
        assert cloud.proc is not None
        activity = Activity(conn, state.get("outputs") or {})
        while cloud.proc.poll() is None:
            time.sleep(1)
            for line in activity.poll():
                print(f"{time.strftime('%H:%M:%S')}  {line}", flush=True)
        print(f"the local cloud exited ({cloud.proc.returncode}); see {cloud.log_path}")
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        for stop in reversed(stops):
            stop()


def _iam_line(state: dict[str, object]) -> str:
    if state.get("iam") == "enforced":
        return (
            "enforced: functions, state machine, rule and SageMaker act as their template "
            "roles (--no-iam turns it off)"
        )
    return "not enforced (--no-iam)"


def _not_emulated_line(notes: list[str]) -> str:
    """The template's features with no local effect, in one line (the list: the docs)."""
    if not notes:
        return "nothing: every resource of the template runs locally"
    kinds = sorted({note.partition(": ")[2] or note for note in notes})
    shown = "; ".join(kinds[:2]) + ("; ..." if len(kinds) > 2 else "")
    docs = "docs/local-mode.md#what-is-emulated-and-what-is-not"
    return f"{len(notes)} template settings ({shown}): see {docs}"


def cmd_run(args: argparse.Namespace) -> int:
    outcome = run_pipeline(
        settings_from_args(args),
        data=args.data,
        classify=args.classify,
        timeout=args.timeout,
        console_port=args.console_port,
        keep_open=args.keep_open,
    )
    return 0 if outcome.succeeded else 1


def _connection(args: argparse.Namespace) -> Connection:
    return connect(
        args.state_dir.resolve(),
        endpoint_url=args.endpoint_url,
        api_url=getattr(args, "api_url", None),
        region=args.region,
        bucket=getattr(args, "bucket", None),
    )


def _api_connection(args: argparse.Namespace) -> Connection:
    """The HTTP API alone is enough to classify: --api-url needs no running `up`."""
    if args.api_url and not args.endpoint_url and read_state(args.state_dir.resolve()) is None:
        return api_only(args.api_url, args.region)
    return _connection(args)


def api_error_line(status: int, reply: Any) -> str:
    """The API's error reply as one line: its status, error code and message."""
    if isinstance(reply, dict):
        code, message = reply.get("error"), reply.get("message")
        text = f"{code}: {message}" if code and message else json.dumps(reply)
    else:
        text = " ".join(str(reply).split()) or "(no body)"
    return f"the HTTP API answered {status}: {text}"


def cmd_upload(args: argparse.Namespace) -> int:
    path: Path = args.path.resolve()
    if not path.exists():
        raise CliError(f"{path} does not exist")
    contents = ""
    if not args.no_check:
        try:
            contents = f" ({check_dataset(path)})"
        except DatasetRefused as exc:
            raise CliError(f"not uploaded: {exc} (--no-check uploads it anyway)") from None
    conn = _connection(args)
    prefix = dataset_prefix(read_state(args.state_dir.resolve()))
    with tempfile.TemporaryDirectory(prefix="localcloud-upload-") as tmp:
        archive = as_archive(path, Path(tmp))
        key = args.key or f"{prefix}{archive.name}"
        warning = trigger_warning(key, prefix)
        if warning:
            print(f"localcloud: warning: {warning}", file=sys.stderr)
        upload(conn, archive, key)
    print(f"uploaded s3://{conn.the_bucket()}/{key}{contents}")
    if not warning:
        print("it starts a run: follow it with `python -m localcloud history`")
    return 0


def cmd_executions(args: argparse.Namespace) -> int:
    conn = _connection(args)
    sfn = conn.client("stepfunctions")
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=conn.the_state_machine())
    executions = [e for page in pages for e in page["executions"]]
    if not executions:
        print("no executions yet")
        return 0
    print(f"{'NAME':<40} {'STATUS':<10} {'STARTED':<19}  {'DURATION':>8}")
    for e in sorted(executions, key=lambda e: e["startDate"]):
        stop = e.get("stopDate")
        took = duration((stop - e["startDate"]).total_seconds()) if stop else "-"
        started = e["startDate"].astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{e['name']:<40} {e['status']:<10} {started}  {took:>8}")
    return 0


def _find_execution(conn: Connection, wanted: str) -> dict[str, Any]:
    """DescribeExecution of the execution named ``wanted`` (a name, an ARN, or "latest":
    the newest that is not a no-op run)."""
    sfn = conn.client("stepfunctions")
    if wanted.startswith("arn:"):
        return dict(sfn.describe_execution(executionArn=wanted))
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=conn.the_state_machine())
    executions = [e for page in pages for e in page["executions"]]
    if not executions:
        raise CliError("the state machine has no executions yet")
    newest_first = sorted(executions, key=lambda e: e["startDate"], reverse=True)
    if wanted == "latest":
        descriptions = (
            sfn.describe_execution(executionArn=e["executionArn"]) for e in newest_first
        )
        chosen = next((d for d in descriptions if not is_no_op(d)), None)
        return dict(chosen or sfn.describe_execution(executionArn=newest_first[0]["executionArn"]))
    for e in newest_first:
        if e["name"] == wanted:
            return dict(sfn.describe_execution(executionArn=e["executionArn"]))
    raise CliError(f"no execution named {wanted!r} (see `python -m localcloud executions`)")


def _wait_for_first_execution(conn: Connection, timeout: float) -> None:
    """An upload starts its run within moments: ``history --wait`` right after it waits."""
    sfn = conn.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while not sfn.list_executions(stateMachineArn=conn.the_state_machine(), maxResults=1)[
        "executions"
    ]:
        if time.monotonic() >= deadline:
            raise CliError(f"no execution started within {timeout:.0f} s")
        time.sleep(0.2)


def cmd_history(args: argparse.Namespace) -> int:
    conn = _connection(args)
    if args.wait:
        _wait_for_first_execution(conn, args.timeout)
    description = _find_execution(conn, args.execution)
    if args.execution == "latest":
        print(f"(the newest run that did something: {description['name']})")
    if args.wait and description["status"] == "RUNNING":
        follower = Follower(conn, description["executionArn"], endpoint_name=None)
        description = follower.follow(timeout=args.timeout)
    events = execution_events(conn, description["executionArn"])
    print(render(build_view(events, description)))
    output = render_output(description.get("output"))
    if output:
        print("\n" + output)
    if not is_no_op(description):
        print("\n  On AWS it would cost (estimate)")
        print("\n".join("  " + line for line in cost_estimate(conn, description, events)))
    return 0 if not args.wait or description["status"] == "SUCCEEDED" else 1


def cmd_classify(args: argparse.Namespace) -> int:
    conn = _api_connection(args)
    target: str = args.image
    if target.startswith(("http://", "https://")):
        body = json.dumps({"url": target, "top_k": args.top_k}).encode()
        status, reply = conn.post(classify_route(conn), body, "application/json")
    else:
        path = Path(target)
        if not path.is_file():
            raise CliError(f"{path} is not a file (or an http(s) URL)")
        status, reply = classify_file(conn, path, f"?top_k={args.top_k}")
    if status != 200:
        raise CliError(
            api_error_line(status, reply), status=2 if status < 500 or status == 503 else 1
        )
    print(json.dumps(reply, indent=2) if not isinstance(reply, str) else reply)
    return 0


def _pending_version(conn: Connection, state_dir: Path) -> str:
    group = (read_state(state_dir).get("outputs") or {}).get("ModelPackageGroupName")
    if not group:
        raise CliError("the stack has no ModelPackageGroupName output; name the package ARN")
    listed = conn.client("sagemaker").list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="PendingManualApproval",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    if not listed:
        raise CliError(f"no version of {group} is PendingManualApproval")
    return str(listed[0]["ModelPackageArn"])


def cmd_approve(args: argparse.Namespace) -> int:
    conn = _connection(args)
    arn = args.package if args.package != "pending" else _pending_version(conn, args.state_dir)
    status = "Rejected" if args.reject else "Approved"
    sagemaker = conn.client("sagemaker")
    # A person's decision: the pipeline's own approval mark goes (see mlops/registry.py).
    sagemaker.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus=status,
        ApprovalDescription=args.description,
        CustomerMetadataPropertiesToRemove=["approved_by"],
    )
    print(f"{arn} is {status}")
    if status == "Approved":
        print("the approval event starts a deploy-only run: `python -m localcloud executions`")
    return 0


def cmd_interrupt(args: argparse.Namespace) -> int:
    conn = _connection(args)
    body = json.dumps({"TrainingJobName": args.job}).encode()
    request = urllib.request.Request(
        conn.endpoint_url + SPOT_INTERRUPTIONS,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["message"]
        except (ValueError, KeyError):
            message = f"HTTP {exc.code}"
        raise CliError(f"not interrupted: {message}") from None
    print(
        f"{args.job}: spot capacity reclaimed; it restarts on new hosts from its checkpoints "
        "(`python -m localcloud history` shows the run)"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from localcloud.cli import demo

    return 0 if demo.as_expected(demo.run_demo(settings_from_args(args), data=args.data)) else 1


# ---------------------------------------------------------------------------- parser
def _add_connection_arguments(
    parser: argparse.ArgumentParser, *, api: bool = False, bucket: bool = False
) -> None:
    group = parser.add_argument_group("which local cloud")
    group.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help=f"state dir of the running `up` (default: ${STATE_VARIABLE}'s, else %(default)s)",
    )
    group.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL") or None,
        help="AWS endpoint of the local cloud (default: $AWS_ENDPOINT_URL; overrides the "
        "state dir)",
    )
    if api:
        group.add_argument(
            "--api-url",
            help="the HTTP API's URL, or the stack's ApiUrl output (default: from the state "
            "dir); enough on its own",
        )
    group.add_argument("--region", default=None, help="region (with --endpoint-url)")
    if bucket:
        group.add_argument("--bucket", help="data bucket (default: the stack's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud",
        description="The pipeline on this machine: template.yaml deployed on a local AWS "
        "(moto) with real Lambda handlers, SageMaker training and endpoints, and the HTTP API.",
        epilog="`python -m localcloud COMMAND --help` describes a command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the local cloud in the foreground (Ctrl-C stops it)",
                        description="Start the local cloud, deploy the template, print the "
                        "endpoint, HTTP API and console URLs; Ctrl-C stops it all.")  # fmt: skip
    add_settings_arguments(up)
    add_console_arguments(up)
    up.set_defaults(handler=cmd_up)

    run = sub.add_parser("run", help="the whole pipeline once on sample data, then stop",
                         description="Start the local cloud, upload a data set (default: the "
                         "digits sample), follow the execution it starts, classify held-out "
                         "images through the HTTP API, print a summary and stop. Exits 1 "
                         "unless the execution succeeded.")  # fmt: skip
    add_settings_arguments(run)
    run.add_argument(
        "--data", type=Path, help="data set folder or archive (default: the digits sample)"
    )
    run.add_argument(
        "--classify",
        type=int,
        default=10,
        metavar="N",
        help="held-out images to classify at the end (default: %(default)s)",
    )
    run.add_argument("--timeout", type=float, default=1800,
                     help="seconds to wait for the execution (default: %(default)s)")  # fmt: skip
    add_console_arguments(run)
    run.add_argument("--keep-open", action="store_true",
                     help="after the summary, keep the local cloud and its console page up "
                     "until Ctrl-C")  # fmt: skip
    run.set_defaults(handler=cmd_run)

    up_load = sub.add_parser("upload", help="upload a data set; the upload starts a run",
                             description="Check the data set (train/ valid/ test/ with the "
                             "same class folders, at least 2, each with images; an archive "
                             "that opens), then upload the folder (packed as .tar.gz) or "
                             "archive to the data bucket's data-set prefix, which starts a "
                             "run. A data set that would fail is refused in one line (exit "
                             "2).")  # fmt: skip
    up_load.add_argument("path", type=Path, help="folder with train/ valid/ test/, or an archive")
    up_load.add_argument("--key", help="object key (default: <DatasetPrefix><archive name>)")
    up_load.add_argument("--no-check", action="store_true",
                         help="upload without checking the layout first (the pipeline's "
                         "training job checks it too)")  # fmt: skip
    _add_connection_arguments(up_load, bucket=True)
    up_load.set_defaults(handler=cmd_upload)

    executions = sub.add_parser("executions", help="list the state machine's executions",
                                description="List the executions, oldest first.")  # fmt: skip
    _add_connection_arguments(executions)
    executions.set_defaults(handler=cmd_executions)

    history = sub.add_parser("history", help="one execution, state by state, and its output",
                             description="Every state of an execution with its status, start, "
                             "duration, retries and the cause of a failure, then its output "
                             "(metrics, endpoint, package, the approve command).")  # fmt: skip
    history.add_argument("execution", nargs="?", default="latest",
                         help="execution name or ARN (default: latest, the newest run that "
                         "did something: no-op runs are skipped)")  # fmt: skip
    history.add_argument("--wait", action="store_true",
                         help="follow a running execution (waiting for one to start) until "
                         "it ends; exit 1 unless it succeeded")  # fmt: skip
    history.add_argument("--timeout", type=float, default=1800,
                         help="seconds --wait waits (default: %(default)s)")  # fmt: skip
    _add_connection_arguments(history)
    history.set_defaults(handler=cmd_history)

    classify = sub.add_parser("classify", help="classify an image through the HTTP API",
                              description="POST an image file (raw bytes) or an http(s) URL "
                              "to the HTTP API and print the reply.")  # fmt: skip
    classify.add_argument("image", help="image file or http(s) URL")
    classify.add_argument(
        "--top-k", type=int, default=5, help="predictions to return (default: %(default)s)"
    )
    _add_connection_arguments(classify, api=True)
    classify.set_defaults(handler=cmd_classify)

    approve = sub.add_parser("approve", help="approve (or reject) a registered model version",
                             description="UpdateModelPackage to Approved, as the console or "
                             "`aws sagemaker update-model-package` would: the \"SageMaker Model "
                             "Package State Change\" event starts a deploy-only run of the "
                             "state machine (ApprovalMode=manual).")  # fmt: skip
    approve.add_argument("package", nargs="?", default="pending",
                         help="model package version ARN (default: the newest "
                         "PendingManualApproval version of the stack's group)")  # fmt: skip
    approve.add_argument("--reject", action="store_true", help="record it Rejected instead")
    approve.add_argument("--description", default="approved with python -m localcloud approve",
                         help="ApprovalDescription to record")  # fmt: skip
    _add_connection_arguments(approve)
    approve.set_defaults(handler=cmd_approve)

    interrupt = sub.add_parser("interrupt", help="reclaim a spot training job's capacity",
                               description="What the spot market does on AWS: stop a running "
                               "managed spot training job's hosts mid-epoch. The job goes "
                               "Interrupted, then starts again on new hosts from its "
                               "checkpoints (CheckpointConfig), within its "
                               "MaxWaitTimeInSeconds.")  # fmt: skip
    interrupt.add_argument("job", help="training job name (`aws sagemaker list-training-jobs`)")
    _add_connection_arguments(interrupt)
    interrupt.set_defaults(handler=cmd_interrupt)

    demo = sub.add_parser("demo", help="show the canary and its alarm rollback, then stop",
                          description="canary: start a local cloud, train and deploy model A, "
                          "then, under traffic through the HTTP API, retrain model B (it goes "
                          "through the canary and takes all traffic) and deploy model C (A's "
                          "weights with a code/inference.py that decodes only JPEG: it fails "
                          "PNG requests, the endpoint's 5XX alarm rolls it back). Prints the "
                          "states, the endpoint, the alarms and which model answered as it "
                          "happens, then a summary; stops everything (also on Ctrl-C). Exits 1 "
                          "unless it went that way.")  # fmt: skip
    demo.add_argument("scenario", choices=["canary"], metavar="scenario",
                      help="what to show: canary (the only one)")  # fmt: skip
    add_settings_arguments(demo)
    demo.add_argument("--data", type=Path, help="data set folder (default: the digits sample)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would blame the top-level parser: name the command's usage
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    _stop_on_sigterm()
    try:
        return int(args.handler(args))
    except (CliError, NotRunning, LaunchError, TemplateError, TimeoutError) as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `history | head`: the reader has gone; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as exc:  # anything else is one line too, never a traceback
        return report(exc)
