"""Aggregations: count, sum, min, max, avg, stats, hist, lhist."""
from __future__ import annotations


from ..codegen.builder import const
from ..language.diagnostics import error
from ..types.model import (AggT, IntT, PtrT)
from .registry import (function, nargs, printf_kind)


# ---------------------------------------------------------------- aggregations

def _agg_check(kind):
    def check(ck, node):
        if kind == "count":
            nargs(node, 0)
            return AggT("count", False)
        if kind == "lhist":
            nargs(node, 4)
        else:
            nargs(node, 1)
        t = ck.expr(node.args[0])
        if t is not None and not isinstance(t, (IntT, PtrT)):
            raise error(f"{kind}() only supports integer arguments ({printf_kind(t)} provided)",
                        node.span)
        signed = bool(getattr(t, "signed", False))
        if kind == "lhist":
            params = []
            for i in (1, 2, 3):
                v = ck.fold(node.args[i])
                if v is None:
                    at = ck.expr(node.args[i])
                    raise error(f"lhist() expects a integer literal ({printf_kind(at) if at else 'integer'} "
                                f"provided)", node.span)
                params.append(v)
            lo, hi, step = params
            if lo < 0:
                raise error(f"lhist() min must be non-negative (provided min {lo})", node.span)
            if lo > hi:
                raise error(f"lhist() min must be less than max (provided min {lo} and max {hi})",
                            node.span)
            if step <= 0:
                raise error(f"lhist() step must be >= 1 ({step} provided)", node.span)
            buckets = (hi - lo) // step
            if buckets > 1000:
                raise error(f"lhist() too many buckets, must be <= 1000 (would need {buckets})", node.span)
            return AggT("lhist", signed, (lo, hi, step))
        return AggT(kind, signed if kind != "count" else False)
    return check


def _agg_update(lw, info, key, init_size, init_fill, update_in_place):
    """Look up this CPU's value; update it in place if present, else insert an initial value."""
    fb, b = lw.fb, lw.b
    p = fb.map_lookup(info.gv, key)
    with b.if_else(fb.is_null(p)) as (missing, present):
        with missing:
            buf = fb.scratch(("val", info.name), init_size)
            init_fill(buf)
            lw.update_user_map(info, key, buf)
        with present:
            update_in_place(p)


@function("count", "count(): count events.", _agg_check("count"), "aggregation", "@m = count()")
def _count(lw, node, info, target):
    fb, b = lw.fb, lw.b
    key = lw.map_key(info, target.keys)
    _agg_update(lw, info, key, 8, lambda buf: fb.store(buf, 0, const(1)),
                lambda p: fb.store(p, 0, b.add(fb.load(p, 0), const(1))))


@function("sum", "sum(n): sum of values.", _agg_check("sum"), "aggregation", "@m = sum(n)")
def _sum(lw, node, info, target):
    fb, b = lw.fb, lw.b
    v = lw.expr(node.args[0])
    key = lw.map_key(info, target.keys)
    _agg_update(lw, info, key, 8, lambda buf: fb.store(buf, 0, v),
                lambda p: fb.store(p, 0, b.add(fb.load(p, 0), v)))


def _minmax(kind):
    def lower(lw, node, info, target):
        fb, b = lw.fb, lw.b
        v = lw.expr(node.args[0])
        key = lw.map_key(info, target.keys)
        signed = info.value.signed
        op = "<" if kind == "min" else ">"

        def init(buf):
            fb.store(buf, 0, v)
            fb.store(buf, 8, const(1))

        def update(p):
            cur = fb.load(p, 0)
            is_set = fb.load(p, 8)
            cmp = (b.icmp_signed if signed else b.icmp_unsigned)(op, v, cur)
            better = b.or_(cmp, b.icmp_unsigned("==", is_set, const(0)))
            with b.if_then(better):
                fb.store(p, 0, v)
                fb.store(p, 8, const(1))
        _agg_update(lw, info, key, 16, init, update)
    return lower


function("min", "min(n): minimum value.", _agg_check("min"), "aggregation", "@m = min(n)")(_minmax("min"))
function("max", "max(n): maximum value.", _agg_check("max"), "aggregation", "@m = max(n)")(_minmax("max"))


def _avg_lower(lw, node, info, target):
    fb, b = lw.fb, lw.b
    v = lw.expr(node.args[0])
    key = lw.map_key(info, target.keys)

    def init(buf):
        fb.store(buf, 0, const(1))
        fb.store(buf, 8, v)

    def update(p):
        fb.store(p, 0, b.add(fb.load(p, 0), const(1)))
        fb.store(p, 8, b.add(fb.load(p, 8), v))
    _agg_update(lw, info, key, 16, init, update)


function("avg", "avg(n): average value.", _agg_check("avg"), "aggregation", "@m = avg(n)")(_avg_lower)
function("stats", "stats(n): count, average and total.", _agg_check("stats"), "aggregation",
         "@m = stats(n)")(_avg_lower)


def log2_bucket(lw, v, signed):
    """hist() bucket: 0 for n < 0, 1 for 0, p+2 for 2^p <= n < 2^(p+1)."""
    b = lw.b
    p = const(0)
    x = v
    for s in (32, 16, 8, 4, 2, 1):
        big = b.icmp_unsigned(">=", x, const(1 << s))
        x = b.select(big, b.lshr(x, const(s)), x)
        p = b.select(big, b.add(p, const(s)), p)
    idx = b.add(p, const(2))
    idx = b.select(b.icmp_unsigned("==", v, const(0)), const(1), idx)
    if signed:
        idx = b.select(b.icmp_signed("<", v, const(0)), const(0), idx)
    return idx


def linear_bucket(lw, v, signed, lo, hi, step):
    """lhist() bucket, as bpftrace computes it: 0 below min, 1 + (max-min)/step above max,
    else 1 + (v-min)/step (so a last partial bucket shares the overflow index)."""
    b = lw.b
    cmp = b.icmp_signed if signed else b.icmp_unsigned
    idx = b.add(b.udiv(b.sub(v, const(lo)), const(step)), const(1))
    idx = b.select(cmp(">", v, const(hi)), const(1 + (hi - lo) // step), idx)
    idx = b.select(cmp("<", v, const(lo)), const(0), idx)
    return idx


def _hist_lower(kind):
    def lower(lw, node, info, target):
        fb, b = lw.fb, lw.b
        v = lw.expr(node.args[0])
        signed = bool(getattr(node.args[0].type, "signed", False))
        if kind == "hist":
            bucket = log2_bucket(lw, v, signed)
        else:
            bucket = linear_bucket(lw, v, signed, *info.value.lhist)
        key = lw.map_key(info, target.keys, bucket=bucket)
        _agg_update(lw, info, key, 8, lambda buf: fb.store(buf, 0, const(1)),
                    lambda p: fb.store(p, 0, b.add(fb.load(p, 0), const(1))))
    return lower


function("hist", "hist(n): log2 histogram.", _agg_check("hist"), "aggregation", "@m = hist(n)")(
    _hist_lower("hist"))
function("lhist", "lhist(n, min, max, step): linear histogram.", _agg_check("lhist"), "aggregation",
         "@m = lhist(n, min, max, step)")(_hist_lower("lhist"))
