"""bpftrace 0.17 text output.

Pure functions from the value model (values.py) to ``str``.  Byte strings from
the kernel are decoded with ``surrogateescape`` so the writer can put the
original bytes back.

Sources of the formats: ``TextOutput`` in ``src/output.cpp@v0.17.0`` and the
samples in bpftrace-behaviour.md sections 2.3-2.6.  Deviations from 0.17, all
of them places where 0.17 computes a wrong value:

* hist: proper log2 buckets up to 2^64 (0.17 clamps values >= 2^32 into
  ``[2G, 4G)``); labels continue the K/M/G scheme with T, P and E, as
  current bpftrace does.  Bucket counts and bar maxima are not truncated to
  ``int``.
* lhist: when ``(max - min)`` is not a multiple of ``step``, the last index
  ``(max-min)/step + 1`` holds the partial bucket together with the values
  above max (0.17's bucket function, which the compiler keeps).  0.17 labels
  it ``[max, ...)``; pytrace labels it from its real lower bound,
  ``[min + buckets*step, ...)``, as current bpftrace does
  (``lhist(9, 0, 10, 3)`` is counted in ``[9, ...)``).  When step divides
  ``max - min`` the label is ``[max, ...)`` as in 0.17.
* min/max: reduced from ``{value, is_set}`` slots, so an all-negative max()
  and min() >= 2^32 print their real values.
"""

from __future__ import annotations

import struct

from .printf import format_buffer
from .values import (AvgValue, Buffer, ByteArray, CArray, CRecord, HistValue, MapModel, Ptr, Stack, c_div,
                     to_signed64)

__all__ = ["value_text", "key_text", "map_text", "hist_rows", "lhist_rows",
           "lhist_label", "lhist_bounds", "hist_bounds",
           "hist_label", "hist_index_label", "lhist_index_label", "bar_width",
           "lhist_bucket_count", "attached_text", "lost_text", "decode_str"]

BAR_WIDTH = 52

_F32 = struct.Struct("<f")


def decode_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# float32 arithmetic for bar widths

def _f32(x: float) -> float:
    return _F32.unpack(_F32.pack(x))[0]


def _int_to_f32(n: int) -> float:
    """Round a non-negative integer to float32 exactly like C's conversion."""
    if n < (1 << 53):
        return _f32(float(n))       # exact double, then one rounding
    shift = n.bit_length() - 24
    q, r = divmod(n, 1 << shift)
    half = 1 << (shift - 1)
    if r > half or (r == half and q & 1):
        q += 1
    return float(q << shift)


def bar_width(count: int, max_count: int) -> int:
    """``(int)(count / (float)max_count * 52)`` evaluated in float32.

    The float rounding matters: counts 2478135 and 7580178 give 17, where
    exact integer math gives 16 (verified against bpftrace 0.17).
    """
    if max_count <= 0:
        return 0
    q = _f32(_int_to_f32(count) / _int_to_f32(max_count))
    return int(_f32(q * float(BAR_WIDTH)))


def _row(label: str, count: int, bar: int) -> str:
    # setw(16) left label, setw(8) right count, " |", setw(52) left bar, "|"
    return "%-16s%8d |%-52s|\n" % (label, count, "@" * bar)


# --------------------------------------------------------------------------
# hist

_SUFFIXES = ((60, "E"), (50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K"))


def hist_index_label(power: int) -> str:
    """``2^power`` as ``1``, ``512``, ``1K``, ``2M``, ``4G``, ``1T``, ``8E``..."""
    for base, suffix in _SUFFIXES:
        if power >= base:
            return "%d%s" % (1 << (power - base), suffix)
    return "%d" % (1 << power)


def hist_label(index: int) -> str:
    """The row label of log2 bucket ``index`` (0: negative, 1: zero, 2: one,
    ``p + 2``: ``[2^p, 2^(p+1))``)."""
    if index == 0:
        return "(..., 0)"
    if index == 1:
        return "[0]"
    if index == 2:
        return "[1]"
    return "[%s, %s)" % (hist_index_label(index - 2), hist_index_label(index - 1))


def hist_bounds(index: int):
    """``(lo, hi)`` of log2 bucket ``index``, ``hi`` exclusive; ``lo`` is None for the
    bucket of negative values."""
    if index == 0:
        return None, 0
    if index == 1:
        return 0, 1
    return 1 << (index - 2), 1 << (index - 1)


def _nonzero_range(counts: dict):
    idx = [i for i, c in counts.items() if c > 0]
    if not idx:
        return None
    return min(idx), max(idx)


def hist_rows(h: HistValue, div: int = 1) -> str:
    """The rows of one log2 histogram: from the first to the last non-zero
    bucket.  Counts are divided by ``div``; the bars are not (0.17 quirk)."""
    counts = h.counts
    rng = _nonzero_range(counts)
    if rng is None:
        return ""
    div = div or 1
    max_count = max(counts.values())
    out = []
    for i in range(rng[0], rng[1] + 1):
        c = counts.get(i, 0)
        out.append(_row(hist_label(i), c // div, bar_width(c, max_count)))
    return "".join(out)


# --------------------------------------------------------------------------
# lhist

def lhist_index_label(n: int) -> str:
    """0.17 ``lhist_index_label``: ``0``, ``3M``, ``2K``, ``1500``."""
    if n == 0:
        return "0"
    if n % 1048576 == 0:
        return "%dM" % (n // 1048576)
    if n % 1024 == 0:
        return "%dK" % (n // 1024)
    return "%d" % n


def lhist_bucket_count(lmin: int, lmax: int, step: int) -> int:
    """Regular buckets, excluding the underflow and overflow buckets."""
    return (lmax - lmin) // step


def lhist_bounds(index: int, lmin: int, lmax: int, step: int):
    """``(lo, hi)`` of a bucket; ``lo`` is None for the underflow bucket and
    ``hi`` is None for the overflow bucket.  ``hi`` is exclusive.

    The bucket index (computed in BPF, as bpftrace 0.17 does) is 0 for
    ``v < min``, ``1 + (max-min)/step`` for ``v > max``, else
    ``1 + (v-min)/step``; so the overflow bucket starts at
    ``min + buckets*step``, which is ``max`` unless the last bucket is partial.
    """
    nb = lhist_bucket_count(lmin, lmax, step)
    if index == 0:
        return None, lmin
    if index > nb:
        return lmin + nb * step, None
    lo = lmin + (index - 1) * step
    return lo, lo + step


def lhist_label(index: int, lmin: int, lmax: int, step: int) -> str:
    lo, hi = lhist_bounds(index, lmin, lmax, step)
    if lo is None:
        return "(..., %s)" % lhist_index_label(hi)
    if hi is None:
        return "[%s, ...)" % lhist_index_label(lo)
    return "[%s, %s)" % (lhist_index_label(lo), lhist_index_label(hi))


def lhist_rows(h: HistValue, lmin: int, lmax: int, step: int) -> str:
    """The rows of one linear histogram (first to last non-zero bucket).
    print()'s div does not apply to lhist (0.17 quirk)."""
    counts = h.counts
    last = lhist_bucket_count(lmin, lmax, step) + 1
    idx = [i for i, c in counts.items() if c > 0 and i <= last]
    if not idx:
        return ""
    max_count = max(counts.values())
    out = []
    for i in range(min(idx), max(idx) + 1):
        c = counts.get(i, 0)
        out.append(_row(lhist_label(i, lmin, lmax, step), c,
                        bar_width(c, max_count)))
    return "".join(out)


# --------------------------------------------------------------------------
# values and keys

def value_text(v, as_key: bool = False, div: int = 1) -> str:
    """One decoded value as bpftrace prints it.

    ``as_key``: integers print as signed decimal whatever their type (0.17
    map keys).  ``div``: integers (also inside tuples, as 0.17 does) are
    divided by it with C semantics.
    """
    if isinstance(v, Stack):
        return v.text(4 if as_key else 8)
    if isinstance(v, Buffer):
        return decode_str(format_buffer(v, "r"))
    if isinstance(v, ByteArray):
        return str(v)
    if isinstance(v, bytes):
        return decode_str(v)
    if isinstance(v, str):                  # Probe, Username
        return str(v)
    if isinstance(v, Ptr):                  # 0.17: hex in keys, decimal as values
        return "0x%x" % int(v) if as_key else "%d" % int(v)
    if isinstance(v, int):
        if as_key:
            v = to_signed64(v)
        if div and div != 1:
            v = c_div(v, div)
        return "%d" % v
    if isinstance(v, CArray):
        return "[" + ",".join(value_text(x, as_key) for x in v) + "]"
    if isinstance(v, CRecord):
        if as_key:
            return "{" + ",".join(f".{n}={value_text(x, True)}" for n, x in v) + "}"
        return "{ " + ", ".join(f".{n} = {value_text(x)}" for n, x in v) + " }"
    if isinstance(v, tuple):
        return "(" + ", ".join(value_text(x, as_key, div) for x in v) + ")"
    if v is None:
        return ""
    return str(v)


def key_text(model: MapModel, key: tuple) -> str:
    if not model.keyed:
        return ""
    return "[" + ", ".join(value_text(k, as_key=True) for k in key) + "]"


def _scalar_text(model: MapModel, v, div: int) -> str:
    kind = model.kind
    if kind == "count":
        return "%d" % (v // div)
    if kind in ("sum", "min", "max"):
        return "%d" % c_div(v, div)
    return value_text(v, div=div)


def _stats_text(model: MapModel, v: AvgValue, div: int) -> str:
    if model.kind == "stats":          # 0.17 ignores top and div for stats
        return "count %d, average %d, total %d" % (v.count, v.average, v.total)
    return "%d" % c_div(v.average, div)


def _flat_map_text(model: MapModel, div: int) -> str:
    """count/sum maps keyed by ints and strings (see values._scalar_map_model)."""
    name = model.name
    strings = model.flat_keys
    if model.packed is not None and div == 1:        # one integer key: the big-map case
        mask, bias, top, wrap = (1 << 64) - 1, model.bias, 1 << 63, 1 << 64
        lines = ["%s[%d]: %d" % (name, (k := p & mask) - (k >= top) * wrap, (p >> 64) - bias)
                 for p in model.packed]
        return "\n".join(lines) + "\n"
    model.entries                                    # materialises rows from packed
    rows = model.rows
    if div != 1:
        rows = [(v // div if model.kind == "count" else c_div(v, div), k) for v, k in rows]
    if strings == [False]:
        top = 1 << 63
        lines = ["%s[%d]: %d" % (name, k[0] - (k[0] >= top) * (1 << 64), v) for v, k in rows]
    else:
        lines = ["%s[%s]: %d" % (name, ", ".join(
                     decode_str(c) if is_str else "%d" % (c - (1 << 64) if c >= 1 << 63 else c)
                     for c, is_str in zip(k, strings)), v)
                 for v, k in rows]
    return "\n".join(lines) + "\n"


def map_text(model: MapModel, div: int = 0) -> str:
    """A whole map as ``print(@m)`` and the exit dump print it."""
    div = div or 1
    name = model.name
    elems = []
    if model.is_hist_like:
        lh = model.lhist
        for e in model.entries:
            if model.kind == "hist":
                rows = hist_rows(e.value, div)
            else:
                rows = lhist_rows(e.value, lh.min, lh.max, lh.step)
            elems.append(name + key_text(model, e.key) + ": \n" + rows)
        return "\n".join(elems) + "\n"
    if model.is_stats_like:
        for e in model.entries:
            elems.append(name + key_text(model, e.key) + ": "
                         + _stats_text(model, e.value, div))
        return "\n".join(elems) + "\n\n"
    if model.flat_keys is not None:
        return _flat_map_text(model, div)
    for e in model.entries:
        elems.append(name + key_text(model, e.key) + ": "
                     + _scalar_text(model, e.value, div))
    if model.value_desc.get("kind") in ("kstack", "ustack"):
        # a stack text already ends in a newline (0.17 joins these entries with "")
        return "".join(elems) + "\n"
    return "\n".join(elems) + "\n"


def attached_text(n: int) -> str:
    return "Attaching %d probe...\n" % n if n == 1 else "Attaching %d probes...\n" % n


def lost_text(n: int) -> str:
    return "Lost %d events\n" % n
