"""uprobe / uretprobe: user-space function probes.

  uprobe:/path:func         uprobe:lib:func (`libc` → the dynamic linker's cache)
  uprobe:/path:0xADDR       uprobe:/path:func+OFF       uprobe:/path:fn*

The ELF helpers (symbols, vaddr → file offset, library resolution) are in elf.py,
shared with usdt; the pt_regs builtins in regs.py. A program's context is
`struct pt_regs *`.
"""
from __future__ import annotations

import re

from ..language.diagnostics import error
from . import ExpandedProbe, glob_match, probe_offset, register, split_attach_point
from .elf import binary_for, list_functions, process_exe
from .regs import RegsProvider


class Uprobe(RegsProvider):
    def __init__(self, name, retprobe):
        self.name, self.retprobe = name, retprobe
        self.attach_kind = name

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) == 2 and ap.pid:       # -p: the target may be left out
            parts.insert(1, process_exe(ap.pid) or "")
        if len(parts) != 3:
            raise error(f"{self.name} probe type requires 2 arguments", ap.span)
        _, target, spec = parts
        ap.target, ap.func = target, spec
        path, elf = binary_for(ap, target, "uprobe")
        ap.target = path
        if "*" in spec:
            names = sorted(n for n in elf.functions if glob_match(spec, n))
            if not names:
                raise error(f"No probes found for {self.name}:{path}:{spec}", ap.span)
            return [self._probe(ap, path, elf, n, 0) for n in names]
        m = re.fullmatch(r"(.+?)\+(\w+)", spec)
        if re.fullmatch(r"0x[0-9a-fA-F]+|[0-9]+", spec):
            vaddr = int(spec, 0)
            offset = elf.offset_of(vaddr, executable=True)
            if offset is None:
                raise error(f"Could not resolve address: {path}:{spec}", ap.span)
            return [ExpandedProbe(f"{self.name}:{path}:{spec}", self, path, elf.symbol_at(vaddr),
                                  {"offset": offset, "vaddr": vaddr})]
        if m:
            off = probe_offset(ap, m.group(2), self.retprobe)
            return [self._probe(ap, path, elf, m.group(1), off, spec)]
        return [self._probe(ap, path, elf, spec, 0)]

    def _probe(self, ap, path, elf, func, off, spec=None):
        sym = elf.functions.get(func)
        if sym is None:
            raise error(f"Could not resolve symbol: {path}:{func}", ap.span)
        vaddr, size = sym
        if off and size and off >= size:
            raise error(f"Offset outside the function bounds ('{func}' size is {size})", ap.span)
        offset = elf.offset_of(vaddr + off, executable=True)
        if offset is None:
            raise error(f"Could not resolve symbol: {path}:{func}", ap.span)
        return ExpandedProbe(f"{self.name}:{path}:{spec or func}", self, path, func,
                             {"offset": offset, "vaddr": vaddr + off})

    def section(self, probe):
        return self.name

    def list_matching(self, parts, pid):
        return list_functions(self.name, parts, pid)


UPROBE = register(Uprobe("uprobe", False))
URETPROBE = register(Uprobe("uretprobe", True))
