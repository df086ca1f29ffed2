"""A small C struct parser for the definitions at the top of a script (no clang):
enough to know the size and field offsets of `struct X { ... };` for sizeof()."""
from __future__ import annotations

import os
import re
from typing import Dict, Optional

from ..language.diagnostics import error
from .btf import VMLINUX

SCALARS = {
    "char": 1, "signed char": 1, "unsigned char": 1, "bool": 1, "_Bool": 1,
    "short": 2, "short int": 2, "unsigned short": 2, "unsigned short int": 2,
    "int": 4, "signed": 4, "unsigned": 4, "unsigned int": 4, "signed int": 4,
    "long": 8, "long int": 8, "unsigned long": 8, "unsigned long int": 8,
    "long long": 8, "unsigned long long": 8, "long long int": 8, "unsigned long long int": 8,
    "u8": 1, "s8": 1, "u16": 2, "s16": 2, "u32": 4, "s32": 4, "u64": 8, "s64": 8,
    "__u8": 1, "__s8": 1, "__u16": 2, "__s16": 2, "__u32": 4, "__s32": 4, "__u64": 8, "__s64": 8,
    "uint8_t": 1, "int8_t": 1, "uint16_t": 2, "int16_t": 2, "uint32_t": 4, "int32_t": 4,
    "uint64_t": 8, "int64_t": 8, "size_t": 8, "pid_t": 4, "uid_t": 4, "gid_t": 4,
}

STRUCT_RE = re.compile(r"\b(struct|union)\s+(\w+)\s*\{(.*?)\}\s*;?", re.S)
FIELD_RE = re.compile(r"^(.*?)(\**)\s*(\w+)\s*((?:\[\s*\d+\s*\])*)$", re.S)


def preprocess(definitions, defined=("BPFTRACE_HAVE_BTF",)):
    """The C definitions that are active after a minimal preprocessor: `#ifdef`,
    `#ifndef`, `#if 0/1`, `#if defined(X)`, `#else`, `#elif`, `#endif` over the
    macros #defined so far (BPFTRACE_HAVE_BTF is defined when the kernel has BTF);
    `#include` is ignored (kernel types come from BTF). Returns (definitions,
    {name: int} of the integer #defines)."""
    macros = {name: "1" for name in defined}
    ints: Dict[str, int] = {}
    stack = []            # [active, taken, parent_active]
    out = []
    for d in definitions:
        text = d.strip()
        active = all(frame[0] for frame in stack)
        if not text.startswith("#"):
            if active:
                out.append(d)
            continue
        m = re.match(r"#\s*(\w+)\s*(.*)", text, re.S)
        if not m:
            continue
        word, rest = m.group(1), " ".join(m.group(2).replace("\\\n", " ").split())
        if word in ("ifdef", "ifndef", "if"):
            if word == "if":
                cond = _pp_condition(rest, macros)
            else:
                cond = (rest.split()[0] in macros if rest else False) == (word == "ifdef")
            stack.append([active and cond, cond])
        elif word in ("else", "elif") and stack:
            parent = all(frame[0] for frame in stack[:-1])
            taken = stack[-1][1]
            cond = not taken and (word == "else" or _pp_condition(rest, macros))
            stack[-1] = [parent and cond, taken or cond]
        elif word == "endif" and stack:
            stack.pop()
        elif not active:
            continue
        elif word == "define":
            parts = rest.split(None, 1)
            if parts:
                value = parts[1] if len(parts) > 1 else "1"
                macros[parts[0]] = value
                try:
                    ints[parts[0]] = int(value.rstrip("uUlL") or "0", 0)
                except ValueError:
                    try:
                        ints[parts[0]] = int(value.strip("()").rstrip("uUlL"), 0)
                    except ValueError:
                        pass
        elif word == "undef":
            macros.pop(rest.strip(), None)
            ints.pop(rest.strip(), None)
    return out, ints


def _pp_condition(expr: str, macros) -> bool:
    expr = expr.strip()
    m = re.fullmatch(r"(!)?\s*defined\s*\(?\s*(\w+)\s*\)?", expr)
    if m:
        return (m.group(2) in macros) != bool(m.group(1))
    try:
        return int(macros.get(expr, expr), 0) != 0
    except ValueError:
        return False


class StructTable:
    def __init__(self, definitions):
        self.layouts: Dict[str, tuple] = {}   # "struct X" -> (size, align)
        defined = ("BPFTRACE_HAVE_BTF",) if os.path.exists(VMLINUX) else ()
        definitions, self.defines = preprocess(definitions, defined)
        text = re.sub(r"//[^\n]*|/\*.*?\*/", "", "\n".join(definitions), flags=re.S)
        for kind, name, body in STRUCT_RE.findall(text):
            self.layouts[f"{kind} {name}"] = self._layout(kind, body)

    def _type_layout(self, ctype: str, pointer: bool):
        ctype = " ".join(ctype.replace("const", " ").replace("volatile", " ").split())
        if pointer:
            return 8, 8
        if ctype in SCALARS:
            n = SCALARS[ctype]
            return n, n
        if ctype in self.layouts:
            return self.layouts[ctype]
        raise error(f"Cannot resolve unknown type \"{ctype}\"")

    def _layout(self, kind, body):
        size, align = 0, 1
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            m = FIELD_RE.match(decl)
            if not m:
                raise error(f"Cannot parse struct field: {decl}")
            ctype, stars, _, dims = m.groups()
            fsize, falign = self._type_layout(ctype, bool(stars))
            for d in re.findall(r"\d+", dims):
                fsize *= int(d)
            align = max(align, falign)
            if kind == "union":
                size = max(size, fsize)
            else:
                size = (size + falign - 1) // falign * falign + fsize
        size = (size + align - 1) // align * align
        return size, align

    def size_of(self, name: str) -> Optional[int]:
        name = " ".join(name.split())
        if name.endswith("*"):
            return 8
        if name in self.layouts:
            return self.layouts[name][0]
        if name in SCALARS:
            return SCALARS[name]
        return None
