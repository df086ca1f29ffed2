"""The pytrace AST: record nodes with source spans, and a stable printer.

Every node has a `span` (Span) pointing into the source text. What the checking
passes decide about an expression lives in declared fields that the lowering
reads (`CHECKED` lists them; None until a pass sets them): `type` (a
pytrace.types.model.Type) on every expression, and per node type the constant, field,
read size and address-space facts below. The printer (`dump`) gives a stable
text form for golden tests and leaves the checked facts out (but `type`).
"""
from __future__ import annotations

from ..runtime.record import record, field, fields


@record(frozen=True)
class Span:
    line: int
    col: int          # 1-based
    end_line: int
    end_col: int      # 1-based, exclusive

    def __add__(self, other: "Span") -> "Span":
        """The span covering both."""
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(start[0], start[1], end[0], end[1])


NOSPAN = Span(0, 0, 0, 0)


def _checked():
    """A field that a checking pass fills (None until then)."""
    return field(default=None, repr=False, compare=False, kw_only=True)


@record(eq=False)
class Node:
    span: Span = field(default=NOSPAN, repr=False, compare=False, kw_only=True)


# ---------------------------------------------------------------- expressions

@record(eq=False)
class Expr(Node):
    type: object = _checked()
    # a pointer this integer stands for (kptr/uptr, ptr ± n): PtrT
    ptr_base: object = _checked()


@record(eq=False)
class Integer(Expr):
    value: int
    # the source literal it was parsed from, for the object cache (cache.Literals)
    literal: object = _checked()


class Literal:
    """One integer literal of the source that the object cache may supply at load
    time (`cache.Literals`): the lowering reads it from `.rodata` slot `index`.
    Any read of the node's `value` (a pass that decides something by it) marks it
    `read`: such a literal is part of the program's shape. Copies of the AST
    share it."""
    __slots__ = ("index", "read", "lowered")

    def __init__(self, index: int):
        self.index, self.read, self.lowered = index, False, False

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def _read_value(node):
    lit = node.__dict__.get("literal")
    if lit is not None:
        lit.read = True
    return node.__dict__["value"]


def _write_value(node, value):
    node.__dict__["value"] = value


Integer.value = property(_read_value, _write_value)


def peek_value(node: Integer) -> int:
    """The value without marking the literal read: for decisions that are the same
    for every value a cached literal may take (0 .. 2**31-1)."""
    return node.__dict__["value"]


@record(eq=False)
class String(Expr):
    value: bytes          # escapes already decoded, no trailing NUL
    from_positional: bool = field(default=False, repr=False, compare=False, kw_only=True)


@record(eq=False)
class Builtin(Expr):
    """A bare identifier: pid, comm, args, arg0, retval, curtask, ..."""
    name: str
    const_value: object = _checked()     # an enum/macro constant: its int value
    ctx_slot: object = _checked()        # kfunc retval: its u64 context slot


@record(eq=False)
class Positional(Expr):
    """$1 .. $N; index 0 never appears."""
    index: int


@record(eq=False)
class PositionalCount(Expr):
    """$#"""


@record(eq=False)
class Variable(Expr):
    """A scratch variable; name includes the '$'."""
    name: str


@record(eq=False)
class Map(Expr):
    """@name or @name[k1, k2]; name includes the '@' ('@' alone for the anonymous map).
    keys is None for a keyless map."""
    name: str
    keys: list[Expr] | None = None


@record(eq=False)
class Call(Expr):
    name: str
    args: list[Expr] = field(default_factory=list)
    # what an entry's check decided for its lowering (trace/builtins/)
    top_div: object = _checked()         # print(@m, top, div): [top, div]
    signal: object = _checked()          # signal(): the constant signal number
    reg_offset: object = _checked()      # reg(): the pt_regs offset
    resolved: object = _checked()        # uaddr(): the resolved symbol
    limit: object = _checked()           # strncmp(): n
    addr: object = _checked()            # kaddr(): the address
    const_len: object = _checked()       # buf(): a constant length
    addr_bytes: object = _checked()      # pton(): the address bytes
    inode: object = _checked()           # cgroupid(): the cgroup's inode
    offset: object = _checked()          # skboutput(): the packet's offset (user space)
    async_id: object = _checked()        # a call that sends a record: its action (resources pass)
    value_type: object = _checked()      # print(value): the type it is printed as (a copy)


@record(eq=False)
class Binary(Expr):
    op: str               # + - * / % & | ^ << >> == != < <= > >= && ||
    left: Expr
    right: Expr
    op_span: Span | None = _checked()


@record(eq=False)
class Unary(Expr):
    op: str               # - ! ~ * (deref)
    operand: Expr
    deref_size: object = _checked()      # *p of a plain pointer: bytes read
    kderef: object = _checked()          # *p of a typed pointer: types.kernel.Access


@record(eq=False)
class IncDec(Expr):
    op: str               # "++" or "--"
    prefix: bool
    target: Expr          # Map or Variable


@record(eq=False)
class Ternary(Expr):
    cond: Expr
    then: Expr
    orelse: Expr


@record(eq=False)
class Cast(Expr):
    type_name: str        # "uint8" .. "int64", "struct foo *", or "a_typedef *"
    operand: Expr
    type_span: Span | None = None      # `(type)`


@record(eq=False)
class Tuple(Expr):
    elements: list[Expr]


@record(eq=False)
class FieldAccess(Expr):
    """expr->field (arrow=True) or expr.field; tuple access $t.0 has field "0"."""
    expr: Expr
    field: str
    arrow: bool = False
    field_info: object = _checked()      # args->f of a tracepoint: its format field
    kaccess: object = _checked()         # a struct member: types.kernel.Access
    ctx_slot: object = _checked()        # args->f over BTF parameters: its u64 context slot


@record(eq=False)
class Index(Expr):
    expr: Expr
    index: Expr
    kaccess: object = _checked()         # a constant index into a typed array: types.kernel.Access


@record(eq=False)
class Sizeof(Expr):
    """sizeof(type) has type_name set; sizeof(expr) has operand set."""
    type_name: str | None = None
    operand: Expr | None = None
    size: object = _checked()   # checked


# ---------------------------------------------------------------- statements

@record(eq=False)
class Stmt(Node):
    pass


@record(eq=False)
class ExprStmt(Stmt):
    expr: Expr


@record(eq=False)
class Assign(Stmt):
    """target = value, or a compound assignment: op is "+" for "+=", None for "="."""
    target: Expr          # Map or Variable
    value: Expr
    op: str | None = None
    op_span: Span | None = _checked()


@record(eq=False)
class If(Stmt):
    cond: Expr
    then: list[Stmt]
    orelse: list[Stmt] | None = None   # "else if" is an If inside orelse


@record(eq=False)
class Unroll(Stmt):
    count: Expr
    body: list[Stmt]


@record(eq=False)
class While(Stmt):
    cond: Expr
    body: list[Stmt]


@record(eq=False)
class Break(Stmt):
    pass


@record(eq=False)
class Continue(Stmt):
    pass


@record(eq=False)
class Return(Stmt):
    pass


# ---------------------------------------------------------------- top level

@record(eq=False)
class AttachPoint(Node):
    """The attach point as written, e.g. 'tracepoint:syscalls:sys_enter_*' or 'BEGIN'.
    Providers split and expand it; `expanded` is filled by the attach-points pass."""
    raw: str
    provider: str = ""
    target: str = ""       # e.g. "syscalls" / "/bin/bash" / "hz" / "s"
    func: str = ""         # e.g. "sys_enter_openat" / "readline" / "99"
    expanded: list[str] = field(default_factory=list)
    pid: int | None = None   # -p: the process user-space probes are for (units pass)


@record(eq=False)
class Probe(Node):
    attach_points: list[AttachPoint]
    predicate: Expr | None
    body: list[Stmt]


@record(eq=False)
class Program(Node):
    c_definitions: list[str]   # raw preprocessor/struct text before the probes
    probes: list[Probe]
    c_positions: list[tuple] = field(default_factory=list)   # (line, col) of each definition


# ---------------------------------------------------------------- traversal

# the fields the checking passes fill (not children, not printed by dump)
CHECKED = frozenset({"ptr_base", "from_positional", "const_value", "ctx_slot", "top_div",
                     "signal", "reg_offset", "resolved", "limit", "addr", "const_len",
                     "addr_bytes", "inode", "offset", "deref_size", "kderef", "field_info",
                     "kaccess", "size", "async_id", "value_type", "literal"})
_NOT_SHOWN = CHECKED | {"span", "type", "op_span", "c_positions"}


def children(node: Node):
    """Yield the direct child nodes, in source order."""
    if isinstance(node, Integer):   # a leaf (and its value stays unread)
        return
    for f in fields(node):
        if f.name in _NOT_SHOWN:
            continue
        value = getattr(node, f.name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Node):
                    yield item


def walk(node: Node):
    """Pre-order traversal of a subtree."""
    yield node
    for child in children(node):
        yield from walk(child)


def dump(node, indent: int = 0) -> str:
    """A stable, readable tree for golden tests (spans and types omitted unless typed)."""
    pad = "  " * indent
    if isinstance(node, list):
        return "".join(dump(n, indent) for n in node)
    name = type(node).__name__
    scalars = []
    subtrees = []
    for f in fields(node):
        if f.name in _NOT_SHOWN:
            continue
        value = getattr(node, f.name)
        if isinstance(value, Node):
            subtrees.append((f.name, value))
        elif isinstance(value, list) and value and isinstance(value[0], Node):
            subtrees.append((f.name, value))
        elif value is None or value == [] or value == "":
            continue
        else:
            scalars.append(f"{f.name}={value!r}")
    ty = node.type if isinstance(node, Expr) else None
    if ty is not None:
        scalars.append(f": {ty}")
    out = f"{pad}{name}" + (" " + " ".join(scalars) if scalars else "") + "\n"
    for fname, value in subtrees:
        if isinstance(value, list):
            out += f"{pad}  .{fname}\n" + "".join(dump(v, indent + 2) for v in value)
        else:
            out += f"{pad}  .{fname}\n" + dump(value, indent + 2)
    return out
