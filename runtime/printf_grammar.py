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

__all__ = ["Spec", "parse_format", "count_specifiers", "to_bytes"]

# What a '%' can start, scanned by hand (no `re`: its import, with enum's, was
# ~5 ms of a cached one-liner's start):
#   %[-][width][.prec][hh|h|ll|l|j|z|t]{d,u,o,x,X,p}    an integer specifier
#   %[-][width][.prec]{rx,rh,r,s,c}                     a string/char/buffer one
#   %[-][width][.prec]%                                 "%" (C prints "%5%" as "%")
_DIGITS = b"0123456789"
_LENGTHS = (b"hh", b"h", b"ll", b"l", b"j", b"z", b"t")
_ICONV = b"duoxXp"
_SCONVS = (b"rx", b"rh", b"r", b"s", b"c")


def _digits(data: bytes, pos: int) -> int:
    """The end of the run of digits at `pos`."""
    n = len(data)
    while pos < n and data[pos] in _DIGITS:
        pos += 1
    return pos


def _scan(data: bytes, start: int):
    """The token at `start` (a '%'): (end, Spec or None for a literal "%"), or None
    if that '%' starts no token."""
    pos = start + 1
    minus = data[pos:pos + 1] == b"-"
    pos += minus
    w_end = _digits(data, pos)
    width = data[pos:w_end]
    pos, prec = w_end, None
    if data[pos:pos + 1] == b"." and _digits(data, pos + 1) > pos + 1:
        p_end = _digits(data, pos + 1)
        prec, pos = int(data[pos + 1:p_end]), p_end
    if data[pos:pos + 1] == b"%":
        return pos + 1, None
    for length in _LENGTHS:
        if data.startswith(length, pos):
            end = pos + len(length)
            if data[end:end + 1] and data[end] in _ICONV:
                return end + 1, _spec(data, start, end + 1, minus, width, prec, length,
                                      chr(data[end]))
            break                   # (a shorter length is followed by a letter, not a conversion)
    if data[pos:pos + 1] and data[pos] in _ICONV:
        return pos + 1, _spec(data, start, pos + 1, minus, width, prec, None, chr(data[pos]))
    for conv in _SCONVS:
        if data.startswith(conv, pos):
            end = pos + len(conv)
            return end, _spec(data, start, end, minus, width, prec, None, conv.decode())
    return None


def _spec(data, start, end, minus, width, prec, length, conv) -> Spec:
    return Spec(data[start:end], minus, width.startswith(b"0"), int(width) if width else 0,
                prec, length, conv)


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
        token = _scan(data, i)
        if token is None:
            literal += b"%"
            pos = i + 1
        elif token[1] is None:
            literal += b"%"
            pos = token[0]
        else:
            pieces.append((bytes(literal), token[1]))
            literal = bytearray()
            pos = token[0]
    return pieces, bytes(literal)


def count_specifiers(fmt) -> int:
    """How many arguments ``fmt`` consumes (for the compiler's checks)."""
    return len(parse_format(fmt)[0])
