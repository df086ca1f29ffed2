"""Lowering: a typed program unit → one BPF function in LLVM IR.

Values: integers (and pointers, probe ids, uids) are i64 SSA values; strings
and tuples are i8* pointers to memory holding `type.size` bytes.
"""
from __future__ import annotations

from . import llir as ir

from ..builtins import lookup_builtin, lookup_function
from ..builtins.context import read_tracepoint_field
from ..builtins.strings import string_equal
from ..language import ast
from ..language.diagnostics import error
from ..types.model import (
    AggT,
    ArrayT,
    BufT,
    ByteArrayT,
    CValueT,
    InetT,
    IntT,
    PtrT,
    StackT,
    StrT,
    StructT,
    TupleT,
    Type,
    UsymT,
    packed,
    pointee_size,
    pointer_of,
    slot,
)

from ..builtins.registry import record_layout
from ..passes.resources import GLOBALS, Resources
from . import builder as B
from .builder import I64, const

E2BIG = 7      # what bpf_map_update_elem returns (negated) when the map is full

MEMORY_VALUES = (StackT, UsymT, InetT, BufT, ByteArrayT, CValueT)

# -k checks these helpers' results (-kk: also the reads), as bpftrace: (level, name)
CHECKED_HELPERS = {
    B.MAP_UPDATE_ELEM: (1, "map_update_elem"), B.MAP_DELETE_ELEM: (1, "map_delete_elem"),
    B.SEND_SIGNAL: (1, "send_signal"),
    B.PROBE_READ: (2, "probe_read"), B.PROBE_READ_USER: (2, "probe_read"),
    B.PROBE_READ_KERNEL: (2, "probe_read"), B.PROBE_READ_STR: (2, "probe_read_str"),
    B.PROBE_READ_USER_STR: (2, "probe_read_str"), B.PROBE_READ_KERNEL_STR: (2, "probe_read_str"),
}


class Lowerer:
    def __init__(self, module, unit, maps, res: Resources, gvs, options):
        self.module = module
        self.unit = unit
        self.maps = maps
        self.res = res                # the allocation (passes/resources.py)
        self.gvs = gvs                # its internal maps' globals, by role or symbol
        self.options = options
        self.fb = B.FunctionBuilder(module, unit.symbol, unit.section)
        self.b = self.fb.b
        self.loops = []
        self.var_slots: dict[str, ir.Value] = {}
        self.loc = None              # the source span a failing helper is reported at (-k)
        if getattr(options, "helper_errors", 0):
            self.fb.on_helper = self.check_helper

    def check_helper(self, helper_id, result):
        """-k / -kk: a helper that fails (< 0) sends a helper_error record."""
        level, name = CHECKED_HELPERS.get(helper_id, (3, ""))
        if level > self.options.helper_errors or self.loc is None:
            return
        loc, self.loc = self.loc, None       # the record's own helpers are not checked
        with self.b.if_then(self.b.icmp_signed("<", result, const(0))):
            self.helper_error(name, loc, result)
        self.loc = loc

    def helper_error(self, helper: str, span, result):
        """Send a helper_error record: `helper` failed with `result` at `span`."""
        action = {"kind": "helper_error", "helper": helper,
                  "span": [span.line, span.col, span.end_line, span.end_col], "args": []}
        types = [IntT(64, True)]
        self.write_record(self.res.add_action(record_layout(types, action)),
                          list(zip(types, [result])))

    # ------------------------------------------------------------ driver
    def run(self):
        self.unit.provider.prologue(self)
        self.block(self.unit.body)
        self.fb.finish()
        return self.fb.fn

    def block(self, stmts):
        for s in stmts:
            if self.b.block.is_terminated:
                # code after return/break/exit: park it in an unreachable block
                self.b.position_at_end(self.fb.new_block("dead"))
            self.fb.release_temps()
            self.stmt(s)

    # ------------------------------------------------------------ statements
    def stmt(self, s):
        b = self.b
        self.loc = None
        if isinstance(s, ast.ExprStmt):
            self.expr(s.expr)
        elif isinstance(s, ast.Assign):
            self.loc = s.target.span + s.op_span if s.op_span else s.span
            self.assign(s)
        elif isinstance(s, ast.If):
            cond = self.fb.to_bool(self.expr(s.cond))
            then_bb, end_bb = self.fb.new_block("then"), self.fb.new_block("endif")
            else_bb = self.fb.new_block("else") if s.orelse else end_bb
            b.cbranch(cond, then_bb, else_bb)
            b.position_at_end(then_bb)
            self.block(s.then)
            self.fb.branch_if_open(end_bb)
            if s.orelse:
                b.position_at_end(else_bb)
                self.block(s.orelse)
                self.fb.branch_if_open(end_bb)
            b.position_at_end(end_bb)
        elif isinstance(s, ast.Unroll):
            for _ in range(s.count.value):
                self.block(s.body)
        elif isinstance(s, ast.While):
            head, body, end = self.fb.new_block("while"), self.fb.new_block("do"), self.fb.new_block("done")
            b.branch(head)
            b.position_at_end(head)
            b.cbranch(self.fb.to_bool(self.expr(s.cond)), body, end)
            b.position_at_end(body)
            self.loops.append((head, end))
            self.block(s.body)
            self.loops.pop()
            self.fb.branch_if_open(head)
            b.position_at_end(end)
        elif isinstance(s, ast.Break):
            b.branch(self.loops[-1][1])
        elif isinstance(s, ast.Continue):
            b.branch(self.loops[-1][0])
        elif isinstance(s, ast.Return):
            b.branch(self.fb.exit_block)
        else:
            raise error(f"cannot lower {type(s).__name__}", s.span)

    def assign(self, s: ast.Assign):
        target = s.target
        if isinstance(target, ast.Map):
            info = self.maps[target.name]
            if isinstance(info.value, AggT):
                entry = lookup_function(s.value.name)
                self.loc = s.value.span
                entry.lower(self, s.value, info, target)
                return
            if s.op is not None:
                key = self.map_key(info, target.keys)
                cur = self.map_read_int(info, key)
                value = self.compound(s, cur, info.value)
                self.map_write(info, key, value, info.value)
                return
            value = self.expr(s.value)
            key = self.map_key(info, target.keys)
            self.map_write(info, key, value, s.value.type)
        else:
            slot = self.var_slot(target.name)
            vt = self.unit.var_types[target.name]
            if s.op is not None:
                cur = self.fb.load(slot, 0)
                value = self.compound(s, cur, vt)
                self.fb.store(slot, 0, value)
                return
            value = self.expr(s.value)
            self.materialize(vt, s.value.type, value, slot, 0)

    def compound(self, s: ast.Assign, cur, cur_type):
        """`x op= v`: a pointer moves by v elements."""
        value = self.expr(s.value)
        if isinstance(cur_type, PtrT) and pointee_size(cur_type) != 1:
            value = self.b.mul(value, const(pointee_size(cur_type)))
        return self.arith(s.op, cur, value, cur_type, s.value.type)

    def var_slot(self, name):
        if name not in self.var_slots:
            t = self.unit.var_types[name]
            self.var_slots[name] = self.fb.alloca(t.size, name=name.lstrip("$"))
        return self.var_slots[name]

    # ------------------------------------------------------------ memory of values
    def materialize(self, dst_t: Type, src_t: Type, value, dst, offset: int):
        """Store `value` (of src_t) into memory laid out as dst_t at dst+offset."""
        fb = self.fb
        if isinstance(dst_t, StrT):
            n = min(src_t.size, dst_t.size)
            fb.copy(dst, value, n, dst_off=offset)
            if dst_t.size > n:
                fb.zero(dst, dst_t.size - n, offset + n)
        elif isinstance(dst_t, TupleT):
            for i, (dt, st) in enumerate(zip(dst_t.elements, src_t.elements)):
                so, do = src_t.offsets[i], dst_t.offsets[i]
                if dt.in_register:
                    self.store_value(dt, dst, offset + do, self.load_value(st, value, so))
                else:
                    self.materialize(dt, st, fb.at(value, so), dst, offset + do)
        elif isinstance(dst_t, CValueT) and isinstance(src_t, (StructT, ArrayT)):
            # a struct or array held by its address: copy it out of the traced memory
            fb.zero(dst, dst_t.size, offset)
            fb.helper(B.read_helper(src_t.user), fb.at(dst, offset), const(dst_t.size, B.I32),
                      self.b.inttoptr(value, B.PTR))
        elif not dst_t.in_register and isinstance(dst_t, MEMORY_VALUES):
            # a value held in memory (ustack, usym, inet, buf, pton bytes): copy its bytes
            n = min(src_t.size, dst_t.size)
            fb.copy(dst, value, n, dst_off=offset)
            if dst_t.size > n:
                fb.zero(dst, dst_t.size - n, offset + n)
        else:
            fb.store(dst, offset, value)

    def load_value(self, t: Type, ptr, offset: int = 0):
        """Read a value of type t stored at ptr+offset (pointer for strings/tuples);
        an integer narrower than 64 bits is widened as its sign says."""
        if isinstance(t, IntT) and t.bits < 64:
            return self.fb.load(ptr, offset, t.bits, signed=t.signed, align=1)
        if t.in_register:
            return self.fb.load(ptr, offset)
        return self.fb.at(ptr, offset)

    def store_value(self, t: Type, ptr, offset: int, value):
        """Store an in-register value of type t (a narrow integer at its width)."""
        self.fb.store(ptr, offset, value, t.bits if isinstance(t, IntT) else 64)

    # ------------------------------------------------------------ maps
    def map_key(self, info, keys, bucket=None):
        """Fill the map's key buffer: user key components, then the hist bucket."""
        fb = self.fb
        if not info.keys:
            size = info.kernel_key_size
            buf = fb.scratch(("key", info.name), size)
            if bucket is not None:
                fb.store(buf, info.user_key_size, bucket)
            else:
                fb.store(buf, 0, const(0))
            return buf
        values = [self.expr(k) for k in keys]
        buf = fb.scratch(("key", info.name), info.kernel_key_size)
        off = 0
        for k, v, kt in zip(keys, values, info.keys):
            self.materialize(kt, k.type, v, buf, off)
            off += slot(kt)
        if bucket is not None:
            fb.store(buf, info.user_key_size, bucket)
        return buf

    def map_read_int(self, info, key):
        fb, b = self.fb, self.b
        p = fb.map_lookup(info.gv, key)
        found = fb.b.icmp_unsigned("!=", b.ptrtoint(p, I64), const(0))
        start = b.block
        with b.if_then(found):
            loaded = fb.load(p, 0)
            loaded_block = b.block
        phi = b.phi(I64)
        phi.add_incoming(const(0), start)
        phi.add_incoming(loaded, loaded_block)
        return phi

    def map_write(self, info, key, value, src_t):
        fb = self.fb
        t = info.value
        if t.in_register:
            buf = fb.scratch(("val", info.name), 8)
            fb.store(buf, 0, value)
        else:
            buf = fb.scratch(("val", info.name), t.size)
            self.materialize(t, src_t, value, buf, 0)
        self.update_user_map(info, key, buf)

    def update_user_map(self, info, key, value):
        """bpf_map_update_elem on a script's map; an update the full map refuses
        (-E2BIG) is counted in its slot of the `.data` counters, for the runtime to
        report."""
        fb, b = self.fb, self.b
        result = fb.map_update(info.gv, key, value)
        with b.if_then(b.icmp_signed("==", result, const(-E2BIG))):
            b.atomic_add(fb.at(self.gvs["counters"], 8 * info.full_slot), const(1))
        return result

    def map_read(self, info, m: ast.Map):
        key = self.map_key(info, m.keys)
        self.report_missing(info, key, m)
        t = info.value
        if t.in_register:
            return self.map_read_int(info, key)
        fb, b = self.fb, self.b
        out = fb.temp(t.size)
        p = fb.map_lookup(info.gv, key)
        with b.if_else(fb.is_null(p)) as (missing, present):
            with missing:
                fb.zero(out, t.size)
            with present:
                fb.copy(out, p, t.size)
        return out

    def report_missing(self, info, key, m: ast.Map):
        """-kk: reading a key the map does not have is reported, as 0.17 reports its
        failed lookup (`WARNING: Failed to map_lookup_elem: 0`)."""
        if self.options.helper_errors < 2:
            return
        fb, b = self.fb, self.b
        with b.if_then(fb.is_null(fb.map_lookup(info.gv, key))):
            self.helper_error("map_lookup_elem", m.span, const(0))

    # ------------------------------------------------------------ records
    def send(self, node, args):
        """Send the record of a call whose action the resources pass allocated
        (`node.async_id`): {u64 id; args...}. args: list of (type, value)."""
        self.write_record(node.async_id, args)

    def write_record(self, async_id, args, size=None, extra=None):
        """Reserve a ring buffer record {u64 id; args...} (`size` bytes: by default
        the args' packed size), fill it (and `extra(rec)`), submit it."""
        fb, b = self.fb, self.b
        if size is None:
            size = packed([t for t, _ in args], 8)[1]
        rb = self.gvs["ringbuf"]
        rec = b.inttoptr(fb.helper(B.RINGBUF_RESERVE, fb.map_ptr(rb), const(size), const(0)), B.PTR)
        with b.if_else(fb.is_null(rec)) as (missing, present):
            with missing:
                self.count_lost()
            with present:
                fb.store(rec, 0, const(async_id))
                off = 8
                for t, v in args:
                    if t.in_register:
                        fb.store(rec, off, v)
                    else:
                        self.materialize(t, t, v, rec, off)
                    off += slot(t)
                if extra is not None:
                    extra(rec)
                fb.helper(B.RINGBUF_SUBMIT, rec, const(0))

    def count_lost(self):
        """A record the ring buffer could not take: slot 0 of the `.data` counters."""
        self.b.atomic_add(self.gvs["counters"], const(1))

    def literal(self, lit):
        """A source literal's `.rodata` slot (cache.Literals), read as a constant."""
        lit.lowered = True
        gv = self.gvs.get("literals")
        if gv is None:
            gv = self.gvs["literals"] = B.add_rodata(self.module, self.options.literals.values)
        return self.fb.load(gv, 8 * lit.index)

    def global_value(self, name):
        fb = self.fb
        key = fb.scratch("globals_key", 8)
        fb.store(key, 0, const(0))
        p = fb.map_lookup(self.gvs["globals"], key)
        b = self.b
        start = b.block
        with b.if_then(b.not_(fb.is_null(p))):
            v = fb.load(p, GLOBALS[name])
            blk = b.block
        phi = b.phi(I64)
        phi.add_incoming(const(0), start)
        phi.add_incoming(v, blk)
        return phi

    # ------------------------------------------------------------ expressions
    def expr(self, e):
        if self.fb.on_helper is not None and \
                isinstance(e, (ast.Call, ast.FieldAccess, ast.Index, ast.Unary)):
            outer, self.loc = self.loc, e.span      # where its helpers' failures are reported
            try:
                return self._expr(e)
            finally:
                self.loc = outer
        return self._expr(e)

    def _expr(self, e):
        b, fb = self.b, self.fb
        if isinstance(e, ast.Integer):
            if e.literal is not None:      # a literal the object cache may supply
                return self.literal(e.literal)
            return const(e.value)
        if isinstance(e, ast.String):
            buf = fb.temp(e.type.size)
            fb.store_bytes(buf, e.value + b"\0")
            return buf
        if isinstance(e, ast.Builtin):
            if e.const_value is not None:          # an enum/macro constant (types/kernel.py)
                return const(e.const_value)
            return lookup_builtin(e.name).lower(self, e)
        if isinstance(e, ast.Call):
            return lookup_function(e.name).lower(self, e)
        if isinstance(e, ast.Variable):
            slot = self.var_slot(e.name)
            return self.load_value(self.unit.var_types[e.name], slot)
        if isinstance(e, ast.Map):
            return self.map_read(self.maps[e.name], e)
        if isinstance(e, ast.Binary):
            return self.binary(e)
        if isinstance(e, ast.Unary):
            v = self.expr(e.operand)
            if e.op == "-":
                return b.neg(v)
            if e.op == "~":
                t = e.type
                if isinstance(t, IntT) and not t.signed and t.bits < 64:
                    return b.and_(b.not_(v), const((1 << t.bits) - 1))
                return b.not_(v)
            if e.op == "!":
                return fb.from_bool(b.icmp_unsigned("==", v, const(0)))
            if e.op == "*" and e.kderef is not None:
                # lazy: start-up time (the BTF reader only for typed kernel data)
                from ..types.kernel import read
                return read(self, v, e.type, e.kderef)
            if e.op == "*":
                buf = fb.scratch("deref", 8)
                fb.store(buf, 0, const(0))
                ptr_t = pointer_of(e.operand) or e.operand.type
                user = ptr_t.user if isinstance(ptr_t, PtrT) else \
                    self.unit.provider.user_space   # uprobe/usdt: user memory
                helper = B.read_helper(user)
                size = e.deref_size or 8
                fb.helper(helper, buf, const(size, B.I32), b.inttoptr(v, B.PTR))
                if size == 8:
                    return fb.load(buf, 0)
                return fb.load(buf, 0, size * 8, signed=e.type.signed, align=size)
        if isinstance(e, ast.IncDec):
            return self.incdec(e)
        if isinstance(e, ast.Ternary):
            return self.ternary(e)
        if isinstance(e, ast.Cast):
            v = self.expr(e.operand)
            t = e.type
            if not isinstance(t, IntT) or t.bits == 64:
                return v
            shift = const(64 - t.bits)
            v = b.shl(v, shift)
            return b.ashr(v, shift) if t.signed else b.lshr(v, shift)
        if isinstance(e, ast.Tuple):
            t = e.type
            buf = fb.temp(t.size)
            for x, et, off in zip(e.elements, t.elements, t.offsets):
                if et.in_register:
                    self.store_value(et, buf, off, self.expr(x))
                else:
                    self.materialize(et, x.type, self.expr(x), buf, off)
            return buf
        if isinstance(e, ast.FieldAccess):
            return self.field_access(e)
        if isinstance(e, ast.Sizeof):
            return const(e.size)
        if isinstance(e, ast.Index) and e.kaccess is not None:
            # lazy: start-up time (the BTF reader only for typed kernel data)
            from ..types.kernel import lower_index
            return lower_index(self, e)
        raise error(f"cannot lower {type(e).__name__}", e.span)

    def field_access(self, e):
        if isinstance(e.expr.type, TupleT):
            base = self.expr(e.expr)
            i = int(e.field)
            return self.load_value(e.type, base, e.expr.type.offsets[i])
        if e.kaccess is not None:
            # lazy: start-up time (the BTF reader only for typed kernel data)
            from ..types.kernel import lower_field
            return lower_field(self, e)
        return read_tracepoint_field(self, e)

    def incdec(self, e):
        b, fb = self.b, self.fb
        step = pointee_size(e.type) if isinstance(e.type, PtrT) else 1
        delta = const(step if e.op == "++" else -step)
        if isinstance(e.target, ast.Map):
            info = self.maps[e.target.name]
            key = self.map_key(info, e.target.keys)
            cur = self.map_read_int(info, key)
            new = b.add(cur, delta)
            self.map_write(info, key, new, info.value)
        else:
            slot = self.var_slot(e.target.name)
            cur = fb.load(slot, 0)
            new = b.add(cur, delta)
            fb.store(slot, 0, new)
        return new if e.prefix else cur

    def ternary(self, e):
        b, fb = self.b, self.fb
        cond = fb.to_bool(self.expr(e.cond))
        t = e.type
        if t is None or t.size == 0:
            with b.if_else(cond) as (then, other):
                with then:
                    self.expr(e.then)
                with other:
                    self.expr(e.orelse)
            return const(0)
        if t.in_register:
            with b.if_else(cond) as (then, other):
                with then:
                    a = self.expr(e.then)
                    a_bb = b.block
                with other:
                    c = self.expr(e.orelse)
                    c_bb = b.block
            phi = b.phi(I64)
            phi.add_incoming(a, a_bb)
            phi.add_incoming(c, c_bb)
            return phi
        out = fb.temp(t.size)
        with b.if_else(cond) as (then, other):
            with then:
                self.materialize(t, e.then.type, self.expr(e.then), out, 0)
            with other:
                self.materialize(t, e.orelse.type, self.expr(e.orelse), out, 0)
        return out

    def binary(self, e):
        b, fb = self.b, self.fb
        if e.op in ("&&", "||"):
            left = fb.to_bool(self.expr(e.left))
            start = b.block
            rhs_bb, end_bb = fb.new_block("rhs"), fb.new_block("logic")
            if e.op == "&&":
                b.cbranch(left, rhs_bb, end_bb)
            else:
                b.cbranch(left, end_bb, rhs_bb)
            b.position_at_end(rhs_bb)
            right = fb.to_bool(self.expr(e.right))
            rhs_end = b.block
            b.branch(end_bb)
            b.position_at_end(end_bb)
            phi = b.phi(ir.I1)
            phi.add_incoming(ir.Constant(ir.I1, 0 if e.op == "&&" else 1), start)
            phi.add_incoming(right, rhs_end)
            return fb.from_bool(phi)
        if isinstance(e.left.type, (ArrayT, CValueT)):
            return self.compare_copies(e)
        if isinstance(e.left.type, BufT):
            return self.compare_bufs(e)
        if isinstance(e.left.type, StrT):
            eq = string_equal(self, self.expr(e.left), e.left.type.size, self.expr(e.right),
                              e.right.type.size, None)
            return eq if e.op == "==" else b.xor(eq, const(1))
        left, right = self.expr(e.left), self.expr(e.right)
        base = e.ptr_base
        if base is not None and pointee_size(base) != 1:
            scale = const(pointee_size(base))
            if pointer_of(e.left) is base:
                right = b.mul(right, scale)
            else:
                left = b.mul(left, scale)
        return self.arith(e.op, left, right, e.left.type, e.right.type)

    def compare_copies(self, e):
        """`a == b` / `a != b` on two arrays (or records) of one type: their bytes."""
        b, fb = self.b, self.fb
        t = e.left.type if isinstance(e.left.type, CValueT) else None
        ptrs = []
        for x in (e.left, e.right):
            v = self.expr(x)
            if isinstance(x.type, CValueT):
                ptrs.append(v)
                continue
            size = x.type.count * x.type.elem_size
            copy = fb.temp(size)
            fb.helper(B.read_helper(x.type.user), copy, const(size, B.I32), b.inttoptr(v, B.PTR))
            ptrs.append(copy)
        size = t.size if t is not None else e.left.type.count * e.left.type.elem_size
        step = next(n for n in (8, 4, 2, 1) if size % n == 0)
        diff = const(0)
        for off in range(0, size, step):
            diff = b.or_(diff, b.xor(fb.load(ptrs[0], off, step * 8, align=1),
                                     fb.load(ptrs[1], off, step * 8, align=1)))
        same = b.icmp_unsigned("==", diff, const(0))
        return fb.from_bool(same if e.op == "==" else b.not_(same))

    def compare_bufs(self, e):
        """`a == b` / `a != b` on buf() values: same length, same bytes up to it."""
        b, fb = self.b, self.fb
        left, right = self.expr(e.left), self.expr(e.right)
        length = fb.load(left, 0, 64)
        diff = b.xor(length, fb.load(right, 0, 64))
        for i in range(min(e.left.type.cap, e.right.type.cap)):
            byte = b.xor(fb.load(left, 8 + i, 8, align=1), fb.load(right, 8 + i, 8, align=1))
            live = b.icmp_unsigned("<", const(i), length)
            diff = b.or_(diff, b.select(live, byte, const(0)))
        same = b.icmp_unsigned("==", diff, const(0))
        return fb.from_bool(same if e.op == "==" else b.not_(same))

    def arith(self, op, left, right, lt, rt):
        b, fb = self.b, self.fb
        signed = getattr(lt, "signed", False) and getattr(rt, "signed", False)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            fn = b.icmp_signed if signed else b.icmp_unsigned
            return fb.from_bool(fn(op, left, right))
        if op == "+":
            return b.add(left, right)
        if op == "-":
            return b.sub(left, right)
        if op == "*":
            return b.mul(left, right)
        if op in ("/", "%"):
            return self.divide(op, left, right, signed)
        if op == "&":
            return b.and_(left, right)
        if op == "|":
            return b.or_(left, right)
        if op == "^":
            return b.xor(left, right)
        if op == "<<":
            return b.shl(left, right)
        if op == ">>":
            return b.ashr(left, right) if getattr(lt, "signed", False) else b.lshr(left, right)
        raise AssertionError(op)

    def divide(self, op, left, right, signed):
        """BPF cpu v3 has only unsigned division: derive the signed result from it.
        Division by zero gives 0 (as in BPF)."""
        b = self.b
        if not signed:
            return b.udiv(left, right) if op == "/" else b.urem(left, right)
        zero = const(0)
        lneg = b.icmp_signed("<", left, zero)
        rneg = b.icmp_signed("<", right, zero)
        la = b.select(lneg, b.neg(left), left)
        ra = b.select(rneg, b.neg(right), right)
        if op == "/":
            q = b.udiv(la, ra)
            return b.select(b.xor(lneg, rneg), b.neg(q), q)
        r = b.urem(la, ra)
        return b.select(lneg, b.neg(r), r)
