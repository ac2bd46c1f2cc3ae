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
