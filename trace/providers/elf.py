"""ELF files of user-space probes (uprobe, usdt, uaddr): symbols, USDT notes, virtual
address → file offset, and bpftrace's binary and library resolution.
"""
from __future__ import annotations

import functools
import os
import re
import shutil

from ..language.diagnostics import error
from ..runtime.record import field, record
from . import glob_match

# ------------------------------------------------------------------ ELF files

@record
class ElfFile:
    path: str
    is_dyn: bool                                   # ET_DYN: PIE or shared object
    loads: list[tuple[int, int, int, int, int]]    # (vaddr, memsz, offset, filesz, flags)
    functions: dict[str, tuple[int, int]]          # name -> (vaddr, size), defined functions
    objects: dict[str, tuple[int, int]]            # name -> (vaddr, size), data symbols
    notes: list = field(default_factory=list)      # USDT notes (see usdt.py)

    def offset_of(self, vaddr: int, executable: bool = False) -> int | None:
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


def read_elf(path: str) -> ElfFile | None:
    """The parsed ELF file at path, or None if it is not one (cached by inode/mtime)."""
    try:
        key = _stat_key(path)
    except OSError:
        return None
    return _read_elf(path, key)


@functools.lru_cache(maxsize=32)
def _read_elf(path: str, _key) -> ElfFile | None:
    from ..runtime.elfread import (  # lazy: start-up time (only to read a binary)
        ElfError,
        ElfImage,
    )
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
    # lazy: start-up time (only to read a binary)
    # lazy: start-up time (only to read a binary)
    from ..runtime.elfread import (
        STT_COMMON,
        STT_FUNC,
        STT_GNU_IFUNC,
        STT_OBJECT,
        STT_TLS,
    )
    for name, type_, shndx, value, size in elf.symbols():
        if not name or shndx == 0 or not value:
            continue
        if type_ in (STT_FUNC, STT_GNU_IFUNC):
            functions.setdefault(name.split("@")[0], (value, size))
            if "@" in name:     # a .symver name (`f@@GLIBC_2.34`), listed as bcc lists it
                functions.setdefault(name, (value, size))
        elif type_ in (STT_OBJECT, STT_TLS, STT_COMMON):
            objects.setdefault(name.split("@")[0], (value, size))


def _read_elf_pyelftools(path: str) -> ElfFile | None:
    # lazy: start-up time (pyelftools is heavy, and only reads what elfread can't: 32-bit ELF)
    # lazy: start-up time (pyelftools only to read notes and debug links)
    from elftools.common.exceptions import ELFError

    # lazy: start-up time (pyelftools)
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
def _ld_cache() -> tuple[tuple[str, str], ...]:
    """(soname, path) from the dynamic linker's cache (`ldconfig -p`), 64-bit entries."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
    if ldconfig is None:
        return ()
    try:
        # lazy: start-up time (only to resolve a library name)
        import subprocess
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


def resolve_binary(target: str) -> str | None:
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


def _elf_type(path: str) -> int:
    """e_type of the ELF file at path (2: executable, 3: shared object/PIE), else 0."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return 0
    if len(head) < 18 or head[:4] != b"\x7fELF":
        return 0
    return int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")


def is_probeable(path: str) -> bool:
    """An executable or shared object (bpftrace: bcc_elf_is_exe or bcc_elf_is_shared_obj)."""
    return os.path.isfile(path) and _elf_type(path) in (2, 3)


def in_other_mountns(pid: int | None) -> bool:
    """Whether process pid sees another mount namespace than pytrace does."""
    if not pid:
        return False
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        return False


def pid_root_path(pid: int, path: str) -> str:
    """path as process pid sees it, through /proc/PID/root (bpftrace's path_for_pid_mountns)."""
    root = f"/proc/{pid}/root"
    if path.startswith(root):
        return path
    return root + ("" if path.startswith("/") else "/") + path


def resolve_targets(target: str, pid: int | None = None) -> list[str]:
    """bpftrace's resolve_binary_path: every executable or shared object target names.
    A `*` wildcard expands like a shell glob (in sorted order); a name without `/`
    is also looked for on $PATH. For a process in another mount namespace, paths are
    taken through /proc/PID/root. A library name (`libc`) resolves through the
    linker cache."""
    import glob  # lazy: start-up time (only for wildcarded targets)
    candidates = [target]
    if "/" not in target:
        candidates += [os.path.join(d or ".", target)
                       for d in os.environ.get("PATH", "/usr/bin:/bin").split(":")]
    if "*" in target:
        candidates = [p for c in candidates for p in sorted(glob.glob(c))]
    if in_other_mountns(pid):
        candidates = [pid_root_path(pid, c) for c in candidates]
    found = [c for c in candidates if is_probeable(c)]
    if not found and pid and "/" not in target and "*" not in target:
        found = _process_library(target, pid)
    if not found and "*" not in target:
        path = resolve_binary(target)
        found = [path] if path else []
    return list(dict.fromkeys(found))


def _process_library(name: str, pid: int) -> list[str]:
    """A library named as `libc` among those process pid maps (bcc_procutils_which_so
    with a pid): its path, through /proc/PID/root if the process has its own mount
    namespace."""
    root = f"/proc/{pid}/root"
    for path in process_objects(pid):
        if os.path.basename(path).startswith(name + ".so"):
            return [path if in_other_mountns(pid) else path[len(root):]]
    return []


def process_exe(pid: int) -> str | None:
    """The executable of process pid, through /proc/PID/root."""
    try:
        return pid_root_path(pid, os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def process_objects(pid: int) -> list[str]:
    """Every file process pid maps (its executable and shared libraries), in the order
    of /proc/PID/maps, each through /proc/PID/root (as bcc names them)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and not fields[5].endswith(" (deleted)"):
            out.append(pid_root_path(pid, fields[5]))
    return [p for p in dict.fromkeys(out) if is_probeable(p)]


def list_functions(kind: str, parts: list[str], pid: int | None) -> list[str]:
    """-l of uprobe/uretprobe: `kind:path:function` of the functions matching parts
    (kind, target, function), in every file a wildcarded target matches; with pid and
    no target (`uprobe:func*`), the process's executable (bpftrace 0.17)."""
    if len(parts) == 2 and pid:
        exe = process_exe(pid)
        parts = [parts[0], exe or "", parts[1]]
    if len(parts) != 3:
        raise error(f"{kind} probe type requires 2 arguments")
    _, target, func = parts
    if not target:
        return []
    paths = resolve_targets(target, pid)
    lines = set()
    for path in paths if "*" in target else paths[:1]:
        elf = read_elf(path)
        if elf is not None:
            lines.update(f"{kind}:{path}:{n}" for n in elf.functions if glob_match(func, n))
    return sorted(lines)


def binary_for(ap, target: str, what: str) -> tuple[str, ElfFile]:
    """The one binary target names (for ap.pid, as that process sees it)."""
    paths = resolve_targets(target, ap.pid) if target and "*" not in target else []
    path = paths[0] if paths else None
    elf = read_elf(path) if path else None
    if elf is None:
        raise error(f"{what} target file '{target}' does not exist or is not executable", ap.span)
    return path, elf


def needed_libraries(path: str) -> list[str]:
    """The paths of the libraries an ELF file needs (DT_NEEDED, through the linker
    cache): where a stub library's symbols really are (glibc 2.34 moved libpthread's
    into libc.so.6)."""
    # lazy: start-up time (pyelftools; only when a symbol is not in the file itself)
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            dyn = next((s for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection)), None)
            names = [t.needed for t in dyn.iter_tags("DT_NEEDED")] if dyn is not None else []
    except (ELFError, OSError, ValueError):
        return []
    cache = dict(_ld_cache())
    return [cache[n] for n in names if n in cache and os.path.isfile(cache[n])]
