"""watchpoint: a hardware breakpoint perf event (PERF_TYPE_BREAKPOINT), on the
process or on every CPU, linked to the program; OnCall: those of
watchpoint:func+argN, armed while the trace runs."""

import errno as E
import os
import _signal as signal     # (not `signal`: see session.py)
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


OUT_OF_REGISTERS = "Failed to attach watchpoint probe. You are out of watchpoint registers."


class OnCall:
    """The watchpoints of watchpoint:func+argN, armed while the trace runs.

    ``add`` files a program's ``on_call`` entry (WatchpointAttach) by its cookie;
    ``arm(cookie, addr, async_)`` attaches it at ``addr`` on process ``pid`` (as 0.17:
    an address the entry was last armed at is not armed again; no free debug register
    is the message OUT_OF_REGISTERS, and the trace goes on) and, unless ``async_``,
    resumes the process the uprobe stopped, whatever happened; ``unwatch(addr)``
    removes every watchpoint on addr (as 0.17, a later call with the address an entry
    was last armed at does not arm it again); ``resume()`` (teardown) continues the process
    if a synchronous watchpoint may have left it stopped.  The attachments go to
    ``attachments`` (an AttachSet), which closes them at the end."""

    def __init__(self, attachments, pid, probes, message):
        self.attachments = attachments
        self.pid = pid
        self.probes = probes
        self.message = message          # str -> None: prints a message line
        self.entries = {}               # cookie -> (prog_fd, WatchpointAttach)
        self.last = {}                  # cookie -> the address it was last armed at
        self.armed = []                 # (addr, Attachment)
        self.may_stop = False           # a synchronous setup uprobe may stop the process

    def add(self, prog_fd: int, spec) -> None:
        """File an on_call entry; refused without a process to watch (an object
        compiled with -c or -p, run without them): its uprobe would stop processes
        nobody resumes."""
        if self.pid is None:
            probe = self.probes[spec.cookie] if 0 <= spec.cookie < len(self.probes) else ""
            raise AttachError(probe, "-p PID or -c CMD required for watchpoint")
        self.entries[spec.cookie] = (prog_fd, spec)

    def arm(self, cookie: int, addr: int, async_: bool) -> None:
        try:
            if cookie in self.entries and self.last.get(cookie) != addr:
                self._attach(cookie, addr)
        finally:
            if not async_:
                self.resume()

    def _attach(self, cookie: int, addr: int) -> None:
        prog_fd, spec = self.entries[cookie]
        self.last[cookie] = addr
        probe = self.probes[cookie] if 0 <= cookie < len(self.probes) else ""
        pid = self.pid if self.pid is not None else spec.pid
        try:
            atts = watchpoint(prog_fd, addr, spec.len, spec.bp_type, pid, cookie, probe)
        except AttachError as e:
            if e.errno != E.ENOSPC:
                raise
            self.message(OUT_OF_REGISTERS)
            return
        self.attachments.add(atts)
        for a in atts:
            self.armed.append((addr, a))
            a.enable()

    def stop(self) -> None:
        """The trace stops: nothing is armed any more (arm only resumes)."""
        self.entries = {}

    def unwatch(self, addr: int) -> None:
        gone = [a for at, a in self.armed if at == addr]
        if gone:
            self.armed = [(at, a) for at, a in self.armed if at != addr]
            self.attachments.remove(gone)

    def resume(self) -> None:
        if self.may_stop and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
