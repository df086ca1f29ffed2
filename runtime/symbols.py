"""Symbolization for stacks, ksym() and usym(), as bpftrace (bcc's symcache) does it.

Kernel addresses come from /proc/kallsyms (read once, sorted; the nearest symbol at or
below the address). User addresses are resolved through /proc/PID/maps and the ELF symbol
tables (.symtab, .dynsym: functions) of the mapped file and of its separate debug file,
read with runtime.elfread and cached per binary. A process that has exited can not be resolved (the address is printed as
``0x...``), like bpftrace, which also resolves late.
"""
from __future__ import annotations

import bisect
import os

from .elfread import STT_FUNC, STT_GNU_IFUNC, ElfError, ElfImage

__all__ = ["KernelSymbols", "UserSymbols", "Symbolizer"]


class KernelSymbols:
    def __init__(self, path: str = "/proc/kallsyms"):
        self.path = path
        self._addrs = None
        self._names = None

    def _load(self):
        pairs = []
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 3:
                        continue
                    try:
                        addr = int(parts[0], 16)
                    except ValueError:
                        continue
                    if addr == 0:
                        continue
                    pairs.append((addr, parts[2].decode("utf-8", "surrogateescape")))
        except OSError:
            pass
        pairs.sort(key=lambda p: p[0])
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def resolve(self, addr: int):
        """(name, offset) of the symbol at or below addr, or None."""
        if self._addrs is None:
            self._load()
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        return self._names[i], addr - self._addrs[i]


class _Binary:
    """The function symbols and PT_LOAD segments of one ELF file."""

    def __init__(self, path: str):
        self.starts = []
        self.syms = []          # (start, size, name), sorted by start
        self.segments = []      # (p_offset, p_vaddr, p_filesz)
        seen = {}
        try:
            elf = ElfImage(path)
            self.segments = [(offset, vaddr, max(filesz, memsz))
                             for vaddr, memsz, offset, filesz, _ in elf.loads]
            images = [elf]
            debug = elf.debug_file()
            if debug is not None:
                # separate debug info (bcc reads it too): the local functions of a
                # stripped library, e.g. libc's __libc_start_call_main
                images.append(ElfImage(debug))
            for image in images:
                for name, type_, shndx, value, size in image.symbols():
                    if type_ in (STT_FUNC, STT_GNU_IFUNC) and shndx and value and name:
                        seen.setdefault(value, (size, name))
        except (ElfError, OSError):       # not an ELF64 file, unreadable, truncated...
            pass
        for start in sorted(seen):
            size, name = seen[start]
            self.starts.append(start)
            self.syms.append((start, size, name))

    def vaddr(self, file_offset: int):
        for off, vaddr, size in self.segments:
            if off <= file_offset < off + size:
                return file_offset - off + vaddr
        return None

    def resolve(self, vaddr: int):
        i = bisect.bisect_right(self.starts, vaddr) - 1
        while i >= 0:
            start, size, name = self.syms[i]
            if vaddr < start + max(size, 1):
                return name, vaddr - start
            if size:
                return None
            i -= 1
        return None


class UserSymbols:
    def __init__(self):
        self._binaries = {}     # (dev, ino, mtime) -> _Binary
        self._maps = {}         # pid -> [(start, end, pgoff, path)]

    def _read_maps(self, pid: int):
        out = []
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) < 6:
                        continue
                    path = parts[5].strip().decode("utf-8", "surrogateescape")
                    if not path.startswith("/"):
                        continue
                    lo, hi = parts[0].split(b"-")
                    out.append((int(lo, 16), int(hi, 16), int(parts[2], 16), path))
        except (OSError, ValueError):
            return None
        return out

    def remember(self, pid: int) -> None:
        """Keep what process pid maps now, to resolve its addresses after it exits
        (a process that has exited maps nothing)."""
        maps = self._read_maps(pid)
        if maps:
            self._maps[pid] = maps

    def _binary(self, pid: int, path: str):
        for candidate in (f"/proc/{pid}/root{path}", path):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino, st.st_mtime_ns)
            b = self._binaries.get(key)
            if b is None:
                b = self._binaries[key] = _Binary(candidate)
            return b
        return None

    def _mapping(self, pid: int, addr: int):
        for fresh in (False, True):
            maps = self._maps.get(pid)
            if maps is None or fresh:
                maps = self._read_maps(pid)
                if maps is None:
                    return None
                self._maps[pid] = maps
            for lo, hi, pgoff, path in maps:
                if lo <= addr < hi:
                    return lo, pgoff, path
        return None

    def resolve(self, pid: int, addr: int):
        """(name, offset, module path) or None."""
        m = self._mapping(pid, addr)
        if m is None:
            return None
        lo, pgoff, path = m
        if path.endswith(" (deleted)"):
            return None
        b = self._binary(pid, path)
        if b is None:
            return None
        vaddr = b.vaddr(addr - lo + pgoff)
        if vaddr is None:
            return None
        r = b.resolve(vaddr)
        if r is None:
            return None
        return r[0], r[1], path


class Symbolizer:
    """What the output layer uses: bpftrace's resolve_ksym / resolve_usym texts."""

    def __init__(self):
        self.kernel = KernelSymbols()
        self.user = UserSymbols()

    def ksym(self, addr: int, offset: bool = False) -> str:
        r = self.kernel.resolve(addr)
        if r is None:
            return "0x%x" % addr
        return "%s+%d" % r if offset else r[0]

    def usym(self, pid: int, addr: int, offset: bool = False, module: bool = False) -> str:
        r = self.user.resolve(pid, addr)
        if r is None:
            return "0x%x" % addr + (" ([unknown])" if module else "")
        name, off, path = r
        return name + ("+%d" % off if offset else "") + (" (%s)" % path if module else "")
