"""bpftrace 0.17 ``-f json`` output (``JsonOutput`` in ``src/output.cpp``).

One JSON object per line, ``{"type": T, "data": D}``.  Pure functions from
the value model to ``str``.

Deviations from 0.17 (places where it emits wrong values or invalid JSON):

* bytes >= 0x80 in strings are written as they are (UTF-8 stays UTF-8);
  0.17 sign-extends them into ``\\uffffffc3``.
* hist buckets above 2^32 get their real bounds (see text.py); when lhist's
  last bucket is partial, the overflow bucket is ``{"min": lo}`` with its
  real lower bound (0.17: ``{"min": max}``).
* a pointer value is written as a JSON string ``"0x.."`` (0.17 would write a
  bare ``0x..``; it never printed pointer values).
"""

from __future__ import annotations

from .text import hist_bounds, lhist_bounds, lhist_bucket_count, value_text
from .values import AvgValue, ByteArray, CRecord, HistValue, MapModel, Ptr, Stack, c_div

__all__ = ["json_escape", "json_value", "map_json", "message_json",
           "value_json", "attached_json", "lost_json"]


def json_escape(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch < "\x20":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def _quote(s: str) -> str:
    return '"' + json_escape(s) + '"'


def json_value(v, div: int = 1) -> str:
    """A decoded value as JSON: strings quoted, tuples as arrays."""
    if isinstance(v, ByteArray):
        return "[" + ",".join("%d" % b for b in v) + "]"
    if isinstance(v, (bytes, str, Stack)):
        return _quote(value_text(v))
    if isinstance(v, Ptr):                  # 0.17: a number as a value
        return "%d" % int(v)
    if isinstance(v, int):
        if div and div != 1:
            v = c_div(v, div)
        return "%d" % v
    if isinstance(v, CRecord):
        return "{ " + ", ".join(f"{_quote(n)}: {json_value(x)}" for n, x in v) + " }"
    if isinstance(v, tuple):                # tuples and C arrays
        return "[" + ",".join(json_value(x, div) for x in v) + "]"
    if v is None:
        return "null"
    return _quote(str(v))


def _key_json(key: tuple) -> str:
    return _quote(",".join(value_text(k, as_key=True) for k in key))


def _hist_json(h: HistValue, div: int) -> str:
    counts = h.counts
    idx = [i for i, c in counts.items() if c > 0]
    if not idx:
        return "[]"
    items = []
    for i in range(min(idx), max(idx) + 1):
        c = counts.get(i, 0) // div
        lo, hi = hist_bounds(i)
        if lo is None:
            items.append('{"max": %d, "count": %d}' % (hi - 1, c))
        else:
            items.append('{"min": %d, "max": %d, "count": %d}' % (lo, hi - 1, c))
    return "[" + ", ".join(items) + "]"


def _lhist_json(h: HistValue, lmin: int, lmax: int, step: int) -> str:
    counts = h.counts
    last = lhist_bucket_count(lmin, lmax, step) + 1
    idx = [i for i, c in counts.items() if c > 0 and i <= last]
    if not idx:
        return "[]"
    items = []
    for i in range(min(idx), max(idx) + 1):
        c = counts.get(i, 0)
        lo, hi = lhist_bounds(i, lmin, lmax, step)
        if lo is None:
            items.append('{"max": %d, "count": %d}' % (hi - 1, c))
        elif hi is None:
            items.append('{"min": %d, "count": %d}' % (lo, c))
        else:
            items.append('{"min": %d, "max": %d, "count": %d}' % (lo, hi - 1, c))
    return "[" + ", ".join(items) + "]"


def _scalar_json(model: MapModel, v, div: int) -> str:
    kind = model.kind
    if kind == "count":
        return "%d" % (v // div)
    if kind in ("sum", "min", "max"):
        return "%d" % c_div(v, div)
    return json_value(v, div)


def _stats_json(model: MapModel, v: AvgValue, div: int) -> str:
    if model.kind == "stats":
        return '{"count": %d, "average": %d, "total": %d}' % (
            v.count, v.average, v.total)
    return "%d" % c_div(v.average, div)


def map_json(model: MapModel, div: int = 0) -> str:
    """One map as a JSON line; an empty map prints nothing (as 0.17)."""
    if not model.entries:
        return ""
    div = div or 1
    if model.is_hist_like:
        mtype = "hist"
        if model.kind == "hist":
            conv = lambda v: _hist_json(v, div)  # noqa: E731
        else:
            lh = model.lhist
            lmin, lmax, step = lh.min, lh.max, lh.step
            conv = lambda v: _lhist_json(v, lmin, lmax, step)  # noqa: E731
    elif model.is_stats_like:
        mtype = "stats"
        conv = lambda v: _stats_json(model, v, div)  # noqa: E731
    else:
        mtype = "map"
        conv = lambda v: _scalar_json(model, v, div)  # noqa: E731
    if model.keyed:
        body = "{" + ", ".join(_key_json(e.key) + ": " + conv(e.value)
                               for e in model.entries) + "}"
    else:
        body = ", ".join(conv(e.value) for e in model.entries)
    return '{"type": "%s", "data": {%s: %s}}\n' % (mtype, _quote(model.name), body)


def message_json(mtype: str, text: str) -> str:
    """printf / time / join / cat / syscall records."""
    return '{"type": "%s", "data": %s}\n' % (mtype, _quote(text))


def helper_error_json(helper: str, retcode: int, line: int, col: int) -> str:
    return ('{"type": "helper_error", "helper": %s, "retcode": %d, "line": %d, "col": %d}\n'
            % (_quote(helper), retcode, line, col))


def value_json(v) -> str:
    return '{"type": "value", "data": %s}\n' % json_value(v)


def attached_json(n: int) -> str:
    return '{"type": "attached_probes", "data": {"probes": %d}}\n' % n


def lost_json(n: int) -> str:
    return '{"type": "lost_events", "data": {"events": %d}}\n' % n
