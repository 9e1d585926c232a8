import pytest

from intdim.errors import UserError
from intdim.registry import Registry


def test_register_and_get():
    r = Registry("widget")

    @r.register("a")
    class A:
        pass

    assert r.get("a") is A and "a" in r and r.names() == ["a"]


def test_duplicate_names_collide_loudly():
    r = Registry("widget")
    r.register("a")(object)
    with pytest.raises(RuntimeError, match="registered twice"):
        r.register("a")(int)


def test_unknown_name_lists_the_valid_ones():
    r = Registry("widget")
    r.register("b")(int)
    r.register("a")(str)
    with pytest.raises(UserError, match="unknown widget 'c'; choose one of: a, b"):
        r.get("c")
