"""Folding: what a program's text fixes before any typing.

- an `unroll` count becomes an integer literal (1..100; literals with unary minus
  and + - * fold);
- `sizeof(TYPE)` gets its size (the integer names, in-script C types, then BTF);
- an identifier that is no builtin but names a constant (a script `#define`, a
  BTF enumerator, a well-known macro) gets its value in `const_value`.

Unknown names are left for the type checker to report, where it meets them.
"""
from __future__ import annotations

from ..builtins import lookup_builtin
from ..language import ast
from ..language.diagnostics import error
from ..types.model import INT_TYPES
from .units import Unit

UNROLL_MIN, UNROLL_MAX = 1, 100


def fold(units: list[Unit], structs) -> None:
    for unit in units:
        for stmt in unit.body:
            for node in ast.walk(stmt):
                _FOLDS.get(type(node), _nothing)(node, structs)


def _nothing(node, structs):
    pass


def integer(e) -> int | None:
    """Value of an integer-literal expression (literals, unary minus, + - *), else None."""
    if isinstance(e, ast.Integer):
        return e.value
    if isinstance(e, ast.Unary) and e.op == "-":
        v = integer(e.operand)
        return None if v is None else -v
    if isinstance(e, ast.Binary) and e.op in ("+", "-", "*"):
        a, b = integer(e.left), integer(e.right)
        if a is None or b is None:
            return None
        return {"+": a + b, "-": a - b, "*": a * b}[e.op]
    return None


def _unroll(s: ast.Unroll, structs):
    n = integer(s.count)
    if n is None:
        raise error("unroll expects an integer literal", s.count.span)
    head = ast.Span(s.span.line, s.span.col, s.count.span.end_line, s.count.span.end_col + 1)
    if n > UNROLL_MAX:
        raise error(f"unroll maximum value is {UNROLL_MAX}", head)
    if n < UNROLL_MIN:
        raise error(f"unroll minimum value is {UNROLL_MIN}", head)
    s.count = ast.Integer(n, span=s.count.span)


def _sizeof(e: ast.Sizeof, structs):
    if isinstance(e.operand, ast.Builtin) and lookup_builtin(e.operand.name) is None \
            and structs.size_of(e.operand.name) is not None:
        e.type_name, e.operand = e.operand.name, None      # sizeof(a_typedef_name)
    if e.type_name is None:
        return                          # sizeof(expr): its operand's type decides
    t = INT_TYPES.get(e.type_name)
    size = t.bits // 8 if t is not None else structs.size_of(e.type_name)
    if size is None:
        from ..types import kernel      # start-up: the BTF reader only when a type is named
        size = kernel.sizeof_type(e.type_name)
    e.size = size


def _identifier(e: ast.Builtin, structs):
    if lookup_builtin(e.name) is None:
        from ..types import kernel      # start-up: the BTF reader only when a constant is named
        e.const_value = kernel.constant(e.name, structs)


_FOLDS = {ast.Unroll: _unroll, ast.Sizeof: _sizeof, ast.Builtin: _identifier}
