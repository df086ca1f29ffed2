"""A thin BPF-flavoured wrapper over the IR builder (codegen/llir.py).

Every pointer is an opaque `ptr`; memory is accessed at byte offsets (a GEP over
i8, then a typed load or store: no casts). Allocas always go to the entry block.
Helpers are called by number.
"""
from __future__ import annotations

from contextlib import contextmanager

from . import llir as ir

from ..runtime.uapi import BPF_ANY, BPF_NOEXIST  # noqa: F401  (map update flags)

I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()          # opaque
INT_BITS = {8: I8, 16: I16, 32: I32, 64: I64}

# bpf_func_id numbers (include/uapi/linux/bpf.h)
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
GET_PRANDOM_U32 = 7
GET_SMP_PROCESSOR_ID = 8
GET_CURRENT_PID_TGID = 14
GET_CURRENT_UID_GID = 15
GET_CURRENT_COMM = 16
GET_CURRENT_TASK = 35
GET_CURRENT_CGROUP_ID = 80
PROBE_READ = 4                  # the legacy helpers (no address space)
PROBE_READ_STR = 45
PROBE_READ_USER = 112
PROBE_READ_KERNEL = 113
PROBE_READ_USER_STR = 114
PROBE_READ_KERNEL_STR = 115
SEND_SIGNAL = 109
TRACE_PRINTK = 6
GET_NUMA_NODE_ID = 42
OVERRIDE_RETURN = 58
KTIME_GET_BOOT_NS = 125
RINGBUF_RESERVE = 131
RINGBUF_SUBMIT = 132
GET_ATTACH_COOKIE = 174
GET_STACKID = 27
GET_CURRENT_TASK_BTF = 158
D_PATH = 147

BPF_F_USER_STACK = 1 << 8       # bpf_get_stackid flags


def read_helper(user: bool | None, string: bool = False) -> int:
    """The probe_read helper for memory in user space or in the kernel; None (the
    address space is unknown): the legacy helper, which picks by the address."""
    if user is None:
        return PROBE_READ_STR if string else PROBE_READ
    if string:
        return PROBE_READ_USER_STR if user else PROBE_READ_KERNEL_STR
    return PROBE_READ_USER if user else PROBE_READ_KERNEL

MAP_DEF = ir.LiteralStructType([I32] * 5)


_CONSTANTS = {}      # (value, type) -> its Constant (constants are never changed)


def const(value: int, ty=I64) -> ir.Constant:
    c = _CONSTANTS.get((value, ty.ir))
    if c is None:
        if len(_CONSTANTS) >= 4096:         # (a long-lived API process compiles many)
            _CONSTANTS.clear()
        c = _CONSTANTS[value, ty.ir] = ir.Constant(ty, value & ((1 << ty.width) - 1))
    return c


class FunctionBuilder:
    """Builds one BPF program function: `i64 name(i8* ctx)` in its own section."""

    def __init__(self, module: ir.Module, symbol: str, section: str):
        fnty = ir.FunctionType(I64, [PTR])
        self.fn = ir.Function(module, fnty, symbol)
        self.fn.section = section
        self.fn.attributes.add("nounwind")
        self.ctx = self.fn.args[0]
        self._entry = self.fn.append_basic_block("entry")
        self._entry_builder = ir.IRBuilder(self._entry)
        body = self.fn.append_basic_block("body")
        self.exit_block = self.fn.append_basic_block("exit")
        ir.IRBuilder(self.exit_block).ret(const(0))
        self.b = ir.IRBuilder(body)
        self._scratch = {}
        self.on_helper = None   # (helper_id, result) -> None, after every helper call (-k)
        self._temps = {}        # size -> stack buffers for temporaries
        self._temps_used = {}   # size -> how many are in use by the current statement

    def finish(self):
        if not self.b.block.is_terminated:
            self.b.branch(self.exit_block)
        self._entry_builder.branch(self.fn.basic_blocks[1])

    # ------------------------------------------------------------ memory
    def alloca(self, size: int, name: str = "") -> ir.Value:
        """Stack memory of `size` bytes (8-aligned), in the entry block, zero-filled there."""
        size = max(8, (size + 7) & ~7)
        entry = self._entry_builder
        ptr = entry.alloca(ir.ArrayType(I64, size // 8), name=name)
        for off in range(0, size, 8):
            p = ptr if off == 0 else entry.gep(ptr, [const(off)], source_etype=I8)
            entry.store(const(0), p, align=8)
        return ptr

    def temp(self, size: int) -> ir.Value:
        """A zeroed stack buffer for a temporary value of the current statement.
        Buffers are reused by later statements (see release_temps), which keeps the
        512-byte BPF stack small however long the program."""
        size = max(8, (size + 7) & ~7)
        pool = self._temps.setdefault(size, [])
        used = self._temps_used.get(size, 0)
        if used == len(pool):
            pool.append(self.alloca(size))
        self._temps_used[size] = used + 1
        buf = pool[used]
        self.zero(buf, size)
        return buf

    def release_temps(self):
        """Called between statements: no temporary outlives the statement that made it."""
        self._temps_used.clear()

    def scratch(self, key, size: int) -> ir.Value:
        """A stack buffer reused for one purpose (e.g. a map's key) across the function."""
        if key not in self._scratch:
            self._scratch[key] = self.alloca(size)
        return self._scratch[key]

    def at(self, ptr, offset) -> ir.Value:
        """ptr + offset bytes (offset: an int or an i64 value)."""
        if isinstance(offset, int):
            if offset == 0:
                return ptr
            offset = const(offset)
        return self.b.gep(ptr, [offset], source_etype=I8)

    def store(self, ptr, offset: int, value: ir.Value, bits: int = 64):
        ty = INT_BITS[bits]
        if value.type != ty:
            value = self.b.trunc(value, ty) if value.type.width > bits else self.b.zext(value, ty)
        self.b.store(value, self.at(ptr, offset),
                     align=min(8, bits // 8) if offset % (bits // 8) == 0 else 1)

    def narrow(self, value: ir.Value, bits: int, signed: bool) -> ir.Value:
        """An i64 holding a `bits`-wide integer (a register, a u64 slot), truncated and
        sign- or zero-extended back to i64."""
        if bits >= 64:
            return value
        shift = ir.Constant(I64, 64 - bits)
        value = self.b.shl(value, shift)
        return self.b.ashr(value, shift) if signed else self.b.lshr(value, shift)

    def load(self, ptr, offset: int, bits: int = 64, signed: bool = False, align: int = 8) -> ir.Value:
        ty = INT_BITS[bits]
        v = self.b.load(self.at(ptr, offset), align=min(align, bits // 8), typ=ty)
        if bits < 64:
            v = self.b.sext(v, I64) if signed else self.b.zext(v, I64)
        return v

    def zero(self, ptr, size: int, offset: int = 0):
        off = 0
        while off + 8 <= size:
            self.store(ptr, offset + off, const(0))
            off += 8
        while off < size:
            self.store(ptr, offset + off, const(0, I8), 8)
            off += 1

    def copy(self, dst, src, size: int, dst_off: int = 0, src_off: int = 0):
        """Copy `size` bytes; both sides 8-aligned at offset 0."""
        off = 0
        while off + 8 <= size:
            self.store(dst, dst_off + off, self.load(src, src_off + off))
            off += 8
        while off < size:
            self.store(dst, dst_off + off, self.load(src, src_off + off, 8, align=1), 8)
            off += 1

    def store_bytes(self, ptr, data: bytes, offset: int = 0):
        """Store constant bytes with immediate stores (never a .rodata global)."""
        padded = data + b"\0" * (-len(data) % 8)
        for off in range(0, len(padded), 8):
            self.store(ptr, offset + off, const(int.from_bytes(padded[off:off + 8], "little")))

    # ------------------------------------------------------------ helpers
    def helper(self, helper_id: int, *args) -> ir.Value:
        fnptr = self.b.inttoptr(const(helper_id), PTR)
        result = self.b.call(fnptr, args)
        if self.on_helper is not None:
            self.on_helper(helper_id, result)
        return result

    def map_ptr(self, gv: ir.GlobalVariable) -> ir.Value:
        return gv           # a pointer like any other: no cast needed

    def map_lookup(self, gv, key) -> ir.Value:
        r = self.helper(MAP_LOOKUP_ELEM, self.map_ptr(gv), key)
        return self.b.inttoptr(r, PTR)

    def map_update(self, gv, key, value, flags=BPF_ANY):
        return self.helper(MAP_UPDATE_ELEM, self.map_ptr(gv), key, value, const(flags))

    def map_delete(self, gv, key):
        return self.helper(MAP_DELETE_ELEM, self.map_ptr(gv), key)

    def is_null(self, ptr) -> ir.Value:
        return self.b.icmp_unsigned("==", self.b.ptrtoint(ptr, I64), const(0))

    # ------------------------------------------------------------ control flow
    def new_block(self, name=""):
        return self.fn.append_basic_block(name)

    @contextmanager
    def if_then(self, cond):
        with self.b.if_then(cond):
            yield

    def branch_if_open(self, target):
        if not self.b.block.is_terminated:
            self.b.branch(target)

    def to_bool(self, v) -> ir.Value:
        """i64 → i1 (non-zero)."""
        if v.type == ir.I1:
            return v
        return self.b.icmp_unsigned("!=", v, const(0))

    def from_bool(self, v) -> ir.Value:
        return self.b.zext(v, I64)


def new_module() -> ir.Module:
    m = ir.Module(name="pytrace")
    m.triple = "bpfel"
    m.data_layout = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
    return m


def add_map(module: ir.Module, symbol: str, map_type: int, key_size: int, value_size: int,
            max_entries: int, flags: int = 0) -> ir.GlobalVariable:
    gv = ir.GlobalVariable(module, MAP_DEF, symbol)
    gv.initializer = ir.Constant(MAP_DEF, [const(x, I32) for x in
                                           (map_type, key_size, value_size, max_entries, flags)])
    gv.section = "maps"
    gv.align = 4
    return gv


def add_rodata(module: ir.Module, values) -> ir.GlobalVariable:
    """The read-only globals (`.rodata`, one i64 slot per value): a global LLVM cannot
    see the value of (not `constant`, not internal), whose values the loader sets."""
    ty = ir.ArrayType(I64, len(values))
    gv = ir.GlobalVariable(module, ty, "pytrace_literals")
    gv.initializer = ir.Constant(ty, [const(v) for v in values])
    gv.section = ".rodata"
    gv.align = 8
    return gv


def add_data(module: ir.Module, symbol: str, section: str, slots: int) -> ir.GlobalVariable:
    """Writable globals (`section`, .data: `slots` u64 counters, zero at load) that
    programs add to atomically and the runtime reads."""
    ty = ir.ArrayType(I64, slots)
    gv = ir.GlobalVariable(module, ty, symbol)
    gv.section = section
    gv.align = 8
    return gv


def add_section_bytes(module: ir.Module, symbol: str, section: str, data: bytes):
    ty = ir.ArrayType(I8, len(data))
    gv = ir.GlobalVariable(module, ty, symbol)
    gv.initializer = ir.Constant(ty, bytearray(data))
    gv.section = section
    gv.global_constant = True
    return gv
