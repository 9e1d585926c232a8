"""Downstream tasks: declared in YAML (configs/tasks/*.yaml), loaded from the hub or a local copy.

    spec = load_task_spec("mrpc")                      # or a path to any task YAML
    data = load_examples(spec, data_dir=None, max_train=2000, seed=0)
    data.train[0]            # Example(text_a, text_b | None, label)
    data.metric(preds, [ex.label for ex in data.eval])   # {"accuracy": ..., "f1": ...}

A task file names its labels once (`labels`, in class-index order) and one or two sources:
`hub` (a `datasets.load_dataset` id, subset and splits) and `local` (files under a data dir, in
the layout the original download uses). `include: other.yaml` merges a base file first
(lm-evaluation-harness style); files whose name starts with `_` are include-only templates.
Every problem (bad YAML, unknown key, missing file or column, unknown label, empty split) is one
`UserError` line; a broken task file is never skipped.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intdim.errors import UserError
from intdim.registry import Registry
from probe import metrics

TASKS_DIR = Path(__file__).resolve().parents[1] / "configs" / "tasks"
FORMATS = ("tsv", "csv", "jsonl")

# GLUE's MNLI/QNLI tsv rows hold long sentences; the csv module's default field limit is 128 KiB.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Example(NamedTuple):
    text_a: str
    text_b: str | None
    label: int


# --------------------------------------------------------------------------- the YAML schema


@dataclass
class HubSource:
    """Where `datasets.load_dataset(path, name, split=...)` finds the task."""

    path: str = MISSING
    name: str | None = None  # the subset ("mrpc" of nyu-mll/glue)
    revision: str | None = None
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    eval_splits: list[str] = field(default_factory=lambda: ["validation"])
    text_fields: list[str] = MISSING
    label_field: str = "label"
    label_map: dict[str, str] | None = None  # raw value -> label name or index


@dataclass
class LocalSource:
    """Files under the data dir. Several files per split are concatenated (ANLI's three rounds)."""

    format: str = "tsv"  # tsv | csv | jsonl
    header: bool = True  # tsv/csv: first row names the columns
    columns: list[str] = field(default_factory=list)  # tsv/csv without a header
    train_files: list[str] = MISSING
    eval_files: list[str] = MISSING
    text_fields: list[str] = MISSING  # "a|b": the first of the fields that exists
    label_field: str = "label"
    label_map: dict[str, str] | None = None  # raw value -> label name or index

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UserError(f"unknown local format {self.format!r}; choose one of: tsv, csv, jsonl")
        if self.format != "jsonl" and not self.header and not self.columns:
            raise UserError("a local tsv/csv source with header: false must list its columns")
        if not self.train_files or not self.eval_files:
            raise UserError("a local source needs at least one train file and one eval file")


@dataclass
class TaskSpec:
    name: str = MISSING
    labels: list[str] = MISSING  # class names; the list index is the label id
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])  # first = primary (d90)
    description: str = ""
    hub: HubSource | None = None
    local: LocalSource | None = None

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise UserError(f"task {self.name}: labels must be 2 or more distinct names")
        if not self.metrics or self.metrics[0] != "accuracy":
            # The d90 threshold and the majority baseline are both accuracies (paper 5.1).
            raise UserError(f"task {self.name}: metrics must start with accuracy")
        for m in self.metrics:
            if m not in metrics.METRICS:
                metrics.METRICS.get(m)  # raises the error that lists the valid names
        if "f1" in self.metrics and len(self.labels) != 2:
            raise UserError(f"task {self.name}: f1 needs exactly 2 labels")
        if self.hub is None and self.local is None:
            raise UserError(f"task {self.name}: declare a hub source, a local source, or both")
        for src in (self.hub, self.local):
            if src is None:
                continue
            if not 1 <= len(src.text_fields) <= 2:
                raise UserError(f"task {self.name}: text_fields must name one or two fields")
            for raw, target in (src.label_map or {}).items():
                _label_id(target, self.labels, None, f"label_map entry {raw!r} of {self.name}")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]


@dataclass
class TaskData:
    spec: TaskSpec
    train: list[Example]
    eval: list[Example]
    source: str  # "hub:<id>" or the data dir, for records and logs

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    @property
    def majority_baseline(self) -> float:
        """Eval accuracy of always predicting the most frequent train label."""
        return metrics.majority_baseline(
            [ex.label for ex in self.train], [ex.label for ex in self.eval]
        )

    def metric(self, preds: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
        return metrics.compute(self.spec.metrics, preds, labels)


# --------------------------------------------------------------------------- task files


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"task file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"task file {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise UserError(f"task file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge for `include:`: mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise UserError(f"task file {path} includes itself: {chain}")
    data = _read_yaml(path)
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str):
        raise UserError(f"task file {path}: include must be one file name, got {include!r}")
    base = _resolve_includes(path.parent / include, (*seen, path))
    return _merge(base, data)


def _stringify_label_maps(data: dict[str, Any]) -> None:
    # YAML reads `0: negative` with an int key; labels are compared as strings.
    for src in ("hub", "local"):
        block = data.get(src)
        if isinstance(block, dict) and isinstance(block.get("label_map"), dict):
            block["label_map"] = {str(k): v for k, v in block["label_map"].items()}


def _spec_from_file(path: Path) -> TaskSpec:
    data = _resolve_includes(path)
    _stringify_label_maps(data)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TaskSpec), data)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        where = f" (key {e.full_key})" if getattr(e, "full_key", None) else ""
        msg = str(e).strip().splitlines()[0]
        raise UserError(f"task file {path} is malformed{where}: {msg}") from None
    except UserError as e:
        raise UserError(f"task file {path}: {e}") from None


def task_registry(tasks_dir: str | Path | None = None) -> Registry[TaskSpec]:
    """Every task file in `tasks_dir`, by its `name`. Any broken file fails the whole lookup."""
    tasks_dir = Path(tasks_dir) if tasks_dir is not None else TASKS_DIR
    if not tasks_dir.is_dir():
        raise UserError(f"task directory {tasks_dir} does not exist")
    reg: Registry[TaskSpec] = Registry("task")
    origin: dict[str, Path] = {}
    for path in sorted(tasks_dir.glob("*.yaml")):
        if path.name.startswith("_"):
            continue  # include-only template
        spec = _spec_from_file(path)
        if spec.name in origin:
            raise UserError(
                f"task name {spec.name!r} is declared twice: {origin[spec.name]} and {path}"
            )
        origin[spec.name] = path
        reg.register(spec.name)(spec)
    return reg


def load_task_spec(name_or_path: str | Path, tasks_dir: str | Path | None = None) -> TaskSpec:
    """A registered task name (`mrpc`) or the path of a task YAML (your own csv/jsonl data)."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        return _spec_from_file(Path(text))
    return task_registry(tasks_dir).get(text)


# --------------------------------------------------------------------------- labels and fields


def _label_id(raw: Any, labels: Sequence[str], label_map: dict[str, str] | None, where: str) -> int:
    """Raw value -> class index. Through label_map when given, else by label name or index."""
    key = str(raw).strip()
    if label_map is not None:
        if key not in label_map:
            raise UserError(
                f"{where}: unknown label {key!r}; the task's label_map knows "
                f"{', '.join(sorted(label_map))}"
            )
        key = str(label_map[key]).strip()
    if key in labels:
        return list(labels).index(key)
    if key.lstrip("-").isdigit() and 0 <= int(key) < len(labels):
        return int(key)
    raise UserError(
        f"{where}: unknown label {key!r}; expected one of {', '.join(labels)} "
        f"or an index 0..{len(labels) - 1} (add a label_map to the task file)"
    )


def _pick_field(spec_field: str, available: Iterable[str], where: str) -> str:
    options = spec_field.split("|")
    avail = list(available)
    for name in options:
        if name in avail:
            return name
    raise UserError(f"{where} has no field {spec_field!r} (it has: {', '.join(map(str, avail))})")


# --------------------------------------------------------------------------- local files


def _rows_delimited(path: Path, src: LocalSource) -> Iterable[tuple[int, dict[str, str]]]:
    delimiter = "\t" if src.format == "tsv" else ","
    # GLUE tsv files are not quoted: a `"` inside a sentence is text (QUOTE_NONE, as GLUE's
    # own readers do). csv files follow RFC 4180 quoting.
    quoting = csv.QUOTE_NONE if src.format == "tsv" else csv.QUOTE_MINIMAL
    # utf-8-sig: GLUE's MRPC files start with a byte-order mark, which would otherwise become
    # part of the first column's name.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        columns = list(src.columns)
        if src.header:
            header = next(reader, None)
            if header is None:
                return
            columns = [c.strip() for c in header]
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < len(columns):
                raise UserError(
                    f"{path}:{reader.line_num}: expected {len(columns)} columns "
                    f"({', '.join(columns)}), found {len(row)}"
                )
            yield reader.line_num, dict(zip(columns, row, strict=False))


def _rows_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as f:  # a byte-order mark is skipped, as for tsv/csv
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object per line")
            yield lineno, obj


def _read_local_split(
    spec: TaskSpec, src: LocalSource, data_dir: Path, files: list[str]
) -> list[Example]:
    out: list[Example] = []
    for name in files:
        path = data_dir / name
        if not path.is_file():
            raise UserError(
                f"task {spec.name}: {path} does not exist; the local layout expects "
                f"{', '.join(src.train_files + src.eval_files)} under the data dir"
            )
        rows = _rows_jsonl(path) if src.format == "jsonl" else _rows_delimited(path, src)
        fields: list[str] | None = None
        for lineno, row in rows:
            where = f"{path}:{lineno}"
            # Column names are fixed for a tsv/csv file; each jsonl line is checked on its own.
            if fields is None or src.format == "jsonl":
                fields = [
                    _pick_field(f, row.keys(), where if src.format == "jsonl" else str(path))
                    for f in [*src.text_fields, src.label_field]
                ]
            values = []
            for f in fields:
                if row.get(f) is None:
                    raise UserError(f"{where}: field {f!r} is missing or null")
                values.append(str(row[f]))
            label = _label_id(values[-1], spec.labels, src.label_map, where)
            text_b = values[1] if len(src.text_fields) == 2 else None
            out.append(Example(values[0], text_b, label))
    return out


# --------------------------------------------------------------------------- hub


def _load_hub_split(
    spec: TaskSpec, hub: HubSource, splits: list[str], limit: int | None, rng: random.Random
) -> list[Example]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a declared dependency
        raise UserError("loading from the hub needs the `datasets` package") from None
    parts = []
    for split in splits:
        try:
            parts.append(
                datasets.load_dataset(hub.path, hub.name, split=split, revision=hub.revision)
            )
        except Exception as e:  # network, auth, unknown split: all mean "use a local copy"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"task {spec.name}: cannot load {hub.path}"
                f"{'/' + hub.name if hub.name else ''} split {split} from the hub ({first}); "
                f"pass a data dir holding a local copy"
            ) from None
    total = sum(len(p) for p in parts)
    where = f"hub {hub.path}{'/' + hub.name if hub.name else ''} {'+'.join(splits)}"
    if total == 0:
        raise UserError(f"task {spec.name}: {where} is empty")
    chosen = _subsample(total, limit, rng)
    out: list[Example] = []
    offset = 0
    for part in parts:
        local = [i - offset for i in chosen if offset <= i < offset + len(part)]
        offset += len(part)
        if not local:
            continue
        fields = [_pick_field(f, part.column_names, where) for f in hub.text_fields]
        label_field = _pick_field(hub.label_field, part.column_names, where)
        rows = part.select(local)
        columns = [rows[f] for f in [*fields, label_field]]
        for i, values in enumerate(zip(*columns, strict=True)):
            if any(v is None for v in values):
                raise UserError(f"{where} row {local[i]}: a text or label field is null")
            label = _label_id(values[-1], spec.labels, hub.label_map, f"{where} row {local[i]}")
            text_b = str(values[1]) if len(fields) == 2 else None
            out.append(Example(str(values[0]), text_b, label))
    return out


# --------------------------------------------------------------------------- loading


def _subsample(n: int, limit: int | None, rng: random.Random) -> list[int]:
    """Indices of a seeded sample without replacement, kept in file order."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(rng.sample(range(n), limit))


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UserError(f"{name} must be a positive integer or unset, got {value!r}")


def load_examples(
    spec: TaskSpec,
    data_dir: str | Path | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
) -> TaskData:
    """The task's train and eval examples: from `data_dir` (local layout) or else the hub.

    Subsampling draws `max_train` / `max_eval` examples without replacement from independent,
    seeded streams, so changing one limit never changes the other split's sample.
    """
    _check_limit("max_train_examples", max_train)
    _check_limit("max_eval_examples", max_eval)
    train_rng = random.Random(f"{seed}:train")  # str seeds are hashed deterministically
    eval_rng = random.Random(f"{seed}:eval")

    if data_dir is not None:
        data_dir = Path(data_dir)
        if spec.local is None:
            raise UserError(f"task {spec.name} declares no local layout; drop the data dir")
        if not data_dir.is_dir():
            raise UserError(f"data dir {data_dir} does not exist")
        src = spec.local
        splits = {}
        for split, files in (("train", src.train_files), ("eval", src.eval_files)):
            examples = _read_local_split(spec, src, data_dir, files)
            if not examples:
                raise UserError(
                    f"task {spec.name}: the {split} split ({', '.join(files)} in {data_dir}) "
                    "has no examples"
                )
            splits[split] = examples
        train = [splits["train"][i] for i in _subsample(len(splits["train"]), max_train, train_rng)]
        eval_ = [splits["eval"][i] for i in _subsample(len(splits["eval"]), max_eval, eval_rng)]
        return TaskData(spec, train, eval_, source=str(data_dir))

    if spec.hub is None:
        raise UserError(f"task {spec.name} has no hub source; pass a data dir")
    hub = spec.hub
    train = _load_hub_split(spec, hub, hub.train_splits, max_train, train_rng)
    eval_ = _load_hub_split(spec, hub, hub.eval_splits, max_eval, eval_rng)
    return TaskData(spec, train, eval_, source=f"hub:{hub.path}/{hub.name or ''}")
