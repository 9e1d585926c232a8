"""A tuned task as a few KB: theta_d (safetensors) + config + seed + a fingerprint of the base.

The file is a safetensors file: its tensors are `theta_d` (and `head.<name>` when the head was
trained directly); its string metadata holds the format tag, the SubspaceConfig as JSON, D, m,
the projection's construction (`Projection.CONSTRUCTION`, e.g. "fastfood/2") and the fingerprint
of the body weights the task was tuned on. Loading never runs code.

theta_d means nothing without the P it was tuned through, so a file whose construction differs
from the one this intdim builds for the same seed is refused, never loaded into another subspace.
Format 1 did not record the construction: its dense and sparse projections are the ones built
today, its Fastfood ("fastfood/1", Gaussian G) is not.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save
from torch import nn

from intdim.errors import UserError
from intdim.io import atomic_write_bytes
from intdim.projection import PROJECTIONS
from intdim.subspace import SubspaceConfig, SubspaceModel, wrap

FORMAT = "intdim-task/2"
# What format 1 files were tuned through (format 1 did not record it).
_FORMAT1_CONSTRUCTIONS = {"fastfood": "fastfood/1", "dense": "dense/1", "sparse": "sparse/1"}


def save_task(sub: SubspaceModel, path: str | Path) -> None:
    tensors = {"theta_d": sub.theta_d.detach().float().cpu().contiguous()}
    for name, p in zip(sub._direct_names, sub.head_params, strict=True):
        tensors[f"head.{name}"] = p.detach().cpu().contiguous()
    meta = {
        "format": FORMAT,
        "config": json.dumps(sub.config.to_dict(), sort_keys=True),
        "seed": str(sub.config.seed),
        "D": str(sub.D),
        "m": str(sub.m),
        "projection": sub.projection.CONSTRUCTION,
        "fingerprint": sub.fingerprint(),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_task(model: nn.Module, path: str | Path) -> SubspaceModel:
    """Rebuild the tuned model from `model` (the same base weights) and the task file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except Exception as e:  # safetensors raises its own error types
        raise UserError(f"{path} is not an intdim task file: {e}") from None
    fmt = meta.get("format")
    if fmt not in (FORMAT, "intdim-task/1"):
        raise UserError(f"{path} is not an intdim task file (format {fmt!r})")
    config = SubspaceConfig(**json.loads(meta["config"]))
    saved = meta.get("projection") or _FORMAT1_CONSTRUCTIONS.get(config.projection, "")
    built = PROJECTIONS.get(config.projection).CONSTRUCTION
    if saved != built:
        raise UserError(
            f"task file {path} was tuned through the projection {saved!r}, and this intdim builds "
            f"{built!r} from the same seed: its theta_d would land in a different subspace; "
            "tune the task again with this intdim"
        )
    sub = wrap(model, config)
    if str(sub.D) != meta["D"]:
        raise UserError(
            f"task file {path} was tuned on a model with D={meta['D']} parameters, "
            f"this one has D={sub.D}; load it onto the model it was tuned from"
        )
    got = sub.fingerprint()
    if got != meta["fingerprint"]:
        raise UserError(
            f"task file {path} was tuned on different base weights (fingerprint "
            f"{meta['fingerprint'][:12]} != {got[:12]}); load it onto the model it was tuned from"
        )
    with torch.no_grad():
        sub.theta_d.copy_(tensors["theta_d"].to(sub.theta_d.device))
        for name, p in zip(sub._direct_names, sub.head_params, strict=True):
            p.copy_(tensors[f"head.{name}"].to(p.device))
    return sub
