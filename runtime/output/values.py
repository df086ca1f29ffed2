"""Value model: decode raw bytes by type descriptor, reduce per-CPU map values,
and sort map entries the way bpftrace 0.17 prints them.

Standard library only.  The type descriptors and byte layouts are described in
docs/object-contract.md.

Value model (what the decoders return):

* ``int``       -- ``{"kind": "int"}`` (signed or unsigned per descriptor)
* ``Ptr``       -- ``{"kind": "ptr"}``, an ``int`` subclass printed as ``0x..``
* ``bytes``     -- ``{"kind": "str"}``, the bytes up to the first NUL
* ``tuple``     -- ``{"kind": "tuple"}``, a tuple of decoded fields
* ``Probe``     -- ``{"kind": "probe"}``, a ``str`` subclass (the probe name)
  with ``.index``
* ``Username``  -- ``{"kind": "username"}``, a ``str`` subclass (the user
  name, or the uid in decimal when unknown) with ``.uid``
* ``None``      -- ``{"kind": "none"}``

Aggregation values of maps: ``int`` for count/sum/min/max, :class:`AvgValue`
for avg and stats, :class:`HistValue` for hist and lhist.
"""

from __future__ import annotations

import os
import struct
import time

from ..manifest import UserMap

__all__ = [
    "Ptr", "Probe", "Username", "Stack", "Symbol", "Buffer", "ByteArray", "AvgValue", "HistValue", "MapEntry", "MapModel",
    "UserNames", "DecodeContext", "type_size", "make_decoder", "decode",
    "make_record_decoder",
    "build_map_model", "key_sort_key", "to_signed64", "c_div",
]

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_MASK64 = (1 << 64) - 1


def to_signed64(v: int) -> int:
    v &= _MASK64
    return v - (1 << 64) if v >> 63 else v


def c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


class Ptr(int):
    """A pointer value; printed as ``0x`` + lowercase hex."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Ptr(0x%x)" % int(self)


class Probe(str):
    """The ``probe`` builtin: the probe's full name, with its index."""

    index: int

    def __new__(cls, name: str, index: int):
        obj = super().__new__(cls, name)
        obj.index = index
        return obj


class Username(str):
    """The ``username`` builtin: the user name (or the uid), with the uid."""

    uid: int

    def __new__(cls, name: str, uid: int):
        obj = super().__new__(cls, name)
        obj.uid = uid
        return obj


class Stack:
    """A kernel or user stack: its frames, rendered with the indent of where it is
    printed (4 spaces as a map key, 8 as a value), or in perf mode.  ``frames`` is None
    when the stack id could not be looked up (printed as nothing, like bpftrace)."""

    __slots__ = ("frames", "mode", "user", "sid")

    def __init__(self, frames, mode: str, user: bool, sid: int):
        self.frames = frames        # [(addr, sym_text)], sym_text for the mode
        self.mode = mode
        self.user = user
        self.sid = sid

    def text(self, indent: int = 8) -> str:
        if self.frames is None:
            return ""
        pad = " " * indent
        out = ["\n"]
        for addr, sym in self.frames:
            if self.mode == "perf":
                out.append("\t%x %s\n" % (addr, sym))
            elif self.mode == "raw":
                out.append("%x\n" % addr)
            else:
                out.append(pad + sym + "\n")
        return "".join(out)

    def order(self):
        return tuple(a for a, _ in self.frames or ())

    def __str__(self) -> str:
        return self.text(8)

    def __repr__(self) -> str:
        return "Stack(%r)" % (self.frames,)


class Symbol(str):
    """ksym(), usym(), ntop(), macaddr(), strerror(), strftime(): text resolved in user
    space; ``raw`` is the value it came from (for sorting)."""

    raw: object

    def __new__(cls, text: str, raw):
        obj = super().__new__(cls, text)
        obj.raw = raw
        return obj


class Buffer(bytes):
    """buf(): raw bytes, printed like printf %r."""


class ByteArray(tuple):
    """A byte array (pton()), printed as ``[10,0,0,1]``."""

    def __str__(self) -> str:
        return "[" + ",".join("%d" % b for b in self) + "]"


class CArray(tuple):
    """A copy of a C array: printed ``[1,2,3]`` (nested: ``[[1,2],[3,4]]``)."""


class CRecord(tuple):
    """A copy of a C struct or union: its (member name, value) pairs, printed
    ``{ .a = 1, .b = 2 }`` (as a map key: ``{.a=1,.b=2}``)."""


class AvgValue:
    """The reduced value of an avg() or stats() entry."""

    __slots__ = ("count", "total")

    def __init__(self, count: int, total: int):
        self.count = count
        self.total = total

    @property
    def average(self) -> int:
        return c_div(self.total, self.count) if self.count else 0

    def __eq__(self, other):
        return (isinstance(other, AvgValue) and self.count == other.count
                and self.total == other.total)

    def __repr__(self) -> str:
        return "AvgValue(count=%d, total=%d)" % (self.count, self.total)


class HistValue:
    """The reduced buckets of one hist() / lhist() entry: ``{index: count}``."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict | None = None):
        self.counts = counts if counts is not None else {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __eq__(self, other):
        return isinstance(other, HistValue) and self.counts == other.counts

    def __repr__(self) -> str:
        return "HistValue(%r)" % (self.counts,)


# --------------------------------------------------------------------------
# user names

class UserNames:
    """uid -> user name, read from /etc/passwd once (like bpftrace, not NSS)."""

    def __init__(self, path: str = "/etc/passwd"):
        self.path = path
        self._names: dict | None = None

    def _load(self) -> dict:
        names: dict = {}
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    fields = line.rstrip(b"\n").split(b":")
                    if len(fields) >= 3:
                        try:
                            uid = int(fields[2])
                        except ValueError:
                            continue
                        names.setdefault(
                            uid, fields[0].decode("utf-8", "surrogateescape"))
        except OSError:
            pass
        return names

    def lookup(self, uid: int) -> str:
        if self._names is None:
            self._names = self._load()
        name = self._names.get(uid)
        return name if name is not None else str(uid)


class DecodeContext:
    """What decoding needs beyond the bytes: probe names and user names; for stacks
    the session's maps reader (``maps``, see runtime/maps.py MapsReader) and a
    symbolizer (runtime/symbols.py, created on first use)."""

    def __init__(self, probes=(), usernames: UserNames | None = None, maps=None,
                 symbols=None):
        self.probes = list(probes)
        self.usernames = usernames if usernames is not None else UserNames()
        self.maps = maps
        self._symbols = symbols
        self._stacks: dict = {}

    @property
    def symbols(self):
        if self._symbols is None:
            from ..symbols import Symbolizer    # lazy: start-up time (only stacks, symbols)
            self._symbols = Symbolizer()
        return self._symbols

    def stack_addrs(self, symbol: str, sid: int, limit: int):
        """The frame addresses of stack ``sid`` in the STACK_TRACE map ``symbol``, or None.
        Without BPF_F_REUSE_STACKID a stack id never changes its stack, so it is cached."""
        if sid < 0 or self.maps is None:
            return None
        key = (symbol, sid)
        hit = self._stacks.get(key)
        if hit is not None:
            return hit
        try:
            vals = self.maps.lookup(symbol, struct.pack("<I", sid & 0xFFFFFFFF))
        except Exception:
            vals = None
        if not vals:
            return None
        raw = bytes(vals[0])
        addrs = []
        for i in range(min(limit, len(raw) // 8)):
            a = _U64.unpack_from(raw, 8 * i)[0]
            if a == 0:
                break
            addrs.append(a)
        self._stacks[key] = addrs
        return addrs

    def stack(self, desc: dict, sid: int, pid: int = 0) -> "Stack":
        user = desc["kind"] == "ustack"
        mode = desc.get("mode", "bpftrace")
        addrs = self.stack_addrs(desc["map"], sid, int(desc.get("limit", 127)))
        if addrs is None:
            return Stack(None, mode, user, sid)
        frames = []
        syms = self.symbols
        for a in addrs:
            if mode == "raw":
                frames.append((a, ""))
            elif user:
                frames.append((a, syms.usym(pid, a, True, mode == "perf")))
            else:
                frames.append((a, syms.ksym(a, True)))
        return Stack(frames, mode, user, sid)

    def probe(self, index: int) -> Probe:
        if 0 <= index < len(self.probes):
            return Probe(self.probes[index], index)
        return Probe(str(index), index)

    def username(self, uid: int) -> Username:
        return Username(self.usernames.lookup(uid), uid)


# --------------------------------------------------------------------------
# decoding

def type_size(desc: dict) -> int:
    kind = desc["kind"]
    if kind == "int":
        return int(desc.get("size", 8))
    if kind in ("ptr", "probe", "username", "kstack", "ksym", "macaddr", "strerror",
                "strftime", "cgroup_path"):
        return 8
    if kind in ("ustack", "usym"):
        return 16
    if kind == "record":
        return int(desc["size"])
    if kind == "array":
        return int(desc["count"]) * int(desc["elem_size"])
    if kind == "inet":
        return 24
    if kind == "buf":
        return 8 + int(desc["size"])
    if kind == "bytes":
        return int(desc["count"])
    if kind in ("str", "tuple"):
        return int(desc["size"])
    if kind == "none":
        return 0
    raise ValueError("unknown type descriptor kind %r" % (kind,))


def make_decoder(desc: dict, ctx: DecodeContext):
    """Return ``f(buf, offset) -> value`` for the descriptor."""
    kind = desc["kind"]
    if kind == "int":
        size, signed = int(desc.get("size", 8)), desc.get("signed", True)
        if size != 8:
            return lambda buf, off: int.from_bytes(buf[off:off + size], "little", signed=signed)
        unpack = (_I64 if signed else _U64).unpack_from
        return lambda buf, off: unpack(buf, off)[0]
    if kind in ("record", "array"):
        return _c_value_decoder(desc, ctx)
    if kind == "ptr":
        unpack = _U64.unpack_from
        return lambda buf, off: Ptr(unpack(buf, off)[0])
    if kind == "str":
        size = int(desc["size"])

        def dec_str(buf, off):
            raw = bytes(buf[off:off + size])
            n = raw.find(b"\0")
            return raw if n < 0 else raw[:n]
        return dec_str
    if kind == "tuple":
        fields = [(int(f["offset"]), make_decoder(f["type"], ctx))
                  for f in desc["fields"]]

        def dec_tuple(buf, off):
            return tuple(d(buf, off + o) for o, d in fields)
        return dec_tuple
    if kind == "probe":
        unpack = _U64.unpack_from
        return lambda buf, off: ctx.probe(unpack(buf, off)[0])
    if kind == "username":
        unpack = _U64.unpack_from
        return lambda buf, off: ctx.username(unpack(buf, off)[0] & 0xFFFFFFFF)
    if kind == "none":
        return lambda buf, off: None
    dec = _value_decoder(desc, ctx)
    if dec is not None:
        return dec
    raise ValueError("unknown type descriptor kind %r" % (kind,))


def _c_value_decoder(desc: dict, ctx: "DecodeContext"):
    """A copy of a C struct/union (its members by name) or array (its elements)."""
    if desc["kind"] == "array":
        elem, step, count = make_decoder(desc["elem"], ctx), int(desc["elem_size"]), int(desc["count"])
        return lambda buf, off: CArray(elem(buf, off + i * step) for i in range(count))
    fields = [(f["name"], int(f["offset"]), _member_decoder(f, ctx)) for f in desc["fields"]]
    return lambda buf, off: CRecord((name, d(buf, off + o)) for name, o, d in fields)


def _member_decoder(f: dict, ctx: "DecodeContext"):
    bits = int(f.get("bits", 0))
    if not bits:
        return make_decoder(f["type"], ctx)
    unit, shift = int(f["type"].get("size", 8)), int(f.get("bit_offset", 0))

    def dec_bits(buf, off):                 # unsigned, as 0.17 reads bitfields
        return (int.from_bytes(buf[off:off + unit], "little") >> shift) & ((1 << bits) - 1)
    return dec_bits


_BOOT_TIME_NS = []


def boot_time_ns() -> int:
    """The wall-clock time of boot, read once (as bpftrace): two timestamps of one
    run differ by exactly what their nanoseconds differ by (strftime(), and the
    PCAP records of skboutput())."""
    if not _BOOT_TIME_NS:
        _BOOT_TIME_NS.append(time.clock_gettime_ns(time.CLOCK_REALTIME)
                             - time.clock_gettime_ns(time.CLOCK_BOOTTIME))
    return _BOOT_TIME_NS[0]


def _strftime(fmt: str, nsecs: int) -> str:
    """bpftrace's resolve_timestamp: boot-time nanoseconds as local time; %f is the
    microseconds (6 digits)."""
    total = boot_time_ns() + nsecs
    secs = total // 1000000000
    us = (total % 1000000000) // 1000
    fmt = fmt.replace("%f", "%06d" % us)
    try:
        out = time.strftime(fmt, time.localtime(secs))
    except (ValueError, OverflowError, OSError):
        return "(?)"
    return out if out else "(?)"


def _errno_text(n: int) -> str:
    try:
        return os.strerror(n)
    except (ValueError, OverflowError):
        return "Unknown error %d" % n


def _cgroup_roots():
    """(name, mount point) of every mounted cgroup hierarchy: a v1 hierarchy is named
    after its mount point's directory, the v2 one "unified" (as bpftrace)."""
    roots = []
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2"):
                    name = "unified" if parts[2] == "cgroup2" else os.path.basename(parts[1])
                    roots.append((name, parts[1]))
    except OSError:
        pass
    return roots


_CGROUP_PATHS = {}      # (id, mount point) -> path, checked again before use


def _cgroup_path_in(cgroup_id: int, base: str) -> str:
    """The path of the cgroup whose directory's inode is `cgroup_id` below `base`
    ("/" for the hierarchy's root, "" if there is none)."""
    cached = _CGROUP_PATHS.get((cgroup_id, base))
    if cached is not None and _inode(base + cached.rstrip("/")) == cgroup_id:
        return cached
    found = "/" if _inode(base) == cgroup_id else ""
    for top, dirs, _files in (os.walk(base) if not found else ()):
        hit = next((d for d in dirs if _inode(os.path.join(top, d)) == cgroup_id), None)
        if hit is not None:
            found = os.path.join(top, hit)[len(base):]
            break
    if found:
        _CGROUP_PATHS[(cgroup_id, base)] = found
    return found


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def cgroup_paths(cgroup_id: int, filt: str = "*") -> str:
    """cgroup_path()'s text: "name:path" for each hierarchy matching the wildcard
    filter where the cgroup exists, "unified" first, the rest by name."""
    import re       # lazy: start-up time (re and enum are ~5 ms; few programs print cgroups)
    pattern = re.compile(".*".join(re.escape(part) for part in filt.split("*")), re.S)
    roots = [r for r in _cgroup_roots() if pattern.fullmatch(r[0])]
    roots.sort(key=lambda r: (r[0] != "unified", r[0]))
    paths = ((name, _cgroup_path_in(cgroup_id, base)) for name, base in roots)
    return ",".join(f"{name}:{path}" for name, path in paths if path)


def _inet_text(af: int, raw: bytes) -> str:
    import socket as _s     # lazy: start-up time (only inet values need it)
    try:
        if af == _s.AF_INET:
            return _s.inet_ntop(_s.AF_INET, raw[:4])
        if af == _s.AF_INET6:
            return _s.inet_ntop(_s.AF_INET6, raw[:16])
    except (OSError, ValueError):
        pass
    return ""


def _value_decoder(desc: dict, ctx: "DecodeContext"):
    """Decoders of the values resolved or formatted in user space (stacks, symbols...)."""
    kind = desc["kind"]
    u64 = _U64.unpack_from
    i64 = _I64.unpack_from
    if kind == "kstack":
        return lambda buf, off: ctx.stack(desc, i64(buf, off)[0])
    if kind == "ustack":
        return lambda buf, off: ctx.stack(desc, i64(buf, off)[0],
                                          u64(buf, off + 8)[0] & 0xFFFFFFFF)
    if kind == "buf":
        size = int(desc["size"])

        def dec_buf(buf, off):
            n = min(u64(buf, off)[0], size)
            return Buffer(bytes(buf[off + 8:off + 8 + n]))
        return dec_buf
    if kind == "bytes":
        count = int(desc["count"])
        return lambda buf, off: ByteArray(bytes(buf[off:off + count]))
    return _symbol_decoder(desc, ctx)


def _symbol_decoder(desc: dict, ctx: "DecodeContext"):
    """Decoders of the values printed as a text (a Symbol): symbols, addresses, errors."""
    kind = desc["kind"]
    u64 = _U64.unpack_from
    if kind == "ksym":
        def dec_ksym(buf, off):
            a = u64(buf, off)[0]
            return Symbol(ctx.symbols.ksym(a), a)
        return dec_ksym
    if kind == "usym":
        def dec_usym(buf, off):
            a = u64(buf, off)[0]
            pid = u64(buf, off + 8)[0] & 0xFFFFFFFF
            return Symbol(ctx.symbols.usym(pid, a), (a, pid))
        return dec_usym
    if kind == "inet":
        def dec_inet(buf, off):
            af = u64(buf, off)[0]
            raw = bytes(buf[off + 8:off + 24])
            return Symbol(_inet_text(af, raw), (af, raw))
        return dec_inet
    if kind == "macaddr":
        def dec_mac(buf, off):
            raw = bytes(buf[off:off + 6])
            return Symbol(":".join("%02X" % c for c in raw), raw)
        return dec_mac
    if kind == "strerror":
        def dec_strerror(buf, off):
            n = _I64.unpack_from(buf, off)[0]
            return Symbol(_errno_text(n), n)
        return dec_strerror
    if kind == "cgroup_path":
        filt = desc.get("filter", "*")

        def dec_cgroup_path(buf, off):
            n = u64(buf, off)[0]
            return Symbol(cgroup_paths(n, filt), n)
        return dec_cgroup_path
    if kind == "strftime":
        fmt = desc.get("format", "")

        def dec_strftime(buf, off):
            n = u64(buf, off)[0]
            return Symbol(_strftime(fmt, n), n)
        return dec_strftime
    return None


def decode(desc: dict, buf, offset: int = 0, ctx: DecodeContext | None = None):
    return make_decoder(desc, ctx or DecodeContext())(buf, offset)


def make_record_decoder(args: list, ctx: DecodeContext):
    """``f(record) -> [values]`` for a list of ``{offset, type}`` fields.

    When every field is an int or a string and the fields do not overlap,
    one precompiled ``struct.Struct`` decodes the whole record.
    """
    fields = sorted(((int(a["offset"]), i, a["type"]) for i, a in enumerate(args)))
    flat = all(t["kind"] in ("int", "str") for _, _, t in fields)
    pos = 0
    parts = ["<"]
    order = []
    strs = []
    if flat:
        for off, i, t in fields:
            if off < pos:
                flat = False
                break
            if off > pos:
                parts.append("%dx" % (off - pos))
            if t["kind"] == "int":
                parts.append("q" if t.get("signed", True) else "Q")
                pos = off + 8
            else:
                parts.append("%ds" % int(t["size"]))
                pos = off + int(t["size"])
                strs.append(len(order))
            order.append(i)
    if not flat:
        decoders = [(int(a["offset"]), make_decoder(a["type"], ctx)) for a in args]
        return lambda rec: [d(rec, o) for o, d in decoders]
    unpack = struct.Struct("".join(parts)).unpack_from
    n = len(args)
    identity = order == list(range(n))

    def dec(rec):
        vals = list(unpack(rec, 0))
        for j in strs:
            vals[j] = vals[j].partition(b"\0")[0]
        if identity:
            return vals
        out = [None] * n
        for j, i in enumerate(order):
            out[i] = vals[j]
        return out
    return dec


# --------------------------------------------------------------------------
# sorting keys

def _sortable(desc: dict) -> bool:
    """Key component types bpftrace 0.17's sort_by_key sorts (int, string)."""
    return desc["kind"] in ("int", "str")


def _order_value(desc: dict, v):
    """A total order for one decoded key component (ints unsigned)."""
    kind = desc["kind"]
    if kind in ("int", "ptr"):
        return int(v) & _MASK64
    if kind == "str":
        return v
    if kind == "probe":
        return v.index
    if kind == "username":
        return v.uid
    if kind == "tuple":
        return tuple(_order_value(f["type"], x)
                     for f, x in zip(desc["fields"], v))
    if kind == "array":
        return tuple(_order_value(desc["elem"], x) for x in v)
    if kind == "record":
        return tuple(_order_value(f["type"], x) for f, (_, x) in zip(desc["fields"], v))
    if isinstance(v, Stack):
        return v.order()
    if isinstance(v, Symbol):
        return (str(v), repr(v.raw))
    if isinstance(v, (Buffer, ByteArray)):
        return bytes(v)
    return 0


def key_sort_key(fields: list, key: tuple):
    """Sort key for a decoded map key, bpftrace 0.17's ``sort_by_key`` order.

    bpftrace stable-sorts on every int (unsigned) and string (strncmp)
    component, last to first, so the result is lexicographic over those
    components; other component types keep the kernel's iteration order.
    We append those other components as the final tie-break so that the
    output is deterministic.
    """
    major = []
    minor = []
    for f, v in zip(fields, key):
        desc = f["type"]
        (major if _sortable(desc) else minor).append(_order_value(desc, v))
    return (tuple(major), tuple(minor))


# --------------------------------------------------------------------------
# map model

class MapEntry:
    __slots__ = ("key", "value")

    def __init__(self, key: tuple, value):
        self.key = key
        self.value = value

    def __repr__(self) -> str:
        return "MapEntry(%r, %r)" % (self.key, self.value)


class MapModel:
    """A decoded, reduced and sorted map, ready to be emitted.

    ``entries`` is already sorted ascending (as bpftrace prints) and cut to
    the last ``top`` entries when ``top`` applies.
    """

    flat_keys = None     # set by the fast path: which key components are strings
    rows = None          # the fast path's sorted (value, key) pairs
    packed = None        # ... or, for one integer key, sorted (value + bias) << 64 | key
    bias = 0

    def __init__(self, meta: UserMap, entries: list):
        self.meta = meta
        self.name = meta.name
        self.kind = meta.kind
        self.fields = meta.key.fields
        self.keyed = bool(self.fields)
        self._entries = entries
        self.lhist = meta.lhist

    @property
    def entries(self) -> list:
        if self._entries is None:
            if self.packed is not None:
                self.rows = [((p >> 64) - self.bias, (p & _MASK64,)) for p in self.packed]
            self._entries = [MapEntry(k, v) for v, k in self.rows]
        return self._entries

    @entries.setter
    def entries(self, value):
        self._entries = value

    @property
    def value_desc(self) -> dict:
        return self.meta.value

    @property
    def is_stats_like(self) -> bool:
        return self.kind in ("avg", "stats")

    @property
    def is_hist_like(self) -> bool:
        return self.kind in ("hist", "lhist")


def _reduce_add(slots, signed: bool) -> int:
    total = 0
    for s in slots:
        total += _U64.unpack_from(s, 0)[0]
    total &= _MASK64
    return to_signed64(total) if signed else total


def _reduce_minmax(slots, is_max: bool):
    best = None
    for s in slots:
        value, is_set = struct.unpack_from("<qQ", s, 0)
        if not is_set:
            continue
        if best is None or (value > best if is_max else value < best):
            best = value
    return best


def _reduce_avg(slots) -> AvgValue:
    count = 0
    total = 0
    for s in slots:
        c, t = struct.unpack_from("<QQ", s, 0)
        count += c
        total += t
    return AvgValue(count & _MASK64, to_signed64(total))


FAST_PATH = True      # tests turn it off to compare with the general path


def _flat_key_unpacker(fields):
    """One struct for a key of int and string components: (unpack, which are strings)."""
    fmt, pos, strings = "<", 0, []
    for f in sorted(fields, key=lambda f: int(f["offset"])):
        off, t = int(f["offset"]), f["type"]
        if off > pos:
            fmt += f"{off - pos}x"
        if t["kind"] == "int":
            fmt += "Q"
            pos = off + 8
        else:
            fmt += f"{int(t['size'])}s"
            pos = off + int(t["size"])
        strings.append(t["kind"] == "str")
    return struct.Struct(fmt).unpack_from, strings


def _reduced_counts(meta: UserMap, entries, single_int: bool):
    """(keys, summed u64 values) of a count/sum map. From a bulk dump's flat buffers when
    there is one (runtime.maps.Dump): keys is then that buffer (one u64 per key when the
    key is one integer), else a list of key bytes, entry by entry."""
    values_raw = getattr(entries, "values", None)
    if isinstance(values_raw, bytes) and entries.value_size == 8 and entries.n:
        slots = memoryview(values_raw).cast("Q")          # one u64 slot per CPU, per entry
        per = entries.elem_size // 8
        totals = list(slots[0::per])
        for c in range(1, entries.ncpu if entries.percpu else 1):
            totals = [a + b for a, b in zip(totals, slots[c::per])]
        n, ks = entries.n, entries.key_size
        if single_int and ks == 8:
            return memoryview(entries.keys).cast("Q").tolist(), totals
        return [entries.keys[i * ks:(i + 1) * ks] for i in range(n)], totals
    from_bytes = int.from_bytes
    keys, totals = [], []
    for kb, slots in entries:
        keys.append(kb)
        totals.append(sum(from_bytes(slot[:8], "little") for slot in slots))
    return keys, totals


def _scalar_map_model(meta: UserMap, entries, top: int, ordered: bool = True) -> MapModel:
    """count/sum maps keyed by ints and strings, the common big maps: bulk reduction and a
    sort of plain ints or tuples, ~1 µs per entry. Same order as the general path: by
    value, then by key (ints unsigned, strings bytewise)."""
    unpack, strings = _flat_key_unpacker(meta.key.fields)
    signed = meta.kind == "sum" and meta.value.get("signed", True)
    keys, totals = _reduced_counts(meta, entries, strings == [False])
    totals = [t & _MASK64 for t in totals]
    if signed:
        totals = [t - (1 << 64) if t >= 1 << 63 else t for t in totals]
    model = MapModel(meta, None)
    model.flat_keys = strings
    if strings == [False]:
        # one integer key: sort plain ints, (value + bias) << 64 | key
        bias = 1 << 63 if signed else 0
        if keys and not isinstance(keys[0], int):
            keys = [unpack(kb)[0] for kb in keys]
        packed = [((t + bias) << 64) | k for t, k in zip(totals, keys)]
        if ordered:
            packed.sort()
        if top and len(packed) > top:
            packed = packed[len(packed) - top:]
        model.packed, model.bias = packed, bias
        return model
    decoded = [unpack(kb) for kb in keys]
    if True in strings and decoded:     # a column at a time: strings end at their NUL
        columns = [[c.partition(b"\0")[0] for c in column] if is_str else column
                   for column, is_str in zip(zip(*decoded), strings)]
        decoded = list(zip(*columns))
    rows = list(zip(totals, decoded))
    if ordered:
        rows.sort()
    if top and len(rows) > top:
        rows = rows[len(rows) - top:]
    model.rows = rows
    return model


def build_map_model(meta: UserMap, entries, ctx: DecodeContext, top: int = 0,
                    ordered: bool = True) -> MapModel:
    """Decode keys, reduce per-CPU values, sort as bpftrace (unless not ``ordered``:
    a snapshot read as values) and apply ``top``.

    ``entries``: iterable of ``(key_bytes, [value_bytes per CPU])``.
    """
    kind = meta.kind
    fields = meta.key.fields
    if FAST_PATH and kind in ("count", "sum") and fields \
            and all(f["type"]["kind"] in ("int", "str") for f in fields):
        return _scalar_map_model(meta, entries, top, ordered)
    decoders = [(int(f["offset"]), make_decoder(f["type"], ctx)) for f in fields]

    def dkey(kb) -> tuple:
        return tuple(d(kb, o) for o, d in decoders)

    if kind in ("hist", "lhist"):
        out = _hist_entries(meta, entries, dkey)
    else:
        out = _value_entries(meta, entries, dkey, ctx)
    if ordered:
        out.sort(key=_entry_order(meta))
    # print(@m, top): keep the last `top` entries.  0.17 ignores top for stats.
    if top and kind != "stats" and len(out) > top:
        out = out[len(out) - top:]
    return MapModel(meta, out)


def _hist_entries(meta: UserMap, entries, dkey) -> list:
    """One HistValue per user key: the map key is the user key and a u64 bucket."""
    bucket_off = meta.key.size
    groups: dict = {}
    for kb, slots in entries:
        kb = bytes(kb)
        user = kb[:bucket_off]
        idx = _U64.unpack_from(kb, bucket_off)[0]
        count = _reduce_add(slots, False)
        h = groups.get(user)
        if h is None:
            h = groups[user] = HistValue()
        h.counts[idx] = h.counts.get(idx, 0) + count
    return [MapEntry(dkey(user), h) for user, h in groups.items()]


def _reducer(meta: UserMap, ctx: DecodeContext):
    """The function of an entry's per-CPU slots that gives its value (None for a
    min/max entry no CPU has set), or None for an unknown map kind."""
    kind = meta.kind
    if kind == "count":
        return lambda slots: _reduce_add(slots, False)
    if kind == "sum":
        signed = meta.value.get("signed", True)
        return lambda slots: _reduce_add(slots, signed)
    if kind in ("min", "max"):
        is_max = kind == "max"
        return lambda slots: _reduce_minmax(slots, is_max)
    if kind in ("avg", "stats"):
        return _reduce_avg
    if kind == "plain":
        plain_decoder = make_decoder(meta.value, ctx)
        return lambda slots: plain_decoder(slots[0], 0)
    return None


def _value_entries(meta: UserMap, entries, dkey, ctx: DecodeContext) -> list:
    kind = meta.kind
    reduce = _reducer(meta, ctx)
    out = []
    for kb, slots in entries:
        if reduce is None:
            raise ValueError("unknown map kind %r" % (kind,))
        v = reduce(slots)
        if v is None and kind in ("min", "max"):
            continue        # no CPU slot is set: the entry does not exist
        out.append(MapEntry(dkey(kb), v))
    if kind == "count" and not meta.key.fields and not out:
        # a keyless count() is a one-entry PERCPU_ARRAY: it always exists
        out.append(MapEntry((), 0))
    return out


def _entry_order(meta: UserMap):
    """The sort key of a map's entries, as bpftrace prints them."""
    kind = meta.kind
    fields = meta.key.fields

    def ksort(key):
        return key_sort_key(fields, key)

    if kind in ("hist", "lhist"):
        return lambda e: (e.value.total, ksort(e.key))
    if kind in ("count", "sum", "min", "max") or (
            kind == "plain" and meta.value["kind"] == "int"):
        return lambda e: (e.value, ksort(e.key))
    if kind in ("avg", "stats"):
        return lambda e: (e.value.average, ksort(e.key))
    return lambda e: ksort(e.key)
