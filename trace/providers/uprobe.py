"""uprobe / uretprobe: user-space function probes.

  uprobe:/path:func         uprobe:lib:func (`libc` → the dynamic linker's cache)
  uprobe:/path:0xADDR       uprobe:/path:func+OFF       uprobe:/path:fn*

The ELF helpers (symbols, vaddr → file offset, library resolution) are in elf.py,
shared with usdt; the pt_regs builtins in regs.py. A program's context is
`struct pt_regs *`.

With DWARF in the binary (types/dwarf.py), a uprobe's `args->NAME` is the function's
parameter NAME, typed as DWARF says and read from its argument register (the
stack from the 7th on); the binary's structs can be named in casts, and `-lv`
lists each function's parameters.
"""
from __future__ import annotations

import functools
import re

from ..language.diagnostics import Diagnostic, Unresolved, error
from ..types.model import IntT, PtrT
from . import ExpandedProbe, glob_match, probe_offset, register, split_attach_point
from .elf import binary_for, list_functions, needed_libraries, process_exe, read_elf, resolve_targets
from .regs import ARG_REGS, RegsProvider, read_reg, read_stack_arg


class Uprobe(RegsProvider):
    def __init__(self, name, retprobe):
        self.name, self.retprobe = name, retprobe
        self.attach_kind = name
        self.uses_args = not retprobe

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) == 2 and ap.pid:       # -p: the target may be left out
            parts.insert(1, process_exe(ap.pid) or "")
        if len(parts) != 3:
            raise error(f"{self.name} probe type requires 2 arguments", ap.span)
        _, target, spec = parts
        ap.target, ap.func = target, spec
        if "*" in target:
            return self._expand_files(ap, target, spec)
        path, elf = binary_for(ap, target, "uprobe")
        ap.target = path
        if "*" in spec:
            names = _matching(elf, spec)
            if not names:
                raise error(f"No probes found for {self.name}:{path}:{spec}", ap.span)
            return [self._probe(ap, path, elf, n, 0) for n in names]
        return self._expand_spec(ap, path, elf, spec)

    def _expand_files(self, ap, target, spec):
        """A wildcarded file (`uprobe:/usr/bin/ba*:main`): the function in every
        executable or library the pattern matches that has it."""
        paths = resolve_targets(target, ap.pid)
        if not paths:
            raise error(f"uprobe target file '{target}' does not exist or is not executable", ap.span)
        probes = []
        for path in paths:
            elf = read_elf(path)
            if elf is None:
                continue
            name = re.match(r"[^+]*", spec).group(0)
            if "*" in spec:
                probes += [self._probe(ap, path, elf, n, 0) for n in _matching(elf, spec)]
            elif name in elf.functions:
                probes += self._expand_spec(ap, path, elf, spec)
        if not probes:
            raise error(f"No probes found for {self.name}:{target}:{spec}", ap.span)
        return probes

    def _expand_spec(self, ap, path, elf, spec):
        """The probe of one function, function+offset or address in one binary."""
        m = re.fullmatch(r"(.+?)\+(\w+)", spec)
        if re.fullmatch(r"0x[0-9a-fA-F]+|[0-9]+", spec):
            vaddr = int(spec, 0)
            offset = elf.offset_of(vaddr, executable=True)
            if offset is None:
                raise error(f"Could not resolve address: {path}:{vaddr:#x}", ap.span)
            return [ExpandedProbe(f"{self.name}:{path}:{spec}", self, path, elf.symbol_at(vaddr),
                                  {"offset": offset, "vaddr": vaddr})]
        if m:
            off = probe_offset(ap, m.group(2), self.retprobe)
            return [self._probe(ap, path, elf, m.group(1), off, spec)]
        return [self._probe(ap, path, elf, spec, 0)]

    def _probe(self, ap, path, elf, func, off, spec=None):
        sym = elf.functions.get(func)
        if sym is None:
            path, elf = _defining_library(path, func)
            sym = elf.functions.get(func) if elf is not None else None
        if sym is None:
            raise Unresolved(Diagnostic(f"Could not resolve symbol: {ap.target}:{func}", ap.span))
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


    # -------------------------------------------------- DWARF: args, types, -lv
    def type_source(self, unit):
        return _dwarf_source(tuple(sorted({p.target for p in unit.probes})))

    def args_field(self, ck, e):
        from ..types.kernel import from_c, space_of   # lazy: start-up time (C types)
        params = _unit_params(ck.unit)
        for i, (name, ct, _die) in enumerate(params):
            if name == e.field:
                t = from_c(ct, space_of(ck), user=True)
                if not isinstance(t, (IntT, PtrT)):
                    raise error(f"Argument '{name}' of type '{_dw().type_name(_die)}' is not "
                                f"supported (integers and pointers are)", e.span)
                e.ctx_slot = i
                return t
        raise error(f"Can't find function parameter {e.field}", e.span)

    def read_field(self, lw, e):
        """A parameter: its argument register (the stack from the 7th), truncated and
        extended to its integer type."""
        i = e.ctx_slot
        value = read_reg(lw, ARG_REGS[i]) if i < len(ARG_REGS) else \
            read_stack_arg(lw, i - len(ARG_REGS))
        t = e.type
        return lw.fb.narrow(value, t.bits, t.signed) if isinstance(t, IntT) else value

    def describe(self, line):
        _, path, func = line.split(":", 2)
        d = _dw().dwarf_of(path)
        params = d.params(func) if d is not None else None
        return [f"{_dw().type_name(die)} {name}" for name, _ct, die in params or ()]


def _matching(elf, spec):
    """The functions of elf a wildcarded spec matches; versioned names (`f@@V`) alias
    a plain one: only a pattern with `@` has them."""
    return sorted(n for n in elf.functions if glob_match(spec, n) and ("@" not in n or "@" in spec))


def _defining_library(path, func):
    """(path, ElfFile) of the library `path` needs that defines func (a stub such as
    libpthread.so.0, whose functions live in libc.so.6), or (path, None)."""
    for lib in needed_libraries(path):
        elf = read_elf(lib)
        if elf is not None and func in elf.functions:
            return lib, elf
    return path, None


def _dw():
    from ..types import dwarf     # lazy: start-up time (DWARF only where a program needs it)
    return dwarf


@functools.lru_cache(maxsize=None)
def _dwarf_source(paths):
    """Named types of the probed binaries' DWARF (the first binary that has the name)."""
    def lookup(name):
        for path in paths:
            d = _dw().dwarf_of(path)
            found = d.lookup(name) if d is not None else None
            if found is not None:
                return found
        return None
    return lookup


def _unit_params(unit):
    """The DWARF parameters of the unit's functions, which must agree (0.17's errors)."""
    sig = None
    for p in unit.probes:
        ap = next(a for a in unit.probe.attach_points if p.name in (a.expanded or ()))
        d = _dw().dwarf_of(p.target)
        if d is None:
            raise error(f"No debuginfo found for {p.target}", ap.span)
        params = d.params(p.func) or []
        this = [(n, ct) for n, ct, _ in params]
        if sig is not None and this != sig[0]:
            raise error("Probe has attach points with mixed arguments", ap.span)
        sig = sig or (this, params)
    return sig[1]


UPROBE = register(Uprobe("uprobe", False))
URETPROBE = register(Uprobe("uretprobe", True))
