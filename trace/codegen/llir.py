"""LLVM IR built as text: the part of `llvmlite.ir`'s interface the code generator
uses (types, constants, globals, functions, blocks and an IRBuilder), each
instruction formatted once, as it is built.

llvmlite's IR layer keeps an object graph and formats it when the module is
printed; for a large script that was a third of the compile (see
docs/performance.md). Here a value is its type and its textual reference, and a
block is a list of lines. Instructions come out in the order llvmlite would give
them, blocks in the order they were appended, so LLVM sees the same program.
"""
from __future__ import annotations

from contextlib import contextmanager


# ------------------------------------------------------------------ types
class Type:
    __slots__ = ("ir",)

    def __init__(self, text: str):
        self.ir = text

    def __eq__(self, other):
        return isinstance(other, Type) and other.ir == self.ir

    def __hash__(self):
        return hash(self.ir)

    def __str__(self):
        return self.ir

    __repr__ = __str__


class IntType(Type):
    __slots__ = ("width",)

    def __init__(self, bits: int):
        super().__init__(f"i{bits}")
        self.width = bits


class PointerType(Type):
    """The opaque `ptr`."""
    __slots__ = ()

    def __init__(self):
        super().__init__("ptr")


class ArrayType(Type):
    __slots__ = ("element", "count")

    def __init__(self, element: Type, count: int):
        super().__init__(f"[{count} x {element.ir}]")
        self.element, self.count = element, count


class LiteralStructType(Type):
    __slots__ = ("elements",)

    def __init__(self, elements):
        self.elements = tuple(elements)
        super().__init__("{" + ", ".join(e.ir for e in self.elements) + "}")


I1 = IntType(1)
I64 = IntType(64)
PTR = PointerType()


# ------------------------------------------------------------------ values
class Value:
    """An operand: its type and how the IR refers to it (`%v3`, `@"m"`, `42`)."""
    __slots__ = ("type", "ref")

    def __init__(self, type: Type, ref: str):
        self.type, self.ref = type, ref

    def __str__(self):
        return f"{self.type.ir} {self.ref}"


_ESCAPES = {c: f"\\{c:02X}" for c in range(256) if not 32 <= c < 127 or c in (34, 92)}


def _escape(data: bytes) -> str:
    return data.decode("latin-1").translate(_ESCAPES)


def _constant_text(ty: Type, value) -> str:
    if value is None:
        return "null" if ty.ir == "ptr" else "zeroinitializer"
    if isinstance(value, (bytes, bytearray)):
        return f'c"{_escape(value)}"'
    if isinstance(value, (list, tuple)):
        inner = ", ".join(str(v) for v in value)
        return f"[{inner}]" if isinstance(ty, ArrayType) else "{" + inner + "}"
    return str(int(value))


class Constant(Value):
    __slots__ = ()

    def __init__(self, type: Type, value):
        super().__init__(type, _constant_text(type, value))


class GlobalVariable(Value):
    """A module-level variable; as an operand it is its address (a `ptr`)."""
    __slots__ = ("name", "value_type", "initializer", "section", "align", "global_constant")

    def __init__(self, module: Module, typ: Type, name: str):
        super().__init__(PTR, f'@"{name}"')
        self.name, self.value_type = name, typ
        self.initializer = self.section = self.align = None
        self.global_constant = False
        module.globals.append(self)

    def text(self) -> str:
        kind = "constant" if self.global_constant else "global"
        init = self.initializer.ref if self.initializer is not None else "zeroinitializer"
        line = f"{self.ref} = {kind} {self.value_type.ir} {init}"
        if self.section:
            line += f', section "{self.section}"'
        if self.align:
            line += f", align {self.align}"
        return line + "\n"


class Block:
    __slots__ = ("name", "function", "lines", "is_terminated")

    def __init__(self, function: Function, name: str):
        self.name, self.function = name, function
        self.lines = []             # str, or a Phi/Switch finished later
        self.is_terminated = False

    def text(self) -> str:
        return f"{self.name}:\n" + "".join(map(str, self.lines))


class FunctionType:
    __slots__ = ("return_type", "args")

    def __init__(self, return_type: Type, args):
        self.return_type, self.args = return_type, list(args)


class Function(Value):
    __slots__ = ("module", "name", "ftype", "args", "basic_blocks", "section", "attributes",
                 "_values", "_labels", "declared")

    def __init__(self, module: Module, ftype: FunctionType, name: str, declared: bool = False):
        super().__init__(PTR, f'@"{name}"')
        self.module, self.name, self.ftype, self.declared = module, name, ftype, declared
        self.args = [Value(t, f"%a{i}") for i, t in enumerate(ftype.args)]
        self.basic_blocks = []
        self.section = None
        self.attributes = set()
        self._values = 0
        self._labels = {}           # label -> the last suffix given to it
        module.globals.append(self)

    def append_basic_block(self, name: str = "") -> Block:
        name = name or "b"
        label, n = name, self._labels.get(name, 0)
        while label in self._labels:
            n += 1
            label = f"{name}.{n}"
        self._labels[name] = n
        self._labels[label] = 0
        block = Block(self, label)
        self.basic_blocks.append(block)
        return block

    def new_value(self) -> str:
        self._values += 1
        return f"%v{self._values}"

    def text(self) -> str:
        params = ", ".join(f"{a.type.ir} {a.ref}" for a in self.args)
        head = f"{self.ftype.return_type.ir} {self.ref}({params})"
        if self.declared:
            return f"declare {head}\n"
        attrs = "".join(f" {a}" for a in sorted(self.attributes))
        section = f' section "{self.section}"' if self.section else ""
        body = "".join(b.text() for b in self.basic_blocks)
        return f"define {head}{attrs}{section}\n{{\n{body}}}\n"


class Module:
    def __init__(self, name: str = ""):
        self.name = name
        self.triple = self.data_layout = ""
        self.globals = []           # variables and functions, in the order they were made
        self._intrinsics = {}

    def intrinsic(self, name: str, ftype: FunctionType) -> Function:
        fn = self._intrinsics.get(name)
        if fn is None:
            fn = self._intrinsics[name] = Function(self, ftype, name, declared=True)
        return fn

    def __str__(self):
        head = f'; ModuleID = "{self.name}"\ntarget triple = "{self.triple}"\n'
        if self.data_layout:
            head += f'target datalayout = "{self.data_layout}"\n'
        return head + "\n" + "".join(g.text() for g in self.globals)


# ------------------------------------------------------------------ instructions
class Phi(Value):
    __slots__ = ("incoming",)

    def __init__(self, type: Type, ref: str):
        super().__init__(type, ref)
        self.incoming = []

    def add_incoming(self, value: Value, block: Block):
        self.incoming.append(f"[{value.ref}, %{block.name}]")

    def __str__(self):
        return f"  {self.ref} = phi {self.type.ir} {', '.join(self.incoming)}\n"


class Switch:
    __slots__ = ("value", "default", "cases")

    def __init__(self, value: Value, default: Block):
        self.value, self.default, self.cases = value, default, []

    def add_case(self, value, block: Block):
        ref = value.ref if isinstance(value, Value) else str(int(value))
        self.cases.append(f"{self.value.type.ir} {ref}, label %{block.name}")

    def __str__(self):
        return (f"  switch {self.value.type.ir} {self.value.ref}, label %{self.default.name} "
                f"[{' '.join(self.cases)}]\n")


_CMP = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


class IRBuilder:
    """Appends instructions at the end of `block` (llvmlite's IRBuilder, the calls
    the code generator makes)."""

    def __init__(self, block: Block = None):
        self.block = block

    @property
    def basic_block(self) -> Block:
        return self.block

    @property
    def function(self) -> Function:
        return self.block.function

    def position_at_end(self, block: Block):
        self.block = block

    def append_basic_block(self, name: str = "") -> Block:
        return self.block.function.append_basic_block(name)

    def _value(self, ty: Type, text: str) -> Value:
        ref = self.block.function.new_value()
        self.block.lines.append(f"  {ref} = {text}\n")
        return Value(ty, ref)

    def _terminate(self, text: str):
        self.block.lines.append(f"  {text}\n")
        self.block.is_terminated = True

    # arithmetic and logic: `op ty a, b`
    def _binop(self, op: str, a: Value, b: Value) -> Value:
        return self._value(a.type, f"{op} {a.type.ir} {a.ref}, {b.ref}")

    def add(self, a, b, name=""):
        return self._binop("add", a, b)

    def sub(self, a, b, name=""):
        return self._binop("sub", a, b)

    def mul(self, a, b, name=""):
        return self._binop("mul", a, b)

    def udiv(self, a, b, name=""):
        return self._binop("udiv", a, b)

    def sdiv(self, a, b, name=""):
        return self._binop("sdiv", a, b)

    def urem(self, a, b, name=""):
        return self._binop("urem", a, b)

    def srem(self, a, b, name=""):
        return self._binop("srem", a, b)

    def and_(self, a, b, name=""):
        return self._binop("and", a, b)

    def or_(self, a, b, name=""):
        return self._binop("or", a, b)

    def xor(self, a, b, name=""):
        return self._binop("xor", a, b)

    def shl(self, a, b, name=""):
        return self._binop("shl", a, b)

    def lshr(self, a, b, name=""):
        return self._binop("lshr", a, b)

    def ashr(self, a, b, name=""):
        return self._binop("ashr", a, b)

    def not_(self, value, name=""):
        return self._binop("xor", value, Constant(value.type, -1))

    def neg(self, value, name=""):
        return self._binop("sub", Constant(value.type, 0), value)

    def icmp_unsigned(self, op: str, a, b, name=""):
        cmp = _CMP[op]
        return self._value(I1, f"icmp {cmp if op in ('==', '!=') else 'u' + cmp} "
                               f"{a.type.ir} {a.ref}, {b.ref}")

    def icmp_signed(self, op: str, a, b, name=""):
        cmp = _CMP[op]
        return self._value(I1, f"icmp {cmp if op in ('==', '!=') else 's' + cmp} "
                               f"{a.type.ir} {a.ref}, {b.ref}")

    def select(self, cond, a, b, name=""):
        return self._value(a.type, f"select i1 {cond.ref}, {a.type.ir} {a.ref}, "
                                   f"{b.type.ir} {b.ref}")

    # casts: `op ty v to ty2`
    def _cast(self, op: str, value: Value, ty: Type) -> Value:
        return self._value(ty, f"{op} {value.type.ir} {value.ref} to {ty.ir}")

    def trunc(self, value, ty, name=""):
        return self._cast("trunc", value, ty)

    def zext(self, value, ty, name=""):
        return self._cast("zext", value, ty)

    def sext(self, value, ty, name=""):
        return self._cast("sext", value, ty)

    def inttoptr(self, value, ty, name=""):
        return self._cast("inttoptr", value, ty)

    def ptrtoint(self, value, ty, name=""):
        return self._cast("ptrtoint", value, ty)

    # memory
    def alloca(self, typ: Type, size=None, name=""):
        return self._value(PTR, f"alloca {typ.ir}")

    def load(self, ptr, name="", align=None, typ=None):
        text = f"load {typ.ir}, ptr {ptr.ref}"
        return self._value(typ, f"{text}, align {align}" if align else text)

    def store(self, value, ptr, align=None):
        text = f"  store {value.type.ir} {value.ref}, ptr {ptr.ref}"
        self.block.lines.append(f"{text}, align {align}\n" if align else text + "\n")

    def atomic_add(self, ptr, value):
        """`atomicrmw add`, its old value unused (BPF's atomic add, no fetch)."""
        width = value.type.width // 8
        return self._value(value.type, f"atomicrmw add ptr {ptr.ref}, {value.type.ir} "
                                       f"{value.ref} monotonic, align {width}")

    def gep(self, ptr, indices, inbounds=False, name="", source_etype=None):
        idx = "".join(f", {i.type.ir} {i.ref}" for i in indices)
        kw = "getelementptr inbounds" if inbounds else "getelementptr"
        return self._value(PTR, f"{kw} {source_etype.ir}, ptr {ptr.ref}{idx}")

    # calls
    def call(self, fn: Value, args, name="", return_type: Type = None):
        """Call a Function, or a function pointer returning `return_type` (i64)."""
        if isinstance(fn, Function):
            return_type = fn.ftype.return_type
        ty = return_type or I64
        params = ", ".join(f"{a.type.ir} {a.ref}" for a in args)
        return self._value(ty, f"call {ty.ir} {fn.ref}({params})")

    def bswap(self, value, name=""):
        ty = value.type
        fn = self.block.function.module.intrinsic(f"llvm.bswap.{ty.ir}", FunctionType(ty, [ty]))
        return self.call(fn, [value])

    def phi(self, typ: Type, name=""):
        phi = Phi(typ, self.block.function.new_value())
        self.block.lines.append(phi)
        return phi

    # terminators
    def branch(self, target: Block):
        self._terminate(f"br label %{target.name}")

    def cbranch(self, cond, then: Block, otherwise: Block):
        self._terminate(f"br i1 {cond.ref}, label %{then.name}, label %{otherwise.name}")

    def ret(self, value):
        self._terminate(f"ret {value.type.ir} {value.ref}")

    def unreachable(self):
        self._terminate("unreachable")

    def switch(self, value, default: Block) -> Switch:
        sw = Switch(value, default)
        self.block.lines.append(sw)
        self.block.is_terminated = True
        return sw

    # structured control flow (llvmlite's block layout: if, [else,] endif; shorter labels)
    @contextmanager
    def _branch_helper(self, enter: Block, leave: Block):
        self.position_at_end(enter)
        yield leave
        if not self.block.is_terminated:
            self.branch(leave)

    @contextmanager
    def if_then(self, pred, likely=None):
        bbif = self.append_basic_block("if")
        bbend = self.append_basic_block("endif")
        self.cbranch(pred, bbif, bbend)
        with self._branch_helper(bbif, bbend):
            yield bbend
        self.position_at_end(bbend)

    @contextmanager
    def if_else(self, pred, likely=None):
        bbif = self.append_basic_block("if")
        bbelse = self.append_basic_block("else")
        bbend = self.append_basic_block("endif")
        self.cbranch(pred, bbif, bbelse)
        yield self._branch_helper(bbif, bbend), self._branch_helper(bbelse, bbend)
        self.position_at_end(bbend)
