"""Task examples -> token ids, cached per process, and batches with dynamic padding.

    data = encoded_task(DataKey(model="path/to/ckpt", task="rte", data_dir="glue/RTE"))
    for batch in data.train_batches(batch_size=32, generator=g): ...   # endless, reshuffled
    data.eval_batches(128)                                             # sorted by length

Why a cache: a d90 search runs dozens of trainings on the same (model, task, limits); tokenizing
MNLI or QQP for each of them would cost more than some of the runs. The key holds everything that
changes the token ids, so two different settings can never share an entry. Why dynamic padding:
sentences are short next to `max_seq_len`; padding each batch to its own longest row (and
evaluating in length order) saves most of the compute on CPU.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from intdim.errors import UserError
from probe.tasks import Example, TaskData, load_examples, load_task_spec


@dataclass(frozen=True)
class DataKey:
    """Everything that decides a task's token ids (the cache key)."""

    model: str  # tokenizer location: a checkpoint dir or a hub id
    task: str  # registered name or task YAML path
    data_dir: str | None = None  # local GLUE-layout copy; None: the hub
    max_train: int | None = None
    max_eval: int | None = None
    data_seed: int = 0  # seed of the subsample (not of training)
    max_seq_len: int = 128
    train_metric_examples: int = 1000  # bounded train subsample for the train metric


Row = dict[str, list[int]]  # input_ids (+ token_type_ids for BERT-style pairs)


@dataclass
class EncodedTask:
    data: TaskData
    train: list[Row]
    train_labels: list[int]
    eval: list[Row]
    eval_labels: list[int]
    train_metric_idx: list[int]  # the train subsample the train metric is computed on
    pad_id: int
    _batches: dict[tuple[str, int], list] = field(default_factory=dict, repr=False)

    def collate(self, rows: Sequence[Row], labels: Sequence[int] | None) -> dict[str, torch.Tensor]:
        """Pad to the longest row of this batch (right padding, attention mask 0 on pads)."""
        width = max(len(r["input_ids"]) for r in rows)
        batch: dict[str, torch.Tensor] = {}
        for name in rows[0]:
            fill = self.pad_id if name == "input_ids" else 0
            batch[name] = torch.tensor([r[name] + [fill] * (width - len(r[name])) for r in rows])
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        batch["attention_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).long()
        if labels is not None:
            batch["labels"] = torch.tensor(list(labels))
        return batch

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Endless shuffled batches; each epoch a fresh permutation from `generator`."""
        n = len(self.train)
        while True:
            order = torch.randperm(n, generator=generator).tolist()
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                yield self.collate(
                    [self.train[j] for j in idx], [self.train_labels[j] for j in idx]
                )

    def _sorted_batches(
        self, rows: list[Row], idx: Sequence[int], batch_size: int
    ) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
        # Length order keeps padding minimal; the positions let predictions go back in order.
        order = sorted(idx, key=lambda i: len(rows[i]["input_ids"]))
        return [
            (
                order[i : i + batch_size],
                self.collate([rows[j] for j in order[i : i + batch_size]], None),
            )
            for i in range(0, len(order), batch_size)
        ]

    def eval_batches(self, batch_size: int) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
        # Built once: a search evaluates the same rows hundreds of times.
        key = ("eval", batch_size)
        if key not in self._batches:
            self._batches[key] = self._sorted_batches(self.eval, range(len(self.eval)), batch_size)
        return self._batches[key]

    def train_metric_batches(
        self, batch_size: int
    ) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
        key = ("train_metric", batch_size)
        if key not in self._batches:
            self._batches[key] = self._sorted_batches(self.train, self.train_metric_idx, batch_size)
        return self._batches[key]


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load a tokenizer from {model!r} ({first})") from None


def _encode(tokenizer, examples: list[Example], max_len: int) -> list[Row]:
    pairs = examples[0].text_b is not None
    a = [ex.text_a for ex in examples]
    b = [ex.text_b or "" for ex in examples] if pairs else None
    enc = tokenizer(a, b, truncation=True, max_length=max_len)
    keep = [k for k in ("input_ids", "token_type_ids") if k in enc]
    return [{k: list(enc[k][i]) for k in keep} for i in range(len(examples))]


@functools.lru_cache(maxsize=8)
def encoded_task(key: DataKey) -> EncodedTask:
    """Load and tokenize once per process and key (the runs of a search share it)."""
    spec = load_task_spec(key.task)
    data = load_examples(spec, key.data_dir, key.max_train, key.max_eval, key.data_seed)
    tokenizer = load_tokenizer(key.model)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise UserError(f"the tokenizer of {key.model!r} has no padding token")
    train = _encode(tokenizer, data.train, key.max_seq_len)
    eval_ = _encode(tokenizer, data.eval, key.max_seq_len)
    n = len(train)
    rng = random.Random(f"{key.data_seed}:train_metric")
    sub = (
        sorted(rng.sample(range(n), key.train_metric_examples))
        if key.train_metric_examples < n
        else list(range(n))
    )
    return EncodedTask(
        data=data,
        train=train,
        train_labels=[ex.label for ex in data.train],
        eval=eval_,
        eval_labels=[ex.label for ex in data.eval],
        train_metric_idx=sub,
        pad_id=int(pad_id),
    )


def model_location(model: str) -> str:
    """A local directory as an absolute path (so the cache key and records do not depend on the
    working directory); anything else is taken as a hub id.

    Checked here, each as one UserError line, rather than found later by the loaders: a path that
    does not exist (transformers would take it for a hub id, retry the network for a minute and
    then report a network error), a pretraining run directory instead of one of its checkpoints,
    a damaged model.safetensors, and a hub id that is not in the local cache while the hub cannot
    be reached (or HF_HUB_OFFLINE=1)."""
    path = Path(model).expanduser()
    if path.exists():
        check_model_dir(path)
        return str(path.resolve())
    if looks_like_path(model):
        raise UserError(
            f"model {model} does not exist; pass a checkpoint directory (config.json, "
            "model.safetensors, tokenizer files) or a hub id such as FacebookAI/roberta-base"
        )
    _check_hub_model(model)
    return model


def looks_like_path(model: str) -> bool:
    """A hub id is `name` or `namespace/name`; a local path may look like one (runs/x), so
    `namespace/name` counts as a path when its first part is a local directory."""
    if model.startswith((".", "~", "/", os.sep)) or "\\" in model:
        return True
    parts = model.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).exists())


def check_model_dir(path: Path, flag: str = "--model") -> None:
    """A local model directory that the loaders can read: not a file, not a pretraining run
    directory, with a config.json, and weights whose safetensors headers cover their files (a
    truncated or garbled file fails here in one line, not as a loader's traceback)."""
    if not path.is_dir():
        raise UserError(f"{flag} {path} is a file; pass a checkpoint directory (its folder?)")
    if (path / "checkpoints").is_dir() and not (path / "config.json").is_file():
        names = sorted(
            (p for p in (path / "checkpoints").glob("checkpoint_*") if p.name[11:].isdigit()),
            key=lambda p: int(p.name[11:]),
        )
        which = names[-1] if names else path / "checkpoints" / "checkpoint_<n>"
        raise UserError(
            f"{path} is a pretraining run directory; pass one of its checkpoints (e.g. {flag} "
            f"{which}), or probe every checkpoint as it lands with `intdim watch {path} --probe "
            "CONFIG`"
        )
    if not (path / "config.json").is_file():
        raise UserError(
            f"{flag} {path} has no config.json; pass a checkpoint directory in the "
            "Hugging Face layout (config.json, model.safetensors, tokenizer files)"
        )
    from safetensors import safe_open

    for file in _weight_files(path):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as e:  # SafetensorError: a header that does not cover the file, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{file} is damaged ({first}): truncated or garbled; copy the checkpoint again "
                "or use another one"
            ) from None


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, AttributeError) as e:
            raise UserError(f"{index} is damaged ({type(e).__name__}: {e})") from None
        return [path / name for name in shards if (path / name).is_file()]
    single = path / "model.safetensors"
    return [single] if single.is_file() else []


def _check_hub_model(repo_id: str) -> None:
    """A hub id must be in the local cache, or the hub must answer: without a network,
    transformers retries each file for about 25 s before failing."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, "config.json")
    except ValueError as e:  # not a valid repo id
        raise UserError(
            f"model {repo_id!r} is neither a local directory nor a hub id ({e}); pass a "
            "checkpoint directory"
        ) from None
    if isinstance(cached, str):
        return
    if huggingface_hub.is_offline_mode():
        raise UserError(
            f"model {repo_id!r} is not a local directory and not in the local Hugging Face "
            "cache, and HF_HUB_OFFLINE=1 forbids downloading it; unset HF_HUB_OFFLINE where there "
            "is a network, or pass a checkpoint directory"
        )
    try:
        huggingface_hub.model_info(repo_id, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(
            f"model {repo_id!r} is not a local directory nor a model on the Hugging Face hub; "
            "check the name, or pass a checkpoint directory"
        ) from None
    except HfHubHTTPError:
        return  # gated, rate limited, ...: the loader says what it needs
    except Exception as e:  # no network: connection refused, name resolution, timeout
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"model {repo_id!r} is not in the local Hugging Face cache and the hub cannot be "
            f"reached ({first}); download it on a machine with a network (the cache, "
            f"{constants.HF_HUB_CACHE}, can be copied), or pass a checkpoint directory; "
            "HF_HUB_OFFLINE=1 uses cached models without trying the network"
        ) from None
