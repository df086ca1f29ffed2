"""The BPFTRACE_* environment variables bpftrace 0.17 reads, checked as it checks
them (one table): a number where it reads an unsigned integer, 0 or 1 where it
reads a flag.  `check()` gives 0.17's error text for a bad value; `number()` reads
a checked value with its default."""
from __future__ import annotations

import os

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


def _uint(text: str):
    """The digits C++'s `stream >> uint64_t` reads at the start of `text` (spaces,
    an optional '+', then digits), or None."""
    i, n = 0, len(text)
    while i < n and text[i].isspace():
        i += 1
    if text.startswith("+", i):
        i += 1
    end = i
    while end < n and text[end] in "0123456789":
        end += 1
    return text[i:end] if end > i else None


def number(name: str, environ=os.environ) -> int:
    """The value of a numeric variable (its default if unset or bad)."""
    digits = _uint(environ.get(name, ""))
    return int(digits) if digits is not None else NUMBERS[name]


def check(environ=os.environ) -> str:
    """0.17's error for the first bad BPFTRACE_* value, or ''."""
    for name in NUMBERS:
        if name in environ and _uint(environ[name]) is None:
            return f"ERROR: Env var '{name}' did not contain a valid uint64_t, or was zero-valued.\n"
        if name == "BPFTRACE_STRLEN" and number(name, environ) > MAX_STRLEN:
            return (f"ERROR: 'BPFTRACE_STRLEN' {number(name, environ)} exceeds the current maximum "
                    f"of {MAX_STRLEN} bytes.\nThis limitation is because strings are currently "
                    f"stored on the 512 byte BPF stack.\n")
    for name in FLAGS:
        if name in environ and environ[name] not in ("0", "1"):
            return f"ERROR: Env var '{name}' did not contain a valid value (0 or 1).\n"
    return ""
