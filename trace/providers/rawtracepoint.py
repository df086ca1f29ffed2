"""rawtracepoint:event, also rawtracepoint:module:event.

Program type RAW_TRACEPOINT: the context is the tracepoint's arguments as an
array of u64 (`arg0`, `arg1`, ...).  With BTF, `args->name` gives them by name
and type, from the FUNC_PROTO of the `btf_trace_<event>` typedef (whose first
parameter, `void *__data`, is not an argument).  Attach entry:
`{"kind": "raw_tracepoint", "name", "cookie"}`.
"""
from __future__ import annotations

import functools

from ..types.btf import FUNC_PROTO, PTR, vmlinux
from ..language.diagnostics import error
from ..types.model import UINT64
from . import PROG_RAW_TRACEPOINT, ExpandedProbe, Provider, glob_match, register, split_attach_point
from .btfargs import btf_arg_field, read_ctx_arg
from .tpformat import all_events as tracepoint_events
from ..runtime.manifest import RawTracepointAttach

MAX_ARGS = 12


@functools.lru_cache(maxsize=None)
def event_args(event: str) -> tuple[tuple[str, int], ...] | None:
    """(name, BTF type id) of the arguments of a raw tracepoint, or None without BTF info."""
    b = vmlinux()
    if b is None:
        return None
    # the names are in the FUNC_PROTO of `__bpf_trace_<event>` (the btf_trace_<event>
    # typedef's prototype has the types only); the first parameter is `void *__data`
    proto = b.func_proto(f"__bpf_trace_{event}")
    if proto is None:
        tid = b.find(f"btf_trace_{event}", "type")
        if not tid:
            return None
        proto = b.type(b.resolve(tid))
        if proto.kind == PTR:
            proto = b.type(b.resolve(proto.ref))
        if proto.kind != FUNC_PROTO:
            return None
    return tuple((name or f"arg{i}", tid) for i, (name, tid) in enumerate(proto.params[1:]))


@functools.lru_cache(maxsize=1)
def all_events() -> tuple[str, ...]:
    b = vmlinux()
    names = set()
    if b is not None:
        names.update(k[len("type btf_trace_"):] for k in b.names if k.startswith("type btf_trace_"))
    if not names:
        try:
            names.update(e for _, e in tracepoint_events())
        except OSError:
            pass
    return tuple(sorted(names))


class RawTracepoint(Provider):
    name = "rawtracepoint"
    prog_type = PROG_RAW_TRACEPOINT
    uses_args = True

    def expand(self, ap) -> list[ExpandedProbe]:
        parts = split_attach_point(ap.raw)
        if len(parts) == 2:
            module, event = "", parts[1]
        elif len(parts) == 3:
            module, event = parts[1], parts[2]
        else:
            raise error(f"Invalid rawtracepoint attach point: {ap.raw}", ap.span)
        if not event:
            raise error("rawtracepoint probe type requires 1 argument", ap.span)
        ap.target, ap.func = module, event
        events = all_events()
        if "*" in event:
            found = [e for e in events if glob_match(event, e)]
        else:
            found = [event] if not events or event in events else []
        if not found:
            raise error(f"rawtracepoint not found: {event}", ap.span)
        mod = f"{module}:" if module else ""
        return [ExpandedProbe(f"rawtracepoint:{mod}{e}", self, module, e) for e in found]

    def section(self, probe):
        return f"raw_tracepoint/{probe.func}"

    def attach_spec(self, probe, cookie):
        return RawTracepointAttach(kind="raw_tracepoint", name=probe.func, cookie=cookie)

    def context_key(self, probe):
        return probe.func

    def listing(self, verbose, target=None):
        lines = []
        for e in all_events():
            lines.append(f"rawtracepoint:{e}")
            if verbose:
                for name, tid in event_args(e) or ():
                    lines.append(f"    {vmlinux().type_name(tid)} {name}")
        return lines

    # -------------------------------------------------- builtins (see builtins.context._RegisterArgs)
    def check_register_builtin(self, ck, node):
        name = node.name
        if name.startswith("arg") and name[3:].isdigit():
            n = int(name[3:])
            if n >= MAX_ARGS:
                raise error(f"rawtracepoint has at most {MAX_ARGS} arguments", node.span)
            return UINT64
        if name == "retval":
            raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' and "
                        "'kfunc' probes", node.span)
        raise error(f"The {name} builtin can not be used with 'rawtracepoint' probes", node.span)

    def lower_register_builtin(self, lw, node):
        return lw.fb.load(lw.fb.ctx, 8 * int(node.name[3:]))

    def args_field(self, ck, e):
        """args->name: the argument's BTF type."""
        probe = ck.unit.context
        params = event_args(probe.func)
        if params is None:
            raise error(f"BTF type information for rawtracepoint:{probe.func} is not available "
                        f"(use arg0, arg1, ...)", e.span)
        return btf_arg_field(e, params, f"rawtracepoint:{probe.func}")

    def read_field(self, lw, e):
        return read_ctx_arg(lw, e)


register(RawTracepoint())
