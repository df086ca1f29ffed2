"""`pytrace -l [glob]` and `-lv`: list the probes this machine offers."""
from __future__ import annotations

import re
import sys

from .language.ast import Span
from .language.diagnostics import CompileError, Diagnostic, render
from .providers import all_providers, glob_match, lookup, split_attach_point


_SEARCH_CHARS = re.compile(r"[\w:*./+@\- ,\[\]?{}\"]*")     # surely no invalid character


def _normalise(pattern: str) -> str:
    parts = split_attach_point(pattern)
    if len(parts) > 1:
        provider = lookup(parts[0])
        if provider is not None:
            parts[0] = provider.name
    return ":".join(parts)


def _invalid_character(pattern: str) -> str:
    """bpftrace parses the search as attach points: a character no attach point can
    hold is its located error (`-l '\\n'`); '' if there is none."""
    # lazy: start-up time (lark; -l without such characters never parses)
    from .language.parser import parse
    try:
        parse(f"{pattern} {{}}")
    except CompileError as e:
        d = e.diagnostics[0]
        if d.message.startswith("invalid character"):
            return render(d, pattern, "stdin")
    return ""


def list_probes(pattern: str, verbose: bool, out=sys.stdout, pid=None) -> int:
    """-l [pattern] (-p PID: with a wildcarded probe type, the user-space probes of
    that process: its executable's functions and the USDT probes of what it maps)."""
    if pattern and not _SEARCH_CHARS.fullmatch(pattern):
        problem = _invalid_character(pattern)
        if problem:
            sys.stderr.write(problem)
            return 1
    if pid and pattern in ("", "*"):
        pattern = "*:*"
    written = pattern
    pattern = _normalise(pattern) if pattern else "*"
    if ":" not in pattern and "*" not in pattern:
        pattern = f"*{pattern}*"
    parts = split_attach_point(pattern)
    any_type = "*" in parts[0]
    for provider in all_providers():
        if (pid and any_type and not provider.lists_targets) or \
                (len(parts) > 1 and not glob_match(parts[0], provider.name)):
            continue        # every listed line starts with its provider's name
        try:
            if provider.lists_targets:
                # uprobe/usdt list the probes of binaries: `uprobe:/path:*`, `usdt:lib:*`;
                # a wildcarded type leaves the return probes out, as bpftrace
                if any_type and provider.retprobe:
                    continue
                try:
                    lines = provider.list_matching(parts, pid)
                except CompileError as e:
                    if any_type:        # `*:x`: the types it cannot be are left out
                        continue
                    return _located(e, written)
                _write(provider, lines, verbose, out)
                continue
            lines = provider.listing(verbose)
        except OSError as e:
            sys.stderr.write(f"ERROR: cannot list {provider.name} probes: {e}\n")
            continue
        keep = False
        for line in lines:
            if not line.startswith(" "):
                keep = glob_match(pattern, line) or glob_match(pattern, line.rstrip(":"))
                if keep and verbose:
                    _write(provider, [line], verbose, out)
                    continue
            if keep:
                out.write(line + "\n")
    return 0


def _located(e, pattern: str) -> int:
    """A pattern's error, located on the whole pattern as 0.17 locates it (`stdin:1:1-N`)."""
    for d in e.diagnostics:
        d = Diagnostic(d.message, Span(1, 1, 1, len(pattern) + 1))
        sys.stderr.write(render(d, pattern, "stdin"))
    return 1


def _write(provider, lines, verbose, out):
    for line in lines:
        out.write(line + "\n")
        if verbose:
            for detail in provider.describe(line):   # -lv details computed for matches only
                out.write(f"    {detail}\n")
