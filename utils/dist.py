"""torch.distributed helpers; one process is not a special case (rank 0 of world size 1).

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed` reads them and
starts a process group (NCCL on CUDA, gloo on CPU). Without them nothing is started and every helper
answers as a single process would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from utils.errors import ConfigError, IUMADError

__all__ = [
    "init_distributed",
    "cleanup_distributed",
    "get_rank",
    "get_world_size",
    "local_world_size",
    "is_main_process",
    "barrier",
    "all_gather_objects",
    "gather_objects_to_main",
    "broadcast_object",
    "decided_on_main",
    "select_device",
    "TIMEOUT_ENV",
    "is_peer_failure",
]

#: Environment variable: seconds a collective may wait for the other processes before it fails (default 900).
TIMEOUT_ENV = "IUMAD_DIST_TIMEOUT_S"
_PEER_FAILURE_SIGNS = ("closed by peer", "connection reset", "timed out", "timeout", "broken pipe")


def get_rank() -> int:
    """Rank of this process (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_world_size() -> int:
    """Number of processes of this run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without a group)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if get_world_size() > 1 else 1


def is_main_process() -> bool:
    """True on rank 0: the only process that writes files and logs."""
    return get_rank() == 0


def select_device() -> torch.device:
    """CUDA device ``LOCAL_RANK`` when CUDA is available, else the CPU.

    Raises:
        ConfigError: ``LOCAL_RANK`` names a GPU this machine does not have (more processes than visible GPUs).
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank, count = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"process LOCAL_RANK={local_rank} needs GPU {local_rank}, but {count} GPU(s) are visible; start at most "
            f"{count} processes per machine (run.sh's NUM_PROCESSES) or widen CUDA_VISIBLE_DEVICES"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed() -> torch.device:
    """Start the process group when launched by torchrun (or with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set).

    Collectives time out after ``$IUMAD_DIST_TIMEOUT_S`` seconds (900 by default): a process whose peer
    died where nothing else notices (e.g. NCCL, no torchrun agent) fails then instead of waiting forever.
    Returns this process's device.
    """
    device = select_device()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 900)))
        if device.type == "cuda":  # bound to this process's GPU from the start (no guessing in the first collective)
            dist.init_process_group(backend="nccl", timeout=timeout, device_id=device)
        else:
            dist.init_process_group(backend="gloo", timeout=timeout)
    return device


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another process of the run stopped or hung."""
    if get_world_size() == 1:
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(sign in str(exc).lower() for sign in _PEER_FAILURE_SIGNS)


def cleanup_distributed() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op for one process)."""
    if get_world_size() > 1:
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Gather one picklable object from every rank; returns them in rank order on every rank."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_objects_to_main(obj: Any) -> list[Any] | None:
    """Gather one picklable object from every rank on rank 0 only.

    Returns the objects in rank order on rank 0 and ``None`` on every other rank, which so holds only its
    own object (e.g. its evaluation shard) instead of a copy of everything.
    """
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] | None = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def decided_on_main(decide: Callable[[], Any]) -> Any:
    """Run ``decide()`` on rank 0 only and give its result to every rank; a :class:`IUMADError` it raises, too.

    What a run folder holds (finished steps, checkpoints, step records) is read this way: the folder lives
    on node 0, and a node without a shared file system has an empty one of its own.
    """
    if get_world_size() == 1:
        return decide()
    result, error = None, None
    if is_main_process():
        try:
            result = decide()
        except IUMADError as exc:
            error = exc
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s object on every rank."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
