"""tracepoint:syscalls:sys_enter_* / sys_exit_* served by the raw sys_enter / sys_exit
tracepoints (x86-64).

One raw-tracepoint attach serves any number of syscall probes: the program
dispatches on the syscall number, and reads the arguments from the saved user
registers. Closing a raw tracepoint takes ~0.1 ms where a perf-event tracepoint
takes ~80 ms, so a wildcard over every syscall starts and stops in well under a
second. Syscall events whose number is unknown go through the perf-event path.
"""
from __future__ import annotations

import os

from ..codegen import builder as B
from ..codegen.builder import const
from . import PROG_RAW_TRACEPOINT, ExpandedProbe
from .regs import REG_OFFSETS, SYSCALL_ARG_REGS
from .syscall_table import X86_64
from .tpformat import TracepointProvider, event_fields
from ..runtime.manifest import RawTracepointAttach

# An ia32 system call (a 32-bit process, or int $0x80) has its own numbers, and the
# syscalls:* tracepoints ignore it (trace_get_syscall_nr: in_32bit_syscall()), so the
# raw ones must too: current->thread_info.status & TS_COMPAT.  thread_info is the
# first member of task_struct on x86-64; status follows flags and syscall_work (5.11+).
THREAD_INFO_STATUS = 16
TS_COMPAT = 0x0002


def syscall_number(event: str):
    if os.uname().machine != "x86_64":
        return None
    for prefix in ("sys_enter_", "sys_exit_"):
        if event.startswith(prefix):
            return X86_64.get(event[len(prefix):])
    return None


class RawSyscall(TracepointProvider):
    """The probes of one direction (sys_enter_* or sys_exit_*): made by the tracepoint
    provider's expand, never looked up by name."""
    prog_type = PROG_RAW_TRACEPOINT

    def __init__(self, direction):
        self.direction = direction          # "enter" or "exit"
        self.raw_name = f"sys_{direction}"

    def probe(self, category, event):
        return ExpandedProbe(f"tracepoint:{category}:{event}", self, category, event,
                             {"nr": syscall_number(event)})

    def section(self, probe):
        return f"raw_tracepoint/{self.raw_name}"

    def attach_specs(self, probes, cookies):
        return [RawTracepointAttach(kind="raw_tracepoint", name=self.raw_name, cookie=cookies[0])]

    # -------------------------------------------------------- codegen hooks
    def prologue(self, lw):
        """nr → (return unless traced here) and the probe's cookie for `probe`."""
        fb, b = lw.fb, lw.b
        if self.direction == "enter":
            nr = fb.load(fb.ctx, 8)
        else:
            nr = self._read_regs(lw, REG_OFFSETS["orig_ax"])
        lw.syscall_nr = nr
        unit = lw.unit
        body = fb.new_block("syscall")
        switch = b.switch(nr, fb.exit_block)
        if len(unit.probes) == 1:
            switch.add_case(const(unit.probes[0].params["nr"]), body)
            b.position_at_end(body)
            self._skip_ia32(lw)
            return
        lw.syscall_cookie = cookie_slot = fb.alloca(8)
        for probe, cookie in zip(unit.probes, unit.cookies):
            case = fb.new_block("nr")
            switch.add_case(const(probe.params["nr"]), case)
            b.position_at_end(case)
            fb.store(cookie_slot, 0, const(cookie))
            b.branch(body)
        b.position_at_end(body)
        self._skip_ia32(lw)

    def probe_cookie(self, lw):
        return lw.fb.load(lw.syscall_cookie, 0)

    def _skip_ia32(self, lw):
        fb, b = lw.fb, lw.b
        if os.path.exists("/sys/kernel/btf/vmlinux"):
            # a BTF task pointer is read directly: ~1 ns where bpf_probe_read costs ~10
            task = b.inttoptr(fb.helper(B.GET_CURRENT_TASK_BTF), B.PTR)
            status = fb.load(task, THREAD_INFO_STATUS, bits=32, align=4)
        else:
            task = fb.helper(B.GET_CURRENT_TASK)
            buf = fb.scratch("thread_status", 8)
            fb.store(buf, 0, const(0))
            fb.helper(B.PROBE_READ_KERNEL, buf, const(4, B.I32),
                      b.inttoptr(b.add(task, const(THREAD_INFO_STATUS)), B.PTR))
            status = fb.load(buf, 0, bits=32)
        compat = b.and_(status, const(TS_COMPAT))
        native = fb.new_block("native")
        b.cbranch(b.icmp_unsigned("!=", compat, const(0)), fb.exit_block, native)
        b.position_at_end(native)

    def _read_regs(self, lw, offset):
        fb, b = lw.fb, lw.b
        regs = fb.load(fb.ctx, 0)
        buf = fb.scratch("regs_read", 8)
        fb.store(buf, 0, const(0))
        fb.helper(B.PROBE_READ_KERNEL, buf, const(8, B.I32), b.inttoptr(b.add(regs, const(offset)), B.PTR))
        return fb.load(buf, 0)

    def read_field(self, lw, e):
        f = e.field_info
        if f.name == "__syscall_nr":
            return lw.syscall_nr
        if self.direction == "exit":
            value = lw.fb.load(lw.fb.ctx, 8)           # ret
        else:
            probe = lw.unit.context
            names = [n for n in event_fields(probe.target, probe.func) if n != "__syscall_nr"]
            reg = SYSCALL_ARG_REGS[names.index(f.name)]
            value = self._read_regs(lw, REG_OFFSETS[reg])
        t = e.type
        bits = getattr(t, "bits", 64)
        if bits < 64:
            shift = const(64 - bits)
            value = lw.b.shl(value, shift)
            value = lw.b.ashr(value, shift) if t.signed else lw.b.lshr(value, shift)
        return value


ENTER = RawSyscall("enter")
EXIT = RawSyscall("exit")
