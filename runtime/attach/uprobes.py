"""uprobe / uretprobe / usdt: a perf event of the uprobe PMU per entry, or one
BPF_TRACE_UPROBE_MULTI link per file for a program loaded for it."""

import ctypes
import errno as E
import os

from .. import syscall as S
from .. import uapi as U
from ..errors import AttachError, BpfError
from ..manifest import UprobeAttach
from .links import Attachment, attach_error, per_cpu, pmu_retprobe_bit, pmu_type


def target_pid(spec, child_pid) -> int:
    """The process an entry probes: its pid; for a ``child`` entry with pid -1, the -c
    child if there is one."""
    return child_pid if spec.child and spec.pid == -1 and child_pid else spec.pid


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return uprobe(prog_fd, spec.path, spec.offset, spec.is_return, target_pid(spec, child_pid),
                  spec.cookie, probe, spec.ref_ctr_offset)


def uprobe(prog_fd: int, path: str, offset: int, retprobe: bool = False,
           pid: int = -1, cookie: int = 0, probe: str = "",
           ref_ctr_offset: int = 0) -> list:
    """uprobe/uretprobe via the uprobe PMU at file ``offset`` of ``path``
    (all processes when pid == -1)."""
    probe = probe or f"{'uretprobe' if retprobe else 'uprobe'}:{path}:{offset:#x}"
    ptype = pmu_type("uprobe")
    if ptype is None:
        raise AttachError(probe, "uprobes are not supported by this kernel (no uprobe PMU)")
    pb = ctypes.create_string_buffer(os.fsencode(path) + b"\0")
    cfg = (1 << pmu_retprobe_bit("uprobe")) if retprobe else 0
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
            raise attach_error(probe, "perf_event_open(uprobe)", e) from None
    return per_cpu(probe, "uprobe", prog_fd, cookie, cpu_list, open_event)


UPROBE_KINDS = UprobeAttach.KINDS


def uprobe_multi_groups(entries, child_pid=None) -> dict:
    """A program's uprobe attach entries (UprobeAttach) grouped by what one
    BPF_TRACE_UPROBE_MULTI link can hold: (path, retprobe, pid) -> [entry, ...], in order
    (pid: target_pid)."""
    groups = {}
    for entry in entries:
        key = (entry.path, entry.is_return, target_pid(entry, child_pid))
        groups.setdefault(key, []).append(entry)
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
        raise attach_error(probe, "BPF_LINK_CREATE(uprobe_multi)", e) from None
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
