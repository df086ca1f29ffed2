"""Attach loaded programs to the kernel, one function per mechanism.

Every function returns ``Attachment`` objects and never enables anything
itself: collect them in an ``AttachSet``, call ``enable_all()`` once at the
end so that all probes start together, and ``detach()``/``close()`` to tear
down.  BEGIN/END programs are not attached: ``run_once`` runs them with
BPF_PROG_TEST_RUN.
"""

import errno as E
import os
import threading

from . import syscall as S
from . import uapi as U
from .cpus import online_cpus, parse_cpu_list, possible_cpus  # noqa: F401  (public here too)
from .errors import AttachError, BpfError, PermissionFailure, TracepointNotFound
from .manifest import AttachSpec, UprobeAttach

# ------------------------------------------------------------------ helpers


def _errname(err: int) -> str:
    return E.errorcode.get(err, str(err))


class Attachment:
    """One kernel attachment: a perf event fd and/or a BPF link fd."""

    __slots__ = ("probe", "kind", "perf_fd", "link_fd", "needs_enable", "detail")

    def __init__(self, probe, kind, perf_fd=None, link_fd=None, needs_enable=False,
                 detail=""):
        self.probe = probe
        self.kind = kind
        self.perf_fd = perf_fd
        self.link_fd = link_fd
        self.needs_enable = needs_enable
        self.detail = detail

    def enable(self):
        if self.needs_enable and self.perf_fd is not None:
            S.perf_event_enable(self.perf_fd)

    def unlink(self):
        """Detach the program (fast: closing a link only swaps a prog array)."""
        if self.link_fd is not None:
            S.close(self.link_fd)
            self.link_fd = None

    def close(self):
        """Detach and release everything (a tracepoint perf fd: ~80 ms)."""
        self.unlink()
        if self.perf_fd is not None:
            S.close(self.perf_fd)
            self.perf_fd = None

    def __repr__(self):
        return f"Attachment({self.probe!r}, {self.kind}, perf={self.perf_fd}, link={self.link_fd})"


def _parallel(fn, items, max_threads: int = 128) -> None:
    """Apply ``fn`` to every item, from several threads when there are many
    (detaching a perf-event attachment waits for RCU grace periods: ~25 ms
    to close its link and ~50 ms to close its perf fd)."""
    items = list(items)
    if len(items) <= 1:
        for a in items:
            fn(a)
        return
    nthreads = min(max_threads, len(items))
    chunks = [items[i::nthreads] for i in range(nthreads)]
    errors = []

    def work(chunk):
        for a in chunk:
            try:
                fn(a)
            except BaseException as e:  # keep closing the rest
                errors.append(e)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in chunks[1:]]
    for t in threads:
        t.start()
    work(chunks[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def close_parallel(items, max_threads: int = 128) -> None:
    """Close many Attachments (cheap ones inline, perf-event ones in parallel)."""
    items = list(items)
    slow = [a for a in items if a.perf_fd is not None]
    for a in items:
        if a.perf_fd is None:
            a.close()
    _parallel(Attachment.close, slow, max_threads)


class AttachSet:
    """Tracks every attachment of a session."""

    def __init__(self):
        self.items = []
        self._closer = None

    def add(self, atts):
        if isinstance(atts, Attachment):
            self.items.append(atts)
        else:
            self.items.extend(atts)

    def __len__(self):
        return len(self.items)

    def enable_all(self):
        for a in self.items:
            a.enable()

    def detach(self, background: bool = False):
        """Stop every probe now and release the kernel objects.

        Software/hardware perf events stop when disabled (one cheap ioctl).
        Tracepoint programs only stop when their link is closed (~25 ms each,
        done in parallel threads) or, without a link, when the perf fd is
        closed.  The remaining perf fds are then closed in parallel threads
        (~50 ms each), in the background when ``background`` (``close()``
        waits for that).
        """
        items, self.items = self.items, []
        sync, later, slow_links = [], [], []
        for a in items:
            if a.kind == "perf_event" and a.perf_fd is not None:
                try:
                    S.perf_event_disable(a.perf_fd)
                    later.append(a)
                    continue
                except BpfError:
                    pass
            if a.link_fd is not None:
                if a.perf_fd is not None:
                    slow_links.append(a)
                    later.append(a)
                else:
                    a.unlink()  # raw tracepoint link: ~0.2 ms
            elif a.perf_fd is not None:
                sync.append(a)
        # all programs stop here: perf links are closed in parallel, and
        # ioctl-attached events (no link) are closed completely
        _parallel(lambda a: a.unlink() if a.link_fd is not None else a.close(),
                  slow_links + sync)
        if not later:
            return
        if background:
            prev = self._closer

            def work():
                close_parallel(later)
                if prev is not None:
                    prev.join()
            t = threading.Thread(target=work, daemon=True)
            t.start()
            self._closer = t
        else:
            close_parallel(later)

    def close(self):
        self.detach(background=False)
        if self._closer is not None:
            self._closer.join()
            self._closer = None


# ------------------------------------------------------------------ mechanisms


def _link_or_ioctl(probe, kind, prog_fd, pfd, cookie, needs_enable=True):
    """Attach prog_fd to perf event pfd: LINK_CREATE (with bpf_cookie),
    falling back to PERF_EVENT_IOC_SET_BPF on kernels without perf links."""
    try:
        lfd = S.link_create(prog_fd, pfd, U.BPF_PERF_EVENT, cookie)
        return Attachment(probe, kind, pfd, lfd, needs_enable, "link")
    except BpfError as e:
        if e.errno not in (E.EINVAL, E.EOPNOTSUPP, U.ENOTSUPP):
            S.close(pfd)
            raise _attach_error(probe, "BPF_LINK_CREATE", e) from None
    try:
        S.perf_event_set_bpf(pfd, prog_fd)
    except BpfError as e:
        S.close(pfd)
        raise _attach_error(probe, "PERF_EVENT_IOC_SET_BPF", e) from None
    return Attachment(probe, kind, pfd, None, needs_enable, "ioctl")


def _attach_error(probe, what, e: BpfError):
    if e.errno == E.EPERM or e.errno == E.EACCES:
        return PermissionFailure()
    return AttachError(probe, f"{what} failed: {e.strerror} ({_errname(e.errno)})", e.errno)


def tracepoint(prog_fd: int, category: str, event: str, cookie: int = 0,
               probe: str = "") -> Attachment:
    """perf_event_open(PERF_TYPE_TRACEPOINT, id, pid -1, cpu 0, disabled) +
    LINK_CREATE(BPF_PERF_EVENT, bpf_cookie)."""
    from . import tracefs
    probe = probe or f"tracepoint:{category}:{event}"
    try:
        tracefs.ensure_mounted()
        tp_id = tracefs.event_id(category, event)
    except TracepointNotFound:
        raise AttachError(probe, f"tracepoint {category}:{event} does not exist "
                                 "in this kernel") from None
    attr = S.perf_attr(U.PERF_TYPE_TRACEPOINT, tp_id, sample_period=1,
                       flags=U.PERF_FLAG_DISABLED, sample_type=U.PERF_SAMPLE_RAW,
                       wakeup_events=1)
    try:
        pfd = S.perf_event_open(attr, -1, 0)
    except BpfError as e:
        raise _attach_error(probe, "perf_event_open(tracepoint)", e) from None
    return _link_or_ioctl(probe, "tracepoint", prog_fd, pfd, cookie)


_PERF_TYPE_NAMES = {U.PERF_TYPE_HARDWARE: "hardware", U.PERF_TYPE_SOFTWARE: "software",
                    U.PERF_TYPE_TRACEPOINT: "tracepoint", U.PERF_TYPE_HW_CACHE: "hardware cache",
                    U.PERF_TYPE_RAW: "raw", U.PERF_TYPE_BREAKPOINT: "breakpoint"}


def perf_event(prog_fd: int, type_: int, config: int, period: int, freq: bool = False,
               cpus="all", cookie: int = 0, probe: str = "") -> list:
    """One sampling perf event per CPU (``cpus``: "all" = online CPUs, "one" =
    CPU 0, or a list), each opened disabled and linked to the program."""
    if cpus == "all":
        cpu_list = online_cpus()
    elif cpus == "one":
        cpu_list = [0]
    elif isinstance(cpus, int):
        cpu_list = [cpus]
    else:
        cpu_list = list(cpus)
    probe = probe or f"perf_event:{type_}:{config}"
    flags = U.PERF_FLAG_DISABLED | (U.PERF_FLAG_FREQ if freq else 0)

    def open_event(cpu):
        attr = S.perf_attr(type_, config, sample_period=period, flags=flags)
        try:
            return S.perf_event_open(attr, -1, cpu)
        except BpfError as e:
            raise _perf_open_error(probe, type_, config, e) from None
    return _per_cpu(probe, "perf_event", prog_fd, cookie, cpu_list, open_event)


def _per_cpu(probe, kind, prog_fd, cookie, cpu_list, open_event) -> list:
    """The perf event `open_event(cpu)` opens on each CPU, linked to the program;
    if one fails, those already attached are closed."""
    out = []
    try:
        for cpu in cpu_list:
            out.append(_link_or_ioctl(probe, kind, prog_fd, open_event(cpu), cookie))
    except BaseException:
        for a in out:
            a.close()
        raise
    return out


def _perf_open_error(probe, type_, config, e: BpfError):
    tname = _PERF_TYPE_NAMES.get(type_, f"type {type_}")
    if e.errno in (E.EPERM, E.EACCES):
        return PermissionFailure()
    if type_ in (U.PERF_TYPE_HARDWARE, U.PERF_TYPE_HW_CACHE, U.PERF_TYPE_RAW) and \
            e.errno in (E.ENOENT, E.EOPNOTSUPP, E.ENODEV, E.EINVAL):
        return AttachError(probe, "hardware performance counters are not available "
                           f"in this kernel/VM (no hardware PMU; perf_event_open: "
                           f"{_errname(e.errno)})", e.errno)
    if e.errno in (E.ENOENT, E.EOPNOTSUPP, E.ENODEV):
        return AttachError(probe, f"the kernel does not support {tname} perf event "
                           f"config {config} (perf_event_open: {_errname(e.errno)})", e.errno)
    return AttachError(probe, f"perf_event_open({tname}, config {config}) failed: "
                       f"{e.strerror} ({_errname(e.errno)})", e.errno)


def raw_tracepoint(prog_fd: int, name: str, cookie: int = 0, probe: str = "") -> Attachment:
    """BPF_RAW_TRACEPOINT_OPEN(name) (active immediately; closing is cheap)."""
    probe = probe or f"rawtracepoint:{name}"
    try:
        lfd = S.raw_tracepoint_open(name, prog_fd, cookie)
    except BpfError as e:
        if e.errno == E.ENOENT:
            raise AttachError(probe, f"raw tracepoint {name} does not exist in this "
                              "kernel", e.errno) from None
        if e.errno == E.EINVAL and cookie:
            # kernels before 6.10 have no raw tracepoint cookie
            try:
                lfd = S.raw_tracepoint_open(name, prog_fd, 0)
            except BpfError as e2:
                raise _attach_error(probe, "BPF_RAW_TRACEPOINT_OPEN", e2) from None
        else:
            raise _attach_error(probe, "BPF_RAW_TRACEPOINT_OPEN", e) from None
    return Attachment(probe, "raw_tracepoint", None, lfd, False, "link")


def _pmu_type(name: str):
    try:
        with open(f"/sys/bus/event_source/devices/{name}/type") as f:
            return int(f.read().strip())
    except OSError:
        return None


def _pmu_retprobe_bit(name: str) -> int:
    try:
        with open(f"/sys/bus/event_source/devices/{name}/format/retprobe") as f:
            txt = f.read().strip()  # "config:0"
        return int(txt.split(":", 1)[1])
    except (OSError, ValueError, IndexError):
        return 0


def kprobe(prog_fd: int, func: str, offset: int = 0, retprobe: bool = False,
           cookie: int = 0, probe: str = "") -> Attachment:
    """kprobe/kretprobe via the kprobe PMU."""
    import ctypes
    probe = probe or f"{'kretprobe' if retprobe else 'kprobe'}:{func}"
    ptype = _pmu_type("kprobe")
    if ptype is None:
        raise AttachError(probe, "kprobes are not supported by this kernel (no kprobe "
                          "PMU in /sys/bus/event_source/devices; CONFIG_KPROBES is "
                          "not set)")
    fb = ctypes.create_string_buffer(func.encode() + b"\0")
    cfg = (1 << _pmu_retprobe_bit("kprobe")) if retprobe else 0
    attr = S.perf_attr(ptype, cfg, sample_period=1, flags=U.PERF_FLAG_DISABLED,
                       config1=ctypes.addressof(fb), config2=offset)
    try:
        pfd = S.perf_event_open(attr, -1, 0)
    except BpfError as e:
        if e.errno in (E.ENOENT, E.EINVAL):
            raise AttachError(probe, f"cannot probe kernel function {func} "
                              f"({_errname(e.errno)})", e.errno) from None
        raise _attach_error(probe, "perf_event_open(kprobe)", e) from None
    return _link_or_ioctl(probe, "kprobe", prog_fd, pfd, cookie)


def uprobe(prog_fd: int, path: str, offset: int, retprobe: bool = False,
           pid: int = -1, cookie: int = 0, probe: str = "",
           ref_ctr_offset: int = 0) -> list:
    """uprobe/uretprobe via the uprobe PMU at file ``offset`` of ``path``
    (all processes when pid == -1)."""
    import ctypes
    probe = probe or f"{'uretprobe' if retprobe else 'uprobe'}:{path}:{offset:#x}"
    ptype = _pmu_type("uprobe")
    if ptype is None:
        raise AttachError(probe, "uprobes are not supported by this kernel (no uprobe PMU)")
    pb = ctypes.create_string_buffer(os.fsencode(path) + b"\0")
    cfg = (1 << _pmu_retprobe_bit("uprobe")) if retprobe else 0
    if ref_ctr_offset:
        cfg |= ref_ctr_offset << 32  # format/ref_ctr_offset: config:32-63
    # one event: the program is attached to the uprobe itself, so an event per CPU
    # would run it once per event (libbpf also uses cpu 0 for pid -1)
    cpu_list = [0] if pid == -1 else [-1]

    def open_event(cpu):
        attr = S.perf_attr(ptype, cfg, sample_period=1, flags=U.PERF_FLAG_DISABLED,
                           config1=ctypes.addressof(pb), config2=offset)
        try:
            return S.perf_event_open(attr, pid, cpu)
        except BpfError as e:
            raise _attach_error(probe, "perf_event_open(uprobe)", e) from None
    return _per_cpu(probe, "uprobe", prog_fd, cookie, cpu_list, open_event)


UPROBE_KINDS = UprobeAttach.KINDS


def uprobe_multi_groups(entries) -> dict:
    """A program's uprobe attach entries (UprobeAttach) grouped by what one
    BPF_TRACE_UPROBE_MULTI link can hold: (path, retprobe, pid) -> [entry, ...], in order."""
    groups = {}
    for entry in entries:
        groups.setdefault((entry.path, entry.is_return, entry.pid), []).append(entry)
    return groups


def uprobe_multi(prog_fd: int, path: str, entries, retprobe: bool, pid: int,
                 probes=()) -> Attachment:
    """Every uprobe (or uretprobe) of one program in one file as one BPF link
    (BPF_TRACE_UPROBE_MULTI, Linux 6.6; the program is loaded for it): one system
    call to attach them and, at exit, one wait for the kernel to retire them where
    a perf-event uprobe waits ~80 ms each."""
    cookies = [e.cookie for e in entries]
    names = [probes[c] for c in cookies if 0 <= c < len(probes)]
    probe = names[0] if len(set(names)) == 1 else \
        f"{'uretprobe' if retprobe else 'uprobe'}:{path} ({len(entries)} probes)"
    try:
        lfd = S.link_create_uprobe_multi(
            prog_fd, path, [e.offset for e in entries],
            [e.ref_ctr_offset for e in entries], cookies,
            U.BPF_F_UPROBE_MULTI_RETURN if retprobe else 0, pid)
    except BpfError as e:
        if e.errno == E.ENOENT:
            raise AttachError(probe, f"{path}: no such file", e.errno) from None
        if e.errno == E.ESRCH:
            raise AttachError(probe, f"no process {pid}", e.errno) from None
        raise _attach_error(probe, "BPF_LINK_CREATE(uprobe_multi)", e) from None
    return Attachment(probe, "uprobe_multi", None, lfd, False, "link")


def uprobe_multi_supported() -> bool:
    """Whether the kernel loads a kprobe program for BPF_TRACE_UPROBE_MULTI (6.6+)."""
    global _UPROBE_MULTI
    if _UPROBE_MULTI is None:
        exit_0 = U.BPF_INSNS_RETURN_0
        try:
            S.close(S.prog_load(U.BPF_PROG_TYPE_KPROBE, exit_0, "GPL", "uprobe_multi",
                                expected_attach_type=U.BPF_TRACE_UPROBE_MULTI))
            _UPROBE_MULTI = True
        except BpfError:
            _UPROBE_MULTI = False
    return _UPROBE_MULTI


_UPROBE_MULTI = None


def watchpoint(prog_fd: int, addr: int, length: int, bp_type: int, pid: int = -1,
               cookie: int = 0, probe: str = "") -> list:
    """A hardware breakpoint: perf_event_open(PERF_TYPE_BREAKPOINT) with bp_type
    (r=1, w=2, x=4) at offset 52, bp_addr (config1) and bp_len (config2); on process
    ``pid`` (any CPU), or in the kernel on every online CPU when pid == -1."""
    import struct as _struct
    probe = probe or f"watchpoint:{addr:#x}:{length}:{bp_type}"
    cpu_list = online_cpus() if pid == -1 else [-1]

    def open_event(cpu):
        attr = S.perf_attr(U.PERF_TYPE_BREAKPOINT, 0, sample_period=1,
                           flags=U.PERF_FLAG_DISABLED, config1=addr, config2=length,
                           wakeup_events=1)
        _struct.pack_into("<I", attr, U.PA_BP_TYPE, bp_type)
        try:
            return S.perf_event_open(attr, pid, cpu)
        except BpfError as e:
            if e.errno in (E.EPERM, E.EACCES):
                raise PermissionFailure() from None
            if e.errno == E.ENOSPC:
                raise AttachError(probe, "no free hardware breakpoint registers (at most 4 "
                                  "watchpoints)", e.errno) from None
            if e.errno in (E.ENOENT, E.EOPNOTSUPP, E.ENODEV):
                raise AttachError(probe, "hardware breakpoints (watchpoints) are not "
                                  f"supported by this kernel/CPU ({_errname(e.errno)})",
                                  e.errno) from None
            if e.errno == E.ESRCH:
                raise AttachError(probe, f"process {pid} does not exist", e.errno) from None
            raise AttachError(probe, f"perf_event_open(breakpoint) failed: {e.strerror} "
                              f"({_errname(e.errno)}); on x86 a watchpoint must be aligned "
                              "to its length, and read-only (r) watchpoints are not "
                              "supported (use rw)", e.errno) from None
    return _per_cpu(probe, "perf_event", prog_fd, cookie, cpu_list, open_event)


def run_once(prog_fd: int) -> int:
    """Run a BEGIN/END (raw_tracepoint) program once with BPF_PROG_TEST_RUN
    and a zeroed context of MAX_BPF_FUNC_ARGS u64."""
    return S.prog_test_run(prog_fd, bytes(U.RAW_TP_MAX_CTX))


def iterator(prog_fd: int, name: str, pin: str = "", probe: str = "") -> Attachment:
    """An iterator link (BPF_TRACE_ITER); run it with run_iterator()."""
    probe = probe or f"iter:{name}"
    if pin:
        raise AttachError(probe, "pinning an iterator is not supported by pytrace yet")
    try:
        lfd = S.link_create(prog_fd, 0, U.BPF_TRACE_ITER)
    except BpfError as e:
        raise _attach_error(probe, "link_create(iter)", e) from None
    return Attachment(probe, "iter", None, lfd, False, "link")


def run_iterator(att: Attachment, after_chunk) -> None:
    """Run an iterator to its end: every read() runs the program over more objects;
    after_chunk() drains the ring buffer between reads."""
    import os
    fd = S.iter_create(att.link_fd)
    try:
        while os.read(fd, 65536):
            after_chunk()
    finally:
        S.close(fd)
    after_chunk()


def attach_program(prog_fd: int, entries, probes=(), child_pid=None,
                   uprobe_multi_links: bool = False) -> list:
    """Attach a program's attach entries (runtime.manifest.AttachSpec): one by one (attach_entry), or,
    for a program loaded for uprobe_multi, with one link per file (see uprobe_multi).
    If one fails, the attachments already made are closed."""
    out = []
    try:
        if uprobe_multi_links:
            for (path, retprobe, pid), group in uprobe_multi_groups(entries).items():
                out.append(uprobe_multi(prog_fd, path, group, retprobe, pid, probes))
        else:
            for entry in entries:
                out.extend(attach_entry(prog_fd, entry, probes, child_pid))
    except BaseException:
        for a in out:
            a.close()
        raise
    return out


def attach_entry(prog_fd: int, entry: AttachSpec, probes=(), child_pid=None) -> list:
    """Attach one manifest attach entry; returns a list of Attachments.
    ``begin``/``end`` entries are not attached (see ``run_once``).  ``child_pid``:
    the -c child, the process a watchpoint with pid -1 applies to."""
    kind = entry.kind
    cookie = entry.cookie
    probe = probes[cookie] if 0 <= cookie < len(probes) else ""
    if kind == "tracepoint":
        return [tracepoint(prog_fd, entry.category, entry.event, cookie, probe)]
    if kind == "perf_event":
        return perf_event(prog_fd, entry.type, entry.config, entry.period, entry.freq,
                          entry.cpus, cookie, probe)
    if kind in ("raw_tracepoint", "rawtracepoint"):
        return [raw_tracepoint(prog_fd, entry.name, cookie, probe)]
    if kind in ("kprobe", "kretprobe"):
        return [kprobe(prog_fd, entry.func, entry.offset, entry.is_return, cookie, probe)]
    if kind in ("uprobe", "uretprobe", "usdt"):
        return uprobe(prog_fd, entry.path, entry.offset, entry.is_return, entry.pid, cookie,
                      probe, entry.ref_ctr_offset)
    if kind in ("kfunc", "kretfunc", "fentry", "fexit"):
        raise AttachError(probe or kind, "kfunc/kretfunc (fentry/fexit) are not "
                          "available in this kernel (no BPF tracing program support)")
    if kind == "watchpoint":
        pid = entry.pid
        if pid == -1 and child_pid:
            pid = child_pid
        return watchpoint(prog_fd, entry.addr, entry.len, entry.bp_type, pid, cookie, probe)
    if kind == "iter":
        return [iterator(prog_fd, entry.iterator, entry.pin, probe)]
    if kind in ("begin", "end"):
        return []
    raise AttachError(probe or str(kind), f"unknown attach kind '{kind}'")
