"""Decoded maps as plain Python values (the Python API's ``maps``; docs/api.md).

    plain_maps({name: MapModel}) -> {name: value}

A key-less map gives its value (None when it has none); a keyed map a dict, in
the order bpftrace prints it, whose keys are the key itself for one-key maps and
tuples for multi-key maps.  Values: ints, strings (str, bytes the kernel gave
that are not UTF-8 kept as surrogate escapes, as the text output writes them),
tuples, stacks as lists of frame strings, hist/lhist as a list of ``Bucket``s
(the printed rows: first to last non-empty bucket), avg/stats as ``Stats``.  A
key is hashable: there a stack is a tuple of frames and a C struct a tuple of
(member, value) pairs.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from .text import decode_str, hist_bounds, lhist_bounds, lhist_bucket_count
from .values import AvgValue, Buffer, CRecord, HistValue, MapModel, Ptr, Stack, to_signed64

__all__ = ["Bucket", "Stats", "plain_maps", "plain_map", "plain_value"]


class Bucket(NamedTuple):
    """One histogram bucket: the values ``low <= v < high`` (``low`` None: no lower
    bound, ``high`` None: no upper bound) and how many there were."""
    low: Optional[int]
    high: Optional[int]
    count: int


class Stats(NamedTuple):
    """An avg() or stats() value (``average`` as bpftrace computes it: integer
    division, truncated toward zero)."""
    count: int
    total: int
    average: int


def plain_maps(models: dict) -> dict:
    """{map name: MapModel} -> {map name: plain value}."""
    return {name: plain_map(model) for name, model in models.items()}


def plain_map(model: MapModel):
    if model.flat_keys is not None:
        return _flat_map(model)
    convert = _value_converter(model)
    if not model.keyed:
        entries = model.entries
        return convert(entries[0].value) if entries else None
    single = len(model.fields) == 1
    out = {}
    for e in model.entries:
        key = tuple(plain_value(k, as_key=True) for k in e.key)
        out[key[0] if single else key] = convert(e.value)
    return out


def _flat_map(model: MapModel) -> dict:
    """count/sum maps keyed by ints and strings: from the fast path's rows, a column
    at a time (a 100k-key map is read every second)."""
    if model.packed is not None:        # one integer key
        mask, bias, top, wrap = (1 << 64) - 1, model.bias, 1 << 63, 1 << 64
        return {(k := p & mask) - (k >= top) * wrap: (p >> 64) - bias for p in model.packed}
    rows = model.rows
    if not rows:
        return {}
    values = [v for v, _ in rows]
    columns = [_column(c, is_str) for c, is_str in zip(zip(*(k for _, k in rows)), model.flat_keys)]
    keys = columns[0] if len(columns) == 1 else zip(*columns)
    return dict(zip(keys, values))


def _column(values, is_str: bool) -> list:
    """One key component of every row: strings decoded, ints signed (as printed)."""
    if is_str:
        return [decode_str(c) for c in values]
    top, wrap = 1 << 63, 1 << 64
    return [c - (c >= top) * wrap for c in values]


def _value_converter(model: MapModel):
    if model.kind == "hist":
        return _hist_buckets
    if model.kind == "lhist":
        lh = model.lhist
        return lambda h: _lhist_buckets(h, lh.min, lh.max, lh.step)
    return plain_value


def plain_value(v, as_key: bool = False):
    """One decoded value (runtime.output.values) as a plain Python value."""
    if isinstance(v, Stack):
        frames = [sym for _, sym in v.frames or ()]
        return tuple(frames) if as_key else frames
    if isinstance(v, Buffer):
        return bytes(v)
    if isinstance(v, bytes):
        return decode_str(v)
    if isinstance(v, str):              # Probe, Username, Symbol
        return str(v)
    if isinstance(v, Ptr):
        return int(v)
    if isinstance(v, int):
        return to_signed64(v) if as_key else v     # keys as printed: signed
    if isinstance(v, AvgValue):
        return Stats(v.count, v.total, v.average)
    if isinstance(v, CRecord):
        pairs = tuple((n, plain_value(x, as_key)) for n, x in v)
        return pairs if as_key else dict(pairs)
    if isinstance(v, tuple):            # tuples, C arrays, byte arrays
        return tuple(plain_value(x, as_key) for x in v)
    return v


def _hist_buckets(h: HistValue) -> list:
    idx = [i for i, c in h.counts.items() if c > 0]
    if not idx:
        return []
    return [Bucket(*hist_bounds(i), h.counts.get(i, 0)) for i in range(min(idx), max(idx) + 1)]


def _lhist_buckets(h: HistValue, lmin: int, lmax: int, step: int) -> list:
    last = lhist_bucket_count(lmin, lmax, step) + 1
    idx = [i for i, c in h.counts.items() if c > 0 and i <= last]
    if not idx:
        return []
    return [Bucket(*lhist_bounds(i, lmin, lmax, step), h.counts.get(i, 0))
            for i in range(min(idx), max(idx) + 1)]
