"""BPF ring buffer reader and the lost-events counter.

Layout (kernel/bpf/ringbuf.c): page 0 is the consumer page (consumer_pos
u64, mapped read-write), page 1 the producer page (producer_pos u64), then
the data area mapped twice so a record that wraps is contiguous (both
read-only).  Each record: ``<II`` header (len with BUSY bit 31 and DISCARD
bit 30, page offset), the payload, padded to 8 bytes.
"""

import mmap
import select
import struct

from . import maps
from . import uapi as U

_HDR = U.BPF_RINGBUF_HDR_SZ
_BUSY = U.BPF_RINGBUF_BUSY_BIT
_DISCARD = U.BPF_RINGBUF_DISCARD_BIT
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFFFFFF


class RingBuffer:
    """Consumer side of a BPF_MAP_TYPE_RINGBUF map."""

    def __init__(self, map_fd: int, max_entries: int):
        if max_entries <= 0 or max_entries & (max_entries - 1):
            raise ValueError("ring buffer size must be a power of two")
        ps = mmap.PAGESIZE
        self.fd = map_fd
        self.size = max_entries
        self._mask = max_entries - 1
        self._cons = mmap.mmap(map_fd, ps, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._prod = mmap.mmap(map_fd, ps + 2 * max_entries, mmap.MAP_SHARED,
                                   mmap.PROT_READ, offset=ps)
        except BaseException:
            self._cons.close()
            raise
        self._data = ps
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def positions(self):
        """(consumer_pos, producer_pos)."""
        return (struct.unpack_from("<Q", self._cons, 0)[0],
                struct.unpack_from("<Q", self._prod, 0)[0])

    def pending(self) -> bool:
        c, p = self.positions()
        return c < p

    def producer_pos(self) -> int:
        """Where the producer is now: read(upto=) stops there, so a reader
        never chases records that arrive while it works."""
        return struct.unpack_from("<Q", self._prod, 0)[0]

    def read(self, limit: int = 0, upto: int = None) -> list:
        """Consume committed records; return their payloads (bytes) in order.

        Stops at the first record still being written (BUSY), when the buffer
        is empty, after ``limit`` records (0: no limit), or at producer
        position ``upto`` (None: wherever the producer is).  Discarded records
        are skipped.  The consumer position is published once per call.
        """
        unpack = struct.unpack_from
        cons_mm = self._cons
        prod_mm = self._prod
        mask = self._mask
        base = self._data
        cons = unpack("<Q", cons_mm, 0)[0]
        out = []
        append = out.append
        while True:
            prod = unpack("<Q", prod_mm, 0)[0]
            if upto is not None and prod > upto:
                prod = upto
            if cons >= prod:
                break
            busy = False
            while cons < prod:
                off = base + (cons & mask)
                hdr = unpack("<I", prod_mm, off)[0]
                if hdr & _BUSY:
                    busy = True
                    break
                ln = hdr & _LEN_MASK
                if not hdr & _DISCARD:
                    append(prod_mm[off + _HDR: off + _HDR + ln])
                cons += (ln + _HDR + 7) & ~7
                if limit and len(out) >= limit:
                    busy = True
                    break
            if busy:
                break
        struct.pack_into("<Q", cons_mm, 0, cons)
        return out

    def discard_pending(self) -> int:
        """Skip the committed records queued now (not those that arrive
        meanwhile); return how many."""
        upto = self.producer_pos()
        n = 0
        while True:
            recs = self.read(65536, upto)
            if not recs:
                return n
            n += len(recs)

    def close(self) -> None:
        if not self.closed:
            self._prod.close()
            self._cons.close()
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LostCounter:
    """The ``lost`` u64 counter: the `.data` section's first u64 (added to
    atomically), or an older object's one-entry per-CPU array; report growth since
    the last poll."""

    def __init__(self, m):
        self.m = m
        self.seen = 0

    def total(self) -> int:
        vals = maps.lookup(self.m, bytes(self.m.key_size))
        if not vals:
            return 0
        if self.m.type == U.BPF_MAP_TYPE_ARRAY:
            return int.from_bytes(vals[0][:8], "little")
        return sum(int.from_bytes(v[:8], "little") for v in vals)

    def poll(self) -> int:
        """How many more events were lost since the previous call."""
        t = self.total()
        d = t - self.seen
        self.seen = t
        return d if d > 0 else 0


class FullCounter:
    """The ``full`` u64 counters, one slot per user map: the updates the kernel
    refused because the map was full (see docs/deviations.md). They are the `.data`
    section's (u64 at 8 x full_slot, added to atomically), or an older object's
    per-CPU array (an entry a slot)."""

    def __init__(self, m, user_maps):
        self.m = m
        self.in_data = m.type == U.BPF_MAP_TYPE_ARRAY
        slots = m.value_size // 8 if self.in_data else m.max_entries
        self.user_maps = [(u.full_slot, u.name, limit) for u, limit in user_maps
                          if 0 <= u.full_slot < slots]
        self.seen = {}

    def _totals(self) -> dict:
        if self.in_data:
            vals = maps.lookup(self.m, bytes(4))
            data = bytes(vals[0]) if vals else b""
            return {slot: int.from_bytes(data[8 * slot:8 * slot + 8], "little")
                    for slot, _, _ in self.user_maps}
        return {slot: sum(int.from_bytes(v[:8], "little")
                          for v in maps.lookup(self.m, slot.to_bytes(4, "little")) or ())
                for slot, _, _ in self.user_maps}

    def poll(self) -> list:
        """[(map name, its key limit, updates dropped since the previous poll)]."""
        out = []
        totals = self._totals()
        for slot, name, limit in self.user_maps:
            total = totals[slot]
            if total > self.seen.get(slot, 0):
                out.append((name, limit, total - self.seen.get(slot, 0)))
                self.seen[slot] = total
        return out


def full_text(name: str, limit: int, dropped: int) -> str:
    return (f"WARNING: map {name} is full ({limit} keys): {dropped} "
            f"update{'s' if dropped != 1 else ''} dropped (BPFTRACE_MAP_KEYS_MAX raises "
            f"the limit)\n")


def wait_readable(fd: int, timeout: float = None) -> bool:
    """epoll one fd (for simple consumers/tests)."""
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN)
        return bool(ep.poll(-1 if timeout is None else timeout))
    finally:
        ep.close()
