"""A content-addressed cache of compiled objects.

A repeated one-liner skips lark and llvmlite entirely: the key covers everything
the object depends on (the program, its parameters and options, pytrace's own
code, LLVM's version, the kernel release and its set of tracepoints); an object
that probes files (uprobe, usdt) also records them, and is used again only while
they are unchanged. Set PYTRACE_NO_CACHE=1 to bypass it; PYTRACE_CACHE_DIR moves it.

Programs that differ only in some integer literals share one object (`Literals`):
the key is the program's *shape*, its text with each decimal literal below 2**31
blanked (its length kept, so every span stays the same). The compiler lowers those
literals as loads from `.rodata` slots, and reports which ones no pass looked at
(`ast.Literal`): those are *lifted*, and a later run of the same shape writes its
own values into `.rodata` (runtime.objfile.set_rodata) instead of compiling. The
others decided something (a size, a count, a type) and stay in the key: the shape
remembers which literals it lifted (`SHAPE.lits`), the object's key adds the values
of the rest.
"""
from __future__ import annotations

import marshal
import os
import struct
from importlib.machinery import PathFinder

from .version import __version__
from .bytecode import home

try:    # hashlib's own BLAKE2, without hashlib loading OpenSSL (2.5 ms of a 60 ms run)
    from _blake2 import blake2b
except ImportError:
    from hashlib import blake2b

FORMAT = "2"


def cache_dir() -> str:
    if os.environ.get("PYTRACE_CACHE_DIR"):
        return os.environ["PYTRACE_CACHE_DIR"]
    return os.path.join(home(), "objects")


def enabled() -> bool:
    return not os.environ.get("PYTRACE_NO_CACHE")


def _code_fingerprint() -> str:
    """pytrace's own code: the newest modification time among its source files."""
    here = os.path.dirname(os.path.realpath(__file__))
    newest = 0
    for d in (here, os.path.join(os.path.dirname(here), "grammar")):
        for root, dirs, files in os.walk(d):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            for name in files:
                if name.endswith((".py", ".lark")):
                    try:
                        newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
                    except OSError:
                        pass
    return str(newest)


def package_stamp(name: str) -> str:
    """An installed package's files as of now (a new version rewrites them), without
    importing it."""
    try:
        spec = PathFinder.find_spec(name)     # (importlib.util: 1-2 ms more)
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
    h = blake2b(digest_size=32)
    for part in (FORMAT, __version__, _code_fingerprint(), package_stamp("llvmlite"), os.uname().release,
                 _tracepoints_fingerprint(), source, *map(repr, options)):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


# What the parser reads as one token (a string, a comment, a word, a `.field`), or
# something starting with a digit (a number's span); of those, the decimal literals
# without a leading zero are candidates: anything the parser reads otherwise has no
# Integer node at that exact span, and is never lifted. Scanned by hand: `re` (and
# enum, which it imports) was ~5 ms of a cached run's start.
_DIGIT = frozenset("0123456789")
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_") | _DIGIT
_WORD_START = (_WORD - _DIGIT) | frozenset("$@.")
_NUMBER = _WORD | frozenset(".")


def _run(source: str, i: int, chars) -> int:
    """The end of the run of `chars` at `i`."""
    n = len(source)
    while i < n and source[i] in chars:
        i += 1
    return i


def _string_end(source: str, i: int) -> int:
    """The end of the string literal whose `"` is at `i`, or -1 (unterminated)."""
    n = len(source)
    i += 1
    while i < n:
        c = source[i]
        if c == '"':
            return i + 1
        if c == "\\":
            i += 2
        elif c == "\n":
            return -1
        else:
            i += 1
    return -1


def _numbers(source: str):
    """The (start, end) of every token that starts with a digit."""
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        end = -1
        if c == '"':
            end = _string_end(source, i)
        elif c == "/" and source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
        elif c == "/" and source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = end + 2 if end >= 0 else -1
        elif c in _WORD_START:
            end = _run(source, i + 1, _WORD)
        elif c in _DIGIT:
            end = _run(source, i + 1, _NUMBER)
            yield i, end
        i = end if end > i else i + 1


class Literals:
    """The integer literals of a source that one cached object may take at load
    time: `shape` (the source, each blanked), their `values` and `spans`
    ((line, col, end_col), 1-based, as ast.Span)."""

    def __init__(self, source: str):
        self.values, self.spans, parts = [], [], []
        last, line, line_start = 0, 1, 0
        for start, end in _numbers(source):
            text = source[start:end]
            if not text.isdigit() or (text[0] == "0" and text != "0") \
                    or len(text) > 10 or int(text) >= 1 << 31:
                continue
            line += source.count("\n", last, start)
            nl = source.rfind("\n", 0, start)
            line_start = nl + 1
            parts += [source[last:start], "\1" * (end - start)]
            self.values.append(int(text))
            self.spans.append((line, start - line_start + 1, end - line_start + 1))
            last = end
        self.shape = "".join(parts) + source[last:]

    def rodata(self) -> bytes:
        """The `.rodata` of the object: every literal's value, one 8-byte slot each."""
        return struct.pack(f"<{len(self.values)}q", *self.values)

    def object_key(self, shape_key: str, lifted) -> str:
        h = blake2b(digest_size=32)
        h.update(f"{shape_key}\0{sorted(lifted)}\0".encode())
        h.update(repr([v for i, v in enumerate(self.values) if i not in lifted]).encode())
        return h.hexdigest()


class Lookup:
    """One program's way through the cache: `load()` before compiling, `store()` after."""

    def __init__(self, source: str, *options):
        self.literals = Literals(source)
        self.shape_key = key(self.literals.shape, *options)
        self.lifted = lifted(self.shape_key)

    def load(self):
        """(object bytes with this program's literals, warnings text, its manifest or
        None) or None."""
        if self.lifted is None:
            return None
        hit = load(self.literals.object_key(self.shape_key, self.lifted))
        if hit is None or not self.lifted:
            return hit
        # lazy: start-up time (the runtime reads the object anyway)
        from .runtime.objfile import set_rodata
        return (set_rodata(hit[0], self.literals.rodata()),) + hit[1:]

    def store(self, elf: bytes, warnings: str, files, lifted_literals, manifest=None) -> None:
        store(self.literals.object_key(self.shape_key, lifted_literals), elf, warnings, files,
              manifest)
        store_lifted(self.shape_key, lifted_literals)


def lifted(shape_key: str):
    """The literals the shape's object takes at load time (a set of indexes), or
    None if this shape was never compiled."""
    try:
        with open(os.path.join(cache_dir(), f"{shape_key}.lits")) as f:
            return {int(x) for x in f.read().split()}
    except (OSError, ValueError):
        return None


def store_lifted(shape_key: str, indexes) -> None:
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        _write(cache_dir(), f"{shape_key}.lits", " ".join(map(str, sorted(indexes))).encode())
    except OSError:
        pass


def _file_state(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _dependencies(files) -> str:
    """What an object that probes files (uprobe, usdt) was built against: the working
    directory and PATH (relative and bare names), the dynamic linker's cache (library
    names) and each file's inode, size and modification time."""
    lines = [f"cwd\0{os.getcwd()}", f"PATH\0{os.environ.get('PATH', '')}",
             f"file\0/etc/ld.so.cache\0{_file_state('/etc/ld.so.cache')}"]
    lines += [f"file\0{path}\0{_file_state(path)}" for path in sorted(set(files))]
    return "\n".join(lines) + "\n"


def _dependencies_hold(text: str) -> bool:
    for line in text.splitlines():
        kind, *rest = line.split("\0")
        if kind == "cwd":
            ok = rest == [os.getcwd()]
        elif kind == "PATH":
            ok = rest == [os.environ.get("PATH", "")]
        elif kind == "file" and len(rest) == 2:
            ok = _file_state(rest[0]) == rest[1]
        else:
            ok = False
        if not ok:
            return False
    return True


def load(k: str):
    """(object bytes, warnings text, the object's manifest or None) or None, also
    None if a file the object probes has changed since it was stored. The manifest
    is kept beside the object, decoded (marshal): the JSON in the object would cost
    a cached run json's and re's imports (~5 ms)."""
    d = cache_dir()
    try:
        with open(os.path.join(d, f"{k}.o"), "rb") as f:
            elf = f.read()
    except OSError:
        return None
    try:
        with open(os.path.join(d, f"{k}.deps"), encoding="utf-8", errors="surrogateescape") as f:
            if not _dependencies_hold(f.read()):
                return None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        with open(os.path.join(d, f"{k}.warn"), encoding="utf-8") as f:
            warnings = f.read()
    except OSError:
        warnings = ""
    try:
        with open(os.path.join(d, f"{k}.man"), "rb") as f:
            manifest = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        manifest = None
    return elf, warnings, manifest if isinstance(manifest, dict) else None


def store(k: str, elf: bytes, warnings: str = "", files=(), manifest=None) -> None:
    """`files`: the files the object probes (see load); `manifest`: the object's."""
    if any("\n" in f or "\0" in f for f in files):
        return
    d = cache_dir()
    try:
        os.makedirs(d, exist_ok=True)
        if warnings:
            _write(d, f"{k}.warn", warnings.encode())
        if files:
            _write(d, f"{k}.deps", _dependencies(files).encode("utf-8", "surrogateescape"))
        if manifest is not None:
            _write(d, f"{k}.man", marshal.dumps(manifest))
        _write(d, f"{k}.o", elf)     # last: its presence means the entry is complete
    except OSError:
        pass   # a read-only home is no reason to fail a trace


def _write(d: str, name: str, data: bytes):
    tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(d, name))
