"""DWARF of user-space binaries (read with pyelftools): the parameters of a function
and the binary's named types, as types/cmodel types.

Used by uprobes for `args->NAME` (typed from the function's DWARF parameters), for
`-lv` (each parameter as bpftrace prints it) and, through a TypeSpace fallback, for
casts to the binary's structs without an in-script definition.  Nothing is read
until a program needs it: `dwarf_of` only opens a binary that has `.debug_info`,
and the index of its functions and types (name -> DIE offset) is built on the
first lookup and cached on disk, like the BTF index (keyed by the binary's path,
inode, size and mtime); a lookup then parses only the DIEs it needs.

Conversion follows BTF's (cmodel.from_btf): a named struct/union met as a member
or pointee is a CRef, resolved by name through the space (so an in-script
definition takes precedence); typedefs and cv-qualifiers are looked through.
"""
from __future__ import annotations

import functools
import marshal
import os
import zlib

from ..cache import home as cache_home
from . import cmodel as C

INDEX_VERSION = 1

_RECORDS = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union"}
_PEEL = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
         "DW_TAG_restrict_type", "DW_TAG_atomic_type")
_NAMED = dict(_RECORDS, DW_TAG_enumeration_type="enum")


def dwarf_of(path: str) -> "Dwarf" | None:
    """The DWARF of the ELF file at path, or None if it has none (or is not ELF)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _load(os.path.realpath(path), (st.st_ino, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _load(path: str, key) -> "Dwarf" | None:
    from elftools.common.exceptions import ELFError  # lazy: start-up time (DWARF users only)
    from elftools.elf.elffile import ELFFile
    try:
        f = open(path, "rb")
        elf = ELFFile(f)
        if elf.get_section_by_name(".debug_info") is None:
            f.close()
            return None
        return Dwarf(elf.get_dwarf_info(), f"{path}\0{key}")
    except (ELFError, OSError, ValueError):
        return None


class Dwarf:
    def __init__(self, info, key: str = ""):
        self.info = info
        self.key = key
        self._funcs: dict | None = None      # function name -> its DIE's offset
        self._types: dict | None = None      # "struct X", "enum X", typedef name -> offset
        self._done: dict = {}                   # DIE offset -> CType

    # ------------------------------------------------------------ the index
    def _index(self):
        if self._funcs is not None:
            return
        cached = _read_index(self.key)
        if cached is None:
            cached = self._scan()
            _write_index(self.key, cached)
        self._funcs, self._types = cached

    def _scan(self):
        funcs, types = {}, {}
        for cu in self.info.iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                name = _name(die)
                if not name or "DW_AT_declaration" in die.attributes:
                    continue
                if die.tag == "DW_TAG_subprogram":
                    funcs.setdefault(name, die.offset)
                elif die.tag in _NAMED:
                    types.setdefault(f"{_NAMED[die.tag]} {name}", die.offset)
                elif die.tag == "DW_TAG_typedef":
                    types.setdefault(name, die.offset)
        return funcs, types

    def _die(self, offset):
        return self.info.get_DIE_from_refaddr(offset)

    # ------------------------------------------------------------ queries
    def params(self, func: str) -> list | None:
        """[(name, CType, DWARF type DIE or None)] of func's parameters; None: no such
        function in the DWARF."""
        self._index()
        if func not in self._funcs:
            return None
        die, out = self._die(self._funcs[func]), []
        for p in die.iter_children():
            if p.tag == "DW_TAG_formal_parameter":
                t = _type_of(p)
                out.append((_name(p), self.ctype(t), t))
        return out

    def lookup(self, name: str) -> C.CType | None:
        """A TypeSpace fallback: "struct X", "union X", "enum X" or a typedef name."""
        self._index()
        offset = self._types.get(" ".join(name.split()))
        return self.ctype(self._die(offset)) if offset is not None else None

    # ------------------------------------------------------------ DIE -> CType
    def ctype(self, die) -> C.CType:
        if die is None:
            return C.CVoid()
        t = self._done.get(die.offset)
        if t is None:
            t = self._done[die.offset] = self._convert(die)
        return t

    def _convert(self, die) -> C.CType:
        tag = die.tag
        if tag in _PEEL:
            return self.ctype(_type_of(die))
        if tag == "DW_TAG_base_type":
            return _base(die)
        if tag == "DW_TAG_pointer_type":
            return C.CPointer(self._ref(_type_of(die)))
        if tag == "DW_TAG_array_type":
            return self._array(die)
        if tag == "DW_TAG_enumeration_type":
            return _enum(die)
        if tag in _RECORDS:
            if "DW_AT_declaration" in die.attributes:
                return C.CRef(_RECORDS[tag], _name(die))
            return self._record(die)
        return C.CFunc()          # subroutine types, and what C has no name for

    def _ref(self, die) -> C.CType:
        """A member's or pointee's type: a CRef for a named struct/union (recursive
        types; resolved by name, so the script's definition wins)."""
        if die is None:
            return C.CVoid()
        peeled = _peel(die)
        if peeled is not None and peeled.tag in _RECORDS and _name(peeled):
            return C.CRef(_RECORDS[peeled.tag], _name(peeled))
        if peeled is not None and peeled.tag == "DW_TAG_subroutine_type":
            return C.CFunc()
        return self.ctype(die)

    def _array(self, die) -> C.CType:
        t = self._ref(_type_of(die))
        dims = [_count(s) for s in die.iter_children() if s.tag == "DW_TAG_subrange_type"]
        for n in reversed(dims or [0]):
            t = C.CArray(t, n)
        return t

    def _record(self, die) -> C.CRecord:
        members, align = [], 1
        for m in die.iter_children():
            if m.tag != "DW_TAG_member":
                continue
            mt = self._ref(_type_of(m))
            align = max(align, self._align(_type_of(m)))
            members.append(self._member(m, mt))
        size = _attr(die, "DW_AT_byte_size", 0)
        return C.CRecord(_RECORDS[die.tag], _name(die), size, align, tuple(members), True)

    def _member(self, m, mt) -> C.CMember:
        loc = _location(m)
        bits = _attr(m, "DW_AT_bit_size", 0)
        if not bits:
            return C.CMember(_name(m), mt, loc)
        unit = _attr(m, "DW_AT_byte_size", 0) or self._size(_type_of(m)) or 4
        if "DW_AT_data_bit_offset" in m.attributes:
            bit = m.attributes["DW_AT_data_bit_offset"].value
        else:       # DWARF 2/3: DW_AT_bit_offset counts from the unit's most significant bit
            bit = loc * 8 + unit * 8 - _attr(m, "DW_AT_bit_offset", 0) - bits
        start = bit // (unit * 8) * unit
        return C.CMember(_name(m), mt, start, bit - start * 8, bits)

    def _size(self, die) -> int:
        peeled = _peel(die)
        if peeled is None:
            return 0
        if peeled.tag == "DW_TAG_pointer_type":
            return 8
        return _attr(peeled, "DW_AT_byte_size", 0)

    def _align(self, die) -> int:
        peeled = _peel(die)
        if peeled is None:
            return 1
        if peeled.tag == "DW_TAG_array_type":
            return self._align(_type_of(peeled))
        if peeled.tag in _RECORDS:
            return max([self._align(_type_of(m)) for m in peeled.iter_children()
                        if m.tag == "DW_TAG_member"] or [1])
        return max(1, min(self._size(peeled), 16))


# ---------------------------------------------------------------- the index on disk

def _index_path(key: str) -> str:
    return os.path.join(cache_home(), f"dwarf-{zlib.crc32(key.encode()):08x}-v{INDEX_VERSION}.marshal")


def _read_index(key: str):
    try:
        with open(_index_path(key), "rb") as f:
            stored, funcs, types = marshal.load(f)
        return (funcs, types) if stored == key else None
    except (OSError, EOFError, ValueError, TypeError):
        return None


def _write_index(key: str, index) -> None:
    path = _index_path(key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        import tempfile     # lazy: start-up time (only when the index is written)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as f:
            marshal.dump((key, *index), f)
        os.replace(tmp, path)
    except OSError:
        pass


# ---------------------------------------------------------------- helpers

def _name(die) -> str:
    a = die.attributes.get("DW_AT_name")
    return a.value.decode(errors="replace") if a is not None else ""


def _attr(die, name: str, default=None):
    a = die.attributes.get(name)
    return a.value if a is not None else default


def _type_of(die):
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _peel(die):
    while die is not None and die.tag in _PEEL:
        die = _type_of(die)
    return die


def _location(m) -> int:
    loc = _attr(m, "DW_AT_data_member_location", 0)
    if isinstance(loc, list):          # DWARF 2: DW_OP_plus_uconst N
        return loc[1] if len(loc) == 2 and loc[0] == 0x23 else 0
    return loc


def _count(subrange) -> int:
    if "DW_AT_count" in subrange.attributes:
        return subrange.attributes["DW_AT_count"].value
    upper = _attr(subrange, "DW_AT_upper_bound")
    return upper + 1 if isinstance(upper, int) else 0


def _base(die) -> C.CType:
    size, enc, name = _attr(die, "DW_AT_byte_size", 0), _attr(die, "DW_AT_encoding", 0), _name(die)
    if enc == 0x02:                                    # DW_ATE_boolean
        return C.CInt(size, False, "_Bool")
    if enc in (0x05, 0x06):                            # signed, signed_char
        return C.CInt(size, True, "char" if enc == 0x06 and size == 1 else name)
    if enc in (0x07, 0x08):                            # unsigned, unsigned_char
        return C.CInt(size, False, name)
    if enc == 0x04:                                    # float
        return C.CFloat(size, name)
    return C.CInt(size, False, name)


def _enum(die) -> C.CEnum:
    values = tuple((_name(e), _attr(e, "DW_AT_const_value", 0)) for e in die.iter_children()
                   if e.tag == "DW_TAG_enumerator")
    return C.CEnum(_name(die), _attr(die, "DW_AT_byte_size", 4),
                   any(v < 0 for _, v in values), values)


def type_name(die) -> str:
    """A type as bpftrace 0.17 names it in `-lv` (`struct Foo*`, `const char*`,
    `char** const`, `<unknown type>*` for a function pointer)."""
    if die is None:
        return "void"
    tag = die.tag
    if tag in ("DW_TAG_base_type", "DW_TAG_typedef"):
        return _name(die)
    if tag == "DW_TAG_pointer_type":
        inner = _type_of(die)
        return type_name(inner) + "*" if inner is not None else "void*"
    if tag in _NAMED:
        return f"{_NAMED[tag]} {_name(die) or '<anonymous>'}"
    if tag == "DW_TAG_const_type":
        inner = _type_of(die)
        if inner is not None and inner.tag == "DW_TAG_pointer_type":
            return type_name(inner) + " const"
        return "const " + type_name(inner)
    return "<unknown type>"
