"""Desugaring: filters become `if`, positional parameters become literals."""
from __future__ import annotations

import re

from ..language import ast
from ..language.diagnostics import error
from ..runtime.record import fields
from ..types.model import STRLEN


def filters_to_if(program: ast.Program) -> ast.Program:
    for probe in program.probes:
        if probe.predicate is not None:
            pred = probe.predicate
            probe.body = [ast.If(pred, probe.body, None, span=pred.span)]
            probe.predicate = None
    return program


# C's strtoll(s, 0) over the whole text, as bpftrace reads a numeric positional
# parameter: 0x1f hexadecimal, 0775 octal, 123 decimal, an optional sign
_C_INT = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _is_number(text: str) -> bool:
    return _C_INT.fullmatch(text) is not None


def _number(text: str) -> int:
    sign, digits = _C_INT.fullmatch(text).groups()
    value = int(digits, 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") else 10)
    return -value if sign == "-" else value


STR_MAX = STRLEN - 1   # str() keeps at most BPFTRACE_STRLEN - 1 characters


def op_span(node) -> ast.Span:
    """Where the operator token of a Binary node is (recorded by the parser)."""
    return node.op_span or node.span


def _contains_positional(node) -> bool:
    return any(isinstance(n, ast.Positional) for n in ast.walk(node))


def positional_params(program: ast.Program, params: list[str]) -> ast.Program:
    """$N → Integer (numeric or unset) or String (inside str()); $# → Integer."""

    def param(index: int):
        return params[index - 1] if 0 < index <= len(params) else None

    def str_literal(node, text: bytes, span):
        lit = ast.String(text[:STR_MAX], span=span)
        lit.from_positional = True
        return lit

    def str_operand(call):
        """The string a positional parameter gives inside str(): `str($N)` or
        `str($N + k)` / `str(k + $N)` (the text from offset k), as bpftrace."""
        arg = call.args[0]
        if isinstance(arg, ast.Positional):
            return str_literal(call, (param(arg.index) or "").encode(), arg.span)
        if not isinstance(arg, ast.Binary) or not _contains_positional(arg):
            return None
        pos = other = None
        if isinstance(arg.left, ast.Positional):
            pos, other = arg.left, arg.right
        elif isinstance(arg.right, ast.Positional):
            pos, other = arg.right, arg.left
        if pos is None:
            raise error("str() only accepts positional parameters directly or with a single "
                        "constant offset added", call.span)
        text = (param(pos.index) or "").encode()
        if arg.op != "+" or not isinstance(other, ast.Integer) or not 0 <= other.value <= len(text):
            ops = op_span(arg)
            raise error(f"only addition of a single constant less or equal to the length of "
                        f"${pos.index} (which is {len(text)}) is allowed inside str()",
                        ast.Span(ops.line, ops.col, arg.span.end_line, arg.span.end_col))
        return str_literal(call, text[other.value:], arg.span)

    def rewrite(node):
        if isinstance(node, ast.Call) and node.name == "str" and node.args:
            lit = str_operand(node)
            if lit is not None:
                if len(node.args) == 1:
                    return lit
                node.args[1] = rewrite(node.args[1])
                if isinstance(node.args[1], ast.Integer):
                    # str($1, n): at most n characters
                    lit.value = lit.value[:max(0, node.args[1].value)]
                    return lit
                node.args[0] = lit
                return node
        if isinstance(node, ast.Positional):
            text = param(node.index)
            if text is None or text == "":
                return ast.Integer(0, span=node.span)
            if not _is_number(text):
                raise error(f'${node.index} used numerically but given "{text}". Try using str(${node.index}).',
                            node.span)
            return ast.Integer(_number(text), span=node.span)
        if isinstance(node, ast.PositionalCount):
            return ast.Integer(len(params), span=node.span)
        _rewrite_children(node, rewrite)
        return node

    for probe in program.probes:
        for ap in probe.attach_points:      # `uprobe:$1:func`, `i:ms:$2`: the parameter's text
            if "$" in ap.raw:
                ap.raw = re.sub(r"\$(\d+)", lambda m: param(int(m.group(1))) or "", ap.raw)
        if probe.predicate is not None:
            probe.predicate = rewrite(probe.predicate)
        probe.body = [rewrite(s) for s in probe.body]
    return program


def _rewrite_children(node, fn):
    if isinstance(node, ast.Integer):   # a leaf (and its value stays unread: cache.Literals)
        return
    for f in fields(node):
        if f.name in ("span", "type"):
            continue
        value = getattr(node, f.name)
        if isinstance(value, ast.Node):
            setattr(node, f.name, fn(value))
        elif isinstance(value, list):
            setattr(node, f.name, [fn(v) if isinstance(v, ast.Node) else v for v in value])
