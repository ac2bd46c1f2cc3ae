"""torch.distributed helpers in two real gloo processes (started by hand, as torchrun would)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each rank sends its own shard; rank 0 must receive both in rank order, rank 1 nothing.
WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from utils.dist import cleanup_distributed, gather_objects_to_main, get_rank, init_distributed
init_distributed()
shard = [{"rank": get_rank(), "index": i} for i in range(get_rank(), 5, 2)]
print(json.dumps(gather_objects_to_main(shard)))
cleanup_distributed()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gather_objects_to_main_leaves_other_ranks_empty_handed():
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(REPO)],
            env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    on_main, on_other = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert on_main == [[{"rank": 0, "index": i} for i in (0, 2, 4)], [{"rank": 1, "index": i} for i in (1, 3)]]
    assert on_other is None


def test_a_local_rank_beyond_the_visible_gpus_is_one_config_error(monkeypatch, tmp_path, capsys):
    """Faked CUDA with one GPU and LOCAL_RANK 1: one error line naming both numbers, exit code 2."""
    import torch

    from tools.train_val import main
    from utils.dist import select_device
    from utils.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    try:
        select_device()
    except ConfigError as exc:
        assert "LOCAL_RANK=1" in str(exc) and "1 GPU(s) are visible" in str(exc)
    else:
        raise AssertionError("select_device accepted LOCAL_RANK 1 with one GPU")
    config = REPO / "experiments" / "Synthetic3D" / "6_1_with_4_step" / "config.yaml"
    assert main(["--config", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: process LOCAL_RANK=1 needs GPU 1, but 1 GPU(s)")


def test_the_suite_hides_cuda_from_its_processes():
    """CPU tests stay CPU tests on a GPU host: the conftest hides CUDA, also from subprocesses."""
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "" or os.environ.get("IUMAD_TEST_CUDA") == "1"
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False" or os.environ.get("IUMAD_TEST_CUDA") == "1"
