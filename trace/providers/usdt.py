"""usdt: statically defined user-space probes, from the ELF `.note.stapsdt` notes.

  usdt:/path:probe     usdt:/path:provider:probe     (`*` wildcards in each part)

Each note gives the probe's address, its semaphore (enabled through the uprobe
PMU's ref_ctr_offset, a file offset) and its argument specs, e.g.
`-4@%edi 8@-16(%rbp) 8@%rax $5`: `arg0..argN` are decoded from these.
"""
from __future__ import annotations

import os
import re

from ..codegen.builder import const
from ..language.diagnostics import error
from ..types.model import UINT64
from . import ExpandedProbe, glob_match, register, split_attach_point
from .elf import binary_for, process_objects, read_elf, resolve_targets
from .regs import MAX_ARG, RegsProvider, read_reg, read_user_u64

_REGS = {}
for _r in ("ax", "bx", "cx", "dx"):
    _REGS.update({"r" + _r: (_r, 64), "e" + _r: (_r, 32), _r: (_r, 16), _r[0] + "l": (_r, 8),
                  _r[0] + "h": (_r, "high")})
for _r in ("si", "di", "bp", "sp"):
    _REGS.update({"r" + _r: (_r, 64), "e" + _r: (_r, 32), _r: (_r, 16), _r + "l": (_r, 8)})
for _n in range(8, 16):
    _r = f"r{_n}"
    _REGS.update({_r: (_r, 64), _r + "d": (_r, 32), _r + "w": (_r, 16), _r + "b": (_r, 8)})
_REGS.update({"rip": ("ip", 64), "eip": ("ip", 32)})

_ARG = re.compile(r"(-?)(\d+)@(.+)")
_MEM = re.compile(r"(-?(?:0x[0-9a-fA-F]+|\d+))?\(%(\w+)(?:,%(\w+)(?:,(\d+))?)?\)")
_SYM = re.compile(r"([A-Za-z_.$][\w.$]*)([+-](?:0x[0-9a-fA-F]+|\d+))?\(%rip\)")


def parse_arg(spec: str):
    """One argument spec → dict(size, signed, kind, ...) or None if not understood."""
    m = _ARG.fullmatch(spec)
    if m:
        signed, size, op = bool(m.group(1)), int(m.group(2)), m.group(3)
    else:                       # old notes: the operand alone, 8 bytes
        signed, size, op = False, 8, spec
    if size not in (1, 2, 4, 8):
        return None
    out = {"size": size, "signed": signed}
    if op.startswith("$"):
        try:
            return {**out, "kind": "const", "value": int(op[1:], 0)}
        except ValueError:
            return None
    if op.startswith("%"):
        reg = _REGS.get(op[1:])
        return reg and {**out, "kind": "reg", "reg": reg}
    m = _SYM.fullmatch(op)
    if m:       # a global: `sym(%rip)` (optimised code); resolved by resolve_symbol
        return {**out, "kind": "mem", "reg": _REGS["rip"], "symbol": m.group(1),
                "disp": int(m.group(2) or "0", 0), "index": None, "scale": 1}
    m = _MEM.fullmatch(op)
    if m:
        base = _REGS.get(m.group(2))
        index = _REGS.get(m.group(3)) if m.group(3) else None
        if base is None or (m.group(3) and index is None):
            return None
        return {**out, "kind": "mem", "reg": base, "disp": int(m.group(1) or "0", 0),
                "index": index, "scale": int(m.group(4) or "1")}
    return None


def usdt_files(ap, target: str):
    """[(path, ElfFile)] whose notes an attach point searches: with -p, the objects the
    process maps (as /proc/PID/root/...; target, if given, picks among them); else
    the file target names, or every file a wildcarded target matches."""
    if ap.pid:
        return process_files(target, ap.pid)
    if not target:
        raise error("usdt probe must specify at least path or pid to probe", ap.span)
    if "*" not in target:
        return [binary_for(ap, target, "usdt")]
    paths = resolve_targets(target)
    if not paths:
        raise error(f"usdt target file '{target}' does not exist or is not executable", ap.span)
    return [(p, elf) for p in paths for elf in [read_elf(p)] if elf is not None]


def process_files(target: str, pid: int):
    """The objects process pid maps that have USDT notes and match target (all for an
    empty target): bpftrace matches `*` + the target's absolute path against them (a
    wildcarded target also as written: `*`, `*lib*`). A target file the process does
    not map is searched too, as the process sees it."""
    objects = process_objects(pid)
    extra = []
    if target:
        paths = [] if "*" in target else resolve_targets(target, pid)
        full = paths[0] if paths else target
        if not full.startswith("/proc/"):
            full = os.path.realpath(full) if "*" not in full else os.path.abspath(full)
        objects = [o for o in objects if glob_match("*" + full, o) or
                   ("*" in target and glob_match(target, o))]
        extra = [] if objects else paths[:1]
    out = []
    for path in objects + extra:
        elf = read_elf(path)
        if elf is not None and elf.notes:
            out.append((path, elf))
    return out


def resolve_symbol(spec, elf, pc: int):
    """An argument at `sym(%rip)`: the address is the symbol's, relative to the probe's
    own (the uprobe's ip is the probe address), so it holds wherever the file is
    loaded. None when the symbol is not in the file."""
    if spec is None or "symbol" not in spec:
        return spec
    sym = elf.objects.get(spec["symbol"]) or elf.functions.get(spec["symbol"])
    if sym is None:
        return None
    return {**spec, "disp": sym[0] + spec["disp"] - pc}


class Usdt(RegsProvider):
    name = "usdt"
    attach_kind = "usdt"
    stack_args = False

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) == 2 and ap.pid:          # -p: the target may be left out
            parts.insert(1, "")
        if len(parts) == 3:
            (_, target, name), prov = parts, "*"
        elif len(parts) == 4:
            _, target, prov, name = parts
        else:
            raise error("usdt probe type requires 2 or 3 arguments", ap.span)
        ap.target, ap.func = target, name
        if not name:
            raise error("usdt probe must have a target function or wildcard", ap.span)
        out = []
        for path, elf in usdt_files(ap, target):
            out += self._probes(ap, path, elf, prov or "*", name)
        if not out:
            ap.target = target if ap.pid or "*" in target else binary_for(ap, target, "usdt")[0]
            what = name if len(parts) == 3 else f"{prov}:{name}"
            where = ap.target or f"process {ap.pid}"
            raise error(f"No USDT probes found for {where}:{what}", ap.span)
        return out

    def _probes(self, ap, path, elf, prov, name):
        """One probe per location of every note matching prov:name (bpftrace attaches,
        and counts, each location of a probe: inlined or duplicated markers)."""
        out = []
        notes = sorted((n for n in elf.notes
                        if glob_match(prov, n["provider"]) and glob_match(name, n["name"])),
                       key=lambda n: (n["provider"], n["name"]))
        for note in notes:
            p, n = note["provider"], note["name"]
            offset = elf.offset_of(note["pc"], executable=True)
            if offset is None:
                raise error(f"Could not resolve USDT location of {p}:{n} in {path}", ap.span)
            loc = {"offset": offset, "vaddr": note["pc"]}
            if note["semaphore"]:
                loc["ref_ctr_offset"] = elf.offset_of(note["semaphore"]) or 0
            specs = [resolve_symbol(parse_arg(a), elf, note["pc"]) for a in note["args"].split()]
            out.append(ExpandedProbe(f"usdt:{path}:{p}:{n}", self, path, n,
                                     {"locations": [loc], "vaddr": note["pc"], "provider": p,
                                      "args": specs, "argspec": note["args"]}))
        return out

    def section(self, probe):
        return "usdt"

    def context_key(self, probe):
        return (probe.target, probe.params["provider"], probe.func, probe.params["argspec"])

    def check_arg(self, ck, node, n):
        if n > MAX_ARG:
            raise error(f"x86_64 doesn't support {node.name}", node.span)
        for p in ck.unit.probes:
            specs = p.params["args"]
            if n >= len(specs):
                raise error(f"usdt probe {p.params['provider']}:{p.func} has only {len(specs)} "
                            f"argument{'s' if len(specs) != 1 else ''} ({node.name} used here)",
                            node.span)
            if specs[n] is None:
                raise error(f"usdt probe {p.params['provider']}:{p.func}: argument {n} has an "
                            f"unsupported location '{p.params['argspec'].split()[n]}'", node.span)
        return UINT64

    def lower_arg(self, lw, node, n):
        spec = lw.unit.context.params["args"][n]
        b = lw.b
        size, signed = spec["size"], spec["signed"]
        if spec["kind"] == "const":
            v = spec["value"] & ((1 << (size * 8)) - 1)
            if signed and v >> (size * 8 - 1):
                v -= 1 << (size * 8)
            return const(v & (2 ** 64 - 1))
        reg, width = spec["reg"]
        value = read_reg(lw, reg)
        if width == "high":
            value = b.and_(b.lshr(value, const(8)), const(0xFF))
        if spec["kind"] == "mem":
            addr = b.add(value, const(spec["disp"] & (2 ** 64 - 1)))
            if spec["index"] is not None:
                idx = read_reg(lw, spec["index"][0])
                addr = b.add(addr, b.mul(idx, const(spec["scale"])))
            return read_user_u64(lw, addr, size, signed)
        if size < 8:
            shift = const(64 - size * 8)
            value = b.shl(value, shift)
            value = b.ashr(value, shift) if signed else b.lshr(value, shift)
        return value

    def list_matching(self, parts, pid):
        """usdt:target:[provider:]name, as bpftrace lists it: the probes of the target
        files, or with pid those of the objects the process maps (/proc/PID/root/...)."""
        if len(parts) == 2 and pid:
            parts = [parts[0], ""] + parts[1:]
        if len(parts) not in (3, 4):
            raise error("usdt probe type requires 2 or 3 arguments")
        if not (parts[1] or pid):
            return []
        target, prov, name = parts[1], (parts[2] if len(parts) == 4 else "") or "*", parts[-1]
        if pid:
            files = process_files(target, pid)
        else:
            paths = resolve_targets(target)
            files = [(p, read_elf(p)) for p in (paths if "*" in target else paths[:1])]
        return sorted({f"usdt:{path}:{n['provider']}:{n['name']}" for path, elf in files
                       if elf is not None for n in elf.notes
                       if glob_match(prov, n["provider"]) and glob_match(name, n["name"])})


USDT = register(Usdt())
