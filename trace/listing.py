"""`pytrace -l [glob]` and `-lv`: list the probes this machine offers."""
from __future__ import annotations

import re
import sys

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
    from .language.diagnostics import CompileError, render
    from .language.parser import parse
    try:
        parse(f"{pattern} {{}}")
    except CompileError as e:
        d = e.diagnostics[0]
        if d.message.startswith("invalid character"):
            return render(d, pattern, "stdin")
    return ""


def list_probes(pattern: str, verbose: bool, out=sys.stdout) -> int:
    if pattern and not _SEARCH_CHARS.fullmatch(pattern):
        problem = _invalid_character(pattern)
        if problem:
            sys.stderr.write(problem)
            return 1
    pattern = _normalise(pattern) if pattern else "*"
    if ":" not in pattern and "*" not in pattern:
        pattern = f"*{pattern}*"
    parts = split_attach_point(pattern)
    for provider in all_providers():
        wanted = pattern
        try:
            if provider.lists_targets:
                # uprobe/usdt list the probes of one binary: `uprobe:/path:*`, `usdt:lib:*`
                if len(parts) < 3 or "*" in parts[1] or not glob_match(parts[0], provider.name):
                    continue
                lines = provider.listing(verbose, target=parts[1])
                if lines:       # match against the resolved path (`libc` → /lib/.../libc.so.6)
                    wanted = ":".join([parts[0], lines[0].split(":")[1]] + parts[2:])
            else:
                lines = provider.listing(verbose)
        except OSError as e:
            sys.stderr.write(f"ERROR: cannot list {provider.name} probes: {e}\n")
            continue
        keep = False
        for line in lines:
            if not line.startswith(" "):
                keep = glob_match(wanted, line) or glob_match(wanted, line.rstrip(":"))
                if keep and verbose:
                    out.write(line + "\n")
                    for detail in provider.describe(line):   # -lv details computed for matches only
                        out.write(f"    {detail}\n")
                    continue
            if keep:
                out.write(line + "\n")
    return 0
