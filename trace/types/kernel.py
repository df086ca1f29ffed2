"""C data in the language, over the one C type model (types/cmodel.py) whatever
the source (the script's declarations, kernel BTF): member access, pointer deref,
array indexing, pointer casts, copies, sizeof(TYPE) and enum/macro constants.

Values: a struct (or non-char array) reached through a pointer is held as its
address in an i64 register (`StructT`/`ArrayT`); nothing is read until a scalar,
pointer or char array is reached, which is read with bpf_probe_read_kernel (or
_user for user pointers: tracepoint syscall arguments, uprobe casts).  Integer
members are read with their size and sign-extended as their type says;
bitfields are shifted and masked (unsigned, as 0.17).  Where a struct or array
is stored (a map value or key, a tuple, print()) it is copied (`CValueT`), and
parts of a copy are loaded from BPF memory directly.

The type checker calls `check_*`, the lowerer `lower_*`; each check records
what codegen needs on the node (`e.kaccess`, `e.kderef`).
"""
from __future__ import annotations

from ..codegen import builder as B
from ..codegen.builder import const
from ..language.diagnostics import error
from ..runtime.record import record
from . import btf as B_
from . import cmodel as C
from .model import (INT_TYPES, ArrayT, CValueT, IntT, PtrT, StrT, StructT, Type, bpftrace_name,
                    cvalue_descriptor)

# macro constants the bpftrace tools take from headers that BTF does not carry
MACROS = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16,
    "AF_PACKET": 17,
    "TASK_RUNNING": 0, "TASK_INTERRUPTIBLE": 1, "TASK_UNINTERRUPTIBLE": 2, "__TASK_STOPPED": 4,
    "__TASK_TRACED": 8, "EXIT_DEAD": 16, "EXIT_ZOMBIE": 32, "TASK_PARKED": 64, "TASK_DEAD": 128,
    "TASK_WAKEKILL": 256, "TASK_WAKING": 512, "TASK_NOLOAD": 1024, "TASK_NEW": 2048,
    "TASK_KILLABLE": 258, "TASK_STOPPED": 260, "TASK_TRACED": 8, "TASK_IDLE": 1026,
    "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3,
    "IPPROTO_IP": 0, "IPPROTO_ICMP": 1, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17, "IPPROTO_IPV6": 41,
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_CREAT": 0o100, "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000, "O_CLOEXEC": 0o2000000,
    "PAGE_SIZE": 4096, "PAGE_SHIFT": 12, "NULL": 0,
}


MAX_COPY = 480     # bytes of a struct/array copy (the BPF stack is 512 bytes)


def kbtf():
    return B_.vmlinux()


def _no_btf(span):
    return error("BTF is not available for this kernel (/sys/kernel/btf/vmlinux); kernel "
                 "struct types can not be resolved", span)


# ---------------------------------------------------------------- type mapping

def from_c(ct, space, user: bool = False) -> Type | None:
    """The language type of a value of C type `ct` (types/cmodel; None: unsupported,
    e.g. a function or a float)."""
    ct = C.resolve(space, ct)
    if isinstance(ct, C.CInt):
        if ct.name in ("_Bool", "bool") and ct.size == 1:
            return IntT(8, False)
        if ct.size not in (1, 2, 4, 8):
            return IntT(64, ct.signed) if ct.size > 8 else None
        return IntT(ct.size * 8, ct.signed or ct.name == "char")
    if isinstance(ct, C.CEnum):
        return IntT(ct.size * 8 if ct.size in (1, 2, 4, 8) else 64, ct.signed)
    if isinstance(ct, C.CPointer):
        target = C.resolve(space, ct.target) if isinstance(ct.target, C.CRef) else ct.target
        return PtrT(_pointee_name(ct.target), user=user, ctarget=target)
    if isinstance(ct, C.CRecord):
        return StructT(C.c_name(ct), user, ct.size if ct.complete else 0, ct)
    if isinstance(ct, C.CArray):
        elem = C.resolve(space, ct.elem)
        if isinstance(elem, C.CInt) and elem.name == "char":
            return StrT(max(1, ct.count))
        et = from_c(elem, space, user)
        if et is None or ct.count == 0:
            return None
        return ArrayT(et, ct.count, user, C.sizeof(elem, space), ct)
    return None


def from_btf(tid: int, user: bool = False) -> Type | None:
    """The language type of a value of BTF type `tid` (None: unsupported)."""
    b = kbtf()
    if b.resolve(tid) == 0:
        return None
    return from_c(C.from_btf(b, tid), kernel_space(), user)


_KERNEL_SPACE = None


def kernel_space():
    """The kernel's types by name (BTF), for programs without C declarations."""
    global _KERNEL_SPACE
    if _KERNEL_SPACE is None:
        b = kbtf()
        _KERNEL_SPACE = C.TypeSpace(C.btf_fallback(b) if b is not None else None)
    return _KERNEL_SPACE


def _pointee_name(target) -> str:
    """The `target` of a PtrT: the pointee's C name."""
    return C.c_name(target) if not isinstance(target, C.CFunc) else "void"


def _c_scalar(name: str) -> IntT | None:
    t = C.scalar(name)
    if t is None:
        return None
    return IntT(t.size * 8, t.signed or t.name == "char")


def pointee(ptr: PtrT, space=None) -> Type | None:
    """What a pointer points to (None: unknown, e.g. void)."""
    space = space or kernel_space()
    if ptr.ctarget is not None:
        target = C.resolve(space, ptr.ctarget)
        if isinstance(target, C.CRecord) and not target.complete and target.name:
            target = space.lookup(f"{target.kind} {target.name}") or target
        return from_c(target, space, ptr.user)
    target = ptr.target.strip()
    if target.endswith("*"):
        return PtrT(target[:-1].strip(), user=ptr.user)
    if target in ("void", ""):
        return None
    if target in INT_TYPES:
        return INT_TYPES[target]
    scalar = _c_scalar(target)
    if scalar is not None:
        return scalar
    if target.startswith("enum ") and space.lookup(target) is None:
        return IntT(32, False)
    ct = space.lookup(target)
    return from_c(ct, space, ptr.user) if ct is not None else None


def _record_of(t: StructT, space, span):
    if t.ctype is not None:
        rec = C.resolve(space, t.ctype)
        if isinstance(rec, C.CRecord) and rec.complete:
            return rec
    rec = space.lookup(t.name)
    if rec is None and kbtf() is None and not t.name.startswith(("struct ", "union ")):
        raise _no_btf(span)
    if not isinstance(rec, C.CRecord) or not rec.complete:
        if kbtf() is None:
            raise _no_btf(span)
        raise error(f"Cannot resolve unknown type \"{t.name}\"", span)
    return rec


# ---------------------------------------------------------------- checks

@record
class Access:
    """How to reach a field: address = base + offset; then read `size` bytes
    (or nothing, for struct/array values)."""
    offset: int
    size: int
    bit_offset: int = 0      # bitfields: bits from the first byte read
    bits: int = 0
    user: bool | None = False   # None: address space unknown (legacy probe_read)
    is_ptr_base: bool = True
    in_copy: bool = False    # a part of a copied value (CValueT): loaded from BPF memory
    stride: int = 0          # p[i] with a run-time index: the element size


def space_of(ck):
    """The types a program names: its C declarations, then the probed binary's
    (uprobe DWARF), then the kernel's."""
    decls = ck.structs.decls
    space = decls.space if decls is not None else kernel_space()
    source = ck.unit.provider.type_source(ck.unit) if ck.unit is not None else None
    return space.with_source(source) if source is not None else space


def check_field(ck, e, base: Type):
    """`base->field` / `base.field` on a struct pointer or a struct value."""
    space = space_of(ck)
    if isinstance(base, PtrT):
        target = pointee(base, space)
        if not isinstance(target, StructT):
            raise error(f"Can not access field '{e.field}' on type '{bpftrace_name(base)}'", e.span)
        st_t = target
    elif isinstance(base, StructT):
        st_t = base
    elif isinstance(base, CValueT) and isinstance(C.resolve(space, base.ctype), C.CRecord):
        return _copy_member(e, base, space)
    else:
        return None
    rec = _record_of(st_t, space, e.span)
    m = C.member(rec, e.field, space)
    if m is None:
        raise error(f"Struct/union of type '{st_t.name}' does not contain a field named "
                    f"'{e.field}'", e.span)
    t = from_c(m.type, space, st_t.user)
    if t is None:
        raise error(f"Field '{e.field}' of type '{C.c_name(m.type)}' is not supported", e.span)
    if m.bits:
        t = IntT(64, False)                 # 0.17 reads every bitfield as unsigned
        unit = C.sizeof(m.type, space)
        e.kaccess = Access(m.offset, unit, m.bit_offset, m.bits, st_t.user)
    else:
        e.kaccess = Access(m.offset, _read_size(t, C.sizeof(m.type, space)), user=st_t.user)
    return t


def value_of(ck, t: Type, span) -> Type:
    """A struct or array held by its address, as the value copied where it is stored
    (a map value or key, a tuple); any other type unchanged."""
    if isinstance(t, StructT):
        ct = _record_of(t, space_of(ck), span)
    elif isinstance(t, ArrayT) and t.ctype is not None:
        ct = t.ctype
    else:
        return t
    space = space_of(ck)
    size = C.sizeof(ct, space)
    if size > MAX_COPY:
        raise error(f"Value of type '{bpftrace_name(t)}' can not be stored in a map or tuple: "
                    f"{size} bytes, more than the {MAX_COPY} a copy may take on the BPF stack",
                    span)
    return CValueT(str(t), cvalue_descriptor(ct, space), size, ct)


def _read_size(t: Type, size: int) -> int:
    if isinstance(t, (StructT, ArrayT)):
        return 0
    if isinstance(t, StrT):
        return t.length
    return size


def check_deref(ck, e, t: Type) -> Type | None:
    """`*p` for a pointer to a struct or a BTF typedef'd scalar (else None: the
    generic integer deref applies)."""
    if not isinstance(t, PtrT):
        return None
    target = pointee(t, space_of(ck))
    if isinstance(target, StructT):
        e.kderef = Access(0, 0, user=t.user)
        return target
    if isinstance(target, (IntT, PtrT)) and not t.target.endswith("*") and _c_scalar(t.target) is None:
        size = 8 if isinstance(target, PtrT) else target.bits // 8
        e.kderef = Access(0, size, user=t.user)
        return target
    return None


def check_index(ck, e, base: Type) -> Type:
    idx = ck.fold(e.index)
    if idx is None:
        it = ck.expr(e.index)
        if isinstance(base, PtrT) and isinstance(it, IntT):
            return _check_dynamic_index(ck, e, base)
        raise error("The array index operator [] only accepts literal integer indices.", e.span)
    if isinstance(base, ArrayT):
        if not 0 <= idx < base.count:
            raise error(f"the index {idx} is out of bounds for array of size {base.count}", e.span)
        elem, esize, user = base.elem, base.elem_size, base.user
    elif isinstance(base, CValueT) and isinstance(C.resolve(space_of(ck), base.ctype), C.CArray):
        return _copy_element(e, base, idx, space_of(ck))
    elif isinstance(base, PtrT):
        elem = pointee(base, space_of(ck))
        if elem is None:
            raise error(f"The array index operator [] can not be used on a pointer to "
                        f"'{base.target}'", e.span)
        esize = elem.struct_size if isinstance(elem, StructT) else \
            8 if isinstance(elem, PtrT) else elem.bits // 8 if isinstance(elem, IntT) else elem.size
        user = base.user
    else:
        raise error("The array index operator [] can only be used on arrays and pointers, found "
                    f"{bpftrace_name(base) if base else 'unknown'}.", e.span)
    e.kaccess = Access(idx * esize, _read_size(elem, esize), user=user)
    return elem


def _check_dynamic_index(ck, e, base: PtrT) -> Type:
    """`p[i]` with an index known only at run time (newer bpftrace): p + i elements."""
    elem = pointee(base, space_of(ck))
    if elem is None or isinstance(elem, (StructT, ArrayT)):
        raise error(f"The array index operator [] can not be used on a pointer to "
                    f"'{base.target}' with a variable index", e.span)
    esize = 8 if isinstance(elem, PtrT) else elem.bits // 8 if isinstance(elem, IntT) else elem.size
    e.kaccess = Access(0, _read_size(elem, esize), user=base.user, stride=esize)
    return elem


def _copy_part(ct, space, name: str) -> Type:
    """The type of a member or element of a copied value: itself a copy if it is
    a struct or array (but a char array: a string)."""
    t = from_c(ct, space)
    if isinstance(t, (StructT, ArrayT)):
        return CValueT(name, cvalue_descriptor(ct, space), C.sizeof(ct, space), C.resolve(space, ct))
    return t


def _copy_member(e, base: CValueT, space) -> Type:
    m = C.member(base.ctype, e.field, space)
    if m is None:
        raise error(f"Struct/union of type '{base.name}' does not contain a field named "
                    f"'{e.field}'", e.span)
    t = _copy_part(m.type, space, C.c_name(m.type))
    if m.bits:
        t = IntT(64, False)                 # 0.17 reads every bitfield as unsigned
    e.kaccess = Access(m.offset, C.sizeof(m.type, space), m.bit_offset, m.bits, in_copy=True)
    return t


def _copy_element(e, base: CValueT, idx: int, space) -> Type:
    arr = C.resolve(space, base.ctype)
    if not 0 <= idx < arr.count:
        raise error(f"the index {idx} is out of bounds for array of size {arr.count}", e.span)
    esize = C.sizeof(arr.elem, space)
    e.kaccess = Access(idx * esize, esize, in_copy=True)
    return _copy_part(arr.elem, space, C.c_name(arr.elem))


def check_cast(ck, e, operand: Type | None) -> Type | None:
    """`(struct X *)expr`, `(uint8 *)expr`: a pointer of that type (None: not a pointer cast)."""
    name = " ".join(e.type_name.split())
    if not name.endswith("*"):
        if name.startswith(("struct ", "union ")):
            raise error(f"Cannot cast to \"{name}\"", e.span)
        return None
    target = name[:-1].strip()
    base = target.rstrip("* ").strip()
    ctarget = None
    if base.startswith(("struct ", "union ")):
        rec = space_of(ck).lookup(base)
        if not isinstance(rec, C.CRecord) or not rec.complete:
            raise error(f"Cannot resolve unknown type \"{base}\"", e.span)
        ctarget = rec if base == target else None
    elif base not in INT_TYPES and base != "void":
        space = space_of(ck)
        named = space.lookup(base)      # a typedef (script, BTF) or a C scalar name
        if named is None:
            raise error(f"Unknown struct/union: '{base}'", e.type_span or e.span)
        ctarget = C.resolve(space, named) if base == target else None
    if operand is not None and not isinstance(operand, (IntT, PtrT, StructT)):
        raise error(f"Casts are not supported for type: \"{bpftrace_name(operand)}\"", e.span)
    if isinstance(operand, PtrT):
        user = operand.user
    else:
        user = ck.unit.provider.user_space if ck.unit is not None else False
    return PtrT(target, user=user, ctarget=ctarget)


def sizeof_type(name: str) -> int | None:
    b = kbtf()
    if b is None:
        return None
    name = " ".join(name.split())
    if name.endswith("*"):
        return 8
    if name.startswith(("struct ", "union ")):
        st = b.struct(name)
        return st.size if st is not None else None
    tid = b.find(name, "type")
    return b.size(tid) if tid else None


def constant(name: str, structs=None) -> int | None:
    """An identifier that names a constant: a script #define, a BTF enumerator, or a
    well-known macro."""
    defines = structs.defines if structs is not None else {}
    if name in defines:
        return defines[name]
    b = kbtf()
    if b is not None:
        v = b.enum_value(name)
        if v is not None:
            return v
    return MACROS.get(name)


# ---------------------------------------------------------------- lowering

def read(lw, addr, t: Type, acc: Access):
    """Read a value of type t at address `addr` (i64) as `acc` says."""
    fb, b = lw.fb, lw.b
    if acc.in_copy:
        return _read_copy(lw, addr, t, acc)
    if acc.offset:
        addr = b.add(addr, const(acc.offset))
    if isinstance(t, (StructT, ArrayT)) or acc.size == 0:
        return addr
    helper = B.read_helper(acc.user)
    if isinstance(t, StrT):
        buf = fb.temp(t.size)
        fb.helper(helper, buf, const(t.length, B.I32), b.inttoptr(addr, B.PTR))
        return buf
    buf = fb.scratch("kread", 8)
    fb.store(buf, 0, const(0))
    fb.helper(helper, buf, const(acc.size, B.I32), b.inttoptr(addr, B.PTR))
    signed = isinstance(t, IntT) and t.signed
    if acc.bits:
        v = fb.load(buf, 0)
        v = b.lshr(v, const(acc.bit_offset)) if acc.bit_offset else v
        if signed:
            shift = const(64 - acc.bits)
            return b.ashr(b.shl(v, shift), shift)
        return b.and_(v, const((1 << acc.bits) - 1))
    if acc.size == 8:
        return fb.load(buf, 0)
    return fb.load(buf, 0, acc.size * 8, signed=signed, align=acc.size)


def _read_copy(lw, ptr, t: Type, acc: Access):
    """A part of a copied value (`ptr`: its BPF stack or map memory): loaded directly."""
    fb, b = lw.fb, lw.b
    if isinstance(t, (CValueT, StrT)):
        return fb.at(ptr, acc.offset)
    if isinstance(t, PtrT) or acc.size == 8:
        v = fb.load(ptr, acc.offset, 64, align=1)
    else:
        v = fb.load(ptr, acc.offset, acc.size * 8, signed=isinstance(t, IntT) and t.signed and
                    not acc.bits, align=1)
    if not acc.bits:
        return v
    v = b.lshr(v, const(acc.bit_offset)) if acc.bit_offset else v
    if isinstance(t, IntT) and t.signed:
        shift = const(64 - acc.bits)
        return b.ashr(b.shl(v, shift), shift)
    return b.and_(v, const((1 << acc.bits) - 1))


def lower_field(lw, e):
    return read(lw, lw.expr(e.expr), e.type, e.kaccess)


def lower_index(lw, e):
    addr = lw.expr(e.expr)
    if e.kaccess.stride:
        addr = lw.b.add(addr, lw.b.mul(lw.expr(e.index), const(e.kaccess.stride)))
    return read(lw, addr, e.type, e.kaccess)


def lower_deref(lw, e):
    return read(lw, lw.expr(e.operand), e.type, e.kderef)
