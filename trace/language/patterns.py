"""Regular expressions compiled once per machine, not once per run.

lark's contextual lexer compiles one alternation of terminals for each parser
state it reaches (~0.7 ms each): about 6 ms of a one-liner's cold start, more
for a script, and nearly all of a cold parse.  Python compiles a regular
expression in Python (re._parser, re._compiler) and hands the result, a list of
opcodes, to _sre.compile().  `PatternCache` keeps those results in a file and
rebuilds patterns with _sre.compile() directly.  The file is named after the
interpreter's exact build and _sre's opcode MAGIC, so a new Python never reads
another's opcodes; anything unexpected falls back to re.compile().

A PatternCache has what lark's lexer uses of the `re` module: compile(),
match() and error.
"""
from __future__ import annotations

import marshal
import os
import re
import sys

try:
    import _sre
    from re import _compiler, _parser           # Python >= 3.11
except ImportError:                              # pragma: no cover (3.10)
    try:
        import _sre
        import sre_compile as _compiler
        import sre_parse as _parser
    except ImportError:
        _sre = None


def interpreter_key() -> str:
    """Identifies the opcode format: the interpreter's build and _sre's MAGIC."""
    magic = getattr(_sre, "MAGIC", None)
    return f"{sys.version}|{sys.implementation.cache_tag}|{magic}|{getattr(_sre, 'CODESIZE', None)}"


class PatternCache:
    error = re.error

    def __init__(self, path: str | None):
        self.path = path
        self._entries = {}      # (pattern, flags) -> the arguments of _sre.compile after the pattern
        self._compiled = {}
        self._dirty = False
        if path and _sre is not None:
            try:
                with open(path, "rb") as f:
                    entries = marshal.loads(f.read())   # marshal.load(f) reads in tiny pieces
                if isinstance(entries, dict):
                    self._entries = entries
            except (OSError, EOFError, ValueError, TypeError):
                pass

    def compile(self, pattern, flags=0):
        key = (pattern, flags)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._build(pattern, flags)
        return compiled

    def match(self, pattern, string, flags=0):
        return self.compile(pattern, flags).match(string)

    def _build(self, pattern, flags):
        key = (pattern, flags)
        entry = self._entries.get(key)
        if entry is not None:
            try:
                return _sre.compile(pattern, *entry)
            except Exception:
                del self._entries[key]
        if _sre is None or not isinstance(flags, int):
            return re.compile(pattern, flags)
        try:
            parsed = _parser.parse(pattern, flags)
            code = [int(op) for op in _compiler._code(parsed, flags)]   # plain ints marshal
            groupindex = dict(parsed.state.groupdict)
            indexgroup = [None] * parsed.state.groups
            for name, index in groupindex.items():
                indexgroup[index] = name
            entry = (flags | parsed.state.flags, code, parsed.state.groups - 1,
                     groupindex, tuple(indexgroup))
            compiled = _sre.compile(pattern, *entry)
        except Exception:
            return re.compile(pattern, flags)     # raises re's own error, if any
        self._entries[key] = entry
        self._dirty = True
        return compiled

    def save(self):
        """Write the file if patterns were added (quietly skipped if it can't be written)."""
        if not (self._dirty and self.path):
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(marshal.dumps(self._entries))
            os.replace(tmp, self.path)
            self._dirty = False
        except (OSError, ValueError):
            try:
                os.unlink(tmp)
            except OSError:
                pass
