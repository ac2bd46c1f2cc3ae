"""Two-process runs with torchrun (gloo on CPU) against the one-process run of the same config."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from datasets import read_meta
from datasets.meta import write_meta

REPO = Path(__file__).resolve().parents[2]
STEPS = [["ball", "box"], ["cone"]]


def launch(nproc: int, *args, script: Path = REPO / "tools" / "train_val.py") -> subprocess.CompletedProcess:
    command = [sys.executable, str(script), *map(str, args)]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   *command[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_root, make_config):
    folder = tmp_path_factory.mktemp("ddp")
    config = folder / "config.yaml"
    # With the feature standardisation of the Synthetic3D default, so its all-reduced statistics are checked too.
    config.write_text(yaml.safe_dump({**make_config(tiny_root, STEPS), "model": {
        **make_config(tiny_root, STEPS)["model"], "feature_norm": "standardize"}}))
    one = launch(1, "--config", config, "--output", folder / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(2, "--config", config, "--output", folder / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    return config, folder / "one", folder / "two"


def test_two_processes_same_schema_and_close_metrics(runs):
    _, one, two = runs
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert a["classes"] == b["classes"] and set(a["R"]) == set(b["R"]) and set(a["final"]) == set(b["final"])
    # Same global batch, but another shuffling and jitter per rank: close, not equal (tolerance in README).
    for key in ("i_auroc", "p_auroc"):
        assert abs(a["final"][key] - b["final"][key]) < 0.35, (key, a["final"][key], b["final"][key])
    log = (two / "train_val.log").read_text()
    assert log.count("final table (step 1)") == 1  # only rank 0 logs and writes


def test_feature_standardisation_fitted_over_every_rank_equals_single_process(runs):
    _, one, two = runs
    states = [torch.load(out / "step_1" / "ckpt.pth", weights_only=False)["model"] for out in (one, two)]
    for key in ("feature_norm.mean_rgb", "feature_norm.std_rgb", "feature_norm.mean_depth", "feature_norm.std_depth"):
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-5, atol=1e-6)
    assert bool(states[0]["feature_norm.fitted"])


def test_sharded_evaluation_equals_single_process(runs):
    config, one, _ = runs
    result = launch(2, "--config", config, "--output", one, "--evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    original = json.loads((one / "step_1" / "metrics.json").read_text())
    sharded = json.loads((one / "step_1" / "metrics_evaluate.json").read_text())
    assert set(sharded["per_class"]) == set(original["per_class"])
    # Every test image scored exactly once: a dropped or doubled image of these 6-image classes would move
    # I-AUROC by >= 0.05. Maps differ only by batch-size-dependent float rounding (float16 storage).
    for name, metrics in original["per_class"].items():
        for key, value in metrics.items():
            assert math.isclose(value, sharded["per_class"][name][key], abs_tol=1e-4), (name, key)


def test_global_batch_not_divisible_by_processes_is_refused(runs):
    config, _, _ = runs
    result = launch(2, "--config", config, "--output", config.parent / "odd", "--opts", "dataset.batch_size=3")
    assert result.returncode != 0
    assert "dataset.batch_size=3 is the global batch and must be a multiple of the 2 processes" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_nodes(*args, timeout: int = 600,
                 per_node: tuple[list, list] = ([], [])) -> list[subprocess.CompletedProcess]:
    """Two torchrun "machines" on loopback (static rendezvous, one process each), as README tells users.

    ``per_node``: arguments added on node 0 and node 1 only (e.g. an ``--output`` of each node's own).
    """
    port = _free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               "--master_addr=127.0.0.1", f"--master_port={port}", str(REPO / "tools" / "train_val.py"),
               *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(command[:3] + [f"--node_rank={r}"] + command[3:] + list(map(str, per_node[r])),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for r in (0, 1)]
    results = []
    for node in nodes:
        out, err = node.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(node.args, node.returncode, out, err))
    return results


def test_two_nodes_on_loopback_sharing_a_disk_cache_equal_one_node_with_two_processes(runs):
    config, _, two = runs
    out = config.parent / "nodes"
    nodes = launch_nodes("--config", config, "--output", out, "--opts", "trainer.feature_cache=disk")
    assert [n.returncode for n in nodes] == [0, 0], nodes[0].stderr[-2000:] + nodes[1].stderr[-2000:]
    a = json.loads((two / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    for key in ("i_auroc", "p_auroc", "aupro_30"):  # the same ranks, seeds and features: the same run
        assert math.isclose(a["final"][key], b["final"][key], abs_tol=1e-6), key
    # One shared file per image the steps trained on, each written whole (no temporary file left), none twice.
    log = (out / "train_val.log").read_text()
    trained = sum(int(n) for n in re.findall(r"step \d: training on .* \((\d+) images", log))
    entries = list((out / "feature_cache").iterdir())
    assert trained > 0 and len(entries) == trained and all(e.suffix == ".pt" for e in entries)
    assert re.search(r"peak resident memory per rank: \d+, \d+ MiB", log)


def test_two_nodes_without_a_shared_folder_equal_the_shared_folder_run(runs, tmp_path):
    """Node 1's --output is its own, empty folder: rank 0 reads the run folder and tells the other ranks."""
    config, _, two = runs
    own = (["--output", tmp_path / "node0"], ["--output", tmp_path / "node1"])
    for extra in ([], ["--resume"]):
        nodes = launch_nodes("--config", config, *extra, per_node=own)
        assert [n.returncode for n in nodes] == [0, 0], nodes[0].stderr[-2000:] + nodes[1].stderr[-2000:]
        a = json.loads((two / "results.json").read_text())
        b = json.loads((tmp_path / "node0" / "results.json").read_text())
        for key in ("i_auroc", "p_auroc", "aupro_30"):
            assert math.isclose(a["final"][key], b["final"][key], abs_tol=1e-6), key
        assert not (tmp_path / "node1" / "results.json").exists()
    assert nodes[0].stdout.count("already finished: skipping (--resume)") == len(STEPS)


@pytest.fixture(scope="module")
def broken_shard(runs, tiny_root, tmp_path_factory):
    """A copy of the data whose test image 1 (rank 1's evaluation shard only) is corrupt; config and path."""
    config, _, _ = runs
    root = shutil.copytree(tiny_root, tmp_path_factory.mktemp("broken") / "data")
    write_meta(root)
    target = [r for r in read_meta(root / "test.jsonl") if r["clsname"] in STEPS[0]][1]["filename"]
    cfg = yaml.safe_load(config.read_text())
    cfg["dataset"]["root"] = str(root)
    broken = config.parent / "broken.yaml"
    broken.write_text(yaml.safe_dump(cfg))
    return broken, root / target


def _error_lines(results) -> list[str]:
    """``error:`` messages of every process (another rank's progress bar may share the pipe and the line)."""
    return [m for r in results for m in re.findall(r"(?:^|(?<=[\r\n|\]]))\s*error: [^\r\n]*", r.stderr)]


def _manual(config: Path, output: Path, script: Path = REPO / "tools" / "train_val.py"
            ) -> list[subprocess.CompletedProcess]:
    """Two processes started by hand (RANK/WORLD_SIZE/MASTER_ADDR), no torchrun agent to stop the survivor."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    command = [sys.executable, str(script), "--config", str(config), "--output", str(output)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in (0, 1)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@pytest.mark.parametrize("launcher", ["torchrun", "by_hand"])
def test_a_failure_on_rank_1_ends_every_rank_and_resume_finishes(broken_shard, tmp_path, launcher):
    config, corrupt = broken_shard
    good = corrupt.read_bytes()
    corrupt.write_bytes(b"not a png")
    out = tmp_path / "out"
    start = time.monotonic()
    results = [launch(2, "--config", config, "--output", out)] if launcher == "torchrun" else _manual(config, out)
    elapsed = time.monotonic() - start
    corrupt.write_bytes(good)
    assert all(r.returncode != 0 for r in results)
    assert elapsed < 240  # training included; the failure itself ends every process within seconds
    lines = _error_lines(results)
    assert len(lines) == 1, [r.stderr[-1500:] for r in results]
    assert "cannot be decoded" in lines[0] and str(corrupt) in lines[0]
    if launcher == "by_hand":  # torchrun's agent prints its own report; our processes print no traceback
        assert all("Traceback" not in r.stderr for r in results)
    assert (out / "step_0" / "ckpt.pth").is_file() and not (out / "step_0" / "metrics.json").exists()
    resumed = launch(2, "--config", config, "--output", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(json.loads((out / "results.json").read_text())["steps"]) == len(STEPS)


# tools/train_val.py with a full disk on rank 0 only, from the first write of step 1's checkpoint on.
DISK_FULL_ON_RANK_0 = """
import errno, os, runpy, sys
if os.environ.get("RANK") == "0":
    real_fsync = os.fsync
    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if "step_1" in target and "ckpt.pth" in target:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)
    os.fsync = fsync
sys.argv[0] = TRAIN_VAL
runpy.run_path(TRAIN_VAL, run_name="__main__")
"""


@pytest.mark.parametrize("launcher", ["torchrun", "by_hand"])
def test_a_full_disk_on_rank_0_ends_every_rank_and_resume_finishes(runs, tmp_path, launcher):
    config, _, _ = runs
    script = tmp_path / "train_val_disk_full.py"
    script.write_text(f"TRAIN_VAL = {str(REPO / 'tools' / 'train_val.py')!r}\n" + DISK_FULL_ON_RANK_0)
    out = tmp_path / "out"
    start = time.monotonic()
    if launcher == "torchrun":
        results = [launch(2, "--config", config, "--output", out, script=script)]
    else:
        results = _manual(config, out, script)
    elapsed = time.monotonic() - start
    assert all(r.returncode != 0 for r in results)
    assert elapsed < 240  # both steps' training included; the failure itself ends every process within seconds
    lines = _error_lines(results)
    assert len(lines) == 1, [r.stderr[-1500:] for r in results]
    assert "cannot write checkpoint" in lines[0] and "step_1" in lines[0] and "disk full" in lines[0]
    if launcher == "by_hand":
        assert all("Traceback" not in r.stderr for r in results)
    assert not (out / "step_1" / "ckpt.pth").exists() and not list(out.rglob("*.tmp"))
    assert torch.load(out / "step_0" / "ckpt.pth", weights_only=True)["step"] == 0  # the last good one, intact
    resumed = launch(2, "--config", config, "--output", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(json.loads((out / "results.json").read_text())["steps"]) == len(STEPS)
