"""Desugaring: filters become `if`, positional parameters become literals."""
from __future__ import annotations

from typing import List

from .. import ast
from ..diagnostics import error


def filters_to_if(program: ast.Program) -> ast.Program:
    for probe in program.probes:
        if probe.predicate is not None:
            pred = probe.predicate
            probe.body = [ast.If(pred, probe.body, None, span=pred.span)]
            probe.predicate = None
    return program


def _is_number(text: str) -> bool:
    try:
        int(text, 0)
        return True
    except ValueError:
        return text.isdigit()


def _number(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return int(text, 10)


def positional_params(program: ast.Program, params: List[str]) -> ast.Program:
    """$N → Integer (numeric or unset) or String (inside str()); $# → Integer."""

    def param(index: int):
        return params[index - 1] if 0 < index <= len(params) else None

    def rewrite(node):
        if isinstance(node, ast.Call) and node.name == "str" and node.args \
                and isinstance(node.args[0], ast.Positional):
            pos = node.args[0]
            text = param(pos.index)
            lit = ast.String((text or "").encode(), span=pos.span)
            if len(node.args) == 1:
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
        if probe.predicate is not None:
            probe.predicate = rewrite(probe.predicate)
        probe.body = [rewrite(s) for s in probe.body]
    return program


def _rewrite_children(node, fn):
    from dataclasses import fields
    for f in fields(node):
        if f.name in ("span", "type"):
            continue
        value = getattr(node, f.name)
        if isinstance(value, ast.Node):
            setattr(node, f.name, fn(value))
        elif isinstance(value, list):
            setattr(node, f.name, [fn(v) if isinstance(v, ast.Node) else v for v in value])
