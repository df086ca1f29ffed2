"""runtime/elfread.py against pyelftools, on binaries and libraries of this machine."""
import os
import shutil
import subprocess

import pytest

from pytrace.runtime.elfread import ElfError, ElfImage

elftools = pytest.importorskip("elftools.elf.elffile")

CANDIDATES = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11", "/usr/bin/bash",
              "/usr/bin/ls", "/lib/x86_64-linux-gnu/libm.so.6"]
FILES = [p for p in CANDIDATES if os.path.exists(p)]


def reference(path):
    with open(path, "rb") as f:
        elf = elftools.ELFFile(f)
        loads = [(s["p_vaddr"], s["p_memsz"], s["p_offset"], s["p_filesz"], s["p_flags"])
                 for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        syms = []
        for name in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(name)
            if sec is not None:
                syms += [(s.name, s.entry["st_info"]["type"], s["st_value"], s["st_size"])
                         for s in sec.iter_symbols()]
        notes = []
        for sec in elf.iter_sections():
            if sec["sh_type"] == "SHT_NOTE":
                notes += [(n["n_name"], n["n_descsz"]) for n in sec.iter_notes()]
        return elf["e_type"] == "ET_DYN", loads, syms, notes


TYPES = {"STT_NOTYPE": 0, "STT_OBJECT": 1, "STT_FUNC": 2, "STT_SECTION": 3, "STT_FILE": 4,
         "STT_COMMON": 5, "STT_TLS": 6, "STT_LOOS": 10, "STT_GNU_IFUNC": 10}


@pytest.mark.parametrize("path", FILES)
def test_symbols_segments_and_notes_match_pyelftools(path):
    is_dyn, loads, syms, notes = reference(path)
    elf = ElfImage(path)
    assert elf.is_dyn == is_dyn
    assert elf.loads == loads
    assert [(n, t, v, s) for n, t, _, v, s in elf.symbols()] == \
        [(n, TYPES.get(t, t), v, s) for n, t, v, s in syms]
    mine = [(name.decode(), len(desc)) for s in elf.sections if s.type == 7
            for name, _, desc in elf.notes(s)]
    assert mine == notes


def test_debug_file_by_build_id(tmp_path):
    if shutil.which("gcc") is None or shutil.which("objcopy") is None:
        pytest.skip("gcc and objcopy are needed")
    src = tmp_path / "f.c"
    src.write_text("static int local_fn(int x) { return x + 1; }\n"
                   "int main(int c, char **v) { return local_fn(c); }\n")
    binary = tmp_path / "f"
    subprocess.run(["gcc", "-O0", "-Wl,--build-id", "-o", str(binary), str(src)], check=True)
    debug = tmp_path / "f.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(binary), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", f"--add-gnu-debuglink={debug}", str(binary)],
                   check=True)
    stripped = ElfImage(str(binary))
    assert "local_fn" not in {n for n, *_ in stripped.symbols()}
    assert stripped.debug_file() == str(debug)
    assert "local_fn" in {n for n, *_ in ElfImage(stripped.debug_file()).symbols()}


def test_not_elf_and_truncated(tmp_path):
    text = tmp_path / "text"
    text.write_text("#!/bin/sh\n" * 20)
    with pytest.raises(ElfError):
        ElfImage(str(text))
    trunc = tmp_path / "trunc"
    trunc.write_bytes(open(FILES[0], "rb").read(200) if FILES else b"\x7fELF" + b"\2\1" * 40)
    with pytest.raises(ElfError):
        list(ElfImage(str(trunc)).symbols())
