"""One model of C types, shared by the in-script C declarations (cparse.py) and
the kernel's BTF (converted lazily by `from_btf`).

Records are frozen and hashable:

    CInt(size, signed, name)        char, short, int, long, long long, _Bool (name: the C spelling)
    CFloat(size, name)              float, double, long double
    CVoid()                         void
    CEnum(name, size, signed, values)     values: ((enumerator, int), ...)
    CFunc()                         a function (opaque: only pointed to)
    CPointer(target)
    CArray(elem, count)             int[2][3] = CArray(CArray(int, 3), 2); flexible [] has count 0
    CRecord(kind, name, size, align, members, complete)    struct/union; name '' if anonymous
    CMember(name, type, offset, bit_offset, bits)
    CRef(kind, name)                "struct Foo" by name (recursive types), see resolve()

A bitfield member (bits > 0) lives in the storage unit of its declared type
starting at byte `offset`; its lowest bit is bit `bit_offset` of that unit read
little-endian (as gcc places it on x86-64).  A `TypeSpace` maps names ("struct X",
"union X", "enum X", typedef names, C and stdint integer names) to types, the
script's definitions first and then an optional fallback (kernel BTF).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

from ..runtime.record import record


@record(frozen=True)
class CInt:
    size: int
    signed: bool
    name: str


@record(frozen=True)
class CFloat:
    size: int
    name: str


@record(frozen=True)
class CVoid:
    pass


@record(frozen=True)
class CEnum:
    name: str
    size: int = 4
    signed: bool = False
    values: tuple[tuple[str, int], ...] = ()


@record(frozen=True)
class CFunc:
    pass


@record(frozen=True)
class CPointer:
    target: object


@record(frozen=True)
class CArray:
    elem: object
    count: int


@record(frozen=True)
class CMember:
    name: str
    type: object
    offset: int
    bit_offset: int = 0
    bits: int = 0


@record(frozen=True)
class CRecord:
    kind: str                   # "struct" | "union"
    name: str                   # '' if anonymous
    size: int
    align: int
    members: tuple[CMember, ...] = ()
    complete: bool = True


@record(frozen=True)
class CRef:
    kind: str                   # "struct" | "union" | "enum"
    name: str


CType = object     # any of the records above


class CTypeError(Exception):
    """A type that cannot be resolved or measured (e.g. an unknown CRef)."""


# ---------------------------------------------------------------- the C names

def _ints() -> dict[str, CType]:
    out: dict[str, CType] = {}
    for size, signed, name in ((1, True, "char"), (1, True, "signed char"), (1, False, "unsigned char"),
                               (2, True, "short"), (2, False, "unsigned short"),
                               (4, True, "int"), (4, False, "unsigned int"),
                               (8, True, "long"), (8, False, "unsigned long"),
                               (8, True, "long long"), (8, False, "unsigned long long"),
                               (1, False, "_Bool"), (16, True, "__int128"),
                               (16, False, "unsigned __int128")):
        out[name] = CInt(size, signed, name)
    out["bool"] = out["_Bool"]
    out["float"], out["double"] = CFloat(4, "float"), CFloat(8, "double")
    out["long double"] = CFloat(16, "long double")
    out["void"] = CVoid()
    aliases = {"int8_t": "signed char", "uint8_t": "unsigned char", "int16_t": "short",
               "uint16_t": "unsigned short", "int32_t": "int", "uint32_t": "unsigned int",
               "int64_t": "long", "uint64_t": "unsigned long", "intptr_t": "long",
               "uintptr_t": "unsigned long", "intmax_t": "long", "uintmax_t": "unsigned long",
               "size_t": "unsigned long", "ssize_t": "long", "ptrdiff_t": "long",
               "off_t": "long", "loff_t": "long long", "pid_t": "int", "uid_t": "unsigned int",
               "gid_t": "unsigned int", "__int128_t": "__int128",
               "__uint128_t": "unsigned __int128"}
    for bits, (s, u) in {8: ("signed char", "unsigned char"), 16: ("short", "unsigned short"),
                         32: ("int", "unsigned int"), 64: ("long long", "unsigned long long")}.items():
        for prefix in ("", "__"):
            aliases[f"{prefix}s{bits}"], aliases[f"{prefix}u{bits}"] = s, u
    for alias, name in aliases.items():
        out[alias] = out[name]
    return out


BUILTINS: dict[str, CType] = _ints()


def int_type(specifiers) -> CType | None:
    """The type of a list of C type specifiers (`['unsigned', 'long', 'int']` →
    unsigned long), or None if they do not spell a basic type."""
    words = list(specifiers)
    unsigned = "unsigned" in words
    signed = "signed" in words
    rest = [w for w in words if w not in ("unsigned", "signed", "int")]
    had_int = "int" in words
    if rest == ["__int128"]:
        return BUILTINS["unsigned __int128" if unsigned else "__int128"]
    if rest in (["char"],):
        return BUILTINS["unsigned char" if unsigned else "signed char" if signed else "char"]
    base = {(): "int", ("short",): "short", ("long",): "long", ("long", "long"): "long long"}
    key = base.get(tuple(rest))
    if key is not None and (rest or had_int or signed or unsigned):
        return BUILTINS["unsigned " + key if unsigned else key]
    if not unsigned and not signed and not had_int:
        name = " ".join(rest)
        if name in ("_Bool", "float", "double", "long double", "void"):
            return BUILTINS[name]
        if rest == ["double", "long"]:
            return BUILTINS["long double"]
    return None


def scalar(name: str) -> CInt | None:
    """The integer type a C scalar name spells (`unsigned short int`, `u32`,
    `size_t`, qualifiers ignored), or None."""
    words = [w for w in name.replace("*", " * ").split() if w not in ("const", "volatile")]
    t = BUILTINS.get(" ".join(words))
    if t is None and words:
        t = int_type(words)
    return t if isinstance(t, CInt) else None


# ---------------------------------------------------------------- name spaces

class TypeSpace:
    """Types by name: "struct X", "union X", "enum X", typedef names, the C and stdint
    integer names.  Precedence: the script's definitions, then the built-in names, then
    `fallback(name) -> CType | None` (the kernel's BTF)."""

    def __init__(self, fallback: Callable[[str], CType | None] | None = None):
        self.types: dict[str, CType] = {}
        self.fallback = fallback
        self._fallback_cache: dict[str, CType | None] = {}

    def define(self, name: str, t: CType) -> None:
        self.types[" ".join(name.split())] = t

    def lookup(self, name: str) -> CType | None:
        name = " ".join(name.split())
        t = self.types.get(name)
        if t is None:
            t = BUILTINS.get(name)
        if t is None and self.fallback is not None:
            if name not in self._fallback_cache:
                self._fallback_cache[name] = self.fallback(name)
            t = self._fallback_cache[name]
        return t

    def with_source(self, source: Callable[[str], CType | None]) -> TypeSpace:
        """This space with `source` looked up after its own definitions and before its
        fallback (a uprobe's DWARF between the script's types and the kernel's); one
        per source."""
        layers = self.__dict__.setdefault("_layers", {})
        if source not in layers:
            behind = self.fallback

            def lookup(name: str) -> CType | None:
                found = source(name)
                return found if found is not None or behind is None else behind(name)
            layered = TypeSpace(lookup)
            layered.types = self.types
            layers[source] = layered
        return layers[source]

    def __contains__(self, name: str) -> bool:
        return self.lookup(name) is not None


def resolve(space: TypeSpace | None, t: CType) -> CType:
    """A CRef → its definition (an incomplete CRecord if the name is unknown); any
    other type unchanged."""
    if not isinstance(t, CRef):
        return t
    found = space.lookup(f"{t.kind} {t.name}") if space is not None else None
    if found is None:
        if t.kind == "enum":
            return CEnum(t.name)
        return CRecord(t.kind, t.name, 0, 1, (), False)
    return found


# ---------------------------------------------------------------- measures

def sizeof(t: CType, space: TypeSpace | None = None) -> int:
    """Size in bytes (a function or void: 1 as in gcc; an incomplete record: 0)."""
    t = resolve(space, t)
    if isinstance(t, (CInt, CFloat, CEnum)):
        return t.size
    if isinstance(t, CPointer):
        return 8
    if isinstance(t, CArray):
        return t.count * sizeof(t.elem, space)
    if isinstance(t, CRecord):
        return t.size
    if isinstance(t, (CVoid, CFunc)):
        return 1
    raise CTypeError(f"not a C type: {t!r}")


def alignof(t: CType, space: TypeSpace | None = None) -> int:
    """Alignment in bytes (x86-64 SysV, as gcc's _Alignof)."""
    t = resolve(space, t)
    if isinstance(t, (CInt, CFloat, CEnum)):
        return max(t.size, 1)
    if isinstance(t, CPointer):
        return 8
    if isinstance(t, CArray):
        return alignof(t.elem, space)
    if isinstance(t, CRecord):
        return t.align
    return 1


def c_name(t: CType) -> str:
    """bpftrace's spelling: `struct Foo *`, `int[4]`, `unsigned int`, `int[2][3]`."""
    if isinstance(t, (CInt, CFloat)):
        return t.name
    if isinstance(t, CVoid):
        return "void"
    if isinstance(t, CEnum):
        return f"enum {t.name}".strip()
    if isinstance(t, (CRecord, CRef)):
        return f"{t.kind} {t.name}".strip()
    if isinstance(t, CFunc):
        return "void (*)()"
    if isinstance(t, CPointer):
        if isinstance(t.target, CFunc):
            return "void (*)()"
        inner = c_name(t.target)
        return inner + ("*" if inner.endswith("*") else " *")
    if isinstance(t, CArray):
        dims = ""
        while isinstance(t, CArray):
            dims += f"[{t.count}]"
            t = t.elem
        return c_name(t) + dims
    raise CTypeError(f"not a C type: {t!r}")


def member(rec: CType, name: str, space: TypeSpace | None = None) -> CMember | None:
    """The member `name` of a struct/union, also inside anonymous struct/union members;
    the result's offset is from the start of `rec`."""
    rec = resolve(space, rec)
    if not isinstance(rec, CRecord):
        return None
    for m in rec.members:
        if m.name == name:
            return m
    for m in rec.members:
        if not m.name:
            inner = member(m.type, name, space)
            if inner is not None:
                return CMember(inner.name, inner.type, m.offset + inner.offset,
                               inner.bit_offset, inner.bits)
    return None


# ---------------------------------------------------------------- layout (gcc, x86-64)

def layout(kind: str, name: str, fields, packed: bool = False, aligned: int = 0) -> CRecord:
    """Lay out a struct/union as gcc does on x86-64.  `fields`: (name, type, bits)
    with bits None for an ordinary member, an int (0 allowed) for a bitfield; types
    must be complete (CRefs are not measured here)."""
    pos = 0          # bits
    end = 0          # bits
    align = 1
    members = []
    for fname, ftype, bits in fields:
        size, falign = sizeof(ftype), (1 if packed else alignof(ftype))
        if kind == "union":
            pos = 0
        if bits is None:
            pos = -(-pos // (falign * 8)) * falign * 8
            members.append(CMember(fname, ftype, pos // 8))
            pos += size * 8
            align = max(align, falign)
        elif bits == 0:
            pos = -(-pos // (alignof(ftype) * 8)) * alignof(ftype) * 8
        else:
            unit = alignof(ftype) * 8
            if not packed and pos % unit + bits > size * 8:
                pos = -(-pos // unit) * unit
            start = pos // unit * unit // 8 if not packed else pos // 8
            if fname:
                members.append(CMember(fname, ftype, start, pos - start * 8, bits))
                align = max(align, falign)
            pos += bits
        end = max(end, pos)
    align = max(align, aligned)
    size = -(-end // (align * 8)) * align
    return CRecord(kind, name, size, align, tuple(members), True)


# ---------------------------------------------------------------- from BTF

_btf_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def from_btf(btf, type_id: int) -> CType:
    """The CType of a BTF type (typedefs and qualifiers skipped).  Members and pointer
    targets that are named structs/unions become CRefs, so only what is asked for is
    converted; anonymous ones are converted in place."""
    cache = _btf_cache.setdefault(btf, {})
    t = cache.get(type_id)
    if t is None:
        t = cache[type_id] = _convert_btf(btf, btf.resolve(type_id))
    return t


def _btf_ref(btf, tid: int) -> CType:
    """A member's or pointee's type: a CRef for a named struct/union/forward."""
    from . import btf as B
    t = btf.type(btf.resolve(tid))
    if t.kind in (B.STRUCT, B.UNION) and t.name:
        return CRef("struct" if t.kind == B.STRUCT else "union", t.name)
    if t.kind == B.FWD:
        return CRef("union" if t.kind_flag else "struct", t.name)
    return from_btf(btf, t.id)


def _convert_btf(btf, tid: int) -> CType:
    from . import btf as B
    if tid == 0:
        return CVoid()
    t = btf.type(tid)
    k = t.kind
    if k == B.INT:
        if t.encoding & 4:
            return BUILTINS["_Bool"]
        return CInt(t.size, bool(t.encoding & 1), t.name)
    if k == B.FLOAT:
        return CFloat(t.size, t.name)
    if k == B.PTR:
        target = btf.type(btf.resolve(t.ref))
        if target.kind in (B.FUNC_PROTO, B.FUNC):
            return CPointer(CFunc())
        return CPointer(_btf_ref(btf, t.ref))
    if k == B.ARRAY:
        return CArray(_btf_ref(btf, t.elem), t.nelems)
    if k in (B.ENUM, B.ENUM64):
        return CEnum(t.name, t.size, t.kind_flag, tuple(t.values))
    if k == B.FWD:
        return CRecord("union" if t.kind_flag else "struct", t.name, 0, 1, (), False)
    if k in (B.STRUCT, B.UNION):
        return _btf_record(btf, t)
    return CFunc()


def _btf_record(btf, t) -> CRecord:
    from . import btf as B
    members = []
    for m in t.members:
        mtype = _btf_ref(btf, m.type)
        if m.bitfield_size:
            size = btf.size(m.type) or 1
            start = m.bit_offset // (size * 8) * size
            members.append(CMember(m.name, mtype, start, m.bit_offset - start * 8,
                                   m.bitfield_size))
        else:
            members.append(CMember(m.name, mtype, m.bit_offset // 8))
    kind = "struct" if t.kind == B.STRUCT else "union"
    return CRecord(kind, t.name, t.size, _btf_align(btf, t.id), tuple(members), True)


def _btf_align(btf, tid: int) -> int:
    """The alignment of a BTF type (BTF does not record it): the largest alignment of
    its members, or 1 if the layout shows the record is packed."""
    from . import btf as B
    cache = _btf_cache.setdefault(btf, {})
    key = ("align", tid)
    if key in cache:
        return cache[key]
    t = btf.type(btf.resolve(tid))
    if t.kind == B.ARRAY:
        align = _btf_align(btf, t.elem)
    elif t.kind in (B.STRUCT, B.UNION):
        align = 1
        for m in t.members:
            a = _btf_align(btf, m.type)
            if not m.bitfield_size and m.bit_offset % (a * 8):
                align = 1
                break
            align = max(align, a)
        if t.size % align:
            align = 1
    elif t.kind == B.PTR:
        align = 8
    else:
        align = max(1, min(btf.size(t.id), 16))
    cache[key] = align
    return align


def btf_fallback(btf) -> Callable[[str], CType | None]:
    """A TypeSpace fallback looking names up in a Btf: "struct X", "union X", "enum X"
    or a typedef name."""
    def lookup(name: str) -> CType | None:
        for ns in ("struct", "union", "enum"):
            if name.startswith(ns + " "):
                tid = btf.find(name[len(ns) + 1:], ns)
                return from_btf(btf, tid) if tid else None
        tid = btf.find(name, "type")
        return from_btf(btf, tid) if tid else None
    return lookup
