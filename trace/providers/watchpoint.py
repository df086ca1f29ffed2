"""watchpoint:ADDR:LEN:MODE and asyncwatchpoint:ADDR:LEN:MODE.

A hardware breakpoint: perf_event_open(PERF_TYPE_BREAKPOINT) with bp_type from
MODE (r=1, w=2, x=4), bp_addr = ADDR, bp_len = LEN (1, 2, 4 or 8).  The program
(PERF_EVENT) runs after each access.  With -c/-p the watchpoint applies to that
process (a user address); otherwise to the kernel on every CPU (a kernel
address).  Attach entry: `{"kind": "watchpoint", "addr", "len", "bp_type",
"pid": -1, "cookie"}`; the runtime puts the -c child's pid in place of -1.
In address form asyncwatchpoint behaves as watchpoint.
"""
from __future__ import annotations

from ..language.diagnostics import error
from . import PERF_EVENT_CTX, PROG_PERF_EVENT, ExpandedProbe, Provider, register, split_attach_point
from ..runtime.manifest import WatchpointAttach

BP_TYPES = {"r": 1, "w": 2, "x": 4}


class Watchpoint(Provider):
    prog_type = PROG_PERF_EVENT

    def ctx_type(self, unit):
        return PERF_EVENT_CTX

    def __init__(self, name):
        self.name = name

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) != 4:
            raise error(f"{self.name} must have an address, a length and a mode "
                        f"({self.name}:ADDR:LEN:MODE)", ap.span)
        _, addr_s, len_s, mode = parts
        ap.target, ap.func = addr_s, len_s
        if "+" in addr_s:
            raise error(f"{self.name}:func+argN is not supported (removed in bpftrace 0.25); "
                        f"use an address", ap.span)
        try:
            addr = int(addr_s, 0)
        except ValueError:
            raise error(f"Invalid {self.name} address: {addr_s}", ap.span) from None
        try:
            length = int(len_s, 0)
        except ValueError:
            raise error(f"Invalid {self.name} length: {len_s}", ap.span) from None
        if length not in (1, 2, 4, 8):
            raise error(f"{self.name} length must be one of (1,2,4,8)", ap.span)
        if not mode or len(set(mode)) != len(mode) or any(c not in BP_TYPES for c in mode):
            raise error(f"{self.name} mode must be a combination of (r,w,x)", ap.span)
        bp_type = sum(BP_TYPES[c] for c in mode)
        if bp_type & 4 and bp_type != 4:
            raise error(f"{self.name} mode 'x' can not be combined with r or w", ap.span)
        name = f"{self.name}:{addr_s}:{len_s}:{mode}"
        return [ExpandedProbe(name, self, addr_s, len_s,
                              {"addr": addr, "len": length, "bp_type": bp_type})]

    def section(self, probe):
        return "perf_event"

    def attach_spec(self, probe, cookie):
        p = probe.params
        return WatchpointAttach(kind="watchpoint", addr=p["addr"], len=p["len"], bp_type=p["bp_type"],
                                cookie=cookie)

    def listing(self, verbose, target=None):
        return []


register(Watchpoint("watchpoint"))
register(Watchpoint("asyncwatchpoint"))
