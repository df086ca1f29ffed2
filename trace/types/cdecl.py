"""The C declarations of a script, as the passes use them: the types, sizes and
constants that `types/cparse.py` (pcpp + pycparser) reads from the text before
the probes, with the kernel's BTF types behind them.  A script without C
declarations imports no C parser."""
from __future__ import annotations

import os
import re

from .btf import VMLINUX

class Declarations:
    """`decls`: a cparse.CDecls, or None when the script declares nothing."""

    def __init__(self, decls=None):
        self.decls = decls
        self.defines: dict[str, int] = {}
        self.warnings = list(decls.warnings) if decls is not None else []
        if decls is not None:
            self.defines.update(decls.enums)
            self.defines.update((k, v) for k, v in decls.macros.items()
                                if isinstance(v, int) and not isinstance(v, bool))

    @classmethod
    def parse(cls, definitions, positions, include_dirs=(), includes=()):
        if not definitions and not includes:
            return cls()
        from . import cmodel, cparse    # lazy: start-up time (pcpp and pycparser only for C)
        from .btf import vmlinux
        btf = vmlinux() if os.path.exists(VMLINUX) else None
        fallback = cmodel.btf_fallback(btf) if btf is not None else None
        chunks = [(_last_member_ended(text), line, col)
                  for text, (line, col) in zip(definitions, positions)]
        return cls(cparse.parse(chunks, include_dirs, includes, fallback))

    def defines_record(self, name: str) -> bool:
        """Whether the script itself defines `struct X` / `union X`."""
        return self.decls is not None and " ".join(name.split()) in self.decls.space.types

    def size_of(self, name: str) -> int | None:
        name = " ".join(name.split())
        if name.endswith("*"):
            return 8
        if self.decls is not None and self.defines_record(name):
            from . import cmodel            # lazy: start-up time (with the C declarations)
            return cmodel.sizeof(self.decls.space.lookup(name), self.decls.space)
        from . import cmodel                # lazy: start-up time (only for a named type)
        t = cmodel.scalar(name)
        return t.size if t is not None else None


def _last_member_ended(text: str) -> str:
    """`struct A { int a; char c[28] }`: clang (so bpftrace) accepts a last member
    without its `;` (a warning); pycparser does not, so add it."""
    if not text.lstrip().startswith(("struct", "union")):
        return text
    return re.sub(r"([\w\])])(\s*)\}", r"\1;\2}", text)
