"""Cluster profiles: what a SLURM job asks for, in configs/cluster/*.yaml.

    cluster = load_cluster("configs/cluster/example.yaml")
    cluster.probe.gpus_per_node, cluster.pretrain.nodes, cluster.partition

The site-wide fields (partition, account, qos, constraint, setup lines, extra sbatch parameters)
sit at the top; `pretrain`, `probe` and `prepare` each say what one job of that kind needs,
because a pretraining job (many GPUs, a day), a probe run (one GPU, minutes) and a corpus
preparation job (many CPUs, no GPU) have little in common.
An unknown key anywhere is an error that lists the valid keys at that level.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from intdim.config import load_config
from intdim.errors import UserError


@dataclass
class JobResources:
    """One job's allocation. tasks per node = GPUs per node (one process per GPU, DDP);
    0 GPUs means one task per node."""

    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None  # null: the partition's default
    time_min: int = 60
    partition: str | None = None  # null: the profile's partition
    array_parallelism: int = 64  # probe arrays: at most this many tasks run at once

    def __post_init__(self) -> None:
        for name in ("nodes", "cpus_per_task", "time_min", "array_parallelism"):
            if getattr(self, name) < 1:
                raise UserError(f"cluster profile: {name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise UserError(
                f"cluster profile: gpus_per_node must be >= 0, got {self.gpus_per_node}"
            )
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise UserError(f"cluster profile: mem_gb must be positive, got {self.mem_gb}")

    @property
    def tasks_per_node(self) -> int:
        return max(self.gpus_per_node, 1)


@dataclass
class ClusterConfig:
    partition: str | None = None  # null: the cluster's default partition
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)  # shell lines run before each job
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other sbatch flag
    pretrain: JobResources = field(default_factory=JobResources)
    probe: JobResources = field(default_factory=JobResources)
    # `intdim prepare`'s jobs (tokenizer, the parts of the corpus, the merge): CPUs, no GPU.
    prepare: JobResources = field(default_factory=JobResources)

    def resources(self, kind: str) -> JobResources:
        return {"pretrain": self.pretrain, "prepare": self.prepare}.get(kind, self.probe)


def _check_keys(data: Any, schema: type, where: str, path: Path) -> None:
    """OmegaConf names an unknown nested key but not the valid ones; say both."""
    if not isinstance(data, dict):
        raise UserError(f"cluster profile {path}: {where or 'the file'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in data.items():
        if key not in fields:
            valid = ", ".join(fields)
            raise UserError(
                f"cluster profile {path}: unknown key {where}{key!r}; valid keys"
                f"{' under ' + where.rstrip('.') if where else ''}: {valid}"
            )
        if key in ("pretrain", "probe", "prepare") and value is not None:
            _check_keys(value, JobResources, f"{where}{key}.", path)


def load_cluster(path: str | Path | None, overrides: list[str] | None = None) -> ClusterConfig:
    """The profile at `path` (None: the defaults, fine for the dev cluster)."""
    if path is None:
        return load_config(ClusterConfig, None, overrides or [])
    p = Path(path)
    if not p.is_file():
        raise UserError(f"cluster profile {p} does not exist (see configs/cluster/example.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(
            f"cluster profile {p} is not valid YAML: {str(e).splitlines()[0]}"
        ) from None
    _check_keys(data, ClusterConfig, "", p)
    return load_config(ClusterConfig, p, overrides or [])
