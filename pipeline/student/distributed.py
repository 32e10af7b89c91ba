"""Data parallel (DDP, one process per device under ``torchrun`` / ``accelerate launch``): who am I,
which device, the process group, and each rank's part of a global batch."""
from __future__ import annotations

import os
from datetime import timedelta

import torch


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) under ``torchrun`` / ``accelerate launch``; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(pref: str) -> str:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        _, world, local = dist_info()
        return f"cuda:{local}" if world > 1 else "cuda"
    return "cpu"


def init_distributed(device: str) -> None:
    """One process per GPU (DDP), started by ``torchrun`` or ``accelerate launch``."""
    import torch.distributed as dist

    _, world, local = dist_info()
    if world > 1 and not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        # rank 0 evaluates (generation on the validation and test splits) while the others wait at a
        # barrier: a generous timeout, beyond NCCL's default of 10 minutes
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(minutes=60))


def rank_slice(batch: list[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s contiguous part of a global batch: sizes ``n // world``, one more for the
    first ``n % world`` ranks (every row in exactly one part)."""
    q, r = divmod(len(batch), world)
    start = rank * q + min(rank, r)
    return batch[start : start + q + (rank < r)]
