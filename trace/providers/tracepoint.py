"""tracepoint:category:event: kernel tracepoints, arguments from tracefs format files
(tpformat.py). tracepoint:syscalls:* events go to syscalls.py's raw-tracepoint programs.
"""
from __future__ import annotations

from ..language.diagnostics import error
from . import PROG_TRACEPOINT, ExpandedProbe, glob_match, register, split_attach_point
from .tpformat import (TracepointProvider, all_events, event_exists, format_field,
                       tracepoint_format)
from ..runtime.manifest import TracepointAttach


class Tracepoint(TracepointProvider):
    prog_type = PROG_TRACEPOINT

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise error("tracepoint probe must have 2 arguments" if len(parts) < 3
                        else f"Invalid tracepoint: {ap.raw}", ap.span)
        _, cat, ev = parts
        ap.target, ap.func = cat, ev
        if "*" in cat or "*" in ev:
            found = [(c, e) for c, e in all_events() if glob_match(cat, c) and glob_match(ev, e)]
        else:
            found = [(cat, ev)] if event_exists(cat, ev) else []
        if not found:
            raise error(f"tracepoint not found: {cat}:{ev}", ap.span)
        return [self._probe(c, e) for c, e in found]

    def _probe(self, category, event):
        from .syscalls import ENTER, EXIT, syscall_number   # lazy: start-up time (llvmlite; -l needs none)
        if category == "syscalls" and syscall_number(event) is not None:
            return (ENTER if event.startswith("sys_enter_") else EXIT).probe(category, event)
        return ExpandedProbe(f"tracepoint:{category}:{event}", self, category, event)

    def section(self, probe):
        return f"tracepoint/{probe.target}/{probe.func}"

    def attach_spec(self, probe, cookie):
        return TracepointAttach(kind="tracepoint", category=probe.target, event=probe.func, cookie=cookie)

    def listing(self, verbose, target=None):
        lines = []
        for c, e in all_events():
            lines.append(f"tracepoint:{c}:{e}")
            if verbose:
                for f in tracepoint_format(c, e):
                    lines.append(f"    {format_field(f)}")
        return lines


register(Tracepoint())
