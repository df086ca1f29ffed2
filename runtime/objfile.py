"""ELF bytes → ObjectSpec (pure data; no kernel access, no root needed).

See docs/object-contract.md.  Programs are STT_FUNC symbols in executable
sections (several programs may share one section, e.g. ``perf_event``);
maps are the 20-byte ``{type, key_size, value_size, max_entries, flags}``
globals in section ``maps``; every relocation in a program must be an
``R_BPF_64_64`` on an ``ld_imm64`` against a map (by symbol, or by section
symbol + the offset in the instruction's immediate).
"""

import io
import json
import struct
from dataclasses import dataclass, field

from . import uapi as U
from .errors import ObjectFormatError

MAPS_SECTION = "maps"
LICENSE_SECTION = "license"
MANIFEST_SECTION = ".pytrace"
MAP_DEF_SIZE = 20


@dataclass(frozen=True)
class MapSpec:
    symbol: str
    section: str
    offset: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@dataclass(frozen=True)
class Relocation:
    insn_offset: int  # byte offset of the ld_imm64 inside the program
    map_symbol: str


@dataclass(frozen=True)
class ProgramSpec:
    symbol: str
    section: str
    insns: bytes
    relocations: tuple = ()

    @property
    def insn_count(self) -> int:
        return len(self.insns) // U.BPF_INSN_SIZE


@dataclass
class ObjectSpec:
    programs: dict = field(default_factory=dict)  # symbol -> ProgramSpec
    maps: dict = field(default_factory=dict)      # symbol -> MapSpec
    manifest: dict = field(default_factory=dict)
    license: str = "GPL"


def parse(elf_bytes: bytes) -> ObjectSpec:
    """Parse a BPF ELF object into an ObjectSpec; ObjectFormatError if malformed."""
    try:
        from elftools.elf.elffile import ELFFile
        from elftools.common.exceptions import ELFError
    except ImportError as e:  # pragma: no cover
        raise ObjectFormatError(f"pyelftools is required: {e}") from None
    try:
        elf = ELFFile(io.BytesIO(elf_bytes))
        return _parse(elf)
    except ELFError as e:
        raise ObjectFormatError(f"invalid ELF object: {e}") from None
    except struct.error as e:
        raise ObjectFormatError(f"invalid ELF object: {e}") from None


def _parse(elf) -> ObjectSpec:
    if elf.elfclass != 64 or not elf.little_endian:
        raise ObjectFormatError("not an ELF64 little-endian object")
    if elf["e_machine"] not in ("EM_BPF", U.EM_BPF):
        raise ObjectFormatError(f"not a BPF object (e_machine {elf['e_machine']})")

    sections = list(elf.iter_sections())
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        raise ObjectFormatError("object has no .symtab")
    symbols = list(symtab.iter_symbols())

    spec = ObjectSpec()

    # license
    lic = elf.get_section_by_name(LICENSE_SECTION)
    if lic is not None:
        spec.license = lic.data().split(b"\0", 1)[0].decode("ascii", "replace") or "GPL"

    # manifest
    man = elf.get_section_by_name(MANIFEST_SECTION)
    if man is None:
        raise ObjectFormatError("object has no .pytrace manifest section")
    raw = man.data().rstrip(b"\0")
    try:
        spec.manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ObjectFormatError(f"invalid .pytrace manifest: {e}") from None
    if not isinstance(spec.manifest, dict):
        raise ObjectFormatError("invalid .pytrace manifest: not a JSON object")

    # maps
    maps_idx = None
    maps_by_off = {}
    for i, s in enumerate(sections):
        if s.name == MAPS_SECTION:
            maps_idx = i
            break
    if maps_idx is not None:
        msec = sections[maps_idx]
        mdata = msec.data() if msec["sh_type"] != "SHT_NOBITS" else bytes(msec["sh_size"])
        for sym in symbols:
            if sym["st_shndx"] != maps_idx or sym["st_info"]["type"] in ("STT_SECTION", "STT_FILE"):
                continue
            if not sym.name:
                continue
            off = sym["st_value"]
            if off + MAP_DEF_SIZE > len(mdata):
                raise ObjectFormatError(f"map {sym.name}: definition out of section bounds")
            t, ks, vs, me, fl = struct.unpack_from("<5I", mdata, off)
            ms = MapSpec(sym.name, MAPS_SECTION, off, t, ks, vs, me, fl)
            spec.maps[sym.name] = ms
            maps_by_off[off] = ms

    # programs: function symbols in executable sections
    funcs_by_sec = {}
    for sym in symbols:
        if sym["st_info"]["type"] != "STT_FUNC":
            continue
        shndx = sym["st_shndx"]
        if not isinstance(shndx, int):
            continue
        funcs_by_sec.setdefault(shndx, []).append(sym)

    relsecs = {}
    for s in sections:
        if s["sh_type"] == "SHT_RELA":
            raise ObjectFormatError(f"unsupported RELA section {s.name}")
        if s["sh_type"] == "SHT_REL":
            relsecs[s["sh_info"]] = s

    for idx, s in enumerate(sections):
        if s["sh_type"] != "SHT_PROGBITS" or not (s["sh_flags"] & 0x4):  # SHF_EXECINSTR
            continue
        data = s.data()
        funcs = sorted(funcs_by_sec.get(idx, []), key=lambda x: x["st_value"])
        relocs = []
        rs = relsecs.get(idx)
        if rs is not None:
            for r in rs.iter_relocations():
                relocs.append(_resolve_reloc(r, s, data, symbols, maps_idx,
                                             maps_by_off, sections))
        if not funcs:
            if relocs:
                raise ObjectFormatError(
                    f"section {s.name} has relocations but no program symbol")
            continue
        for fsym in funcs:
            start = fsym["st_value"]
            size = fsym["st_size"] or (len(data) - start)
            end = start + size
            if end > len(data) or size % U.BPF_INSN_SIZE or start % U.BPF_INSN_SIZE:
                raise ObjectFormatError(f"program {fsym.name}: bad symbol bounds")
            prel = tuple(Relocation(off - start, msym)
                         for off, msym in relocs if start <= off < end)
            spec.programs[fsym.name] = ProgramSpec(fsym.name, s.name,
                                                   bytes(data[start:end]), prel)
        # relocations outside any function
        for off, msym in relocs:
            if not any(f["st_value"] <= off < f["st_value"] + (f["st_size"] or len(data))
                       for f in funcs):
                raise ObjectFormatError(
                    f"relocation at {s.name}+{off:#x} outside any program")

    _check_manifest(spec)
    return spec


def _resolve_reloc(r, sec, data, symbols, maps_idx, maps_by_off, sections):
    off = r["r_offset"]
    rtype = r["r_info_type"]
    sym = symbols[r["r_info_sym"]]
    where = f"{sec.name}+{off:#x}"
    if rtype != U.R_BPF_64_64:
        kind = {U.R_BPF_64_32: "R_BPF_64_32 (BPF-to-BPF call)",
                U.R_BPF_64_ABS64: "R_BPF_64_ABS64",
                U.R_BPF_64_ABS32: "R_BPF_64_ABS32",
                U.R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32"}.get(rtype, f"type {rtype}")
        raise ObjectFormatError(
            f"unsupported relocation {kind} at {where} against '{_symname(sym, sections)}'")
    if off + 16 > len(data) or data[off] != U.BPF_LD_IMM64:
        raise ObjectFormatError(f"relocation at {where} is not on an ld_imm64 instruction")
    shndx = sym["st_shndx"]
    if maps_idx is None or shndx != maps_idx:
        raise ObjectFormatError(
            f"relocation at {where} against '{_symname(sym, sections)}' "
            f"which is not in the '{MAPS_SECTION}' section")
    if sym["st_info"]["type"] == "STT_SECTION":
        # section-relative: the map's offset is the instruction's immediate
        moff = struct.unpack_from("<i", data, off + 4)[0] + sym["st_value"]
    else:
        moff = sym["st_value"]
    ms = maps_by_off.get(moff)
    if ms is None:
        raise ObjectFormatError(f"relocation at {where}: no map at {MAPS_SECTION}+{moff:#x}")
    return off, ms.symbol


def _symname(sym, sections):
    if sym.name:
        return sym.name
    shndx = sym["st_shndx"]
    if isinstance(shndx, int) and shndx < len(sections):
        return sections[shndx].name
    return "?"


def _check_manifest(spec: ObjectSpec) -> None:
    m = spec.manifest
    for p in m.get("programs", []):
        sym = p.get("symbol")
        if sym not in spec.programs:
            raise ObjectFormatError(f"manifest program '{sym}' not found in the object")
    for mp in m.get("maps", []):
        sym = mp.get("symbol")
        if sym not in spec.maps:
            raise ObjectFormatError(f"manifest map '{mp.get('name')}' ({sym}) not found in the object")
    for key, sym in (m.get("internal") or {}).items():
        if sym and sym not in spec.maps:
            raise ObjectFormatError(f"internal map '{key}' ({sym}) not found in the object")
