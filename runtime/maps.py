"""Map reading and writing from user space.

``dump(m)`` returns every entry as ``(key_bytes, [value_bytes, ...])``: one
value per possible CPU for per-CPU maps (each ``value_size`` bytes, cut from
the kernel's ``round_up(value_size, 8)`` slots), a one-element list
otherwise.  Uses BPF_MAP_LOOKUP_BATCH, falling back to GET_NEXT_KEY +
LOOKUP_ELEM for map types without batch support.

``m`` is anything with ``fd, type, key_size, value_size, max_entries``
(e.g. ``loader.LoadedMap``).
"""

import ctypes
import errno as E

from . import syscall as S
from . import uapi as U
from .cpus import possible_cpus
from .errors import BpfError

_possible = None


def num_possible_cpus() -> int:
    global _possible
    if _possible is None:
        _possible = len(possible_cpus())
    return _possible


def round_up8(n: int) -> int:
    return (n + 7) & ~7


def is_percpu(m) -> bool:
    return m.type in U.PERCPU_MAP_TYPES


def elem_value_size(m) -> int:
    """Bytes of one element's value as the syscalls exchange it."""
    if is_percpu(m):
        return round_up8(m.value_size) * num_possible_cpus()
    return m.value_size


def split_value(m, raw: bytes) -> list:
    """Raw syscall value bytes → [value per CPU] (or [value])."""
    vs = m.value_size
    if not is_percpu(m):
        return [raw[:vs]]
    stride = round_up8(vs)
    return [raw[i:i + vs] for i in range(0, stride * num_possible_cpus(), stride)]


def join_value(m, values) -> bytes:
    """[value per CPU] (or a single bytes value, replicated) → syscall bytes."""
    vs = m.value_size
    if not is_percpu(m):
        v = values if isinstance(values, (bytes, bytearray)) else values[0]
        return bytes(v).ljust(vs, b"\0")[:vs]
    stride = round_up8(vs)
    n = num_possible_cpus()
    if isinstance(values, (bytes, bytearray)):
        values = [values] * n
    return b"".join(bytes(v).ljust(stride, b"\0")[:stride] for v in values)


# ------------------------------------------------------------------ reading

BATCH_SIZE = 4096
_BATCH_UNSUPPORTED = (E.EINVAL, E.EOPNOTSUPP, U.ENOTSUPP, E.ENOSYS)


def lookup(m, key: bytes):
    """[value per CPU] for ``key``, or None."""
    raw = S.map_lookup(m.fd, key, elem_value_size(m))
    return None if raw is None else split_value(m, raw)


def dump(m, batch_size: int = BATCH_SIZE) -> list:
    """Every (key, [values]) of the map, in the kernel's iteration order."""
    if m.type in (U.BPF_MAP_TYPE_RINGBUF, U.BPF_MAP_TYPE_PERF_EVENT_ARRAY,
                  U.BPF_MAP_TYPE_PROG_ARRAY):
        return []
    try:
        return _dump_batch(m, batch_size)
    except _NoBatch:
        return _dump_keys(m)


class _NoBatch(Exception):
    pass


class Dump:
    """A batched dump kept as two flat buffers (keys; values, one slot per CPU for
    per-CPU maps). Iterating gives (key bytes, [value bytes per CPU]); bulk readers
    use the buffers directly."""

    def __init__(self, n, key_size, keys, elem_size, values, value_size, ncpu, percpu):
        self.n, self.key_size, self.keys = n, key_size, keys
        self.elem_size, self.values, self.value_size = elem_size, values, value_size
        self.ncpu, self.percpu = ncpu, percpu

    def __len__(self):
        return self.n

    def __eq__(self, other):
        return list(self) == list(other)

    def __getitem__(self, i):
        return list(self)[i]

    def __iter__(self):
        ks, evs, vs = self.key_size, self.elem_size, self.value_size
        stride = round_up8(vs) if self.percpu else vs
        kraw, vraw = self.keys, self.values
        for i in range(self.n):
            base = i * evs
            yield (kraw[i * ks:(i + 1) * ks],
                   [vraw[base + c * stride: base + c * stride + vs] for c in range(self.ncpu)])


def _dump_batch(m, batch_size):
    ks = m.key_size
    evs = elem_value_size(m)
    count = max(1, min(batch_size, m.max_entries or batch_size))
    keys = ctypes.create_string_buffer(ks * count)
    vals = ctypes.create_string_buffer(evs * count)
    tok = max(ks, 8)
    in_b = None
    out_b = ctypes.create_string_buffer(tok)
    key_chunks, value_chunks, total = [], [], 0
    first = True
    percpu = is_percpu(m)
    vs = m.value_size
    ncpu = num_possible_cpus() if percpu else 1
    while True:
        try:
            n, done = S.map_lookup_batch(m.fd, in_b, out_b, keys, vals, count)
        except BpfError as e:
            if first and e.errno in _BATCH_UNSUPPORTED:
                raise _NoBatch() from None
            if e.errno == E.ENOSPC:  # a hash bucket larger than count
                count *= 2
                keys = ctypes.create_string_buffer(ks * count)
                vals = ctypes.create_string_buffer(evs * count)
                continue
            raise
        first = False
        if n:
            key_chunks.append(ctypes.string_at(keys, n * ks))
            value_chunks.append(ctypes.string_at(vals, n * evs))
            total += n
        if done:
            return Dump(total, ks, b"".join(key_chunks), evs, b"".join(value_chunks), vs, ncpu, percpu)
        in_b = ctypes.create_string_buffer(out_b.raw, tok)


def _dump_keys(m):
    out = []
    evs = elem_value_size(m)
    key = None
    while True:
        nxt = S.map_get_next_key(m.fd, key, m.key_size)
        if nxt is None:
            return out
        raw = S.map_lookup(m.fd, nxt, evs)
        if raw is not None:
            out.append((nxt, split_value(m, raw)))
        key = nxt


def keys(m) -> list:
    out = []
    key = None
    while True:
        nxt = S.map_get_next_key(m.fd, key, m.key_size)
        if nxt is None:
            return out
        out.append(nxt)
        key = nxt


# ------------------------------------------------------------------ writing

def update(m, key: bytes, values, flags: int = U.BPF_ANY) -> None:
    S.map_update(m.fd, key, join_value(m, values), flags)


def delete(m, key: bytes) -> bool:
    return S.map_delete(m.fd, key)


def clear(m) -> None:
    """Delete every entry; array maps (e.g. a keyless count) are zeroed."""
    if m.type in U.ARRAY_MAP_TYPES:
        zero(m)
        return
    ks = keys(m)
    if not ks:
        return
    n = 0
    try:
        buf = ctypes.create_string_buffer(b"".join(ks), len(ks) * m.key_size)
        n = S.map_delete_batch(m.fd, buf, len(ks))
    except BpfError:
        n = 0
    for k in ks[n:]:
        S.map_delete(m.fd, k)


def zero(m, kind: str = None) -> None:
    """Set every existing value to zero (every slot of an array).

    ``kind`` is the manifest map kind: for ``min``/``max`` maps (per-CPU
    ``{i64 value; u64 is_set}``) the value is zeroed but each slot's
    ``is_set`` flag is kept, so a zeroed entry still exists and prints 0
    (as in bpftrace, where ``zero()`` leaves the keys in place).
    """
    keep_flag = kind in ("min", "max") and m.value_size >= 16
    evs = elem_value_size(m)
    zeros = bytes(evs)
    if m.type in U.ARRAY_MAP_TYPES:
        ks = [i.to_bytes(4, "little") for i in range(m.max_entries)]
    else:
        ks = keys(m)
    for k in ks:
        val = zeros
        if keep_flag:
            cur = S.map_lookup(m.fd, k, evs)
            if cur is None:
                continue
            buf = bytearray(evs)
            stride = round_up8(m.value_size) if is_percpu(m) else evs
            for base in range(0, evs, stride):
                buf[base + 8:base + 16] = cur[base + 8:base + 16]
            val = bytes(buf)
        try:
            S.map_update(m.fd, k, val, U.BPF_EXIST if m.type not in U.ARRAY_MAP_TYPES
                         else U.BPF_ANY)
        except BpfError as e:
            if e.errno != E.ENOENT:
                raise


# ------------------------------------------------------------------ for the output module

class MapsReader:
    """Read access to a session's maps by bpftrace name (``@x``) or symbol, for
    the async actions and the output layer (``Output.set_maps_reader``)."""

    def __init__(self, loaded, manifest):
        self._loaded = loaded
        self._metas = {mm.name: mm for mm in manifest.maps}

    def meta(self, name: str):
        """The manifest's UserMap named ``name``."""
        return self._metas[name]

    def kernel_map(self, name_or_symbol: str):
        mm = self._metas[name_or_symbol] if name_or_symbol in self._metas else None
        sym = mm.symbol if mm else name_or_symbol
        return self._loaded.maps[sym]

    def entries(self, name_or_symbol: str) -> list:
        """(key, [values]) of a map (see ``dump``)."""
        return dump(self.kernel_map(name_or_symbol))

    def lookup(self, name_or_symbol: str, key: bytes):
        return lookup(self.kernel_map(name_or_symbol), key)
