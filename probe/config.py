"""`ProbeConfig`: the schema of configs/probe/*.yaml and of `intdim d90` / `intdim probe`.

    cfg = load_config(ProbeConfig, "configs/probe/tiny.yaml", ["finetune.subspace_max_steps=50"])

One config says what to measure (tasks x methods), on which data (local GLUE-layout dirs per
task, else the hub; optional subsampling), how to search (`search`, probe.search.SearchConfig)
and how each run trains (`finetune`, probe.finetune.FinetuneConfig). Every field can be
overridden with `key=value` (`search.k=3`, `data_dirs.rte=glue/RTE`); unknown keys and wrong
types fail before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from intdim.errors import UserError
from probe.finetune import FinetuneConfig
from probe.search import SUBSPACE_METHODS, SearchConfig


@dataclass
class ProbeConfig:
    tasks: list[str] = field(default_factory=lambda: ["mrpc"])  # names or task YAML paths
    methods: list[str] = field(default_factory=lambda: ["said"])  # did | said
    data_dirs: dict[str, str] = field(default_factory=dict)  # task -> local copy; else the hub
    max_train_examples: int | None = None  # subsample train (seeded by data_seed)
    max_eval_examples: int | None = None
    data_seed: int = 0
    out: str | None = None  # records go to OUT/records; probe: default <checkpoint>/../../probe
    checkpoint_id: str | None = None  # the name records use; default: directory name or hub id
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        def bad(msg: str) -> UserError:
            return UserError(f"probe config: {msg}")

        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise bad(f"tasks must be a non-empty list of distinct tasks, got {self.tasks}")
        if not self.methods or any(m not in SUBSPACE_METHODS for m in self.methods):
            raise bad(f"methods must be a non-empty list of did/said, got {self.methods}")
        unknown = sorted(set(self.data_dirs) - set(self.tasks))
        if unknown:
            raise bad(f"data_dirs names task(s) not in tasks: {', '.join(unknown)}")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(f"{name} must be >= 1 or null, got {value}")
        if self.data_seed < 0:
            raise bad(f"data_seed must be >= 0, got {self.data_seed}")
        self.tasks = list(self.tasks)
        self.methods = list(self.methods)
        self.data_dirs = dict(self.data_dirs)
