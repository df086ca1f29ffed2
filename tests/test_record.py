"""pytrace.runtime.record: the dataclass subset pytrace's AST, types and runtime use."""
import pytest

from pytrace.runtime.record import field, fields, record


@record
class Point:
    x: int
    y: int = 0
    tags: list = field(default_factory=list)
    note: str = field(default="", repr=False, compare=False)


@record(frozen=True)
class Key:
    name: str
    size: int = field(default=8, compare=False)


@record(eq=False)
class Node:
    span: int = field(default=0, kw_only=True)


@record(eq=False)
class Leaf(Node):
    value: int


def test_init_defaults_and_factories():
    p = Point(1)
    assert (p.x, p.y, p.tags, p.note) == (1, 0, [], "")
    assert Point(1).tags is not p.tags
    assert Point(1, 2, [3], note="n").tags == [3]
    assert Point(y=5, x=4).x == 4


def test_init_errors_name_the_argument():
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        Point()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=2)
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)
    with pytest.raises(TypeError, match="takes 4 positional arguments but 5 were given"):
        Point(1, 2, [], "", 5)


def test_repr_eq_and_hash():
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"
    assert Point(1, note="a") == Point(1, note="b")
    assert Point(1) != Point(2)
    with pytest.raises(TypeError):
        hash(Point(1))
    assert Key("a", 1) == Key("a", 2) and hash(Key("a", 1)) == hash(Key("a", 2))
    assert {Key("a"): 1}[Key("a")] == 1


def test_frozen_cannot_change():
    k = Key("a")
    with pytest.raises(AttributeError):
        k.name = "b"
    with pytest.raises(AttributeError):
        del k.name


def test_inheritance_kw_only_and_identity():
    leaf = Leaf(3, span=9)
    assert (leaf.value, leaf.span) == (3, 9)
    assert [f.name for f in fields(leaf)] == ["span", "value"]
    assert Leaf(3) != Leaf(3)
    assert len({Leaf(3), Leaf(3)}) == 2
    with pytest.raises(TypeError):
        Leaf(3, 9)


def test_class_attribute_holds_the_default():
    assert Point.y == 0 and Key.size == 8
    assert not hasattr(Point, "tags")
