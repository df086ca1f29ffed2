"""The registry of builtins and functions: the mechanism and the shared argument checks.

Each entry holds its name, kind ("variable", "function" or "aggregation"), its
typing rule (`check(checker, node) -> Type`), its lowering
(`lower(lowerer, node, ...) -> value`) and its documentation. User-space
formatting follows from the type each entry returns (its manifest descriptor).
The entries live in this package's topic modules; `pytrace.builtins` imports
them all.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from ..runtime.record import record
from ..language import ast
from ..language.diagnostics import CompileError, error
from ..types.model import (BufT, IntT, NoneT, PtrT, TupleT, bpftrace_name, packed, pointer_of)


@record(frozen=True)
class InternalMap:
    """A map the program needs besides the script's: the resources pass allocates
    each once (by symbol) and codegen defines it."""
    symbol: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int


@record
class Entry:
    name: str
    kind: str
    doc: str
    check: Callable
    lower: Callable
    signature: str = ""
    action: Callable | None = None   # node -> the async action its record asks for
    maps: Callable | None = None     # (node, options) -> the internal maps it needs


_VARIABLES: dict[str, Entry] = {}
_FUNCTIONS: dict[str, Entry] = {}


def lookup_builtin(name: str) -> Entry | None:
    if re.fullmatch(r"arg[0-9]|sarg[0-9]|retval|func", name):
        return _VARIABLES.get("arg*")
    return _VARIABLES.get(name)


def lookup_function(name: str) -> Entry | None:
    return _FUNCTIONS.get(name)


def all_entries():
    return sorted(list(_VARIABLES.values()) + list(_FUNCTIONS.values()), key=lambda e: e.name)


def variable(name, doc, type_=None, maps=None):
    """Register a builtin variable. With type_, the typing rule is that constant type."""
    def deco(fn):
        if type_ is not None:
            _VARIABLES[name] = Entry(name, "variable", doc, lambda ck, node: type_, fn, maps=maps)
        else:
            _VARIABLES[name] = Entry(name, "variable", doc, fn.check, fn.lower, maps=maps)
        return fn
    return deco


def function(name, doc, check, kind="function", signature="", action=None, maps=None):
    """Register a function: its typing rule `check`, the decorated lowering, and
    what the resources pass allocates for a call: its async `action`, its `maps`."""
    def deco(lower):
        _FUNCTIONS[name] = Entry(name, kind, doc, check, lower, signature, action, maps)
        return lower
    return deco


def record_layout(types, action: dict) -> dict:
    """The action with the offsets of its arguments in the record ({u64 id; args...})."""
    offsets, _ = packed(types, 8)
    layout = [{"offset": off, "type": t.descriptor()} for off, t in zip(offsets, types)]
    if "args" in action:
        action["args"] = layout
    elif "arg" in action:
        action["arg"] = layout[0]
    return action


# ---------------------------------------------------------------- argument checks

def nargs(node, low, high=None):
    n = len(node.args)
    high = low if high is None else high
    if low == high and n != low:
        if low == 0:
            raise error(f"{node.name}() requires no arguments ({n} provided)", node.span)
        if low == 1:
            raise error(f"{node.name}() requires one argument ({n} provided)", node.span)
        raise error(f"{node.name}() requires {low} arguments ({n} provided)", node.span)
    if n < low:
        what = "one argument" if low == 1 else f"{low} arguments"
        raise error(f"{node.name}() requires at least {what} ({n} provided)", node.span)
    if high is not None and n > high:
        if high == 0:
            raise error(f"{node.name}() requires no arguments ({n} provided)", node.span)
        what = "one argument" if high == 1 else f"{high} arguments"
        raise error(f"{node.name}() takes up to {what} ({n} provided)", node.span)


def int_arg(ck, node, i, what="integer"):
    t = ck.expr(node.args[i])
    if t is not None and not isinstance(t, (IntT, PtrT)):
        raise error(f"{node.name}() only supports {what} arguments ({printf_kind(t)} provided)",
                    node.span)
    return t


def literal_int(ck, node, i, what="integer literal"):
    v = ck.fold(node.args[i])
    if v is None:
        try:
            t = ck.expr(node.args[i])
        except CompileError:
            t = NoneT()
        raise error(f"{node.name}() expects a {what} ({printf_kind(t) if t else 'none'} provided)",
                    node.span)
    return v


def call_to_map_span(node, m):
    """bpftrace reports a map passed to a function (undefined, wrong keys) from the call's
    start to the map's end: `print(@x` in `print(@x, 1)`."""
    return ast.Span(node.span.line, node.span.col, m.span.end_line, m.span.end_col)


def map_arg(ck, node, i=0):
    m = node.args[i]
    if not isinstance(m, ast.Map):
        raise error(f"{node.name}() expects a map to be provided", node.span)
    return m


def printf_kind(t):
    if t is None:               # an expression with no value (a map used as an argument)
        return "none"
    if isinstance(t, BufT):
        return "buffer"
    if t.prints_as_string:
        return "string"
    if isinstance(t, (IntT, PtrT)):
        return "integer"
    if isinstance(t, TupleT):
        return "tuple"
    return bpftrace_name(t)


def check_unsafe(ck, node):
    if not ck.options.unsafe:
        raise error(f"{node.name}() is an unsafe function being used in safe mode", node.span)


def reads_user(lw, node) -> bool:
    """Whether a pointer value reads user memory: a typed pointer says so itself; a plain
    integer (arg0 of a uprobe) is in the probe's address space."""
    ptr = pointer_of(node)
    if ptr is not None:
        return ptr.user
    return lw.unit.provider.user_space


def string_literal_arg(ck, node) -> str:
    """The one argument of reg("..."), uaddr("..."): a string literal."""
    nargs(node, 1)
    if not isinstance(node.args[0], ast.String):
        t = ck.expr(node.args[0])
        raise error(f"{node.name}() expects a string literal ({printf_kind(t) if t else 'none'} "
                    f"provided)", node.span)
    ck.expr(node.args[0])
    return node.args[0].value.decode("utf-8", "replace")
