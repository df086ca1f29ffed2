"""Tracepoint format files (tracefs): the events, their fields and the fields' types,
and the base class of the providers of `tracepoint:` probes (tracepoint.Tracepoint,
and syscalls.RawSyscall for tracepoint:syscalls:*), whose `args` are these fields.
"""
from __future__ import annotations

import functools
import os

from ..types import cmodel
from ..language.diagnostics import error
from ..types.model import IntT, PtrT, StrT
from . import Provider


@functools.lru_cache(maxsize=None)
def _tracefs():
    from ..runtime import tracefs    # lazy: start-up time (ctypes), and tracefs mounted on first use
    try:
        tracefs.ensure_mounted()
    except OSError:
        pass
    return tracefs


def tracefs_root() -> str:
    return _tracefs().tracefs_root()


def tracepoint_format(category: str, event: str):
    """The fields of a tracepoint's format file (common_* excluded)."""
    return _tracefs().tracepoint_format(category, event)


@functools.lru_cache(maxsize=None)
def all_events():
    return tuple(_tracefs().list_tracepoints())


@functools.lru_cache(maxsize=None)
def event_fields(category: str, event: str):
    """name -> (Field, Type) for the fields of a tracepoint (common_* excluded)."""
    out = {}
    for f in tracepoint_format(category, event):
        out[f.name] = (f, field_type(f, user=(category == "syscalls")))
    return out


def event_exists(category: str, event: str) -> bool:
    root = tracefs_root()
    return bool(root) and os.path.exists(os.path.join(root, "events", category, event, "format"))


def field_type(f, user: bool):
    ctype = f.type.strip()
    if f.is_data_loc:
        return StrT(64)
    if f.is_array:
        if ctype.startswith(("char", "const char", "unsigned char", "u8")):
            return StrT(f.array_len or f.size)
        return None
    if "*" in ctype:
        # keep all but the outer level: `const char *const * argv` points to "char *"
        base = " ".join(ctype.replace("*", " ").replace("const", " ").split()) or "void"
        return PtrT(base + " *" * (ctype.count("*") - 1), user=user)
    scalar = cmodel.scalar(ctype)
    size = scalar.size if scalar is not None else f.size
    if size in (1, 2, 4, 8) and size <= f.size:
        return IntT(size * 8, bool(f.signed))
    return None


def format_field(f) -> str:
    """A field as `-lv` prints it."""
    ctype = f.type
    if f.is_data_loc:
        base = ctype.replace("__data_loc", "").strip()
        if base.endswith("[]"):
            return f"__data_loc {base[:-2].strip()}[] {f.name}"
        return f"{ctype} {f.name}"
    if f.is_array:
        base = ctype.split("[")[0].strip()
        return f"{base} {f.name}[{f.array_len}]"
    return f"{ctype} {f.name}"


class TracepointProvider(Provider):
    """`tracepoint:category:event` probes: `args->NAME` is a field of the event's format
    file; programs whose block reads `args` are per event."""
    name = "tracepoint"
    uses_args = True

    def no_ctx_message(self) -> str:
        return "Use args instead of ctx in tracepoint"

    def context_key(self, probe):
        return (probe.target, probe.func)

    def args_field(self, ck, e):
        probe = ck.unit.context
        fields = event_fields(probe.target, probe.func)
        if e.field not in fields:
            raise error(f"Struct/union of type 'struct _tracepoint_{probe.target}_{probe.func}' "
                        f"does not contain a field named '{e.field}'", e.span)
        f, t = fields[e.field]
        if t is None:
            raise error(f"Field '{e.field}' of type '{f.type}' is not supported", e.span)
        e.field_info = f
        return t

    def check_register_builtin(self, ck, node):
        if node.name == "retval":
            raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' and "
                        "'kfunc' probes (try to use args->ret instead)", node.span)
        return super().check_register_builtin(ck, node)
