from dataclasses import dataclass, field

import pytest

from intdim.config import load_config, to_dict
from intdim.errors import UserError


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Schema:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.inner.steps < 1:
            raise UserError(f"inner.steps must be >= 1, got {self.inner.steps}")


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: y\ninner:\n  lr: 0.5\n")
    cfg = load_config(Schema, p, ["inner.steps=3", "tags=[a,b]"])
    assert cfg == Schema(name="y", inner=Inner(lr=0.5, steps=3), tags=["a", "b"])
    assert to_dict(cfg)["inner"] == {"lr": 0.5, "steps": 3}


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["nope=1"], "nope.*valid top-level keys: name, inner, tags"),
        (["inner.steps=ten"], "steps"),
        (["inner.steps=0"], "inner.steps must be >= 1"),
        (["justakey"], "not of the form key=value"),
    ],
)
def test_bad_values_are_one_clear_error(overrides, match):
    with pytest.raises(UserError, match=match):
        load_config(Schema, None, overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(Schema, tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Schema, bad)
