"""Probe providers: one module per probe type.

A provider parses and expands attach points, lists probes, and says how a
program of its kind is typed, named and attached (its AttachSpec in the manifest).
"""
from __future__ import annotations

import fnmatch
from typing import Dict, List, Optional

from ..runtime.record import record, field
from ..diagnostics import error


from ..runtime.uapi import (BPF_PROG_TYPE_KPROBE as PROG_KPROBE,  # noqa: F401  (for providers)
                            BPF_PROG_TYPE_PERF_EVENT as PROG_PERF_EVENT,
                            BPF_PROG_TYPE_RAW_TRACEPOINT as PROG_RAW_TRACEPOINT,
                            BPF_PROG_TYPE_TRACEPOINT as PROG_TRACEPOINT,
                            BPF_PROG_TYPE_TRACING as PROG_TRACING)


@record
class ExpandedProbe:
    """One concrete probe: its full bpftrace name and what the provider knows of it."""
    name: str
    provider: "Provider"
    target: str = ""
    func: str = ""
    params: Dict = field(default_factory=dict)


class Provider:
    name = ""
    aliases: tuple = ()
    prog_type = 0
    uses_args = False          # `args` is valid in this probe type

    def expand(self, ap) -> List[ExpandedProbe]:
        raise NotImplementedError

    def section(self, probe: ExpandedProbe) -> str:
        raise NotImplementedError

    def attach_spec(self, probe: ExpandedProbe, cookie: int) -> dict:
        raise NotImplementedError

    def attach_specs(self, probes, cookies) -> List[dict]:
        """The manifest attach entries of one program serving these probes."""
        return [self.attach_spec(p, c) for p, c in zip(probes, cookies)]

    def prologue(self, lowerer):
        """Code at the start of every program of this provider (none by default)."""

    def context_key(self, probe: ExpandedProbe):
        """Probes with the same context key (and the same block) share one program
        when the block reads the probe's context (args)."""
        return None

    def listing(self, verbose: bool) -> List[str]:
        return []


_PROVIDERS: Dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    for n in (provider.name,) + tuple(provider.aliases):
        _PROVIDERS[n] = provider
    return provider


# provider name or alias -> its module, imported on first use (a one-liner loads one or two)
MODULES = {
    "BEGIN": "special", "begin": "special", "END": "special", "end": "special",
    "tracepoint": "tracepoint", "t": "tracepoint",
    "interval": "perf", "i": "perf", "profile": "perf", "p": "perf",
    "software": "perf", "s": "perf", "hardware": "perf", "h": "perf",
    "uprobe": "uprobe", "u": "uprobe", "uretprobe": "uprobe", "ur": "uprobe",
    "usdt": "usdt", "U": "usdt",
    "kprobe": "kprobe", "k": "kprobe", "kretprobe": "kprobe", "kr": "kprobe",
    "kfunc": "kfunc", "f": "kfunc", "fentry": "kfunc",
    "kretfunc": "kfunc", "fr": "kfunc", "fexit": "kfunc",
    "rawtracepoint": "rawtracepoint", "rt": "rawtracepoint",
    "watchpoint": "watchpoint", "w": "watchpoint", "asyncwatchpoint": "watchpoint", "aw": "watchpoint",
    "iter": "iter", "it": "iter",
}


def lookup(name: str) -> Optional[Provider]:
    if name not in _PROVIDERS and name in MODULES:
        import importlib
        importlib.import_module(f".{MODULES[name]}", __name__)
    return _PROVIDERS.get(name)


def all_providers() -> List[Provider]:
    for name in MODULES:
        lookup(name)
    seen = []
    for p in _PROVIDERS.values():
        if p not in seen:
            seen.append(p)
    return seen


def split_attach_point(raw: str) -> List[str]:
    """Split on ':' outside double quotes, dropping the quotes."""
    parts, cur, quoted = [], "", False
    for ch in raw:
        if ch == '"':
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


def expand_attach_point(ap) -> List[ExpandedProbe]:
    """Parse one AttachPoint (filling provider/target/func) and expand it."""
    parts = split_attach_point(ap.raw)
    provider = lookup(parts[0]) or lookup(parts[0].lower() if parts[0].lower() in ("begin", "end") else parts[0])
    if provider is None:
        raise error(f"Invalid probe type: {parts[0]}", ap.span)
    ap.provider = provider.name
    return provider.expand(ap)
