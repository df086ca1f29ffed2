"""tracepoint:category:event (alias t:), arguments from tracefs format files."""
from __future__ import annotations

import functools

from ..diagnostics import error
from ..types import IntT, PtrT, StrT
from . import PROG_TRACEPOINT, ExpandedProbe, Provider, glob_match, register, split_attach_point


@functools.lru_cache(maxsize=None)
def _tracefs():
    from ..runtime import tracefs
    try:
        tracefs.ensure_mounted()
    except OSError:
        pass
    return tracefs


@functools.lru_cache(maxsize=None)
def all_events():
    return tuple(_tracefs().list_tracepoints())


@functools.lru_cache(maxsize=None)
def event_fields(category: str, event: str):
    """name -> (Field, Type) for the fields of a tracepoint (common_* excluded)."""
    out = {}
    for f in _tracefs().tracepoint_format(category, event):
        out[f.name] = (f, field_type(f, user=(category == "syscalls")))
    return out


def event_exists(category: str, event: str) -> bool:
    import os
    root = _tracefs().tracefs_root()
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
    from ..cstructs import SCALARS
    size = SCALARS.get(" ".join(ctype.replace("const", " ").split()), f.size)
    if size in (1, 2, 4, 8) and size <= f.size:
        return IntT(size * 8, bool(f.signed))
    return None


def args_field(ck, e):
    """args->name: the field of the probe's format file."""
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


def check_register_builtin(provider, ck, node):
    if node.name == "retval":
        raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' and "
                    "'kfunc' probes (try to use args->ret instead)", node.span)
    return Provider.check_register_builtin(provider, ck, node)


class Tracepoint(Provider):
    name = "tracepoint"
    prog_type = PROG_TRACEPOINT
    uses_args = True

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
        from .syscalls import ENTER, EXIT, syscall_number
        if category == "syscalls" and syscall_number(event) is not None:
            return (ENTER if event.startswith("sys_enter_") else EXIT).probe(category, event)
        return ExpandedProbe(f"tracepoint:{category}:{event}", self, category, event)

    def section(self, probe):
        return f"tracepoint/{probe.target}/{probe.func}"

    def attach_spec(self, probe, cookie):
        return {"kind": "tracepoint", "category": probe.target, "event": probe.func, "cookie": cookie}

    def context_key(self, probe):
        return (probe.target, probe.func)

    def args_field(self, ck, e):
        return args_field(ck, e)

    def check_register_builtin(self, ck, node):
        return check_register_builtin(self, ck, node)

    def listing(self, verbose, target=None):
        lines = []
        for c, e in all_events():
            lines.append(f"tracepoint:{c}:{e}")
            if verbose:
                for f in _tracefs().tracepoint_format(c, e):
                    lines.append(f"    {format_field(f)}")
        return lines


def format_field(f) -> str:
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


register(Tracepoint())
