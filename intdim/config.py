"""Typed configs: dataclasses are the schema, YAML holds values, `key=value` overrides win.

    cfg = load_config(PretrainConfig, "configs/pretrain/tiny.yaml", ["max_updates=30"])

Unknown keys, wrong types and values rejected by a dataclass's `__post_init__` all surface as one
`UserError` line before any work starts. `to_yaml` gives the resolved config that is saved beside
every checkpoint and in every record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intdim.errors import UserError

C = TypeVar("C")


def _fields(schema: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(schema))


def load_config(
    schema: type[C],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Sequence[Mapping[str, Any]] = (),
) -> C:
    """Build a `schema` instance from defaults, then a YAML file, then `values` (mappings a
    command builds from its own flags), then `key=value` overrides."""
    base = OmegaConf.structured(schema)
    layers = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; pass the path of a YAML file")
        try:
            layers.append(OmegaConf.load(path))
        except Exception as e:  # yaml errors come in many types
            raise UserError(f"config file {path} is not valid YAML: {_one_line(e)}") from None
    layers.extend(OmegaConf.create(dict(v)) for v in values)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError(f"override {bad[0]!r} is not of the form key=value")
    try:
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(base, *layers)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        where = f" in {path}" if path is not None else ""
        key = getattr(e, "full_key", None)
        key = f"{key}: " if key else ""
        raise UserError(
            f"bad config{where}: {key}{_one_line(e)} (valid top-level keys: {_fields(schema)})"
        ) from None
    except yaml.YAMLError as e:  # an override whose value is not YAML (`k=[`)
        raise UserError(f"bad override value: {_one_line(e)}") from None
    except (TypeError, ValueError) as e:  # raised by a schema's __post_init__
        if isinstance(e, UserError):
            raise
        raise UserError(f"bad config: {_one_line(e)}") from None
    return obj  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain data (for JSON records and YAML beside checkpoints)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
