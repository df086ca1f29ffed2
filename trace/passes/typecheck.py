"""Type checking: every expression gets a type, every map a key and value type.

Maps are global and may be read in one probe before another assigns them, so
the check runs twice: a lenient first pass that only learns map types, then
the strict pass that reports errors.
"""
from __future__ import annotations

from ..builtins import lookup_builtin, lookup_function
from ..language import ast
from ..language.diagnostics import CompileError, Diagnostic, error
from ..runtime.record import record
from ..types import cmodel
from ..types.cdecl import Declarations
from ..types.model import (
    INT64,
    INT_TYPES,
    STRLEN,
    UINT64,
    AggT,
    BufT,
    ArgsT,
    ArrayT,
    CValueT,
    IntT,
    NoneT,
    PtrT,
    StrT,
    StructT,
    TupleT,
    Type,
    bpftrace_name,
    kind_name,
    pointer_of,
    unify,
)
from . import fold
from .desugar import op_span
from .units import Unit

MAX_STRING = STRLEN


def _same_kind(a, b) -> bool:
    ints = (IntT, PtrT)
    if isinstance(a, ints) and isinstance(b, ints):
        return True
    if isinstance(a, AggT) and isinstance(b, AggT):
        return a.kind == b.kind
    return type(a) is type(b)


def _assign_op_span(s) -> ast.Span:
    """Where the `=` / `op=` token of an assignment is (recorded by the parser)."""
    return s.op_span or s.span


def _no_value(node, span):
    """bpftrace's error for a value-less call (print(), exit(), ...) used as a value."""
    if isinstance(node, ast.Call):
        return error(f"{node.name}() should not be used in an assignment or as a map key", span)
    return error("Value has no type (a function that returns nothing?)", span)


def _builtin_name(e) -> str | None:
    """The builtin variable a map key part is (`comm`, `pid`, `probe`), or None (any other
    expression, an enum or macro constant): what names the part's label in --metrics."""
    return e.name if isinstance(e, ast.Builtin) and e.const_value is None else None


@record
class MapInfo:
    name: str
    keys: list[Type] | None = None     # None: keyless
    value: Type | None = None
    span: ast.Span | None = None
    symbol: str = ""
    keyed: bool | None = None
    full_slot: int = -1            # its counter of updates dropped for a full map (resources)
    # per key part: the builtin variable every access uses there (`comm`, `pid`), else None
    key_names: list | None = None

    @property
    def kind(self) -> str:
        return self.value.kind if isinstance(self.value, AggT) else "plain"


@record
class Options:
    has_child: bool = False
    unsafe: bool = False


class Checker:
    def __init__(self, units: list[Unit], options: Options, structs=None):
        self.structs = structs or Declarations()
        self.units = units
        self.options = options
        self.maps: dict[str, MapInfo] = {}
        self.lenient = False
        self.unit: Unit | None = None
        self.vars: dict[str, Type] = {}
        self.loop_depth = 0
        self.warnings: list[Diagnostic] = []
        self.assigned_to_var = None     # the value of the `$x = value` being checked

    def warn(self, message: str, span):
        """A warning of the strict pass (each once, however many programs share the code)."""
        if self.lenient:
            return
        if not any(w.message == message and w.span == span for w in self.warnings):
            self.warnings.append(Diagnostic(message, span, "WARNING"))

    # ------------------------------------------------------------ driver
    def run(self):
        self.lenient = True
        for _ in range(2):
            for unit in self.units:
                self._check_unit(unit)
        self.lenient = False
        for unit in self.units:
            self._check_unit(unit)
        for m in self.maps.values():
            if m.value is None:
                raise error(f"Undefined map: {m.name}", m.span)

    def _check_unit(self, unit: Unit):
        self.unit = unit
        self.vars = {}
        self.loop_depth = 0
        self.block(unit.body)

    def block(self, stmts):
        for s in stmts:
            if self.lenient:
                try:
                    self.stmt(s)
                except CompileError:
                    pass
            else:
                self.stmt(s)

    # ------------------------------------------------------------ statements
    def stmt(self, s):
        if isinstance(s, ast.ExprStmt):
            e = s.expr
            if isinstance(e, ast.Call):
                entry = lookup_function(e.name)
                if entry is not None and entry.kind == "aggregation":
                    raise error(f"{e.name}() should be directly assigned to a map", e.span)
            self.expr(e, statement=True)
        elif isinstance(s, ast.Assign):
            self.assign(s)
        elif isinstance(s, ast.If):
            self.condition(s.cond, "if()", s.cond.span)
            self.block(s.then)
            if s.orelse:
                self.block(s.orelse)
        elif isinstance(s, ast.Unroll):           # its count: folded (passes/fold.py)
            self.block(s.body)
        elif isinstance(s, ast.While):
            self.condition(s.cond, "while()", s.cond.span)
            self.loop_depth += 1
            self.block(s.body)
            self.loop_depth -= 1
        elif isinstance(s, (ast.Break, ast.Continue)):
            if self.loop_depth == 0:
                word = "break" if isinstance(s, ast.Break) else "continue"
                raise error(f"{word} used outside of a loop", s.span)
        elif isinstance(s, ast.Return):
            pass
        else:
            raise error(f"unsupported statement {type(s).__name__}", s.span)

    def condition(self, cond, where, span):
        t = self.expr(cond)
        if t is not None and not isinstance(t, (IntT, PtrT)):
            raise error(f"Invalid condition in {where}: {kind_name(t)}", span)

    def fold(self, e) -> int | None:
        """Value of an integer-literal expression, else None (for the entries' checks)."""
        return fold.integer(e)

    def assign(self, s: ast.Assign):
        target = s.target
        if isinstance(target, ast.Map):
            info = self.map_keys(target)
            if s.op is None and isinstance(s.value, ast.Call):
                entry = lookup_function(s.value.name)
                if entry is not None and entry.kind == "aggregation":
                    t = entry.check(self, s.value)
                    s.value.type = t
                    self.set_map_value(info, t, target.span, target, s.value.span)
                    target.type = t
                    return
            vt = self.expr(s.value)
            if s.op is not None:
                # bpftrace checks `@x op= v` as `@x = @x op v`
                cur = info.value
                if cur is not None and not isinstance(cur, IntT) and not self.moves_pointer(s, cur):
                    raise self.mismatch(info.name, UINT64, cur, target.span)
                if vt is not None and not isinstance(vt, (IntT, PtrT)):
                    raise error(f"Type mismatch for '{s.op}': comparing "
                                f"'{bpftrace_name(cur or INT64)}' with '{bpftrace_name(vt)}'", s.span)
                vt = INT64 if cur is None else cur
            if vt is None:
                return
            if isinstance(vt, ArgsT):
                raise error("context cannot be assigned to a map", _assign_op_span(s))
            vt = self.stored(vt, s.value)
            self.check_storable(vt, s.value)
            self.set_map_value(info, vt, target.span, target, _assign_op_span(s))
            target.type = info.value
        elif isinstance(target, ast.Variable):
            # what 0.17 calls `call.var`: a call assigned to a variable (not `$x op= call`)
            self.assigned_to_var = s.value if s.op is None else None
            try:
                vt = self.expr(s.value)
            finally:
                self.assigned_to_var = None
            if s.op is not None:
                cur = self.vars.get(target.name)
                if cur is None:
                    raise error(f"Undefined or undeclared variable: {target.name}", target.span)
                # bpftrace checks `$x op= v` as `$x = $x op v`
                if not isinstance(cur, IntT) and not self.moves_pointer(s, cur):
                    raise error(f"Type mismatch for {target.name}: trying to assign value of type "
                                f"'unsigned int64' when variable already contains a value of type "
                                f"'{bpftrace_name(cur)}'", s.span)
                if vt is not None and not isinstance(vt, (IntT, PtrT)):
                    raise error(f"Type mismatch for '{s.op}': comparing '{bpftrace_name(cur)}' with "
                                f"'{bpftrace_name(vt)}'", s.span)
                target.type = cur
                return
            if vt is None:
                return
            if isinstance(vt, AggT):
                raise error(f"Map value '{bpftrace_name(vt)}' cannot be assigned to a scratch variable",
                            s.value.span)
            self.check_storable(vt, s.value)
            cur = self.vars.get(target.name)
            if cur is not None:
                merged = unify(cur, vt)
                if merged is None:
                    if isinstance(cur, TupleT) and isinstance(vt, TupleT):
                        raise error(f"Tuple type mismatch: {bpftrace_name(cur)} != {bpftrace_name(vt)}.",
                                    _assign_op_span(s))
                    raise error(f"Type mismatch for {target.name}: trying to assign value of type "
                                f"'{bpftrace_name(vt)}' when variable already contains a value of type "
                                f"'{bpftrace_name(cur)}'", _assign_op_span(s))
                vt = merged
            self.vars[target.name] = vt
            target.type = vt
            self.unit_vars()[target.name] = unify(self.unit_vars().get(target.name, vt), vt) or vt
        else:
            raise error("Can only assign to maps and variables", target.span)

    def stored(self, t: Type, node) -> Type:
        """The type a value takes where it is stored: a struct or array is copied."""
        if isinstance(t, (StructT, ArrayT)):
            from ..types.kernel import value_of   # lazy: start-up time (typed kernel data)
            return value_of(self, t, node.span)
        return t

    def moves_pointer(self, s: ast.Assign, cur: Type) -> bool:
        """`p += n` / `p -= n` on a pointer (checked as `p = p ± n`)."""
        return isinstance(cur, PtrT) and s.op in ("+", "-")

    def unit_vars(self) -> dict[str, Type]:
        return self.unit.var_types

    def check_storable(self, t: Type, node):
        if isinstance(t, NoneT):
            raise _no_value(node, node.span)
        if isinstance(t, ArgsT):
            raise error("args cannot be stored; access one of its fields", node.span)

    def mismatch(self, name, new, cur, span):
        # bpftrace 0.17 prints this message without the closing quote
        return error(f"Type mismatch for {name}: trying to assign value of type "
                     f"'{bpftrace_name(new)}' when map already contains a value of type "
                     f"'{bpftrace_name(cur)}", span)

    def set_map_value(self, info: MapInfo, t: Type, span, target, value_span=None):
        """span: the map (type mismatches); value_span: the lhist() call (bounds), or the
        `=` token (tuple mismatches)."""
        if info.value is None:
            info.value = t if not isinstance(t, IntT) else IntT(64, t.signed)
            return
        cur = info.value
        if isinstance(cur, AggT) or isinstance(t, AggT):
            if not (isinstance(cur, AggT) and isinstance(t, AggT) and cur.kind == t.kind):
                raise self.mismatch(info.name, t, cur, span)
            if cur.kind == "lhist" and cur.lhist != t.lhist:
                raise error("Different lhist bounds in a single map unsupported", value_span or span)
            if cur.signed != t.signed:
                info.value = AggT(cur.kind, cur.signed or t.signed, cur.lhist)
            return
        merged = unify(cur, t)
        if merged is None:
            if isinstance(cur, TupleT) and isinstance(t, TupleT) and value_span is not None:
                raise error(f"Tuple type mismatch: {bpftrace_name(cur)} != {bpftrace_name(t)}.",
                            value_span)
            raise self.mismatch(info.name, t, cur, span)
        info.value = merged

    def map_ref(self, m: ast.Map, span=None) -> MapInfo:
        """A reference to a whole map (print/clear/zero): no key access. `span` (the call)
        is where an undefined map is reported."""
        info = self.maps.get(m.name)
        if info is None:
            info = self.maps[m.name] = MapInfo(m.name, span=span or m.span)
        return info

    def map_keys(self, m: ast.Map, span=None) -> MapInfo:
        """`span`: where errors about this access are reported (default: the map)."""
        info = self.maps.get(m.name)
        if info is None:
            info = self.maps[m.name] = MapInfo(m.name, span=span or m.span)
        span = span or m.span
        keys = None
        if m.keys is not None:
            keys = []
            for k in m.keys:
                kt = self.expr(k)
                if kt is None:
                    return info
                if isinstance(kt, NoneT):
                    raise _no_value(k, m.span)
                if isinstance(kt, ArgsT):
                    raise error("context cannot be used as a map key", m.span)
                if isinstance(kt, AggT) or not kt.map_key:
                    raise error(f"Invalid map key type: {bpftrace_name(kt)}", k.span)
                keys.append(IntT(64, False) if isinstance(kt, IntT) else self.stored(kt, k))
        names = None if keys is None else [_builtin_name(k) for k in m.keys]
        if info.keyed is None:
            info.keyed = keys is not None
            info.keys = keys
            info.key_names = names
            return info
        if info.keyed != (keys is not None):
            expects = "[" + ", ".join(bpftrace_name(k) for k in (info.keys or [])) + "]"
            given = "[" + ", ".join(bpftrace_name(k) for k in (keys or [])) + "]"
            raise error(f"Argument mismatch for {m.name}: trying to access with arguments: {given} "
                        f"when map expects arguments: {expects}", span)
        if keys is not None:
            merged = [unify(a, b) for a, b in zip(info.keys, keys)] if len(keys) == len(info.keys) else [None]
            if any(x is None for x in merged):
                expects = "[" + ", ".join(bpftrace_name(k) for k in info.keys) + "]"
                given = "[" + ", ".join(bpftrace_name(k) for k in keys) + "]"
                raise error(f"Argument mismatch for {m.name}: trying to access with arguments: {given} "
                            f"when map expects arguments: {expects}", span)
            info.keys = merged
            info.key_names = [a if a == b else None for a, b in zip(info.key_names, names)]
        return info

    # ------------------------------------------------------------ expressions
    def expr(self, e, statement: bool = False) -> Type | None:
        t = self._expr(e, statement)
        e.type = t
        return t

    def _expr(self, e, statement):
        check = self._CHECKS.get(type(e))
        if check is None:
            raise error(f"unsupported expression {type(e).__name__}", e.span)
        return check(self, e, statement)

    def _check_integer(self, e, statement):
        value = ast.peek_value(e)     # the type is the same for every cached literal's value
        if value >= 1 << 63:
            return UINT64 if value < 1 << 64 else self._too_big(e)
        if value < -(1 << 63):
            return self._too_big(e)
        return INT64

    def _check_string(self, e, statement):
        if len(e.value) > MAX_STRING:
            raise error(f"String is too long (over {MAX_STRING} bytes): {e.value.decode(errors='replace')}",
                        e.span)
        return StrT(len(e.value) + 1)

    def _check_builtin(self, e, statement):
        entry = lookup_builtin(e.name)
        if entry is None:
            if e.const_value is not None:         # folded (passes/fold.py)
                return INT64
            raise error(f"Unknown identifier: '{e.name}'", e.span)
        return entry.check(self, e)

    def _check_variable(self, e, statement):
        t = self.vars.get(e.name)
        if t is None:
            if self.lenient:
                return None
            raise error(f"Undefined or undeclared variable: {e.name}", e.span)
        return self.unit_vars().get(e.name, t)

    def _check_map(self, e, statement):
        info = self.map_keys(e)
        if info.value is None:
            if self.lenient:
                return None
            raise error(f"Undefined map: {e.name}", e.span)
        return info.value

    def _check_call(self, e, statement):
        entry = lookup_function(e.name)
        if entry is None:
            name_span = ast.Span(e.span.line, e.span.col, e.span.line, e.span.col + len(e.name))
            raise error(f"Unknown function: {e.name}", name_span)
        if entry.kind == "aggregation":
            raise error(f"{e.name}() should be directly assigned to a map", e.span)
        return entry.check(self, e)

    def _check_binary(self, e, statement):
        return self.binary(e)

    def _check_unary(self, e, statement):
        t = self.expr(e.operand)
        if t is None:
            return None
        if e.op == "*":
            # lazy: start-up time (the BTF reader only for typed kernel data)
            from ..types.kernel import check_deref
            kt = check_deref(self, e, pointer_of(e.operand) or t)
            if kt is not None:
                return kt
            if not isinstance(t, (PtrT, IntT)):
                raise error(f"Can not dereference type {bpftrace_name(t)}", e.span)
            e.deref_size = 8
            t = pointer_of(e.operand) or t
            if isinstance(t, PtrT):
                if t.target.endswith("*"):
                    # *argv: still a pointer, into the same address space
                    return PtrT(t.target[:-1].strip(), user=t.user)
                c = cmodel.scalar(t.target)
                if c is not None and c.size in (1, 2, 4):
                    e.deref_size = c.size
                    return IntT(c.size * 8, c.signed or c.name == "char")
            return INT64
        if not isinstance(t, (IntT, PtrT)):
            # bpftrace underlines the operator token
            op_span = ast.Span(e.span.line, e.span.col, e.span.line, e.span.col + len(e.op))
            raise error(f"The {e.op} operator can not be used on expressions of type "
                        f"'{bpftrace_name(t)}'", op_span)
        if e.op == "!":
            return UINT64
        if e.op == "-":
            return IntT(64, True)
        # `~` keeps the operand's width: ~(uint8)5 is 250, ~(uint32)0 is 4294967295
        return t if isinstance(t, IntT) else UINT64

    def _check_inc_dec(self, e, statement):
        if isinstance(e.target, ast.Map):
            info = self.map_keys(e.target)
            if info.value is None:
                info.value = INT64
            elif not isinstance(info.value, (IntT, PtrT)):
                raise error(f"The {e.op} operator can not be used on expressions of type "
                            f"'{bpftrace_name(info.value)}'", e.span)
            e.target.type = info.value
            return info.value
        if isinstance(e.target, ast.Variable):
            t = self.vars.get(e.target.name)
            if t is None:
                if self.lenient:
                    return None
                raise error(f"Undefined or undeclared variable: {e.target.name}", e.target.span)
            if not isinstance(t, (IntT, PtrT)):
                raise error(f"The {e.op} operator can not be used on expressions of type "
                            f"'{bpftrace_name(t)}'", e.span)
            e.target.type = t
            return t
        raise error(f"The {e.op} operator must be applied to a map or variable", e.span)

    def _check_ternary(self, e, statement):
        self.condition(e.cond, "ternary", e.span)
        a, b = self.expr(e.then, statement), self.expr(e.orelse, statement)
        if a is None or b is None:
            return None
        if isinstance(a, NoneT) and isinstance(b, NoneT):
            return a
        t = unify(a, b)
        if t is None:
            if _same_kind(a, b):
                raise error(f"Ternary operator must return the same type: have "
                            f"'{bpftrace_name(a)}' and '{bpftrace_name(b)}'", e.span)
            raise error(f"Ternary operator must return the same type: have '{kind_name(a)}' "
                        f"and '{kind_name(b)}'", e.span)
        return t

    def _check_cast(self, e, statement):
        t = self.expr(e.operand)
        target = INT_TYPES.get(e.type_name)
        if target is None:
            # lazy: start-up time (the BTF reader only for typed kernel data)
            from ..types.kernel import check_cast
            target = check_cast(self, e, t)
            if target is not None:
                return target
            raise error(f"Cannot resolve unknown type \"{e.type_name}\"", e.span)
        if t is not None and not isinstance(t, (IntT, PtrT)):
            head = ast.Span(e.span.line, e.span.col, e.operand.span.line, e.operand.span.col)
            if head.end_line != head.line:
                head = e.span
            raise error(f"Casts are not supported for type: \"{bpftrace_name(t)}\"", head)
        return target

    def _check_tuple(self, e, statement):
        ts = [self.expr(x) for x in e.elements]
        if any(t is None for t in ts):
            return None
        for x, t in zip(e.elements, ts):
            if isinstance(t, (NoneT, AggT, ArgsT)):
                raise error(f"Invalid tuple element type: {bpftrace_name(t)}", x.span)
        ts = [self.stored(t, x) for x, t in zip(e.elements, ts)]
        return TupleT(tuple(ts))

    def _check_field_access(self, e, statement):
        return self.field_access(e)

    def _check_index(self, e, statement):
        t = self.expr(e.expr)
        if isinstance(t, (PtrT, ArrayT, CValueT)):
            # lazy: start-up time (the BTF reader only for typed kernel data)
            from ..types.kernel import check_index
            return check_index(self, e, t)
        raise error("The array index operator [] can only be used on arrays and pointers, found "
                    f"{bpftrace_name(t) if t else 'unknown'}.", e.span)

    def _check_sizeof(self, e, statement):
        if e.operand is not None:
            t = self.expr(e.operand)
            if t is None:
                return None
            e.size = t.size if not isinstance(t, IntT) else max(1, t.bits // 8)
            if isinstance(t, StructT):
                e.size = t.struct_size
            elif isinstance(t, ArrayT):
                e.size = t.count * t.elem_size
            field_info = e.operand.field_info if isinstance(e.operand, ast.FieldAccess) else None
            if field_info is not None:      # a tracepoint field: its size in the record
                e.size = field_info.size
        elif e.size is None:                        # sizeof(TYPE): folded (passes/fold.py)
            raise error(f"Unknown identifier: '{e.type_name}'", e.span)
        return UINT64

    def _check_positional(self, e, statement):
        raise error("positional parameter was not resolved", e.span)

    def _too_big(self, e):
        raise error(f"Integer literal is too big: {e.value}", e.span)

    def require_int(self, t, node, what):
        if not isinstance(t, (IntT, PtrT)):
            raise error(f"The {what} operator can not be used on expressions of type "
                        f"'{bpftrace_name(t)}'", node.span)

    def binary(self, e: ast.Binary):
        a, b = self.expr(e.left), self.expr(e.right)
        if a is None or b is None:
            return None
        if e.op in ("==", "!=") and (isinstance(a, StrT) or isinstance(b, StrT)):
            if not (isinstance(a, StrT) and isinstance(b, StrT)):
                raise error(f"Type mismatch for '{e.op}': comparing '{bpftrace_name(a)}' with "
                            f"'{bpftrace_name(b)}'", e.span)
            return UINT64
        if isinstance(a, (ArrayT, CValueT)) and isinstance(b, (ArrayT, CValueT)) \
                and e.op in ("==", "!=") and self.stored(a, e.left) == self.stored(b, e.right):
            return UINT64                   # arrays (or records) of one type: their bytes
        if isinstance(a, BufT) and isinstance(b, BufT) and e.op in ("==", "!="):
            return UINT64                   # buf() values: their lengths and bytes
        if isinstance(a, PtrT) or isinstance(b, PtrT):
            return self.pointer_binary(e, a, b)
        if not isinstance(a, (IntT, PtrT)) or not isinstance(b, (IntT, PtrT)):
            # bpftrace 0.17: operands of different type classes are a "mismatch" (underlining
            # both operands); same-class non-integers can not take the operator (underlining it)
            if not _same_kind(a, b):
                raise error(f"Type mismatch for '{e.op}': comparing '{bpftrace_name(a)}' with "
                            f"'{bpftrace_name(b)}'", e.span)
            raise error(f"The {e.op} operator can not be used on expressions of types "
                        f"{bpftrace_name(a)}, {bpftrace_name(b)}", op_span(e))
        if e.op in ("==", "!=", "<", "<=", ">", ">="):
            if isinstance(a, IntT) and isinstance(b, IntT) and a.signed != b.signed and a.bits == b.bits \
                    and not isinstance(e.left, ast.Integer) and not isinstance(e.right, ast.Integer):
                self.warn(f"comparison of integers of different signs: '{bpftrace_name(a)}' and "
                          f"'{bpftrace_name(b)}' can lead to undefined behavior", op_span(e))
            return UINT64
        pa, pb = pointer_of(e.left), pointer_of(e.right)
        if e.op in ("+", "-") and pa is not None and pb is None:
            e.ptr_base = pa           # str(p) + n and friends: scaled by the element size
        elif e.op == "+" and pb is not None and pa is None:
            e.ptr_base = pb
        signed = getattr(a, "signed", False) and getattr(b, "signed", False)
        return IntT(64, signed)

    def pointer_binary(self, e: ast.Binary, a: Type, b: Type) -> Type:
        """C's rules, as bpftrace 0.17: pointers compare with pointers and integers;
        ptr + n, n + ptr and ptr - n are pointers (n scaled by the pointee size)."""
        compare = e.op in ("==", "!=", "<", "<=", ">", ">=")
        invalid = error(f"The {e.op} operator can not be used on expressions of types "
                        f"{bpftrace_name(a)}, {bpftrace_name(b)}", op_span(e))
        ptr = a if isinstance(a, PtrT) else b
        other = b if ptr is a else a
        if isinstance(other, PtrT):
            if not compare:
                raise invalid
            if a.target != b.target:        # (0.17's text, one quote missing)
                self.warn(f"comparison of distinct pointer types ('{a.target}, '{b.target}')",
                          e.left.span + e.right.span)
            return UINT64
        if not isinstance(other, IntT) or (e.op == "-" and ptr is b):
            raise invalid
        if compare:
            return INT64
        if e.op not in ("+", "-"):
            raise invalid
        e.ptr_base = ptr
        return ptr

    def field_access(self, e: ast.FieldAccess):
        base = self.expr(e.expr)
        if base is None:
            return None
        if isinstance(base, TupleT):
            if e.arrow or not e.field.isdigit():
                raise error(f"Can not access field '{e.field}' on type '{bpftrace_name(base)}'", e.span)
            i = int(e.field)
            if i >= len(base.elements):
                raise error(f"Invalid tuple index: {i}. Found {len(base.elements)} elements in tuple.",
                            e.span)
            return base.elements[i]
        if isinstance(base, ArgsT):
            return self.unit.provider.args_field(self, e)      # tracefs format, BTF (kfunc)
        if isinstance(base, (PtrT, StructT, CValueT)):
            # lazy: start-up time (the BTF reader only for typed kernel data)
            from ..types.kernel import check_field
            return check_field(self, e, base)
        raise error(f"Can not access field '{e.field}' on expression of type '{bpftrace_name(base)}'",
                    e.span)


def check(units: list[Unit], options: Options, structs=None):
    """(maps, warnings) of a program."""
    checker = Checker(units, options, structs)
    try:
        checker.run()
    except CompileError as e:
        # bpftrace prints the warnings it met before the error, then the error
        e.diagnostics[:0] = checker.warnings
        raise
    return checker.maps, checker.warnings


# the check of each expression node type
Checker._CHECKS = {
    ast.Integer: Checker._check_integer,
    ast.String: Checker._check_string,
    ast.Builtin: Checker._check_builtin,
    ast.Variable: Checker._check_variable,
    ast.Map: Checker._check_map,
    ast.Call: Checker._check_call,
    ast.Binary: Checker._check_binary,
    ast.Unary: Checker._check_unary,
    ast.IncDec: Checker._check_inc_dec,
    ast.Ternary: Checker._check_ternary,
    ast.Cast: Checker._check_cast,
    ast.Tuple: Checker._check_tuple,
    ast.FieldAccess: Checker._check_field_access,
    ast.Index: Checker._check_index,
    ast.Sizeof: Checker._check_sizeof,
    ast.Positional: Checker._check_positional,
    ast.PositionalCount: Checker._check_positional,
}
