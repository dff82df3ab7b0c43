"""Two-host data-parallel training on one machine, launched both ways SageMaker can."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.distributed import ConfigError, DistConfig, from_env
from tests.data_helpers import free_port
from tests.training.conftest import FAST_FLAGS, REPO, clean_env, train_command

HOSTS = ["algo-1", "algo-2"]
TIMEOUT = 300


def test_single_process_by_default() -> None:
    assert from_env({}) == DistConfig()
    assert (
        from_env({"SM_HOSTS": json.dumps(["algo-1"]), "SM_CURRENT_HOST": "algo-1"}) == DistConfig()
    )


def test_torchrun_variables_win() -> None:
    cfg = from_env(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SM_HOSTS": json.dumps(HOSTS)}
    )
    assert (cfg.rank, cfg.world_size, cfg.local_rank, cfg.launcher) == (3, 4, 1, "torchrun")
    assert cfg.init_method == "env://"


def test_one_process_per_sagemaker_host() -> None:
    cfg = from_env({"SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": "algo-2"})
    assert (cfg.rank, cfg.world_size, cfg.is_main) == (1, 2, False)
    assert cfg.init_method == "tcp://algo-1:7777"
    env = {"SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": "algo-1"}
    cfg = from_env({**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1234"})
    assert (cfg.rank, cfg.init_method) == (0, "tcp://127.0.0.1:1234")


def test_an_unknown_current_host_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SM_CURRENT_HOST='algo-9' is not one of"):
        from_env({"SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": "algo-9"})


def _run_pair(commands: list[list[str]], envs: list[dict[str, str]], logs: Path) -> list[str]:
    """Start both processes, wait for both (bounded), kill whatever is left; return stderr."""
    procs: list[subprocess.Popen] = []
    try:
        for rank, (command, env) in enumerate(zip(commands, envs, strict=True)):
            out = (logs / f"out{rank}").open("w")
            err = (logs / f"err{rank}").open("w")
            procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err))
        codes = [proc.wait(timeout=TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    errs = [(logs / f"err{rank}").read_text() for rank in range(2)]
    assert codes == [0, 0], errs
    return errs


def _train_args(data: Path, host_dir: Path) -> list[str]:
    return [
        "--data-dir", str(data), "--model-dir", str(host_dir / "model"),
        "--output-dir", str(host_dir / "output"), "--epochs", "2",
        "--early-stopping-patience", "0", *FAST_FLAGS,
    ]  # fmt: skip


def _check(tiny_data: Path, tmp_path: Path, errs: list[str]) -> None:
    # Only rank 0 writes the model and the metrics; each "host" had its own directories.
    assert (tmp_path / "host0" / "model" / "model.json").is_file()
    assert (tmp_path / "host0" / "output" / "metrics.json").is_file()
    assert not (tmp_path / "host1" / "model").exists()
    assert not (tmp_path / "host1" / "output").exists()
    # Each rank trained on its own half of the 24 training images.
    for rank, err in enumerate(errs):
        assert (
            f"[rank {rank}/2] train: this process trains on a shard of 12 of 24 train images" in err
        )
    # Metric lines come from rank 0 alone; every rank saw the same (all-reduced) numbers.
    out0, out1 = ((tmp_path / f"out{r}").read_text() for r in range(2))
    assert out0.count("[metrics]") == 2 and "[final]" in out0
    assert out1 == ""
    summaries = [re.findall(r"train: ((?:best )?epoch \d+: \w+ loss .*)", err) for err in errs]
    assert len(summaries[0]) == 3
    assert summaries[0] == summaries[1]


def test_two_sagemaker_hosts_train_one_model(tiny_data: Path, tmp_path: Path) -> None:
    port = str(free_port())
    envs = [
        clean_env(
            {
                "SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": host,
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1",
            }
        )
        for host in HOSTS
    ]  # fmt: skip
    commands = [train_command(_train_args(tiny_data, tmp_path / f"host{r}")) for r in range(2)]
    errs = _run_pair(commands, envs, tmp_path)
    _check(tiny_data, tmp_path, errs)


def test_torchrun_on_two_nodes_trains_one_model(tiny_data: Path, tmp_path: Path) -> None:
    port = str(free_port())
    commands = [
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--nproc_per_node", "1", "--node_rank", str(rank), "--master_addr", "127.0.0.1",
            "--master_port", port, "-m", "training.train",
            *_train_args(tiny_data, tmp_path / f"host{rank}"),
        ]
        for rank in range(2)
    ]  # fmt: skip
    envs = [clean_env({"OMP_NUM_THREADS": "1"}) for _ in range(2)]
    errs = _run_pair(commands, envs, tmp_path)
    _check(tiny_data, tmp_path, errs)
