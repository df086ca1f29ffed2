"""Bytecode for pytrace's own modules when Python writes none beside them.

With PYTHONDONTWRITEBYTECODE (or `python -B`) and an editable install, every run
would compile pytrace's ~19,000 lines from source again (~0.2 s of CPU on the
compiler's path). Python's switch is about the source tree (no `__pycache__`
written there), so pytrace keeps its own modules' bytecode in its cache
directory instead, `home()/bytecode` (laid out as `sys.pycache_prefix` lays
out its files), checked against the source's modification time and size.
Other packages' imports are untouched, and so is a run where Python writes
bytecode itself. PYTRACE_NO_BYTECODE_CACHE=1 turns this off.

This module is imported by `pytrace/__init__.py` before anything else of
pytrace; it imports nothing of pytrace.
"""
from __future__ import annotations

import marshal
import os
import struct
import sys
from importlib._bootstrap_external import MAGIC_NUMBER   # importlib.util's (1-2 ms to import)
from importlib.machinery import SourceFileLoader


def home() -> str:
    """pytrace's cache directory: compiled objects, the grammar, the BTF and DWARF
    indexes, the bytecode of its modules."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pytrace")


class CachingLoader(SourceFileLoader):
    """A source loader that reads and writes the bytecode under `directory`."""

    directory = ""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        try:
            st = os.stat(path)
        except OSError:
            return super().get_code(fullname)
        header = MAGIC_NUMBER + struct.pack("<QQ", st.st_mtime_ns, st.st_size)
        # the source's own path below the directory, as sys.pycache_prefix lays it out
        cached = os.path.join(self.directory, os.path.abspath(path).lstrip(os.sep)
                              + f".{sys.implementation.cache_tag}.pyc")
        try:
            with open(cached, "rb") as f:
                data = f.read()
            if data.startswith(header):
                return marshal.loads(memoryview(data)[len(header):])
        except (OSError, ValueError, EOFError, TypeError):
            pass
        code = self.source_to_code(self.get_data(path), path)
        write_file(cached, header + marshal.dumps(code))
        return code


def write_file(path: str, data: bytes) -> None:
    """Write `path` whole or not at all (a temporary file renamed), quietly giving
    up if it can't be written: what pytrace caches is made again next time."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass    # a read-only home: made again next time


class Finder:
    """Finds `pytrace.*` modules through the other finders and gives those read
    from source files the caching loader."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if not fullname.startswith("pytrace."):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is cls or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if type(spec.loader) is SourceFileLoader:
                    spec.loader = CachingLoader(fullname, spec.origin)
                return spec
        return None


def install() -> None:
    if not sys.dont_write_bytecode or os.environ.get("PYTRACE_NO_BYTECODE_CACHE") \
            or Finder in sys.meta_path:
        return
    CachingLoader.directory = os.path.join(home(), "bytecode")
    sys.meta_path.insert(0, Finder)
