"""torch.distributed set-up from torchrun's or SLURM's environment; a no-op for one process.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Under `srun` (one task
per GPU) SLURM sets SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID instead; the rendezvous address
is the first node of the job (from `scontrol show hostnames`) and the port is derived from the
job id, so every task computes the same values without talking to each other.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# Rank 0 alone trains the tokenizer and binarises the corpus (hours for a large one) while the other
# processes wait; the default group's timeout (10 min for NCCL, 30 for gloo) would end them first.
PREPARE_TIMEOUT = timedelta(hours=24)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    wait_group: object = None  # gloo, PREPARE_TIMEOUT: for wait_for_main only

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _slurm_to_torch_env() -> None:
    env = os.environ
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = env["SLURM_NTASKS"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    if "MASTER_ADDR" not in env:
        addr = env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if nodelist:
            try:
                out = subprocess.run(
                    ["scontrol", "show", "hostnames", nodelist],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                addr = out.stdout.split()[0]
            except (OSError, subprocess.CalledProcessError, IndexError):
                pass
        env["MASTER_ADDR"] = addr
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))


def backend(use_cuda: bool) -> str:
    """NCCL for CUDA tensors and, on GPUs too, gloo for CPU ones: the trainer all-reduces a few
    host-side numbers (each update's target count, the stop flag) that NCCL alone refuses, and
    reducing them on the host keeps the host from waiting for the GPU."""
    return "cpu:gloo,cuda:nccl" if use_cuda else "gloo"


def setup(device_pref: str) -> DistInfo:
    env = os.environ
    # Only inside an `srun` step (SLURM_STEP_ID set) is there one process per task to meet.
    if (
        int(env.get("WORLD_SIZE", "1")) <= 1
        and int(env.get("SLURM_NTASKS", "1")) > 1
        and "SLURM_PROCID" in env
        and env.get("SLURM_STEP_ID") is not None
    ):
        _slurm_to_torch_env()
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            from intdim.errors import UserError

            raise UserError("device=cuda but no GPU is visible; use device=cpu or device=auto")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend(use_cuda), init_method="env://")
    return DistInfo(rank, world, local_rank, device, wait_group=new_wait_group(world))


def new_wait_group(world: int):
    """The group wait_for_main uses (every process must call this, in the same order)."""
    return dist.new_group(backend="gloo", timeout=PREPARE_TIMEOUT) if world > 1 else None


def wait_for_main(info: DistInfo, ok: bool = True) -> bool:
    """Wait, however long it takes, until every process gets here; True when every one says `ok`
    (rank 0 says whether its one-off preparation worked, so that the others fail with it instead of
    waiting for a training step that will never come)."""
    if not info.enabled:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=info.wait_group)
    return bool(flag.item())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce(info: DistInfo, t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=op)
    return t
