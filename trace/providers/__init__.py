"""Probe providers: one module per probe type.

A provider parses and expands attach points, lists probes, and says how a
program of its kind is typed, named and attached (its AttachSpec in the manifest).
Its interface, every hook with its default, is base.Provider; PROBE_TYPES below is
the one table of probe-type names and aliases.

Adding a probe type: a module here whose Provider subclass overrides expand,
section and attach_spec (or attach_specs), plus the hooks its programs need
(base.py says what each defaults to), and ends with register(...); and its line in
PROBE_TYPES. Shared code it may import: base, regs (pt_regs contexts), elf (user
binaries), tpformat (tracefs formats), btfargs (BTF u64 arguments), never another
provider's module. A new attach entry kind also needs its attach in runtime/attach.py.
"""
from __future__ import annotations

import fnmatch
import importlib

from ..language.diagnostics import error
from .base import ExpandedProbe, Provider  # noqa: F401  (the interface, for providers and passes)

from ..runtime.uapi import (BPF_PROG_TYPE_KPROBE as PROG_KPROBE,  # noqa: F401  (for providers)
                            BPF_PROG_TYPE_PERF_EVENT as PROG_PERF_EVENT,
                            BPF_PROG_TYPE_RAW_TRACEPOINT as PROG_RAW_TRACEPOINT,
                            BPF_PROG_TYPE_TRACEPOINT as PROG_TRACEPOINT,
                            BPF_PROG_TYPE_TRACING as PROG_TRACING)
from ..types.model import PtrT

# `ctx` in a perf_event program (interval, profile, software, hardware, watchpoint)
PERF_EVENT_CTX = PtrT("struct bpf_perf_event_data")


# Every probe type: name -> (its aliases, the module that provides it). The one place
# aliases are written: register() files a provider under its name and these aliases.
# A module is imported on first use (a one-liner loads one or two providers: start-up
# time matters). The order is the order of `-l`'s listing.
PROBE_TYPES = {
    "BEGIN": (("begin",), "special"),
    "END": (("end",), "special"),
    "tracepoint": (("t",), "tracepoint"),
    "interval": (("i",), "perf"),
    "profile": (("p",), "perf"),
    "software": (("s",), "perf"),
    "hardware": (("h",), "perf"),
    "uprobe": (("u",), "uprobe"),
    "uretprobe": (("ur",), "uprobe"),
    "usdt": (("U",), "usdt"),
    "kprobe": (("k",), "kprobe"),
    "kretprobe": (("kr",), "kprobe"),
    "rawtracepoint": (("rt",), "rawtracepoint"),
    "kfunc": (("f", "fentry"), "kfunc"),         # fentry, fexit: as in bpftrace >= 0.20
    "kretfunc": (("fr", "fexit"), "kfunc"),
    "watchpoint": (("w",), "watchpoint"),
    "asyncwatchpoint": (("aw",), "watchpoint"),
    "iter": (("it",), "iter"),
}

# provider name or alias -> its module
MODULES = {n: module for name, (aliases, module) in PROBE_TYPES.items()
           for n in (name,) + aliases}

_PROVIDERS: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    """File provider under its name and aliases (PROBE_TYPES)."""
    aliases, _module = PROBE_TYPES[provider.name]
    for n in (provider.name,) + aliases:
        _PROVIDERS[n] = provider
    return provider


def lookup(name: str) -> Provider | None:
    if name not in _PROVIDERS and name in MODULES:
        importlib.import_module(f".{MODULES[name]}", __name__)
    return _PROVIDERS.get(name)


def all_providers() -> list[Provider]:
    for name in MODULES:
        lookup(name)
    seen = []
    for p in _PROVIDERS.values():
        if p not in seen:
            seen.append(p)
    return seen


def split_attach_point(raw: str) -> list[str]:
    """Split on ':' outside double quotes, dropping the quotes; in quotes, a
    backslash escapes the next character (`test:"\\"probe1\\""` names `"probe1"`)."""
    parts, cur, quoted, escaped = [], "", False, False
    for ch in raw:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def probe_offset(ap, text: str, retprobe: bool) -> int:
    """The OFF of `func+OFF` (kprobe, uprobe): not allowed on return probes."""
    if retprobe:
        raise error("Offset not allowed", ap.span)
    try:
        return int(text, 0)
    except ValueError:
        raise error(f"Invalid offset: {text}", ap.span) from None


def glob_match(pattern: str, name: str) -> bool:
    """bpftrace wildcards: only '*' is special ('[..]' is literal in 0.17)."""
    if "*" not in pattern:
        return pattern == name
    escaped = pattern.replace("[", "[[]").replace("?", "[?]")
    return fnmatch.fnmatchcase(name, escaped)


def expand_attach_point(ap, options=None) -> list[ExpandedProbe]:
    """Parse one AttachPoint (filling provider/target/func) and expand it (options: the
    compile options, for what -c and -p decide)."""
    parts = split_attach_point(ap.raw)
    provider = lookup(parts[0]) or lookup(parts[0].lower() if parts[0].lower() in ("begin", "end") else parts[0])
    if provider is None:
        raise error(f"Invalid probe type: {parts[0]}", ap.span)
    ap.provider = provider.name
    return provider.expand_for(ap, options)
