"""ELF bytes → ObjectSpec (pure data; no kernel access, no root needed).

Standard library only (runtime.elfread reads the ELF; join/write build one).

See docs/object-contract.md.  Programs are STT_FUNC symbols in executable
sections (several programs may share one section, e.g. ``perf_event``);
maps are the 20-byte ``{type, key_size, value_size, max_entries, flags}``
globals in section ``maps``; every relocation in a program must be an
``R_BPF_64_64`` on an ``ld_imm64`` against a map (by symbol, or by section
symbol + the offset in the instruction's immediate), or against a value in
``.rodata`` (its read-only globals: the loader makes the section a frozen
one-entry array map, and the instruction the address of the value) or in
``.data`` (writable globals: a one-entry array map that is not frozen).
"""

import struct

from .record import record, field
from . import uapi as U
from .elfread import (EHDR, REL, SHDR, SYM, ET_REL, SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE,
                      SHN_LORESERVE, SHT_NOBITS, SHT_PROGBITS, SHT_REL, SHT_RELA, SHT_STRTAB,
                      SHT_SYMTAB, STB_GLOBAL, STT_FILE, STT_FUNC, STT_OBJECT, STT_SECTION,
                      ElfError, ElfImage)
from .errors import ObjectFormatError
from .manifest import Manifest

MAPS_SECTION = "maps"
LICENSE_SECTION = "license"
MANIFEST_SECTION = ".pytrace"
RODATA_SECTION = ".rodata"
DATA_SECTION = ".data"
VALUE_SECTIONS = (RODATA_SECTION, DATA_SECTION)    # globals the programs address directly
MAP_DEF = struct.Struct("<5I")     # {type, key_size, value_size, max_entries, flags}
MAP_DEF_SIZE = MAP_DEF.size


@record(frozen=True)
class MapSpec:
    symbol: str
    section: str
    offset: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@record(frozen=True)
class Relocation:
    insn_offset: int  # byte offset of the ld_imm64 inside the program
    map_symbol: str   # a VALUE_SECTIONS name: a value of that section, at value_offset
    value_offset: int = -1


@record(frozen=True)
class ProgramSpec:
    symbol: str
    section: str
    insns: bytes
    relocations: tuple = ()

    @property
    def insn_count(self) -> int:
        return len(self.insns) // U.BPF_INSN_SIZE


@record
class ObjectSpec:
    programs: dict = field(default_factory=dict)  # symbol -> ProgramSpec
    maps: dict = field(default_factory=dict)      # symbol -> MapSpec
    manifest: dict = field(default_factory=dict)  # the .pytrace JSON, as stored (write() stores it)
    license: str = "GPL"
    rodata: bytes = b""     # the .rodata section: read-only globals (objfile's docstring)
    data: bytes = b""       # the .data section: writable globals
    # the manifest's typed records (runtime.manifest), which the runtime reads
    contract: Manifest = field(default_factory=Manifest, compare=False, repr=False)


# ------------------------------------------------------------------ ELF reading
# runtime.elfread reads the headers, sections and symbols; this checks what a BPF
# relocatable object from LLVM (bpfel) must hold and reads its REL sections.


@record
class _Symbol:
    name: str
    type: int
    shndx: int
    value: int
    size: int


class _Elf:
    def __init__(self, data: bytes):
        try:
            image = ElfImage.from_bytes(data)
        except ElfError as e:
            raise ObjectFormatError(f"not an ELF64 little-endian object ({e})") from None
        if image.e_machine != U.EM_BPF:
            raise ObjectFormatError(f"not a BPF object (e_machine {image.e_machine})")
        if not image.sections:
            raise ObjectFormatError("invalid ELF section header table")
        for s in image.sections:
            if s.type != SHT_NOBITS and s.offset + s.size > len(data):
                raise ObjectFormatError(f"ELF section {s.index} out of bounds")
        symtabs = [s for s in image.sections if s.type == SHT_SYMTAB]
        if symtabs and symtabs[0].link >= len(image.sections):
            raise ObjectFormatError("invalid .symtab string table link")
        self.data = data
        self.sections = image.sections
        self.symbols = [_Symbol(*sym) for sym in image.symbols(tables=(SHT_SYMTAB,))]

    def section_data(self, s) -> bytes:
        if s.type == SHT_NOBITS:
            return bytes(s.size)
        return self.data[s.offset:s.offset + s.size]

    def section(self, name: str):
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def relocations(self, s):
        """(r_offset, type, symbol index) of a REL section."""
        d = self.section_data(s)
        for off in range(0, len(d) - REL.size + 1, REL.size):
            r_offset, r_info = REL.unpack_from(d, off)
            yield r_offset, r_info & 0xFFFFFFFF, r_info >> 32


def parse(elf_bytes: bytes, whole: bool = True, manifest: dict | None = None) -> ObjectSpec:
    """Parse a BPF ELF object into an ObjectSpec; ObjectFormatError if malformed.
    `whole=False`: a part of a program compiled in parts (see join): its manifest
    may name programs that are in the other parts, and is not decoded into records
    (`contract` stays empty). `manifest`: the object's manifest, already decoded (its
    JSON is then not read)."""
    try:
        return _parse(_Elf(bytes(elf_bytes)), whole, manifest)
    except struct.error as e:
        raise ObjectFormatError(f"invalid ELF object: {e}") from None


def _parse(elf: _Elf, whole: bool = True, manifest: dict | None = None) -> ObjectSpec:
    if not elf.symbols:
        raise ObjectFormatError("object has no .symtab")
    spec = ObjectSpec()
    lic = elf.section(LICENSE_SECTION)
    if lic is not None:
        spec.license = (elf.section_data(lic).split(b"\0", 1)[0]
                        .decode("ascii", "replace") or "GPL")
    spec.manifest = manifest if manifest is not None else _read_manifest(elf)
    if whole:
        spec.contract = Manifest.from_json(spec.manifest)
    maps_idx, maps_by_off = _read_maps(elf, spec.maps)
    values = {}         # section index -> name, of the VALUE_SECTIONS present
    for name in VALUE_SECTIONS:
        sec = elf.section(name)
        if sec is not None:
            values[sec.index] = name
            data = bytes(sec.size) if sec.type == SHT_NOBITS else elf.section_data(sec)
            if name == RODATA_SECTION:
                spec.rodata = data
            else:
                spec.data = data
    _read_programs(elf, spec.programs, maps_idx, maps_by_off, values)
    if whole:
        _check_manifest(spec.manifest, spec.programs, spec.maps, spec.data)
    return spec


def _read_manifest(elf: _Elf):
    """The .pytrace section's JSON."""
    man = elf.section(MANIFEST_SECTION)
    if man is None:
        raise ObjectFormatError("object has no .pytrace manifest section")
    raw = elf.section_data(man).rstrip(b"\0")
    try:
        import json     # lazy: start-up time (json imports re and enum: ~5 ms; see parse)
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ObjectFormatError(f"invalid .pytrace manifest: {e}") from None


def _read_maps(elf: _Elf, out: dict) -> tuple:
    """The map definitions of section `maps` into ``out`` (symbol -> MapSpec);
    returns (the section's index or None, {offset: MapSpec})."""
    msec = elf.section(MAPS_SECTION)
    if msec is None:
        return None, {}
    maps_by_off = {}
    mdata = elf.section_data(msec)
    for sym in elf.symbols:
        if sym.shndx != msec.index or sym.type in (STT_SECTION, STT_FILE) or not sym.name:
            continue
        off = sym.value
        if off + MAP_DEF_SIZE > len(mdata):
            raise ObjectFormatError(f"map {sym.name}: definition out of section bounds")
        t, ks, vs, me, fl = MAP_DEF.unpack_from(mdata, off)
        ms = MapSpec(sym.name, MAPS_SECTION, off, t, ks, vs, me, fl)
        out[sym.name] = ms
        maps_by_off[off] = ms
    return msec.index, maps_by_off


def _read_programs(elf: _Elf, out: dict, maps_idx, maps_by_off, values) -> None:
    """The programs (function symbols in executable sections) into ``out``
    (symbol -> ProgramSpec), with their relocations."""
    sections = elf.sections
    funcs_by_sec = {}
    for sym in elf.symbols:
        if sym.type == STT_FUNC and 0 < sym.shndx < SHN_LORESERVE:
            funcs_by_sec.setdefault(sym.shndx, []).append(sym)
    relsecs = {}
    for s in sections:
        if s.type == SHT_RELA and s.info < len(sections) and \
                sections[s.info].flags & SHF_EXECINSTR:
            raise ObjectFormatError(f"unsupported RELA section {s.name}")
        if s.type == SHT_REL:
            relsecs[s.info] = s
    for s in sections:
        if s.type != SHT_PROGBITS or not (s.flags & SHF_EXECINSTR):
            continue
        data = elf.section_data(s)
        relocs = []
        if s.index in relsecs:
            relocs = _section_relocations(elf, relsecs[s.index], s, data, maps_idx, maps_by_off,
                                          values)
        funcs = sorted(funcs_by_sec.get(s.index, []), key=lambda x: x.value)
        if funcs:
            _split_programs(s, data, funcs, relocs, out)
        elif relocs:
            raise ObjectFormatError(f"section {s.name} has relocations but no program symbol")


def _section_relocations(elf: _Elf, rs, s, data, maps_idx, maps_by_off, values) -> list:
    """(offset, map symbol or value section, the value's offset or -1) of each
    relocation of program section ``s``."""
    symbols = elf.symbols
    relocs = []
    for r_off, r_type, r_sym in elf.relocations(rs):
        if r_sym >= len(symbols):
            raise ObjectFormatError(f"relocation in {rs.name}: bad symbol index")
        relocs.append(_resolve_reloc(r_off, r_type, symbols[r_sym], s, data,
                                     maps_idx, maps_by_off, elf.sections, values))
    return relocs


def _split_programs(s, data, funcs, relocs, out: dict) -> None:
    """One ProgramSpec per function symbol of section ``s`` (several programs may
    share a section), each with the relocations inside it."""
    bounds = []
    for fsym in funcs:
        start = fsym.value
        size = fsym.size or (len(data) - start)
        end = start + size
        if end > len(data) or size % U.BPF_INSN_SIZE or start % U.BPF_INSN_SIZE:
            raise ObjectFormatError(f"program {fsym.name}: bad symbol bounds")
        bounds.append((start, end))
        prel = tuple(Relocation(off - start, msym, voff)
                     for off, msym, voff in relocs if start <= off < end)
        out[fsym.name] = ProgramSpec(fsym.name, s.name, bytes(data[start:end]), prel)
    for off, _, _ in relocs:
        if not any(a <= off < b for a, b in bounds):
            raise ObjectFormatError(f"relocation at {s.name}+{off:#x} outside any program")


_RELOC_NAMES = {U.R_BPF_64_32: "R_BPF_64_32 (BPF-to-BPF call)",
                U.R_BPF_64_ABS64: "R_BPF_64_ABS64",
                U.R_BPF_64_ABS32: "R_BPF_64_ABS32",
                U.R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32"}


def _resolve_reloc(off, rtype, sym, sec, data, maps_idx, maps_by_off, sections, values):
    where = f"{sec.name}+{off:#x}"
    if rtype != U.R_BPF_64_64:
        kind = _RELOC_NAMES.get(rtype, f"type {rtype}")
        raise ObjectFormatError(
            f"unsupported relocation {kind} at {where} against '{_symname(sym, sections)}'")
    if off + 16 > len(data) or data[off] != U.BPF_LD_IMM64:
        raise ObjectFormatError(f"relocation at {where} is not on an ld_imm64 instruction")
    imm = struct.unpack_from("<i", data, off + 4)[0]
    if sym.shndx in values:         # a global in .rodata or .data: its offset
        return off, values[sym.shndx], imm + sym.value
    if maps_idx is None or sym.shndx != maps_idx:
        raise ObjectFormatError(
            f"relocation at {where} against '{_symname(sym, sections)}' "
            f"which is not in the '{MAPS_SECTION}' section")
    if sym.type == STT_SECTION:
        # section-relative: the map's offset is the instruction's immediate
        moff = imm + sym.value
    else:
        moff = sym.value
    ms = maps_by_off.get(moff)
    if ms is None:
        raise ObjectFormatError(f"relocation at {where}: no map at {MAPS_SECTION}+{moff:#x}")
    return off, ms.symbol, -1


def _symname(sym, sections):
    if sym.name:
        return sym.name
    if 0 < sym.shndx < len(sections):
        return sections[sym.shndx].name
    if sym.shndx == 0:
        return "<undefined>"
    return "?"


def _check_manifest(manifest: dict, programs: dict, maps: dict, data: bytes = b"") -> None:
    """Every program and map the manifest (its JSON, already decoded once into
    records by the caller or written by the compiler) names is in the object (an
    internal one may be the .data section)."""
    for p in manifest.get("programs", ()):
        if p["symbol"] not in programs:
            raise ObjectFormatError(f"manifest program '{p['symbol']}' not found in the object")
    for mp in manifest.get("maps", ()):
        if mp["symbol"] not in maps:
            raise ObjectFormatError(
                f"manifest map '{mp['name']}' ({mp['symbol']}) not found in the object")
    for key, sym in manifest.get("internal", {}).items():
        if sym and sym not in maps and not (sym == DATA_SECTION and data):
            raise ObjectFormatError(f"internal map '{key}' ({sym}) not found in the object")


# ------------------------------------------------------------------ ELF writing
# The compiler builds a large program in two parts, one per CPU, and joins the
# two objects: their programs, one copy of the maps, license and manifest.

def join(parts) -> bytes:
    """One object from the objects of a program compiled in parts (each holding
    every map, the license and the manifest, and some of the programs)."""
    specs = [parse(p, whole=False) for p in parts]
    joined = ObjectSpec(manifest=specs[0].manifest, license=specs[0].license,
                        rodata=specs[0].rodata, data=specs[0].data)
    for spec in specs:
        joined.programs.update(spec.programs)
        for sym, ms in spec.maps.items():
            joined.maps.setdefault(sym, ms)
    _check_manifest(joined.manifest, joined.programs, joined.maps, joined.data)
    return write(joined)


def write(spec: ObjectSpec) -> bytes:
    """An ELF64 BPF relocatable object that parse() reads back as `spec`: one
    section per program, its REL section, `maps`, `license`, `.pytrace`, .symtab."""
    strtab = _StringTable()
    maps = sorted(spec.maps.values(), key=lambda m: m.offset)
    programs = list(spec.programs.values())
    # sections: (name, type, flags, data, link, info, entsize); index 1 is .strtab,
    # the last is .symtab; the program sections start at 2
    sections = [(".strtab", SHT_STRTAB, 0, None, 0, 0, 0)]
    first_prog = 2
    for p in programs:
        sections.append((p.section, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, _rodata_imms(p),
                         0, 0, 0))
    maps_idx = first_prog + len(programs)
    sections.append((MAPS_SECTION, SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, _map_blob(maps),
                     0, 0, 0))
    sections.append((LICENSE_SECTION, SHT_PROGBITS, SHF_ALLOC | SHF_WRITE,
                     spec.license.encode() + b"\0", 0, 0, 0))
    sections.append((MANIFEST_SECTION, SHT_PROGBITS, 0,
                     _json_bytes(spec.manifest), 0, 0, 0))
    values = {}         # value section -> its index
    for name, data, flags in ((RODATA_SECTION, spec.rodata, SHF_ALLOC),
                              (DATA_SECTION, spec.data, SHF_ALLOC | SHF_WRITE)):
        if data:
            sections.append((name, SHT_PROGBITS, flags, data, 0, 0, 0))
            values[name] = len(sections)        # (the ELF's index: the null section is 0)
    symtab_idx = len(sections) + 1 + sum(1 for p in programs if p.relocations)
    symbols, map_sym_index = _symbols(strtab, maps, maps_idx, programs, first_prog, values)
    for i, p in enumerate(programs):
        if p.relocations:   # (a global's value: the section symbol, its offset in the insn)
            rels = b"".join(REL.pack(r.insn_offset,
                                     (map_sym_index[r.map_symbol] << 32) | U.R_BPF_64_64)
                            for r in p.relocations)
            sections.append((".rel" + p.section, SHT_REL, 0, rels, symtab_idx,
                             first_prog + i, REL.size))
    sections.append((".symtab", SHT_SYMTAB, 0, symbols, 1, 1, SYM.size))
    return _layout(sections, strtab)


def _json_bytes(manifest: dict) -> bytes:
    import json     # lazy: start-up time (see _read_manifest)
    return json.dumps(manifest, separators=(",", ":")).encode()


def _rodata_imms(p: ProgramSpec) -> bytes:
    """The program's instructions with each global's offset (in .rodata or .data) in
    its ld_imm64 (relocated against the section symbol)."""
    insns = bytearray(p.insns)
    for r in p.relocations:
        if r.map_symbol in VALUE_SECTIONS:
            struct.pack_into("<i", insns, r.insn_offset + 4, r.value_offset)
    return bytes(insns)


def set_rodata(elf_bytes: bytes, data: bytes) -> bytes:
    """The object with its .rodata section's bytes replaced by ``data`` (same size):
    the values of its read-only globals."""
    elf = _Elf(bytes(elf_bytes))
    s = elf.section(RODATA_SECTION)
    if s is None or s.size != len(data) or s.type == SHT_NOBITS:
        raise ObjectFormatError("the object has no .rodata section of that size")
    return elf_bytes[:s.offset] + data + elf_bytes[s.offset + len(data):]


class _StringTable:
    def __init__(self):
        self.data = bytearray(b"\0")

    def add(self, text: str) -> int:
        off = len(self.data)
        self.data.extend(text.encode() + b"\0")
        return off


def _map_blob(maps) -> bytes:
    """The `maps` section: each map's definition at its offset."""
    blob = bytearray(max((m.offset + MAP_DEF_SIZE for m in maps), default=0))
    for m in maps:
        MAP_DEF.pack_into(blob, m.offset, m.type, m.key_size, m.value_size,
                          m.max_entries, m.flags)
    return bytes(blob)


def _symbols(strtab, maps, maps_idx, programs, first_prog, values) -> tuple:
    """(.symtab bytes, {map symbol or value section: its symbol index}): the section
    symbols of `values` (value section -> its index), the maps, then the programs."""
    symbols = [SYM.pack(0, 0, 0, 0, 0, 0)]
    map_sym_index = {}
    for name, index in values.items():
        map_sym_index[name] = len(symbols)
        symbols.append(SYM.pack(0, STT_SECTION, 0, index, 0, 0))
    for m in maps:
        map_sym_index[m.symbol] = len(symbols)
        symbols.append(SYM.pack(strtab.add(m.symbol), (STB_GLOBAL << 4) | STT_OBJECT,
                                0, maps_idx, m.offset, MAP_DEF_SIZE))
    for i, p in enumerate(programs):
        symbols.append(SYM.pack(strtab.add(p.symbol), (STB_GLOBAL << 4) | STT_FUNC,
                                0, first_prog + i, 0, len(p.insns)))
    return b"".join(symbols), map_sym_index


def _layout(sections, strtab) -> bytes:
    """The ELF header, the sections' data (8-byte aligned), the section headers."""
    headers = [bytes(SHDR.size)]
    body = bytearray()
    offset = EHDR.size
    name_offsets = [strtab.add(s[0]) for s in sections]
    for (sname, stype, flags, data, link, info, entsize), noff in zip(sections, name_offsets):
        if data is None:                      # .strtab: complete only now
            data = bytes(strtab.data)
        align = 8
        pad = (-offset) % align
        body.extend(b"\0" * pad)
        offset += pad
        headers.append(SHDR.pack(noff, stype, flags, 0, offset, len(data), link, info, align,
                                 entsize))
        body.extend(data)
        offset += len(data)
    pad = (-offset) % 8
    body.extend(b"\0" * pad)
    shoff = offset + pad
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = EHDR.pack(ident, ET_REL, U.EM_BPF, 1, 0, 0, shoff, 0, EHDR.size, 0, 0,
                       SHDR.size, len(headers), 1)
    return header + bytes(body) + b"".join(headers)
