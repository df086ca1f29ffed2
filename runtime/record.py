"""`record`: the part of `dataclasses` pytrace uses, without its start-up cost.

`dataclasses` builds every class with several exec() calls and an
inspect.signature() (about 0.25 ms a class), and importing it costs 6 ms more
(inspect, ast, dis, tokenize): about 25 ms of a cold one-liner's ~190 ms went
to pytrace's ~90 classes.  A record class instead shares generic methods driven
by its field list, which costs nothing to build (an instance costs ~2 µs more).

    @record                       # __init__, __repr__, __eq__ (unhashable)
    @record(frozen=True)          # immutable, hashable by value
    @record(eq=False)             # compared and hashed by identity

Fields are the class's own annotated attributes, after its bases'.  A default is
a plain value or `field(default=..., default_factory=..., compare=..., repr=...,
kw_only=...)`.  `__post_init__` runs after `__init__` if the class has one.
"""

_MISSING = object()


class Field:
    __slots__ = ("name", "default", "default_factory", "compare", "repr", "kw_only")

    def __init__(self, default=_MISSING, default_factory=None, compare=True, repr=True,
                 kw_only=False):
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr
        self.kw_only = kw_only

    def __repr__(self):
        return f"Field({self.name!r})"


def field(*, default=_MISSING, default_factory=None, compare=True, repr=True, kw_only=False):
    return Field(default, default_factory, compare, repr, kw_only)


def fields(obj) -> tuple:
    """The record's fields (Field objects with .name), in __init__ order."""
    return obj.__record_fields__


def has_default(f: Field) -> bool:
    """Whether __init__ can leave the field out."""
    return f.default is not _MISSING or f.default_factory is not None


def _init(self, *args, **kwargs):
    cls = type(self)
    positional = cls.__record_positional__
    if len(args) > len(positional):
        raise TypeError(f"{cls.__name__}() takes {len(positional)} positional arguments "
                        f"but {len(args)} were given")
    values = dict(zip(positional, args))
    for name, value in kwargs.items():
        if name in values:
            raise TypeError(f"{cls.__name__}() got multiple values for argument '{name}'")
        values[name] = value
    if kwargs and not kwargs.keys() <= cls.__record_names__:
        unknown = sorted(kwargs.keys() - cls.__record_names__)[0]
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument '{unknown}'")
    setattr_ = object.__setattr__
    for f in cls.__record_fields__:
        name = f.name
        if name in values:
            value = values[name]
        elif f.default is not _MISSING:
            value = f.default
        elif f.default_factory is not None:
            value = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: '{name}'")
        setattr_(self, name, value)
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _repr(self):
    parts = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                      for f in self.__record_fields__ if f.repr)
    return f"{type(self).__qualname__}({parts})"


def _compared(self):
    return tuple(getattr(self, f.name) for f in self.__record_fields__ if f.compare)


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self):
    return hash(_compared(self))


def _frozen_setattr(self, name, value):
    raise AttributeError(f"cannot assign to field '{name}' of frozen {type(self).__name__}")


def _frozen_delattr(self, name):
    raise AttributeError(f"cannot delete field '{name}' of frozen {type(self).__name__}")


def record(cls=None, /, *, frozen=False, eq=True):
    def build(cls):
        own = []
        for name in cls.__dict__.get("__annotations__", {}):
            value = cls.__dict__.get(name, _MISSING)
            f = value if isinstance(value, Field) else Field(value)
            f.name = name
            # Like dataclasses: the class attribute holds the plain default, if any.
            if f.default is _MISSING:
                if name in cls.__dict__:
                    delattr(cls, name)
            else:
                setattr(cls, name, f.default)
            own.append(f)
        inherited = [f for f in getattr(cls, "__record_fields__", ())
                     if f.name not in {g.name for g in own}]
        all_fields = tuple(inherited + own)
        cls.__record_fields__ = all_fields
        cls.__record_names__ = frozenset(f.name for f in all_fields)
        cls.__record_positional__ = tuple(f.name for f in all_fields if not f.kw_only)
        cls.__init__ = _init
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = _repr
        if eq:
            cls.__eq__ = _eq
            cls.__hash__ = _hash if frozen else None
        if frozen:
            cls.__setattr__ = _frozen_setattr
            cls.__delattr__ = _frozen_delattr
        return cls

    return build if cls is None else build(cls)
