"""uprobe / uretprobe (aliases u: / ur:): user-space function probes.

  uprobe:/path:func         uprobe:lib:func (`libc` → the dynamic linker's cache)
  uprobe:/path:0xADDR       uprobe:/path:func+OFF       uprobe:/path:fn*

The ELF helpers here (symbols, vaddr → file offset, library resolution) are
shared with the usdt provider. A program's context is `struct pt_regs *`.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from typing import Dict, List, Optional, Tuple

from ..runtime.record import record, field
from ..codegen import builder as B
from ..codegen.builder import const
from ..diagnostics import error
from ..types import UINT64, PtrT, StrT
from . import (PROG_KPROBE, ExpandedProbe, Provider, glob_match, probe_offset, register,
               split_attach_point)

# struct pt_regs (x86-64) offsets, by bpftrace's register names
REG_OFFSETS = {
    "r15": 0, "r14": 8, "r13": 16, "r12": 24, "bp": 32, "bx": 40, "r11": 48, "r10": 56,
    "r9": 64, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104, "di": 112, "orig_ax": 120,
    "ip": 128, "cs": 136, "flags": 144, "sp": 152, "ss": 160,
}
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")      # the function-call ABI (not syscalls' r10)
MAX_ARG = len(ARG_REGS) - 1
STRLEN = 64


# ------------------------------------------------------------------ ELF files

@record
class ElfFile:
    path: str
    is_dyn: bool                                   # ET_DYN: PIE or shared object
    loads: List[Tuple[int, int, int, int, int]]    # (vaddr, memsz, offset, filesz, flags)
    functions: Dict[str, Tuple[int, int]]          # name -> (vaddr, size), defined functions
    objects: Dict[str, Tuple[int, int]]            # name -> (vaddr, size), data symbols
    notes: list = field(default_factory=list)      # USDT notes (see usdt.py)

    def offset_of(self, vaddr: int, executable: bool = False) -> Optional[int]:
        """The file offset of a virtual address (via its PT_LOAD segment)."""
        for seg_vaddr, memsz, offset, filesz, flags in self.loads:
            if seg_vaddr <= vaddr < seg_vaddr + filesz:
                if executable and not flags & 1:
                    continue
                return vaddr - seg_vaddr + offset
        return None

    def symbol_at(self, vaddr: int) -> str:
        best = ""
        for name, (start, size) in self.functions.items():
            if start <= vaddr < start + max(size, 1) and (not best or name < best):
                best = name
        return best


def _stat_key(path: str):
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_elf(path: str) -> Optional[ElfFile]:
    """The parsed ELF file at path, or None if it is not one (cached by inode/mtime)."""
    try:
        key = _stat_key(path)
    except OSError:
        return None
    return _read_elf(path, key)


@functools.lru_cache(maxsize=32)
def _read_elf(path: str, _key) -> Optional[ElfFile]:
    from ..runtime.elfread import ElfError, ElfImage
    try:
        elf = ElfImage(path)
    except ElfError:
        return _read_elf_pyelftools(path)       # e.g. a 32-bit binary
    except OSError:
        return None
    try:
        functions, objects = {}, {}
        _add_symbols(elf, functions, objects)
        debug = elf.debug_file()
        if debug is not None:
            try:
                # local functions of a stripped library (libc's strchr_ifunc), as bpftrace
                _add_symbols(ElfImage(debug), functions, objects)
            except (ElfError, OSError):
                pass
        notes = []
        sec = elf.section(".note.stapsdt")
        if sec is not None:
            base_sec = elf.section(".stapsdt.base")
            base_addr = base_sec.addr if base_sec is not None else None
            notes = [_parse_stapsdt(desc, base_addr) for name, type_, desc in elf.notes(sec)
                     if name == b"stapsdt" and type_ == 3]
        return ElfFile(path, elf.is_dyn, elf.loads, functions, objects, notes)
    except ElfError:
        return None


def _add_symbols(elf, functions, objects):
    from ..runtime.elfread import (STT_COMMON, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT,
                                   STT_TLS)
    for name, type_, shndx, value, size in elf.symbols():
        if not name or shndx == 0 or not value:
            continue
        if type_ in (STT_FUNC, STT_GNU_IFUNC):
            functions.setdefault(name.split("@")[0], (value, size))
        elif type_ in (STT_OBJECT, STT_TLS, STT_COMMON):
            objects.setdefault(name.split("@")[0], (value, size))


def _read_elf_pyelftools(path: str) -> Optional[ElfFile]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import NoteSection, SymbolTableSection
    try:
        f = open(path, "rb")
    except OSError:
        return None
    with f:
        try:
            elf = ELFFile(f)
            loads = [(s["p_vaddr"], s["p_memsz"], s["p_offset"], s["p_filesz"], s["p_flags"])
                     for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            functions, objects = {}, {}
            for name in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(name)
                if not isinstance(sec, SymbolTableSection):
                    continue
                for sym in sec.iter_symbols():
                    kind = sym["st_info"]["type"]
                    if not sym.name or sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
                        continue
                    entry = (sym["st_value"], sym["st_size"])
                    if kind in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS"):
                        functions.setdefault(sym.name.split("@")[0], entry)
                    elif kind in ("STT_OBJECT", "STT_TLS", "STT_COMMON"):
                        objects.setdefault(sym.name.split("@")[0], entry)
            notes = []
            sec = elf.get_section_by_name(".note.stapsdt")
            if isinstance(sec, NoteSection):
                base_sec = elf.get_section_by_name(".stapsdt.base")
                base_addr = base_sec["sh_addr"] if base_sec is not None else None
                for note in sec.iter_notes():
                    if note["n_name"] != "stapsdt" or note["n_type"] not in (3, "NT_GNU_BUILD_ID"):
                        continue
                    notes.append(_parse_stapsdt(note["n_descdata"], base_addr))
            return ElfFile(path, elf["e_type"] == "ET_DYN", loads, functions, objects, notes)
        except (ELFError, ValueError, KeyError, OSError):
            return None


def _parse_stapsdt(desc, base_addr):
    if isinstance(desc, str):
        desc = desc.encode("latin-1")
    pc, base, sem = (int.from_bytes(desc[i:i + 8], "little") for i in (0, 8, 16))
    provider, name, args = (desc[24:].split(b"\0") + [b"", b"", b""])[:3]
    if base_addr is not None:          # prelink adjustment, as in the SystemTap spec
        pc += base_addr - base
        if sem:
            sem += base_addr - base
    return {"provider": provider.decode(), "name": name.decode(), "pc": pc, "semaphore": sem,
            "args": args.decode()}


# ------------------------------------------------------------------ binaries and libraries

@functools.lru_cache(maxsize=1)
def _ld_cache() -> Tuple[Tuple[str, str], ...]:
    """(soname, path) from the dynamic linker's cache (`ldconfig -p`), 64-bit entries."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
    if ldconfig is None:
        return ()
    try:
        text = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    out = []
    for line in text.splitlines():
        m = re.match(r"\s+(\S+) \(([^)]*)\) => (\S+)", line)
        if m and ("x86-64" in m.group(2) or "64bit" in m.group(2) or os.uname().machine != "x86_64"):
            out.append((m.group(1), m.group(3)))
    return tuple(out)


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def resolve_binary(target: str) -> Optional[str]:
    """bpftrace's resolution: a path as given; else an executable on $PATH; else a
    library by name through the linker cache (`libc` → `.../libc.so.6`)."""
    if "/" in target:
        return target if os.path.isfile(target) else None
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        cand = os.path.join(d or ".", target)
        if os.path.isfile(cand) and os.access(cand, os.X_OK) and _is_elf(cand):
            return cand
    prefix = target + ".so"
    for soname, path in _ld_cache():
        if soname.startswith(prefix) and os.path.isfile(path):
            return path
    return None


def listing_binary(target):
    """(path, ElfFile) of `-l`'s binary, or (None, None)."""
    path = resolve_binary(target) if target else None
    elf = read_elf(path) if path else None
    return path, elf


def binary_for(ap, target: str, what: str) -> Tuple[str, ElfFile]:
    path = resolve_binary(target) if target else None
    elf = read_elf(path) if path else None
    if elf is None:
        raise error(f"{what} target file '{target}' does not exist or is not executable", ap.span)
    return path, elf


# ------------------------------------------------------------------ the provider

class RegsProvider(Provider):
    """Shared by uprobe/uretprobe and usdt: a pt_regs context in a user process."""
    prog_type = PROG_KPROBE
    pt_regs = True
    user_space = True
    retprobe = False
    lists_targets = True     # listing(verbose, target): the probes of one binary

    def attach_specs(self, probes, cookies):
        out = []
        for p, c in zip(probes, cookies):
            for loc in p.params.get("locations", [p.params]):
                entry = {"kind": self.attach_kind, "path": p.target, "offset": loc["offset"],
                         "pid": -1, "cookie": c}
                if loc.get("ref_ctr_offset"):
                    entry["ref_ctr_offset"] = loc["ref_ctr_offset"]
                out.append(entry)
        return out

    # -------------------------------------------------- builtins (see registry._RegisterArgs)
    def check_register_builtin(self, ck, node):
        name = node.name
        if name == "retval":
            if not self.retprobe:
                raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' and "
                            "'kfunc' probes", node.span)
            return UINT64
        if name == "func":
            return StrT(func_size(ck.unit.probes))
        n = int(name[4:] if name.startswith("sarg") else name[3:])
        if self.retprobe or (name.startswith("sarg") and self.name == "usdt"):
            what = "'kprobes' and 'uprobes'" if name.startswith("sarg") else \
                   "'kprobes', 'uprobes' and 'usdt'"
            raise error(f"The {name} builtin can only be used with {what} probes", node.span)
        if name.startswith("arg"):
            return self.check_arg(ck, node, n)
        return UINT64

    def check_arg(self, ck, node, n):
        if n > MAX_ARG:
            raise error(f"x86_64 doesn't support {node.name}", node.span)
        return UINT64

    def lower_register_builtin(self, lw, node):
        name = node.name
        if name == "retval":
            return read_reg(lw, "ax")
        if name == "func":
            return lower_func(lw, node)
        if name.startswith("sarg"):
            n = int(name[4:])
            return read_user_u64(lw, lw.b.add(read_reg(lw, "sp"), const(8 * (n + 1))))
        return self.lower_arg(lw, node, int(name[3:]))

    def lower_arg(self, lw, node, n):
        return read_reg(lw, ARG_REGS[n])

    def ctx_type(self, unit):
        return PtrT("struct pt_regs", user=False)

    def reg_offset(self, node, name):
        if name not in REG_OFFSETS:
            raise error(f"'{name}' is not a valid register on this architecture (x86_64)", node.span)
        return REG_OFFSETS[name]

    def check_uaddr(self, ck, node, symbol):
        resolved = self.uaddr(ck, node, symbol)
        if self.retprobe and any(elf.is_dyn for elf, *_ in resolved):
            raise error("uaddr() in a uretprobe can only resolve symbols of non-PIE executables",
                        node.span)
        node.resolved = resolved
        return uaddr_type(resolved)

    def lower_uaddr(self, lw, node):
        return lower_uaddr(lw, node, node.resolved)

    def uaddr(self, ck, node, symbol):
        """Per probe: (elf, vaddr, size) of `symbol` in the probed binary."""
        out = []
        for p in ck.unit.probes:
            elf = read_elf(p.target)
            sym = elf and (elf.objects.get(symbol) or elf.functions.get(symbol))
            if not sym:
                raise error(f"Could not resolve symbol: {p.target}:{symbol}", node.span)
            out.append((elf, sym[0], sym[1], p))
        return out


class Uprobe(RegsProvider):
    def __init__(self, name, retprobe):
        self.name, self.retprobe = name, retprobe
        self.attach_kind = name

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
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

    def listing(self, verbose, target=None):
        path, elf = listing_binary(target)
        return [f"{self.name}:{path}:{n}" for n in sorted(elf.functions)] if elf else []


# ------------------------------------------------------------------ codegen helpers

def read_reg(lw, name):
    return lw.fb.load(lw.fb.ctx, REG_OFFSETS[name])


def read_user_u64(lw, addr, size=8, signed=False):
    fb, b = lw.fb, lw.b
    buf = fb.scratch("uread", 8)
    fb.store(buf, 0, const(0))
    fb.helper(B.PROBE_READ_USER, buf, const(size, B.I32), b.inttoptr(addr, B.PTR))
    if size == 8:
        return fb.load(buf, 0)
    return fb.load(buf, 0, size * 8, signed=signed, align=size)


def per_probe(lw, emit):
    """Run emit(probe) for the probe that fired: directly for a one-probe program,
    else in the case of a switch on the probe's cookie."""
    unit = lw.unit
    if len(unit.probes) == 1:
        emit(unit.probes[0])
        return
    fb, b = lw.fb, lw.b
    done = fb.new_block("probe_done")
    switch = b.switch(unit.provider.probe_cookie(lw), done)
    for p, c in zip(unit.probes, unit.cookies):
        case = fb.new_block("probe_case")
        switch.add_case(const(c), case)
        b.position_at_end(case)
        emit(p)
        b.branch(done)
    b.position_at_end(done)


def func_size(probes):
    return max(1, min(STRLEN, max(len(p.func.encode()) + 1 for p in probes)))


def lower_func(lw, node):
    fb = lw.fb
    size = node.type.size
    buf = fb.temp(size)
    fb.zero(buf, size)
    per_probe(lw, lambda p: fb.store_bytes(buf, p.func.encode()[:size - 1] + b"\0"))
    return buf


def lower_uaddr(lw, node, resolved):
    """The run-time address of a symbol: its link-time address in an executable, or
    (PIE, shared object) the probe's address (`ip` at entry) moved by the symbol's offset."""
    fb, b = lw.fb, lw.b
    slot = fb.scratch("uaddr", 8)
    fb.store(slot, 0, const(0))
    by_probe = {id(p): (elf, vaddr) for elf, vaddr, _size, p in resolved}

    def emit(p):
        elf, vaddr = by_probe[id(p)]
        if elf.is_dyn:
            base = b.sub(read_reg(lw, "ip"), const(p.params["vaddr"]))
            fb.store(slot, 0, b.add(base, const(vaddr)))
        else:
            fb.store(slot, 0, const(vaddr))
    per_probe(lw, emit)
    return fb.load(slot, 0)


def uaddr_type(resolved):
    size = resolved[0][2]
    return PtrT({1: "int8_t", 2: "int16_t", 4: "int32_t"}.get(size, "int64_t"), user=True)


UPROBE = register(Uprobe("uprobe", False))
URETPROBE = register(Uprobe("uretprobe", True))
