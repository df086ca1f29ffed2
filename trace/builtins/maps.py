"""delete(), clear(), zero(): whole maps and their elements."""
from __future__ import annotations


from ..language import ast
from ..codegen.builder import I64, const
from ..language.diagnostics import error
from ..types.model import (NoneT)
from .registry import (call_to_map_span, function, nargs)


# ---------------------------------------------------------------- map functions

def _check_delete(ck, node):
    nargs(node, 1)
    m = node.args[0]
    if not isinstance(m, ast.Map):
        raise error("delete() expects a map to be provided", node.span)
    ck.map_keys(m, call_to_map_span(node, m))
    return NoneT()


@function("delete", "delete(@map[key]): remove one element.", _check_delete, signature="delete(@m[k])")
def _delete(lw, node):
    m = node.args[0]
    info = lw.maps[m.name]
    if info.kind not in ("hist", "lhist"):
        lw.fb.map_delete(info.gv, lw.map_key(info, m.keys))
        return const(0)
    # a histogram element is one map entry per bucket: delete them all
    fb, b = lw.fb, lw.b
    if info.kind == "hist":
        buckets = 66
    else:
        lo, hi, step = info.value.lhist
        buckets = 2 + (hi - lo) // step
    key = lw.map_key(info, m.keys, bucket=const(0))
    start = b.block
    loop, done = fb.new_block("delete_bucket"), fb.new_block("delete_done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(const(0), start)
    fb.store(key, info.user_key_size, i)
    fb.map_delete(info.gv, key)
    nxt = b.add(i, const(1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_unsigned("<", nxt, const(buckets)), loop, done)
    b.position_at_end(done)
    return const(0)


def _check_whole_map(ck, node):
    nargs(node, 1)
    m = node.args[0]
    if not isinstance(m, ast.Map):
        raise error(f"{node.name}() expects a map to be provided", node.span)
    if m.keys is not None:
        raise error(f"The map passed to {node.name}() should not be indexed by a key", node.span)
    ck.map_ref(m, call_to_map_span(node, m))
    return NoneT()


@function("clear", "clear(@map): delete every element (asynchronously).", _check_whole_map,
          signature="clear(@m)",
          action=lambda node: {"kind": "clear", "map": node.args[0].name})
def _clear(lw, node):
    lw.send(node, [])
    return const(0)


@function("zero", "zero(@map): set every value to zero (asynchronously).", _check_whole_map,
          signature="zero(@m)",
          action=lambda node: {"kind": "zero", "map": node.args[0].name})
def _zero(lw, node):
    lw.send(node, [])
    return const(0)
