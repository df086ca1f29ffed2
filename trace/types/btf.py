"""A lazy, pure-Python reader of the kernel's BTF (/sys/kernel/btf/vmlinux).

The file holds a header, a type section (~100k variable-length records) and a
string section.  Opening it scans the type section once, recording where each
record starts (record offsets are only known by walking the records), and
indexes the names of the named types; the index is cached on disk (keyed by
the kernel build and the file's size), so a later open only reads the file.
Types are decoded on demand.

    from pytrace.types.btf import vmlinux
    btf = vmlinux()
    t = btf.struct("task_struct")          # a Type (kind STRUCT)
    m = btf.member(t, "pid")               # a Member: name, type id, bit offset, bitfield size
    btf.size(m.type)                        # 4
    btf.enum_value("SKB_DROP_REASON_NOT_SPECIFIED")

Kinds: INT PTR ARRAY STRUCT UNION ENUM FWD TYPEDEF VOLATILE CONST RESTRICT FUNC
FUNC_PROTO VAR DATASEC FLOAT DECL_TAG TYPE_TAG ENUM64.
"""
from __future__ import annotations

import array
import functools
import marshal
import os
import struct
import zlib

from ..cache import home as cache_home
from ..runtime.record import record, field

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, \
    FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)
KIND_NAMES = {INT: "INT", PTR: "PTR", ARRAY: "ARRAY", STRUCT: "STRUCT", UNION: "UNION",
              ENUM: "ENUM", FWD: "FWD", TYPEDEF: "TYPEDEF", VOLATILE: "VOLATILE",
              CONST: "CONST", RESTRICT: "RESTRICT", FUNC: "FUNC", FUNC_PROTO: "FUNC_PROTO",
              VAR: "VAR", DATASEC: "DATASEC", FLOAT: "FLOAT", DECL_TAG: "DECL_TAG",
              TYPE_TAG: "TYPE_TAG", ENUM64: "ENUM64"}
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
# u32 words that follow the 3-word common header, per kind: (fixed, per vlen item)
_EXTRA = {INT: (1, 0), ARRAY: (3, 0), STRUCT: (0, 3), UNION: (0, 3), ENUM: (0, 2),
          FUNC_PROTO: (0, 2), VAR: (1, 0), DATASEC: (0, 3), DECL_TAG: (1, 0), ENUM64: (0, 3)}
# the kinds whose names are indexed (name -> type id), by namespace
_NAMESPACE = {STRUCT: "struct", UNION: "union", ENUM: "enum", ENUM64: "enum", FWD: "fwd",
              TYPEDEF: "type", INT: "type", FLOAT: "type", FUNC: "func"}
CACHE_VERSION = 2


class BtfError(Exception):
    pass


@record
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0     # 0: not a bitfield

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


@record
class Type:
    id: int
    kind: int
    name: str
    size: int = 0          # STRUCT/UNION/INT/ENUM/FLOAT/DATASEC
    ref: int = 0           # PTR/TYPEDEF/modifiers/FUNC/VAR/FUNC_PROTO (return type)
    vlen: int = 0
    kind_flag: bool = False
    # kind specific
    encoding: int = 0      # INT: 1 signed, 2 char, 4 bool
    bits: int = 0          # INT
    int_offset: int = 0    # INT
    elem: int = 0          # ARRAY
    nelems: int = 0        # ARRAY
    members: list[Member] = field(default_factory=list)             # STRUCT/UNION
    values: list[tuple[str, int]] = field(default_factory=list)     # ENUM/ENUM64
    params: list[tuple[str, int]] = field(default_factory=list)     # FUNC_PROTO

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))

    @property
    def signed(self) -> bool:
        return bool(self.encoding & 1) if self.kind == INT else self.kind_flag


class Btf:
    def __init__(self, data: bytes, index: dict | None = None):
        if len(data) < 24:
            raise BtfError("BTF data too short")
        magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC:
            raise BtfError("not BTF data (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.data = data
        self.types_start = hdr_len + type_off
        self.types_end = self.types_start + type_len
        self.str_start = hdr_len + str_off
        self.str_end = self.str_start + str_len
        self.words = memoryview(data)[self.types_start:self.types_end].cast("I")
        if index is None:
            index = self._scan()
        self.offsets = index["offsets"]          # type id -> word offset (id 0: void)
        self.names = index["names"]              # "struct task_struct" -> id, "func vfs_read" -> id
        self._cache: dict[int, Type] = {}
        self._enum_values: dict[str, int] | None = None

    # ------------------------------------------------------------ index
    def _scan(self) -> dict:
        words = self.words
        n = len(words)
        offsets = [0]
        names: dict[str, int] = {}
        strtab = self.data
        s0 = self.str_start
        extra = [(0, 0)] * 32
        for k, v in _EXTRA.items():
            extra[k] = v
        ns = [None] * 32
        for k, v in _NAMESPACE.items():
            ns[k] = v
        i = 0
        tid = 0
        find = strtab.index
        append = offsets.append
        while i < n:
            tid += 1
            append(i)
            name_off = words[i]
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            fixed, per = extra[kind]
            if name_off and ns[kind] is not None:
                start = s0 + name_off
                name = strtab[start:find(b"\0", start)].decode()
                key = ns[kind] + " " + name
                if key not in names:
                    names[key] = tid
            i += 3 + fixed + per * (info & 0xFFFF)
        return {"offsets": offsets, "names": names}

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def string(self, off: int) -> str:
        start = self.str_start + off
        return self.data[start:self.data.index(b"\0", start)].decode()

    # ------------------------------------------------------------ decoding
    def type(self, tid: int) -> Type:
        t = self._cache.get(tid)
        if t is not None:
            return t
        if tid == 0:
            t = Type(0, 0, "void")
            self._cache[0] = t
            return t
        if not 0 < tid < len(self.offsets):
            raise BtfError(f"BTF type id {tid} out of range")
        w = self.words
        i = self.offsets[tid]
        name_off, info, size_type = w[i], w[i + 1], w[i + 2]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        t = Type(tid, kind, self.string(name_off) if name_off else "", vlen=vlen, kind_flag=kflag)
        j = i + 3
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            t.size = size_type
        else:
            t.ref = size_type
        if kind == INT:
            v = w[j]
            t.encoding, t.int_offset, t.bits = (v >> 24) & 0x0F, (v >> 16) & 0xFF, v & 0xFF
        elif kind == ARRAY:
            t.elem, t.nelems = w[j], w[j + 2]
        elif kind in (STRUCT, UNION):
            for k in range(vlen):
                mname, mtype, moff = w[j], w[j + 1], w[j + 2]
                j += 3
                if kflag:
                    t.members.append(Member(self.string(mname) if mname else "", mtype,
                                            moff & 0xFFFFFF, moff >> 24))
                else:
                    t.members.append(Member(self.string(mname) if mname else "", mtype, moff))
        elif kind == ENUM:
            for k in range(vlen):
                v = w[j + 1]
                if kflag and v >= 1 << 31:
                    v -= 1 << 32
                elif not kflag and v >= 1 << 31:     # pre-6.0 kernels: signed values
                    v -= 1 << 32
                t.values.append((self.string(w[j]), v))
                j += 2
        elif kind == ENUM64:
            for k in range(vlen):
                v = w[j + 1] | (w[j + 2] << 32)
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                t.values.append((self.string(w[j]), v))
                j += 3
        elif kind == FUNC_PROTO:
            for k in range(vlen):
                t.params.append((self.string(w[j]) if w[j] else "", w[j + 1]))
                j += 2
        self._cache[tid] = t
        return t

    # ------------------------------------------------------------ lookups
    def find(self, name: str, namespace: str = "struct") -> int | None:
        return self.names.get(f"{namespace} {name}")

    def struct(self, name: str) -> Type | None:
        """`task_struct`, `struct task_struct`, `union X` or a typedef name → the
        STRUCT/UNION type (through typedefs), or None."""
        name = " ".join(name.split())
        for ns in ("struct", "union"):
            if name.startswith(ns + " "):
                tid = self.find(name[len(ns) + 1:], ns)
                return self.type(tid) if tid else None
        for ns in ("struct", "union"):
            tid = self.find(name, ns)
            if tid:
                return self.type(tid)
        tid = self.find(name, "type")
        if tid:
            t = self.type(self.resolve(tid))
            if t.kind in (STRUCT, UNION):
                return t
        return None

    def resolve(self, tid: int) -> int:
        """Skip typedefs and const/volatile/restrict/type-tag modifiers."""
        seen = 0
        while tid:
            t = self.type(tid)
            if t.kind not in MODIFIERS:
                return tid
            tid = t.ref
            seen += 1
            if seen > 64:
                raise BtfError("BTF modifier loop")
        return tid

    def size(self, tid: int) -> int:
        t = self.type(self.resolve(tid))
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return t.nelems * self.size(t.elem)
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return t.size
        return 0

    def member(self, t: Type, name: str) -> Member | None:
        """A member of a struct/union by name, looking into anonymous structs/unions
        (the returned Member's bit offset is from the start of `t`)."""
        for m in t.members:
            if m.name == name:
                return m
        for m in t.members:
            if not m.name:
                inner = self.type(self.resolve(m.type))
                if inner.kind in (STRUCT, UNION):
                    found = self.member(inner, name)
                    if found is not None:
                        return Member(found.name, found.type, m.bit_offset + found.bit_offset,
                                      found.bitfield_size)
        return None

    def type_name(self, tid: int) -> str:
        """The C spelling of a type: `struct task_struct *`, `const char *`, `u32`."""
        t = self.type(tid)
        k = t.kind
        if tid == 0:
            return "void"
        if k in (STRUCT, UNION):
            return f"{'struct' if k == STRUCT else 'union'} {t.name}".strip()
        if k in (ENUM, ENUM64):
            return f"enum {t.name}".strip()
        if k == FWD:
            return f"{'union' if t.kind_flag else 'struct'} {t.name}"
        if k == PTR:
            inner = self.type_name(t.ref)
            return inner + ("*" if inner.endswith("*") else " *")
        if k == CONST:
            return "const " + self.type_name(t.ref)
        if k == VOLATILE:
            return "volatile " + self.type_name(t.ref)
        if k in (RESTRICT, TYPE_TAG):
            return self.type_name(t.ref)
        if k == ARRAY:
            return f"{self.type_name(t.elem)}[{t.nelems}]"
        if k == FUNC_PROTO:
            return f"{self.type_name(t.ref)} (*)(...)"
        return t.name

    def enum_value(self, name: str) -> int | None:
        """The value of an enumerator of any BTF enum (first one wins)."""
        if self._enum_values is None:
            values: dict[str, int] = {}
            w = self.words
            for tid in range(1, len(self.offsets)):
                kind = (w[self.offsets[tid] + 1] >> 24) & 0x1F
                if kind in (ENUM, ENUM64):
                    for n, v in self.type(tid).values:
                        values.setdefault(n, v)
            self._enum_values = values
        return self._enum_values.get(name)

    def func_proto(self, func_name: str) -> Type | None:
        """The FUNC_PROTO of a kernel function (FUNC record) by name."""
        tid = self.find(func_name, "func")
        if not tid:
            return None
        return self.type(self.type(tid).ref)

    def funcs(self):
        """Names of every FUNC in the BTF."""
        return [k[5:] for k in self.names if k.startswith("func ")]


# ---------------------------------------------------------------- the kernel's BTF

def _cache_path(st) -> str | None:
    uname = os.uname()
    key = f"{uname.release}-{zlib.crc32(uname.version.encode()):08x}-{st.st_size}-v{CACHE_VERSION}"
    return os.path.join(cache_home(), f"btf-{key}.marshal")


@functools.lru_cache(maxsize=None)
def vmlinux(path: str = VMLINUX) -> Btf | None:
    """The kernel's BTF, or None if the kernel has none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        st = os.stat(path)
    except OSError:
        return None
    index = None
    cache = _cache_path(st) if path == VMLINUX else None
    if cache is not None:
        try:
            with open(cache, "rb") as f:
                size, offs, keys, ids = marshal.load(f)
            if size != len(data):
                raise ValueError("stale BTF index")
            offsets = array.array("I")
            offsets.frombytes(offs)
            id_array = array.array("I")
            id_array.frombytes(ids)
            index = {"offsets": offsets, "names": dict(zip(keys.split("\n"), id_array))}
        except (OSError, EOFError, ValueError, TypeError, AttributeError):
            index = None
    try:
        btf = Btf(data, index)
    except BtfError:
        return None
    if index is None and cache is not None:
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            import tempfile     # lazy: start-up time (only when the index is written)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cache))
            with os.fdopen(fd, "wb") as f:
                marshal.dump((len(data), array.array("I", btf.offsets).tobytes(),
                              "\n".join(btf.names), array.array("I", btf.names.values()).tobytes()), f)
            os.replace(tmp, cache)
        except OSError:
            pass
    return btf


def available() -> bool:
    return vmlinux() is not None
