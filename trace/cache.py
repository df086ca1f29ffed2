"""A content-addressed cache of compiled objects.

A repeated one-liner skips lark and llvmlite entirely: the key covers everything
the object depends on (the program, its parameters and options, pytrace's own
code, LLVM's version, the kernel release and its set of tracepoints). Set
PYTRACE_NO_CACHE=1 to bypass it; PYTRACE_CACHE_DIR moves it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

FORMAT = "1"


def cache_dir() -> Path:
    if os.environ.get("PYTRACE_CACHE_DIR"):
        return Path(os.environ["PYTRACE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytrace" / "objects"


def enabled() -> bool:
    return not os.environ.get("PYTRACE_NO_CACHE")


def _code_fingerprint() -> str:
    """pytrace's own code: the newest modification time among its source files."""
    here = Path(__file__).resolve().parent
    newest = 0
    for d in (here, here / "passes", here / "codegen", here / "providers", here.parent / "grammar"):
        try:
            for entry in os.scandir(d):
                if entry.name.endswith((".py", ".lark")):
                    newest = max(newest, entry.stat().st_mtime_ns)
        except OSError:
            pass
    return str(newest)


def _llvm_version() -> str:
    """llvmlite's installed files (a new version rewrites them), without importing it."""
    from importlib.util import find_spec
    try:
        spec = find_spec("llvmlite")
        return f"{spec.origin}:{os.stat(spec.origin).st_mtime_ns}"
    except (ImportError, AttributeError, TypeError, OSError):
        return "unknown"


def _tracepoints_fingerprint() -> str:
    for root in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"):
        try:
            st = os.stat(root)
            return f"{st.st_nlink}:{st.st_mtime_ns}"
        except OSError:
            continue
    return "none"


def key(source: str, *options) -> str:
    from . import __version__
    h = hashlib.sha256()
    for part in (FORMAT, __version__, _code_fingerprint(), _llvm_version(), os.uname().release,
                 _tracepoints_fingerprint(), source, *map(repr, options)):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def load(k: str):
    """(object bytes, warnings text) or None."""
    d = cache_dir()
    try:
        elf = (d / f"{k}.o").read_bytes()
    except OSError:
        return None
    try:
        warnings = (d / f"{k}.warn").read_text()
    except OSError:
        warnings = ""
    return elf, warnings


def store(k: str, elf: bytes, warnings: str = "") -> None:
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        if warnings:
            _write(d, f"{k}.warn", warnings.encode())
        _write(d, f"{k}.o", elf)     # last: its presence means the entry is complete
    except OSError:
        pass   # a read-only home is no reason to fail a trace


def _write(d: Path, name: str, data: bytes):
    tmp = d / f".{name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, d / name)
