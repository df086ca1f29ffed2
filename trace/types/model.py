"""pytrace's value types, as the type checker assigns them and codegen lowers them.

Every integer is held in an i64 register and stored in 8 bytes; `bits` and
`signed` only decide casts, comparisons, division and printing.
"""
from __future__ import annotations

from ..runtime import environment
from ..runtime.record import record, field
from . import cmodel

# BPFTRACE_STRLEN: bytes of a string value (str(), buf(), string literals), NUL included
STRLEN = min(environment.number("BPFTRACE_STRLEN"), environment.MAX_STRLEN)


class Type:
    """Base of all types. `size` is the storage size in bytes; `prints_as_string`:
    printf's %s takes it (its user-space text); `map_key`: it may be (part of) a map key."""
    size = 8
    prints_as_string = False
    map_key = True

    def descriptor(self) -> dict:
        raise NotImplementedError(type(self).__name__)

    @property
    def is_int(self) -> bool:
        return isinstance(self, IntT)

    @property
    def is_str(self) -> bool:
        return isinstance(self, StrT)

    @property
    def in_register(self) -> bool:
        """Held as an i64 SSA value (else: a pointer to stack or map memory)."""
        return self.size == 8 and not isinstance(self, (StrT, TupleT))


@record(frozen=True)
class IntT(Type):
    bits: int = 64
    signed: bool = True

    def __str__(self):
        return ("" if self.signed else "unsigned ") + f"int{self.bits}"

    def descriptor(self):
        if self.bits != 64:                 # a narrow tuple element
            return {"kind": "int", "signed": self.signed, "size": self.bits // 8}
        return {"kind": "int", "signed": self.signed}


@record(frozen=True)
class PtrT(Type):
    """A pointer (printed as hex). `user` says which address space it reads from."""
    target: str = "void"
    user: bool | None = False   # True user memory, False kernel, None unknown
    ctarget: object = field(default=None, compare=False)   # the pointee (types/cmodel), if known

    def __str__(self):
        return f"{self.target} *"

    def descriptor(self):
        return {"kind": "ptr"}


@record(frozen=True)
class StructT(Type):
    """A struct/union value in kernel (or user) memory, held as its address (an i64):
    fields are read when accessed (see types/kernel.py). `struct_size` is sizeof()."""
    name: str = ""
    user: bool | None = False
    struct_size: int = field(default=0, compare=False)
    ctype: object = field(default=None, compare=False)     # its types/cmodel record

    def __str__(self):
        return self.name

    def descriptor(self):
        return {"kind": "ptr"}


@record(frozen=True)
class ArrayT(Type):
    """A non-char array in kernel (or user) memory, held as its address (an i64)."""
    elem: Type = None
    count: int = 0
    user: bool | None = False
    elem_size: int = field(default=8, compare=False)
    ctype: object = field(default=None, compare=False)     # its types/cmodel array

    def __str__(self):
        return f"{self.elem}[{self.count}]"

    def descriptor(self):
        return {"kind": "ptr"}


@record(frozen=True)
class StrT(Type):
    prints_as_string = True
    length: int = 64

    @property
    def size(self):
        return self.length

    def __str__(self):
        return f"string[{self.length}]"

    def descriptor(self):
        return {"kind": "str", "size": self.length}


def slot(t: "Type") -> int:
    """The bytes a value takes as a field of a tuple, a map key or an output record:
    its size rounded up to 8 (every field starts 8-byte aligned)."""
    return (t.size + 7) & ~7


def packed(types, start: int = 0):
    """(offsets, end) of values laid out one after another in 8-byte slots."""
    offsets, off = [], start
    for t in types:
        offsets.append(off)
        off += slot(t)
    return offsets, off


def _field_size(t: "Type") -> int:
    """Bytes a value takes as a tuple element (an integer: its own width)."""
    return t.bits // 8 if isinstance(t, IntT) else t.size


def _field_align(t: "Type") -> int:
    if isinstance(t, IntT):
        return t.bits // 8
    if isinstance(t, (StrT, ByteArrayT)):
        return 1
    if isinstance(t, TupleT):
        return t.align
    if isinstance(t, CValueT) and t.ctype is not None:
        return cmodel.alignof(t.ctype)
    return 8


@record(frozen=True)
class TupleT(Type):
    """A tuple, laid out as bpftrace 0.17 lays it out: a C struct of its elements
    (natural alignment; integers at their own width)."""
    elements: tuple[Type, ...]

    @property
    def offsets(self):
        return self._layout()[0]

    @property
    def size(self):
        return self._layout()[1]

    @property
    def align(self):
        return max((_field_align(t) for t in self.elements), default=1)

    def _layout(self):
        offsets, off = [], 0
        for t in self.elements:
            a = _field_align(t)
            off = (off + a - 1) // a * a
            offsets.append(off)
            off += _field_size(t)
        a = self.align
        return offsets, (off + a - 1) // a * a

    def __str__(self):
        return "(" + ",".join(str(t) for t in self.elements) + ")"

    def descriptor(self):
        return {"kind": "tuple", "size": self.size,
                "fields": [{"offset": o, "type": t.descriptor()}
                           for o, t in zip(self.offsets, self.elements)]}


@record(frozen=True)
class ProbeT(Type):
    prints_as_string = True
    def __str__(self):
        return "probe"

    def descriptor(self):
        return {"kind": "probe"}


@record(frozen=True)
class UsernameT(Type):
    prints_as_string = True
    def __str__(self):
        return "username"

    def descriptor(self):
        return {"kind": "username"}


@record(frozen=True)
class NoneT(Type):
    size = 0

    def __str__(self):
        return "none"

    def descriptor(self):
        return {"kind": "none"}


@record(frozen=True)
class ArgsT(Type):
    """The `args` of a tracepoint: a pointer to its context record."""

    def __str__(self):
        return "args"


@record(frozen=True)
class AggT(Type):
    """The value of an aggregation map: count, sum, min, max, avg, stats, hist, lhist."""
    kind: str
    signed: bool = True
    lhist: tuple[int, int, int] | None = None

    def __str__(self):
        return f"{self.kind}_t" if self.kind != "lhist" else "lhist_t"

    @property
    def size(self):
        return 16 if self.kind in ("min", "max", "avg", "stats") else 8


INT64 = IntT(64, True)
UINT64 = IntT(64, False)
UINT32 = IntT(32, False)
BOOL = IntT(64, False)

INT_TYPES = {f"{'u' if not s else ''}int{b}": IntT(b, s)
             for b in (8, 16, 32, 64) for s in (True, False)}


def bpftrace_name(t: Type) -> str:
    """The type name as bpftrace prints it in error messages."""
    if isinstance(t, IntT):
        return ("" if t.signed else "unsigned ") + f"int{t.bits}"
    if isinstance(t, StrT):
        return f"string[{t.length}]"
    if isinstance(t, AggT):
        return {"count": "count", "sum": "sum", "min": "min", "max": "max",
                "avg": "avg", "stats": "stats", "hist": "hist", "lhist": "lhist"}[t.kind]
    if isinstance(t, TupleT):
        return "(" + ",".join(bpftrace_name(e) for e in t.elements) + ")"
    return str(t)


def unify(a: Type, b: Type) -> Type | None:
    """The common type of two values stored in one place, or None if incompatible."""
    if a == b:
        return a
    if isinstance(a, IntT) and isinstance(b, IntT):
        return IntT(64, a.signed and b.signed)
    if isinstance(a, StrT) and isinstance(b, StrT):
        return StrT(max(a.length, b.length))
    if isinstance(a, BufT) and isinstance(b, BufT):
        return BufT(max(a.cap, b.cap))
    if isinstance(a, TupleT) and isinstance(b, TupleT) and len(a.elements) == len(b.elements):
        parts = [unify(x, y) for x, y in zip(a.elements, b.elements)]
        if all(p is not None for p in parts):
            return TupleT(tuple(parts))
    if isinstance(a, PtrT) and isinstance(b, (PtrT, IntT)):
        return a
    if isinstance(a, IntT) and isinstance(b, PtrT):
        return b
    return None


def pointer_of(node) -> "PtrT" | None:
    """The pointer type of an expression: its own type, or for pointer arithmetic
    (`args->argv + 1`, typed as an integer like bpftrace 0.17 prints it) the pointer operand's."""
    t = getattr(node, "type", None)
    if isinstance(t, PtrT):
        return t
    return node.ptr_base


def pointee_size(p: "PtrT") -> int:
    """Bytes per element when a pointer is offset (bpftrace scales pointer arithmetic)."""
    if p.target.endswith("*"):
        return 8
    if p.ctarget is not None:
        try:
            return max(1, cmodel.sizeof(p.ctarget))
        except cmodel.CTypeError:
            pass
    t = INT_TYPES.get(p.target)
    if t is not None:
        return t.bits // 8
    c = cmodel.scalar(p.target)
    return c.size if c is not None else 1


# ---------------------------------------------------------------- stacks, symbols and values
# resolved or formatted in user space (see docs/object-contract.md, "Value type descriptors")

def stack_map_symbol(limit: int) -> str:
    """The STACK_TRACE map that holds stacks of at most `limit` frames."""
    return f"stack_{limit}"


@record(frozen=True)
class StackT(Type):
    """kstack / ustack: a stack id in a STACK_TRACE map (ustack: plus the pid, so that
    user space can symbolize the frames)."""
    prints_as_string = True
    user: bool = False
    mode: str = "bpftrace"
    limit: int = 127

    @property
    def size(self):
        return 16 if self.user else 8

    def __str__(self):
        return ("ustack" if self.user else "kstack") + (f"_{self.mode}" if self.mode != "bpftrace"
                                                        else "") + f"[{self.limit}]"

    def descriptor(self):
        return {"kind": "ustack" if self.user else "kstack", "mode": self.mode,
                "limit": self.limit, "map": stack_map_symbol(self.limit)}


@record(frozen=True)
class KsymT(Type):
    """ksym(addr): a kernel address printed as its symbol name."""
    prints_as_string = True

    def __str__(self):
        return "ksym"

    def descriptor(self):
        return {"kind": "ksym"}


@record(frozen=True)
class UsymT(Type):
    """usym(addr): {u64 addr; u64 pid}, printed as the symbol in that process."""
    prints_as_string = True
    size = 16

    def __str__(self):
        return "usym"

    def descriptor(self):
        return {"kind": "usym"}


@record(frozen=True)
class InetT(Type):
    """ntop(): {u64 af; u8 addr[16]}, printed as an IPv4 / IPv6 address."""
    prints_as_string = True
    size = 24

    def __str__(self):
        return "inet"

    def descriptor(self):
        return {"kind": "inet"}


@record(frozen=True)
class BufT(Type):
    """buf(): {u64 length; u8 data[cap]}, printed with %r / %rx / %rh."""
    cap: int = 64

    @property
    def size(self):
        return 8 + self.cap

    @property
    def in_register(self):
        return False

    def __str__(self):
        return f"buffer[{self.cap}]"

    def descriptor(self):
        return {"kind": "buf", "size": self.cap}


@record(frozen=True)
class ByteArrayT(Type):
    """A constant byte array (pton()), printed as [10,0,0,1]."""
    count: int = 4

    @property
    def size(self):
        return self.count

    @property
    def in_register(self):
        return False

    def __str__(self):
        return f"uint8[{self.count}]"

    def descriptor(self):
        return {"kind": "bytes", "count": self.count}


@record(frozen=True)
class MacT(Type):
    """macaddr(): the 6 bytes of a MAC address (in an 8-byte slot)."""
    prints_as_string = True

    def __str__(self):
        return "macaddr"

    def descriptor(self):
        return {"kind": "macaddr"}


@record(frozen=True)
class StrerrorT(Type):
    """strerror(n): an errno printed as its message."""
    prints_as_string = True

    def __str__(self):
        return "strerror"

    def descriptor(self):
        return {"kind": "strerror"}


@record(frozen=True)
class StrftimeT(Type):
    """strftime(fmt, nsecs): nanoseconds since boot, formatted in user space."""
    prints_as_string = True
    format: str = "%H:%M:%S"

    def __str__(self):
        return "timestamp"

    def descriptor(self):
        return {"kind": "strftime", "format": self.format}


@record(frozen=True)
class CgroupPathT(Type):
    """cgroup_path(id[, filter]): a cgroup id, printed as its path in every mounted
    cgroup hierarchy whose name matches `filter` (resolved in user space)."""
    prints_as_string = True
    map_key = False
    filter: str = "*"

    def __str__(self):
        return "cgroup_path_t"

    def descriptor(self):
        return {"kind": "cgroup_path", "filter": self.filter}


@record(frozen=True)
class CValueT(Type):
    """A copy of a C struct, union or array (read from memory when it is stored in a
    map, a key or a tuple), laid out as C lays it out; printed as bpftrace 0.17 does:
    `{ .a = 1, .b = [1,2] }`. `desc` is its value descriptor (see cvalue_descriptor)."""
    name: str = ""
    desc: object = field(default=None, compare=False)
    csize: int = 0
    ctype: object = field(default=None, compare=False)     # its types/cmodel record or array

    @property
    def size(self):
        return self.csize

    @property
    def in_register(self):
        return False

    def __str__(self):
        return self.name

    def descriptor(self):
        return self.desc


def cvalue_descriptor(ct, space) -> dict:
    """The value descriptor of a C type: ints with their size, char arrays as
    strings, arrays and records with their layout."""
    ct = cmodel.resolve(space, ct)
    if isinstance(ct, (cmodel.CInt, cmodel.CEnum)):
        return {"kind": "int", "signed": ct.signed or (isinstance(ct, cmodel.CInt) and ct.name == "char"),
                "size": ct.size}
    if isinstance(ct, cmodel.CPointer):
        return {"kind": "int", "signed": False, "size": 8}
    if isinstance(ct, cmodel.CArray):
        elem = cmodel.resolve(space, ct.elem)
        if isinstance(elem, cmodel.CInt) and elem.name == "char":
            return {"kind": "str", "size": ct.count}
        return {"kind": "array", "count": ct.count, "elem_size": cmodel.sizeof(elem, space),
                "elem": cvalue_descriptor(elem, space)}
    if isinstance(ct, cmodel.CRecord):
        return {"kind": "record", "size": ct.size, "fields": _record_fields(ct, space, 0)}
    return {"kind": "bytes", "count": cmodel.sizeof(ct, space)}


def _record_fields(rec, space, base: int) -> list:
    """A record's fields; the members of an anonymous struct/union are its own (as
    bpftrace prints them)."""
    fields = []
    for m in rec.members:
        inner = cmodel.resolve(space, m.type)
        if not m.name and isinstance(inner, cmodel.CRecord):
            fields += _record_fields(inner, space, base + m.offset)
            continue
        fields.append({"name": m.name, "offset": base + m.offset, "bit_offset": m.bit_offset,
                       "bits": m.bits, "type": cvalue_descriptor(m.type, space)})
    return fields


def kind_name(t) -> str:
    """The type class bpftrace 0.17 names in some messages (its `Type` enum)."""
    if isinstance(t, IntT):
        return "integer"
    if isinstance(t, StrT):
        return "string"
    if isinstance(t, PtrT):
        return "pointer"
    if isinstance(t, TupleT):
        return "tuple"
    if isinstance(t, NoneT):
        return "none"
    return bpftrace_name(t)
