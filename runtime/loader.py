"""ObjectSpec → kernel objects (maps, relocated programs).

``load(spec)`` returns a ``LoadedObject`` that owns every fd it created;
``LoadedObject.close()`` releases them all (also on a failed load: nothing
stays in the kernel).
"""

import errno as E
import os
import struct

from .record import record
from . import environment
from . import syscall as S
from . import uapi as U
from .threads import Thread
from .errors import BpfError, LoadError, ObjectFormatError, PermissionFailure, RuntimeFailure
from .attach import uprobe_multi_supported
from .cpus import possible_cpus
from .manifest import IterAttach, KfuncAttach, KprobeAttach, Program, UprobeAttach
from .objfile import DATA_SECTION, RODATA_SECTION, ObjectSpec


@record
class LoadedMap:
    symbol: str
    fd: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    name: str = ""

    @property
    def percpu(self) -> bool:
        return self.type in U.PERCPU_MAP_TYPES

    @property
    def is_array(self) -> bool:
        return self.type in U.ARRAY_MAP_TYPES


@record
class LoadedProgram:
    symbol: str
    fd: int
    prog_type: int
    name: str
    section: str
    meta: Program  # the manifest's program (one without attach entries if it has none)
    expected_attach_type: int = 0


class LoadedObject:
    def __init__(self, spec: ObjectSpec):
        self.spec = spec
        self.manifest = spec.contract
        self.maps = {}       # symbol -> LoadedMap
        self.programs = {}   # symbol -> LoadedProgram
        self.closed = False

    def map(self, symbol: str) -> LoadedMap:
        return self.maps[symbol]

    def optional_map(self, symbol):
        """The LoadedMap of ``symbol`` (e.g. manifest.internal.ringbuf), or None."""
        return self.maps[symbol] if symbol in self.maps else None

    def close(self) -> None:
        for p in self.programs.values():
            S.close(p.fd)
        for m in self.maps.values():
            S.close(m.fd)
        self.programs.clear()
        self.maps.clear()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def kernel_name(name: str) -> str:
    return S.sanitize_name(name).decode()


def patch_relocations(insns: bytes, relocations, map_fds: dict) -> bytes:
    """Set src_reg=BPF_PSEUDO_MAP_FD and imm=fd on every relocated ld_imm64 (a
    .rodata or .data value: BPF_PSEUDO_MAP_VALUE, and its offset in the second imm)."""
    buf = bytearray(insns)
    for r in relocations:
        off = r.insn_offset
        if off + 16 > len(buf) or buf[off] != U.BPF_LD_IMM64:
            raise ObjectFormatError(f"relocation at +{off:#x} is not on an ld_imm64")
        fd = map_fds.get(r.map_symbol)
        if fd is None:
            raise ObjectFormatError(f"relocation against unknown map {r.map_symbol}")
        value = r.value_offset >= 0
        buf[off + 1] = (buf[off + 1] & 0x0F) | \
            ((U.BPF_PSEUDO_MAP_VALUE if value else U.BPF_PSEUDO_MAP_FD) << 4)
        struct.pack_into("<i", buf, off + 4, fd)
        struct.pack_into("<i", buf, off + 12, r.value_offset if value else 0)
    return bytes(buf)


def load(spec: ObjectSpec, log_level: int = 0, programs=None, early=None) -> LoadedObject:
    """Create every map and load the manifest's programs (or ``programs``, a
    list of symbols); the maps `early` (an EarlyMaps) created already are taken
    from it.  Raises LoadError / PermissionFailure / RuntimeFailure; on failure
    everything already created is closed."""
    obj = LoadedObject(spec)
    try:
        _load(obj, spec, log_level, programs, early)
    except BaseException:
        obj.close()
        raise
    finally:
        if early is not None:
            early.close()
    return obj


class EarlyMaps:
    """The ring buffer, created in a thread while the caller does other work (the
    kernel allocates and zeroes its pages: ~4 ms for 16 MiB, a tenth of a cached
    one-liner's start); `load` takes it. `close()` closes what nobody took."""

    def __init__(self, spec: ObjectSpec):
        self._specs = {sym: ms for sym, ms in spec.maps.items() if ms.type == U.BPF_MAP_TYPE_RINGBUF}
        self._made = {}         # sym -> fd, or the BpfError
        self._thread = None
        if self._specs:
            self._thread = Thread(self._create)

    def _create(self):
        for sym, ms in self._specs.items():
            try:
                self._made[sym] = S.map_create(ms.type, ms.key_size, ms.value_size, _max_entries(ms),
                                               ms.flags, kernel_name(sym))
            except BpfError as e:
                self._made[sym] = e

    def take(self, sym: str):
        """The map's fd (raises its BpfError), or None if it is not made here."""
        if sym not in self._specs:
            return None
        self._thread.join()
        made = self._made.pop(sym, None)
        if isinstance(made, BpfError):
            raise made
        return made

    def close(self):
        if self._thread is not None:
            self._thread.join()
        for made in self._made.values():
            if isinstance(made, int):
                os.close(made)
        self._made.clear()


def ringbuf_size(default: int) -> int:
    """BPFTRACE_PERF_RB_PAGES (pages per CPU, as bpftrace) sizes the ring buffer:
    a power of two of at least one page."""
    if "BPFTRACE_PERF_RB_PAGES" not in os.environ:
        return default
    want = max(1, environment.number("BPFTRACE_PERF_RB_PAGES")) * 4096 * len(possible_cpus())
    size = 4096
    while size < want:
        size *= 2
    return size


def _load(obj, spec, log_level, programs, early):
    _create_maps(obj, spec, early)
    metas = {p.symbol: p for p in spec.contract.programs}
    if programs is None:
        programs = list(metas) if metas else list(spec.programs)
    map_fds = {s: m.fd for s, m in obj.maps.items()}
    for sym in programs:
        ps = spec.programs.get(sym)
        if ps is None:
            raise ObjectFormatError(f"program '{sym}' not found in the object")
        meta = metas[sym] if sym in metas else Program(sym)
        try:
            obj.programs[sym] = _load_program(ps, meta, spec.license, map_fds, log_level)
        except LoadError as e:      # named by its probe, as bpftrace names it
            probes = spec.contract.probes
            cookie = meta.attach[0].cookie if meta.attach else -1
            probe = probes[cookie] if 0 <= cookie < len(probes) else ""
            raise LoadError(e.program, e.log, e.errno, e.name, probe) from None


def _max_entries(ms) -> int:
    """What a map is created with: the ring buffer's size may be overridden, a perf
    event array has a slot per possible CPU (the object says 0)."""
    if ms.type == U.BPF_MAP_TYPE_RINGBUF:
        return ringbuf_size(ms.max_entries)
    if ms.type == U.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        return len(possible_cpus())
    return ms.max_entries


def _create_maps(obj, spec, early=None):
    for sym, ms in spec.maps.items():
        max_entries = _max_entries(ms)
        try:
            fd = early.take(sym) if early is not None else None
            if fd is None:
                fd = S.map_create(ms.type, ms.key_size, ms.value_size, max_entries,
                                  ms.flags, kernel_name(sym))
        except BpfError as e:
            if e.errno == E.EPERM:
                raise PermissionFailure() from None
            raise RuntimeFailure(
                f"Failed to create map {sym} (type {ms.type}, key {ms.key_size}, "
                f"value {ms.value_size}, max_entries {ms.max_entries}): {e}") from None
        obj.maps[sym] = LoadedMap(sym, fd, ms.type, ms.key_size, ms.value_size,
                                  max_entries, ms.flags, kernel_name(sym))
    if spec.rodata:
        _create_globals(obj, RODATA_SECTION, spec.rodata)
    if spec.data:
        _create_globals(obj, DATA_SECTION, spec.data)


def _create_globals(obj, sym: str, data: bytes):
    """.rodata or .data: a one-entry array that programs address. .rodata's the
    verifier takes for constants (read-only for programs, frozen before they load);
    .data's programs write (its counters), and the runtime reads."""
    read_only = sym == RODATA_SECTION
    flags = U.BPF_F_RDONLY_PROG if read_only else 0
    try:
        fd = S.map_create(U.BPF_MAP_TYPE_ARRAY, 4, len(data), 1, flags, kernel_name(sym))
    except BpfError as e:
        if e.errno == E.EPERM:
            raise PermissionFailure() from None
        raise RuntimeFailure(f"Failed to create map {sym} (value {len(data)}): {e}") from None
    obj.maps[sym] = LoadedMap(sym, fd, U.BPF_MAP_TYPE_ARRAY, 4, len(data), 1, flags,
                              kernel_name(sym))
    try:
        S.map_update(fd, bytes(4), data)
        if read_only:
            S.map_freeze(fd)
    except BpfError as e:
        raise RuntimeFailure(f"Failed to fill map {sym}: {e}") from None


def _load_program(ps, meta: Program, license: str, map_fds: dict, log_level: int):
    sym = ps.symbol
    ptype = meta.prog_type
    if ptype is None:
        ptype = _prog_type_from_section(ps.section)
    name = kernel_name(meta.name)
    insns = patch_relocations(ps.insns, ps.relocations, map_fds)
    expected = meta.expected_attach_type
    if not expected and ptype == U.BPF_PROG_TYPE_KPROBE and _uprobes_only(meta) \
            and uprobe_multi_supported():
        expected = U.BPF_TRACE_UPROBE_MULTI     # attached with uprobe_multi links
    try:
        fd = S.prog_load(ptype, insns, license or "GPL", name, symbol=sym,
                         expected_attach_type=expected, attach_btf_id=meta.attach_btf_id,
                         log_level=log_level)
    except BpfError as e:
        if ptype == U.BPF_PROG_TYPE_TRACING:
            raise _tracing_unsupported(sym, meta, e) from None
        if e.errno == E.EPERM:
            raise PermissionFailure() from None
        raise RuntimeFailure(f"Failed to load program {sym}: {e}") from None
    return LoadedProgram(sym, fd, ptype, name, ps.section, meta, expected)


def _uprobes_only(meta: Program) -> bool:
    return bool(meta.attach) and all(isinstance(a, UprobeAttach) for a in meta.attach)


def _prog_type_from_section(section: str) -> int:
    head = section.split("/", 1)[0]
    t = {"tracepoint": U.BPF_PROG_TYPE_TRACEPOINT, "tp": U.BPF_PROG_TYPE_TRACEPOINT,
         "perf_event": U.BPF_PROG_TYPE_PERF_EVENT,
         "raw_tracepoint": U.BPF_PROG_TYPE_RAW_TRACEPOINT,
         "raw_tp": U.BPF_PROG_TYPE_RAW_TRACEPOINT,
         "kprobe": U.BPF_PROG_TYPE_KPROBE, "kretprobe": U.BPF_PROG_TYPE_KPROBE,
         "uprobe": U.BPF_PROG_TYPE_KPROBE, "uretprobe": U.BPF_PROG_TYPE_KPROBE,
         "usdt": U.BPF_PROG_TYPE_KPROBE}.get(head)
    if t is None:
        raise ObjectFormatError(f"cannot infer the program type of section '{section}'")
    return t


def _tracing_unsupported(sym, meta: Program, e: BpfError) -> RuntimeFailure:
    """A TRACING (fentry/fexit: kfunc/kretfunc) program the kernel does not load: one
    clear line (this kernel has no BPF trampolines), not a verifier dump."""
    if "iter" in meta.attach_kinds:
        it = next((a.iterator for a in meta.attach if isinstance(a, IterAttach)), "")
        err = RuntimeFailure(f"iter probes are not available for your kernel version: the kernel "
                             f"has no BPF tracing program support (loading iter:{it} failed: "
                             f"{E.errorcode.get(e.errno, e.errno)})")
        err.program_symbol = err.symbol = sym
        return err
    kfuncs = [a for a in meta.attach if isinstance(a, KfuncAttach)]
    what = "kretfunc" if any(a.is_return for a in kfuncs) else "kfunc"
    probe = next((a.func for a in meta.attach if isinstance(a, (KfuncAttach, KprobeAttach))
                  and a.func), "")
    err = RuntimeFailure(f"kfunc/kretfunc not available for your kernel version: the kernel "
                         f"has no BPF fentry/fexit (tracing program) support (loading "
                         f"{what}:{probe} failed: {E.errorcode.get(e.errno, e.errno)})")
    err.program_symbol = err.symbol = sym
    return err
