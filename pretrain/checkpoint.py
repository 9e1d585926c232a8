"""Checkpoints: RUN_DIR/checkpoints/checkpoint_<updates>/, complete or invisible.

A checkpoint holds what `AutoModelForMaskedLM` / `AutoTokenizer.from_pretrained` need
(config.json, model.safetensors, tokenizer files), the resolved config, and the trainer state to
resume exactly: trainer_state.pt (updates, data position, scheduler, RNG), rng_rank<r>.pt (each
process's RNG), optimizer.pt, and for subspace runs subspace.safetensors (theta_d). The state files
hold only tensors and plain containers and are read with `torch.load(weights_only=True)`, so
loading never runs code. checkpoint.json (updates, tokens seen, time) is the last file written.

The directory is built as .checkpoint_<updates>.tmp-<pid> beside its final name and renamed, so a
reader (the probe's watcher) never sees a partial checkpoint. Weights stay in every checkpoint
(the probe needs the whole trajectory); optimizer.pt, the bulk of the state, is deleted from all
but the last K.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from intdim.errors import UserError
from intdim.io import atomic_write_json, atomic_write_text, share_files

_NAME = re.compile(r"^checkpoint_(\d+)$")
OPTIMIZER_FILE = "optimizer.pt"
TRAINER_FILE = "trainer_state.pt"
INFO_FILE = "checkpoint.json"
SUBSPACE_FILE = "subspace.safetensors"


def checkpoints_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and (p / INFO_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_resumable(run_dir: Path) -> Path | None:
    """The newest complete checkpoint that still has its optimizer state."""
    for _, path in reversed(complete_checkpoints(run_dir)):
        if (path / OPTIMIZER_FILE).is_file() and (path / TRAINER_FILE).is_file():
            return path
    return None


def remove_partial(run_dir: Path) -> None:
    """Temporary directories left by a process killed while saving."""
    root = checkpoints_root(run_dir)
    if root.is_dir():
        for p in root.glob(".checkpoint_*.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)


def temp_dir(run_dir: Path, updates: int, token: str) -> Path:
    return checkpoints_root(run_dir) / f".checkpoint_{updates}.tmp-{token}"


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_rank_rng(tmp: Path, rank: int) -> None:
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")


def write_checkpoint(
    tmp: Path,
    *,
    updates: int,
    hf_model,
    tokenizer,
    resolved_yaml: str,
    trainer_state: dict,
    optimizer_state: dict,
    info: dict,
    subspace_theta: torch.Tensor | None = None,
) -> Path:
    """Fill `tmp` (already holding the per-rank RNG files) and rename it into place."""
    hf_model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_text(tmp / "resolved_config.yaml", resolved_yaml)
    torch.save(trainer_state, tmp / TRAINER_FILE)
    torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    if subspace_theta is not None:
        save_file({"theta_d": subspace_theta.detach().cpu().contiguous()}, tmp / SUBSPACE_FILE)
    atomic_write_json(tmp / INFO_FILE, {**info, "updates": updates, "time": time.time()})
    share_files(tmp)  # safetensors writes 0600; the probe may run as a colleague on the cluster
    _fsync_dir(tmp)
    final = tmp.parent / f"checkpoint_{updates}"
    if final.exists():  # saved already (e.g. a signal right after a scheduled save)
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    os.rename(tmp, final)
    _fsync_dir(tmp.parent)
    return final


def prune_optimizer_states(run_dir: Path, keep: int) -> None:
    with_state = [p for _, p in complete_checkpoints(run_dir) if (p / OPTIMIZER_FILE).is_file()]
    for path in with_state[:-keep]:
        (path / OPTIMIZER_FILE).unlink(missing_ok=True)


def _damaged(file: Path, e: BaseException) -> UserError:
    """The one line for a checkpoint file that cannot be read back (truncated by a full disk, a
    copy cut short, garbled): which file, and how to resume from the checkpoint before."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UserError(
        f"cannot resume from {file.parent}: {file.name} is damaged ({first}); delete "
        f"{file.parent} to resume from an earlier checkpoint, or start a new run_dir"
    )


def _load(file: Path):
    try:
        return torch.load(file, weights_only=True)
    except Exception as e:  # truncated zip, unpickling error, ...
        raise _damaged(file, e) from None


def load_state(path: Path, rank: int) -> tuple[dict, dict, dict | None]:
    """(trainer state, optimizer state, this rank's RNG state or None)."""
    trainer = _load(path / TRAINER_FILE)
    optimizer = _load(path / OPTIMIZER_FILE)
    rng_file = path / f"rng_rank{rank}.pt"
    rng = _load(rng_file) if rng_file.is_file() else None
    return trainer, optimizer, rng


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(file)
    except Exception as e:  # SafetensorError: a header not covering the file, bad JSON, ...
        raise _damaged(file, e) from None


def load_weights(hf_model, path: Path) -> None:
    """Load model.safetensors into an already-built model (ties are re-established)."""
    state = _load_safetensors(path / "model.safetensors")
    try:
        missing, unexpected = hf_model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches: one line per tensor; the first says enough
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        first = (lines[0] if lines else str(e).strip().splitlines()[0]).rstrip(".")
        raise UserError(
            f"checkpoint {path} does not fit the model this config builds ({first}; "
            f"{len(lines)} tensors differ); resume with the model settings it was saved with "
            "(its resolved_config.yaml), or start a new run_dir"
        ) from None
    hf_model.tie_weights()
    tied = {"lm_head.decoder.weight", "lm_head.decoder.bias"}
    bad = [k for k in missing if k not in tied] + list(unexpected)
    if bad:
        raise UserError(
            f"checkpoint {path} does not fit the model this config builds (tensors "
            f"{', '.join(bad[:5])} differ); resume with the model settings it was saved with "
            "(its resolved_config.yaml), or start a new run_dir"
        )


def load_subspace_theta(path: Path) -> torch.Tensor:
    return _load_safetensors(path / SUBSPACE_FILE)["theta_d"]


def saved_config(path: Path) -> dict | None:
    """The resolved config a checkpoint was written with (None: the file is missing)."""
    from omegaconf import OmegaConf

    file = path / "resolved_config.yaml"
    if not file.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(file), resolve=True)  # type: ignore[return-value]
    except Exception as e:
        raise _damaged(file, e) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
