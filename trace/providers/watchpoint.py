"""watchpoint:ADDR:LEN:MODE, watchpoint:FUNC+argN:LEN:MODE and asyncwatchpoint:FUNC+argN:LEN:MODE.

A hardware breakpoint: perf_event_open(PERF_TYPE_BREAKPOINT) with bp_type from
MODE (r=1, w=2, x=4), bp_addr = ADDR, bp_len = LEN (1, 2, 4 or 8).  The program
(PERF_EVENT) runs after each access.  With -c/-p the watchpoint applies to that
process (a user address); otherwise to the kernel on every CPU (a kernel
address).  Attach entry: `{"kind": "watchpoint", "addr", "len", "bp_type",
"pid": -1, "cookie"}`; the runtime puts the -c child's pid in place of -1.

FUNC+argN (as bpftrace 0.17; -c or -p required): FUNC (wildcards allowed) is a
function of the traced binary (the -c command's, or /proc/PID/exe).  Each FUNC
gets a setup probe, a uprobe whose program (WatchpointSetup.prologue) stops the
process with SIGSTOP (not for asyncwatchpoint) and sends argN to user space in a
`watchpoint_arm` record; the runtime then attaches the watchpoint program (its
entry `on_call`, addr 0) at that address and resumes the process (SIGCONT).
"""
from __future__ import annotations

import re

from ..codegen import builder as B
from ..language.diagnostics import error
from ..types.model import UINT64
from . import PERF_EVENT_CTX, PROG_PERF_EVENT, ExpandedProbe, Provider, glob_match, register, \
    split_attach_point
from .elf import binary_for
from .regs import ARG_REGS, MAX_ARG, RegsProvider, read_reg
from ..runtime.command import command_argv
from ..runtime.manifest import UprobeAttach, WatchpointAttach

BP_TYPES = {"r": 1, "w": 2, "x": 4}
SIGSTOP = 19


class Watchpoint(Provider):
    user_space = None          # 0.17: no address space
    prog_type = PROG_PERF_EVENT

    def ctx_type(self, unit):
        return PERF_EVENT_CTX

    def __init__(self, name):
        self.name = name

    def expand(self, ap):
        return self.expand_for(ap, None)

    def expand_for(self, ap, options):
        parts = split_attach_point(ap.raw)
        if len(parts) != 4:
            raise error(f"{self.name} probe type requires 3 arguments", ap.span)
        _, addr_s, len_s, mode = parts
        ap.target, ap.func = addr_s, len_s
        if "+" in addr_s:
            return self._expand_function(ap, options, addr_s, len_s, mode)
        if self.name == "asyncwatchpoint":
            raise error(f"{self.name} requires a function name", ap.span)
        try:
            addr = int(addr_s, 0)
        except ValueError:
            raise error(f"Invalid {self.name} address: {addr_s}", ap.span) from None
        if not addr:
            raise error("watchpoint must be attached to a non-zero address", ap.span)
        length, bp_type = self._len_mode(ap, len_s, mode)
        name = f"{self.name}:{addr_s}:{len_s}:{mode}"
        return [ExpandedProbe(name, self, addr_s, len_s,
                              {"addr": addr, "len": length, "bp_type": bp_type})]

    def _len_mode(self, ap, len_s, mode):
        """(length, bp_type), with 0.17's errors."""
        try:
            length = int(len_s, 0)
        except ValueError:
            raise error(f"Invalid {self.name} length: {len_s}", ap.span) from None
        if length not in (1, 2, 4, 8):
            raise error("watchpoint length must be one of (1,2,4,8)", ap.span)
        if not mode or any(c not in BP_TYPES for c in mode):
            raise error("watchpoint mode must be combination of (r,w,x)", ap.span)
        if len(set(mode)) != len(mode):
            raise error("watchpoint modes may not be duplicated", ap.span)
        bp_type = sum(BP_TYPES[c] for c in mode)
        if bp_type & 4 and bp_type != 4:
            raise error(f"invalid watchpoint mode: {''.join(sorted(mode))}", ap.span)
        return length, bp_type

    def _expand_function(self, ap, options, spec, len_s, mode):
        """FUNC+argN: one watchpoint probe per matching function, each with its setup
        uprobe (params["setup"])."""
        func_arg = [p for p in spec.split("+") if p]
        if len(func_arg) != 2:
            raise error("Invalid function/address argument", ap.span)
        func, arg = func_arg
        m = re.fullmatch(r"arg(\d+)", arg)
        if not m:
            raise error("Invalid function argument", ap.span)
        argn = int(m.group(1))
        pid = options.pid if options is not None else None
        command = options.command if options is not None else None
        if not pid and not command:
            raise error("-p PID or -c CMD required for watchpoint", ap.span)
        if argn > MAX_ARG:
            raise error(f"x86_64 doesn't support arg{argn}", ap.span)
        length, bp_type = self._len_mode(ap, len_s, mode)
        target = f"/proc/{pid}/exe" if pid else (command_argv(command) or [""])[0]
        path, elf = binary_for(ap, target, "watchpoint")
        names = sorted(n for n in elf.functions if glob_match(func, n))
        if not names:
            what = "No probes found for" if "*" in func else "Could not resolve symbol:"
            raise error(f"{what} {path}:{func}", ap.span)
        ap.target, ap.func = path, func
        mode = "".join(sorted(mode))
        out = []
        for n in names:
            offset = elf.offset_of(elf.functions[n][0], executable=True)
            if offset is None:
                raise error(f"Could not resolve symbol: {path}:{n}", ap.span)
            name = f"{self.name}:{path}:{n}{f':{argn}' if argn else ''}:{length}:{mode}"
            wp = ExpandedProbe(name, self, path, n, {"len": length, "bp_type": bp_type,
                                                       "on_call": True})
            wp.params["setup"] = ExpandedProbe(f"{name}_setup", SETUP, path, n, {
                "offset": offset, "vaddr": elf.functions[n][0], "arg": argn, "watch": wp,
                "async": self.name == "asyncwatchpoint"})
            out.append(wp)
        return out

    def setup_probes(self, probe):
        return [probe.params["setup"]] if "setup" in probe.params else []

    def section(self, probe):
        return "perf_event"

    def attach_spec(self, probe, cookie):
        p = probe.params
        return WatchpointAttach(kind="watchpoint", addr=p.get("addr", 0), len=p["len"],
                                bp_type=p["bp_type"], on_call=p.get("on_call", False),
                                cookie=cookie)

    def listing(self, verbose, target=None):
        return []


class WatchpointSetup(RegsProvider):
    """The uprobe of watchpoint:FUNC+argN (not a probe type of its own): its program
    is its prologue (the unit has no body)."""
    name = "uprobe"
    attach_kind = "uprobe"
    program_per_probe = True

    def expand(self, ap):
        raise NotImplementedError       # made by Watchpoint._expand_function only

    def section(self, probe):
        return "uprobe"

    def attach_specs(self, probes, cookies):
        return [UprobeAttach(kind="uprobe", path=p.target, offset=p.params["offset"], child=True,
                             cookie=c) for p, c in zip(probes, cookies)]

    def prologue(self, lw):
        """Send argN to user space; the synchronous form also stops the process
        (SIGSTOP), once the record is reserved: a record lost to a full ring buffer
        must not leave the process stopped with nobody to resume it."""
        p = lw.unit.probes[0].params
        addr = read_reg(lw, ARG_REGS[p["arg"]])
        aid = lw.res.add_action({"kind": "watchpoint_arm", "cookie": lw.res.cookie_of(p["watch"]),
                                 "async": p["async"]})
        stop = None
        if not p["async"]:
            def stop(rec):
                lw.fb.helper(B.SEND_SIGNAL, B.const(SIGSTOP, B.I32))
        lw.write_record(aid, [(UINT64, addr)], extra=stop)


SETUP = WatchpointSetup()
register(Watchpoint("watchpoint"))
register(Watchpoint("asyncwatchpoint"))
