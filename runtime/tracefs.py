"""tracefs: mount/discover it, list tracepoints, read ids and format files.

Used by the runtime (tracepoint ids) and by the compiler (tracepoint
listing, wildcard expansion, ``args`` layouts).
"""

import ctypes
import os
import re

from .record import record
from .errors import RuntimeFailure, TracepointNotFound

TRACING = "/sys/kernel/tracing"
DEBUG_TRACING = "/sys/kernel/debug/tracing"

_root = None


def _has_events(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "events"))


def ensure_mounted() -> str:
    """Return the tracefs root, mounting tracefs on /sys/kernel/tracing if needed."""
    global _root
    if _root is not None and _has_events(_root):
        return _root
    for cand in (TRACING, DEBUG_TRACING):
        if _has_events(cand):
            _root = cand
            return cand
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_void_p]
    ret = libc.mount(b"nodev", TRACING.encode(), b"tracefs", 0, None)
    if ret != 0:
        err = ctypes.get_errno()
        if not _has_events(TRACING):  # EBUSY: raced with another mounter
            raise RuntimeFailure(
                f"could not mount tracefs on {TRACING}: {os.strerror(err)}")
    if not _has_events(TRACING):
        raise RuntimeFailure(f"tracefs mounted on {TRACING} has no events directory")
    _root = TRACING
    return _root


def tracefs_root() -> str:
    return ensure_mounted()


def events_dir() -> str:
    return os.path.join(tracefs_root(), "events")


def list_tracepoints() -> list:
    """Every (category, event) pair, sorted."""
    base = events_dir()
    out = []
    with os.scandir(base) as cats:
        for c in cats:
            if not c.is_dir():
                continue
            try:
                with os.scandir(c.path) as evs:
                    for e in evs:
                        if e.is_dir():
                            out.append((c.name, e.name))
            except OSError:
                continue
    out.sort()
    return out


def _event_path(cat: str, ev: str, leaf: str) -> str:
    if "/" in cat or "/" in ev or cat in ("", ".", "..") or ev in ("", ".", ".."):
        raise TracepointNotFound(cat, ev)
    return os.path.join(events_dir(), cat, ev, leaf)


def tracepoint_exists(cat: str, ev: str) -> bool:
    try:
        return os.path.isfile(_event_path(cat, ev, "id"))
    except TracepointNotFound:
        return False


def event_id(cat: str, ev: str) -> int:
    """The perf tracepoint id of cat:ev (TracepointNotFound if missing)."""
    try:
        with open(_event_path(cat, ev, "id")) as f:
            return int(f.read().strip())
    except (FileNotFoundError, NotADirectoryError):
        raise TracepointNotFound(cat, ev) from None


@record(frozen=True)
class Field:
    """One field of a tracepoint's context.

    ``type`` is the C type text: "int", "const char *", "char[16]",
    "__data_loc char[]", "unsigned long[]".  Inline arrays have
    ``is_array`` and ``array_len`` (0 for a flexible ``[]`` array).
    ``__data_loc``/``__rel_loc`` fields are u32 ``len << 16 | offset``
    (offset from the start of the context, or from the end of the field for
    ``__rel_loc``); they have ``is_data_loc`` and ``is_array`` False.
    ``offset`` is from the start of the tracepoint context.
    """
    name: str
    type: str
    offset: int
    size: int
    signed: bool
    is_data_loc: bool = False
    is_array: bool = False
    array_len: int = 0
    is_rel_loc: bool = False


_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>.*?);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>-?\d+);)?")
_ARRAY_RE = re.compile(r"^(?P<head>.*?)\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\[(?P<len>[^\]]*)\](?P<rest>(?:\[[^\]]*\])*)$")
_PLAIN_RE = re.compile(r"^(?P<head>.*?)\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")

_ELEM_SIZES = {"char": 1, "unsigned char": 1, "signed char": 1, "u8": 1, "s8": 1,
               "__u8": 1, "__s8": 1, "bool": 1, "short": 2, "unsigned short": 2,
               "u16": 2, "s16": 2, "__u16": 2, "__s16": 2, "int": 4,
               "unsigned int": 4, "u32": 4, "s32": 4, "__u32": 4, "__s32": 4,
               "pid_t": 4, "long": 8, "unsigned long": 8, "u64": 8, "s64": 8,
               "__u64": 8, "__s64": 8, "long long": 8, "unsigned long long": 8}


def parse_field(line: str):
    """Parse one ``field:`` line of a format file; None if not a field line."""
    m = _FIELD_RE.match(line)
    if not m:
        return None
    decl = m.group("decl").strip()
    off = int(m.group("off"))
    size = int(m.group("size"))
    signed = m.group("signed") not in (None, "0")
    is_rel_loc = False
    for kw in ("__data_loc", "__rel_loc"):
        if decl.startswith(kw + " "):
            is_rel_loc = kw == "__rel_loc"
            rest = decl[len(kw):].strip()
            pm = _PLAIN_RE.match(rest)
            if not pm:
                return None
            return Field(pm.group("name"), f"{kw} {pm.group('head').strip()}",
                         off, size, signed, True, False, 0, is_rel_loc)
    am = _ARRAY_RE.match(decl)
    if am:
        head = am.group("head").strip()
        dims = "[" + am.group("len") + "]" + am.group("rest")
        ln_txt = am.group("len").strip()
        if ln_txt.isdigit():
            n = int(ln_txt)
        elif ln_txt == "":
            n = 0
        else:  # a macro the kernel did not expand: infer from the size
            es = _ELEM_SIZES.get(head)
            n = size // es if es else 0
            dims = f"[{n}]" + am.group("rest")
        return Field(am.group("name"), f"{head}{dims}", off, size, signed,
                     False, True, n)
    pm = _PLAIN_RE.match(decl)
    if not pm:
        return None
    head = pm.group("head").strip()
    return Field(pm.group("name"), head, off, size, signed)


def parse_format(text: str, include_common: bool = False) -> list:
    """Fields of a tracepoint format file (without ``common_*`` by default)."""
    out = []
    for line in text.splitlines():
        f = parse_field(line)
        if f is None:
            continue
        if not include_common and f.name.startswith("common_"):
            continue
        out.append(f)
    return out


def tracepoint_format(cat: str, ev: str, include_common: bool = False) -> list:
    """The fields of cat:ev (offsets relative to the start of the context)."""
    try:
        with open(_event_path(cat, ev, "format")) as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        raise TracepointNotFound(cat, ev) from None
    return parse_format(text, include_common)
