"""The BPFTRACE_* environment variables bpftrace 0.17 reads, checked as it checks
them (one table): a number where it reads an unsigned integer, 0 or 1 where it
reads a flag.  `check()` gives 0.17's error text for a bad value; `number()` reads
a checked value with its default."""
from __future__ import annotations

import os
import re

# name -> default; what pytrace does with each is in docs/deviations.md
NUMBERS = {
    "BPFTRACE_STRLEN": 64, "BPFTRACE_MAP_KEYS_MAX": 4096, "BPFTRACE_MAX_PROBES": 512,
    "BPFTRACE_MAX_BPF_PROGS": 512, "BPFTRACE_LOG_SIZE": 1000000, "BPFTRACE_PERF_RB_PAGES": 64,
    "BPFTRACE_MAX_TYPE_RES_ITERATIONS": 0, "BPFTRACE_CAT_BYTES_MAX": 10240,
    "BPFTRACE_NODE_MAX": 0,
}
FLAGS = ("BPFTRACE_NO_CPP_DEMANGLE", "BPFTRACE_NO_USER_SYMBOLS", "BPFTRACE_CACHE_USER_SYMBOLS",
         "BPFTRACE_VERIFY_LLVM_IR")
MAX_STRLEN = 200        # strings live on the 512-byte BPF stack

_UINT = re.compile(r"\s*\+?([0-9]+)")     # what C++'s `stream >> uint64_t` accepts


def number(name: str, environ=os.environ) -> int:
    """The value of a numeric variable (its default if unset or bad)."""
    m = _UINT.match(environ.get(name, ""))
    return int(m.group(1)) if m else NUMBERS[name]


def check(environ=os.environ) -> str:
    """0.17's error for the first bad BPFTRACE_* value, or ''."""
    for name in NUMBERS:
        if name in environ and not _UINT.match(environ[name]):
            return f"ERROR: Env var '{name}' did not contain a valid uint64_t, or was zero-valued.\n"
        if name == "BPFTRACE_STRLEN" and number(name, environ) > MAX_STRLEN:
            return (f"ERROR: 'BPFTRACE_STRLEN' {number(name, environ)} exceeds the current maximum "
                    f"of {MAX_STRLEN} bytes.\nThis limitation is because strings are currently "
                    f"stored on the 512 byte BPF stack.\n")
    for name in FLAGS:
        if name in environ and environ[name] not in ("0", "1"):
            return f"ERROR: Env var '{name}' did not contain a valid value (0 or 1).\n"
    return ""
