"""watchpoint: a hardware breakpoint perf event (PERF_TYPE_BREAKPOINT), on the
process or on every CPU, linked to the program."""

import errno as E
import struct

from .. import syscall as S
from .. import uapi as U
from ..cpus import online_cpus
from ..errors import AttachError, BpfError, PermissionFailure
from .links import errname, per_cpu


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    """pid -1: the -c child if there is one, else every CPU (a kernel address)."""
    pid = spec.pid
    if pid == -1 and child_pid:
        pid = child_pid
    return watchpoint(prog_fd, spec.addr, spec.len, spec.bp_type, pid, spec.cookie, probe)


def watchpoint(prog_fd: int, addr: int, length: int, bp_type: int, pid: int = -1,
               cookie: int = 0, probe: str = "") -> list:
    """A hardware breakpoint: perf_event_open(PERF_TYPE_BREAKPOINT) with bp_type
    (r=1, w=2, x=4) at offset 52, bp_addr (config1) and bp_len (config2); on process
    ``pid`` (any CPU), or in the kernel on every online CPU when pid == -1."""
    probe = probe or f"watchpoint:{addr:#x}:{length}:{bp_type}"
    cpu_list = online_cpus() if pid == -1 else [-1]

    def open_event(cpu):
        attr = S.perf_attr(U.PERF_TYPE_BREAKPOINT, 0, sample_period=1,
                           flags=U.PERF_FLAG_DISABLED, config1=addr, config2=length,
                           wakeup_events=1)
        struct.pack_into("<I", attr, U.PA_BP_TYPE, bp_type)
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
                                  f"supported by this kernel/CPU ({errname(e.errno)})",
                                  e.errno) from None
            if e.errno == E.ESRCH:
                raise AttachError(probe, f"process {pid} does not exist", e.errno) from None
            raise AttachError(probe, f"perf_event_open(breakpoint) failed: {e.strerror} "
                              f"({errname(e.errno)}); on x86 a watchpoint must be aligned "
                              "to its length, and read-only (r) watchpoints are not "
                              "supported (use rw)", e.errno) from None
    return per_cpu(probe, "perf_event", prog_fd, cookie, cpu_list, open_event)
