"""Perf buffers: the reader of a BPF_MAP_TYPE_PERF_EVENT_ARRAY, and skboutput()'s
side of a run (its records go to PCAP files).

A program writes a sample with ``bpf_perf_event_output`` or ``bpf_skb_output``
into the array's slot of its CPU: a ``PERF_COUNT_SW_BPF_OUTPUT`` perf event that
user space opened on that CPU (``sample_type`` RAW, a wake-up per sample) and
mapped: one metadata page (``struct perf_event_mmap_page``: ``data_head``, written
by the kernel, ``data_tail``, by the reader) and 2^k data pages, a ring of
records ``{u32 type; u16 misc; u16 size}`` + body.  A ``PERF_RECORD_SAMPLE``'s body
is ``{u32 size; raw bytes}`` (the kernel pads the raw bytes so that the body ends
8-aligned: a writer that needs its exact length sends it), a ``PERF_RECORD_LOST``'s
``{u64 id; u64 lost}``: samples dropped because the ring was full.

Ordering: the kernel publishes ``data_head`` with a store-release after the record;
the reader reads ``data_head`` before the records (and each 8-byte field in one
load: ``struct`` unpacks ``<Q`` natively on a little-endian machine) and writes
``data_tail`` after copying them out, so the kernel never overwrites a record
being read.  Python issues no fences: this relies on the CPU keeping loads in order
with loads and stores after loads (x86-64, where pytrace runs), like events.py's
ring buffer reader.
"""

import mmap
import struct

from . import environment
from . import syscall as S
from . import uapi as U
from .cpus import online_cpus
from .pcap import PcapFiles

_HEADER = struct.Struct("<IHH")      # perf_event_header: type, misc, size
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SKB = struct.Struct("<QQQ")         # skboutput's header: async id, captured length, boot ns


def pages() -> int:
    """Data pages per CPU: BPFTRACE_PERF_RB_PAGES (default 64), a power of two."""
    want, n = max(1, environment.number("BPFTRACE_PERF_RB_PAGES")), 1
    while n < want:
        n *= 2
    return n


class PerfBuffer:
    """One CPU's BPF output perf event and its mapped ring."""

    def __init__(self, cpu: int, data_pages: int):
        attr = S.perf_attr(U.PERF_TYPE_SOFTWARE, U.PERF_COUNT_SW_BPF_OUTPUT, sample_period=1,
                           flags=U.PERF_FLAG_DISABLED, sample_type=U.PERF_SAMPLE_RAW,
                           wakeup_events=1)
        self.cpu = cpu
        self.fd = S.perf_event_open(attr, pid=-1, cpu=cpu)
        try:
            ps = mmap.PAGESIZE
            self._mm = mmap.mmap(self.fd, ps * (1 + data_pages), mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            S.close(self.fd)
            raise
        self._base = _U64.unpack_from(self._mm, U.PERF_MMAP_DATA_OFFSET)[0] or ps
        self._size = _U64.unpack_from(self._mm, U.PERF_MMAP_DATA_SIZE)[0] or ps * data_pages
        self.lost = 0
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def enable(self) -> None:
        S.perf_event_enable(self.fd)

    def _bytes(self, pos: int, n: int) -> bytes:
        """n bytes at ring position pos (a record may wrap past the ring's end)."""
        off = pos % self._size
        start = self._base + off
        if off + n <= self._size:
            return self._mm[start:start + n]
        first = self._size - off
        return self._mm[start:start + first] + self._mm[self._base:self._base + n - first]

    def read(self) -> list:
        """The raw bytes of each sample queued now, in order (not those that arrive
        meanwhile); lost-sample counts go to ``self.lost``.  The ring's space is
        given back once for the whole read."""
        mm = self._mm
        head = _U64.unpack_from(mm, U.PERF_MMAP_DATA_HEAD)[0]
        tail = _U64.unpack_from(mm, U.PERF_MMAP_DATA_TAIL)[0]
        out = []
        while tail < head:
            kind, _, size = _HEADER.unpack(self._bytes(tail, _HEADER.size))
            if size < _HEADER.size:         # never written by a kernel: stop, don't spin
                tail = head
                break
            body = self._bytes(tail + _HEADER.size, size - _HEADER.size)
            if kind == U.PERF_RECORD_SAMPLE and len(body) >= 4:
                n = _U32.unpack_from(body)[0]
                out.append(body[4:4 + n])
            elif kind == U.PERF_RECORD_LOST and len(body) >= 16:
                self.lost += _U64.unpack_from(body, 8)[0]
            tail += size
        _U64.pack_into(mm, U.PERF_MMAP_DATA_TAIL, tail)
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._mm.close()
            S.close(self.fd)


class PerfEventArray:
    """The perf buffers of one PERF_EVENT_ARRAY map: one per online CPU, each stored
    in the map at its CPU's index and enabled."""

    def __init__(self, loaded_map, data_pages: int = None):
        data_pages = data_pages or pages()
        self.buffers = []
        try:
            for cpu in online_cpus():
                buf = PerfBuffer(cpu, data_pages)
                self.buffers.append(buf)
                S.map_update(loaded_map.fd, _U32.pack(cpu), _U32.pack(buf.fd))
                buf.enable()
        except BaseException:
            self.close()
            raise

    def fds(self) -> list:
        return [b.fd for b in self.buffers]

    def read(self) -> list:
        """The samples queued now, CPU by CPU."""
        return [rec for b in self.buffers for rec in b.read()]

    def take_lost(self) -> int:
        """Samples lost since the previous call."""
        n = sum(b.lost for b in self.buffers)
        for b in self.buffers:
            b.lost = 0
        return n

    def close(self) -> None:
        for b in self.buffers:
            b.close()


class SkbOutput:
    """skboutput()'s side of a run: its PCAP files (opened at the start) and the perf
    buffers of the maps its actions name; ``poll`` writes each sample queued now
    to its file, stamped with the wall-clock time (boot time + the event's boot ns)."""

    def __init__(self, actions, loaded_maps, boot_ns: int):
        skb = {aid: a for aid, a in enumerate(actions) if a.kind == "skboutput"}
        self.boot_ns = boot_ns
        self.arrays = []
        self.files = PcapFiles(a.path for a in skb.values())
        try:
            for sym in dict.fromkeys(a.map for a in skb.values()):
                self.arrays.append(PerfEventArray(loaded_maps[sym]))
        except BaseException:
            self.close()
            raise
        self._targets = {aid: (self.files[a.path], a.offset) for aid, a in skb.items()}

    def fds(self) -> list:
        return [fd for arr in self.arrays for fd in arr.fds()]

    def poll(self) -> int:
        """Write the samples queued now; returns how many."""
        n = 0
        for arr in self.arrays:
            for rec in arr.read():
                if len(rec) < _SKB.size:
                    continue
                aid, caplen, ns = _SKB.unpack_from(rec)
                target = self._targets.get(aid)
                if target is None:
                    continue
                writer, offset = target
                packet = rec[_SKB.size:_SKB.size + caplen]
                writer.write(self.boot_ns + ns, packet[offset:])
                n += 1
        if n:
            self.files.flush()
        return n

    def take_lost(self) -> int:
        return sum(arr.take_lost() for arr in self.arrays)

    def close(self) -> None:
        for arr in self.arrays:
            arr.close()
        self.files.close()
