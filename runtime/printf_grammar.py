"""The printf format grammar of bpftrace 0.17 ``printf()``, shared by the
compiler (which counts and types the arguments) and the runtime (which formats
them: ``runtime/output/printf.py``).  Standard library only, and importable
without the output layer.

Specifiers (bpftrace 0.17, ``src/printf_format_types.h``)::

    %[-][width][.prec][hh|h|l|ll|j|z|t]{d,u,o,x,X,p}
    %[-][width][.prec]{s,c,r,rx,rh}

``%%`` (and ``%5%``, which C prints as ``%``) is a literal ``%``, never part of
a specifier; any other ``%`` that starts no specifier is printed as it is.
"""

from __future__ import annotations

import re

__all__ = ["Spec", "parse_format", "count_specifiers", "to_bytes"]

# One regex for everything a '%' can start.  Group names:
#   minus, width, prec, length, iconv  -> integer specifier
#   minus2, width2, prec2, sconv       -> string/char/buffer specifier
#   pct                                -> "%%" (or "%5%", which C prints as "%")
_TOKEN_RE = re.compile(
    rb"%(?:"
    rb"(?P<minus>-?)(?P<width>[0-9]*)(?:\.(?P<prec>[0-9]+))?"
    rb"(?P<length>hh|h|ll|l|j|z|t)?(?P<iconv>[duoxXp])"
    rb"|(?P<minus2>-?)(?P<width2>[0-9]*)(?:\.(?P<prec2>[0-9]+))?"
    rb"(?P<sconv>rx|rh|r|s|c)"
    rb"|(?P<pct>-?[0-9]*(?:\.[0-9]+)?%)"
    rb")")

def to_bytes(text) -> bytes:
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    return str(text).encode("utf-8", "surrogateescape")


class Spec:
    """One conversion specifier."""

    __slots__ = ("text", "left", "zero", "width", "prec", "length", "conv")

    def __init__(self, text: bytes, left: bool, zero: bool, width: int,
                 prec: int | None, length: bytes | None, conv: str):
        self.text = text          # the specifier as written, e.g. b"%-5ld"
        self.left = left
        self.zero = zero
        self.width = width
        self.prec = prec
        self.length = length
        self.conv = conv          # "d" "u" "o" "x" "X" "p" "s" "c" "r" "rx" "rh"

    @property
    def is_integer(self) -> bool:
        return self.conv in ("d", "u", "o", "x", "X", "p", "c")

    def __repr__(self) -> str:
        return "Spec(%r)" % (self.text,)


def _make_spec(m) -> Spec:
    if m.group("iconv") is not None:
        minus, width, prec = m.group("minus"), m.group("width"), m.group("prec")
        length, conv = m.group("length"), m.group("iconv").decode()
    else:
        minus, width, prec = m.group("minus2"), m.group("width2"), m.group("prec2")
        length, conv = None, m.group("sconv").decode()
    return Spec(m.group(0), bool(minus), width.startswith(b"0"),
                int(width) if width else 0,
                int(prec) if prec is not None else None, length, conv)


def parse_format(fmt) -> tuple:
    """Split a format into ``([(literal_prefix, Spec), ...], tail)``.

    Literals are bytes with ``%%`` already turned into ``%``; any other ``%``
    that does not start a specifier is kept as it is.
    """
    data = to_bytes(fmt)
    pieces = []
    literal = bytearray()
    pos = 0
    n = len(data)
    while pos < n:
        i = data.find(b"%", pos)
        if i < 0:
            literal += data[pos:]
            break
        literal += data[pos:i]
        m = _TOKEN_RE.match(data, i)
        if m is None:
            literal += b"%"
            pos = i + 1
        elif m.group("pct") is not None:
            literal += b"%"
            pos = m.end()
        else:
            pieces.append((bytes(literal), _make_spec(m)))
            literal = bytearray()
            pos = m.end()
    return pieces, bytes(literal)


def count_specifiers(fmt) -> int:
    """How many arguments ``fmt`` consumes (for the compiler's checks)."""
    return len(parse_format(fmt)[0])
