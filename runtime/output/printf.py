"""C printf emulation for bpftrace 0.17 ``printf()`` formats.

Standard library only.

Specifiers (bpftrace 0.17, ``src/printf_format_types.h``)::

    %[-][width][.prec][hh|h|l|ll|j|z|t]{d,u,o,x,X,p}
    %[-][width][.prec]{s,c,r,rx,rh}

``width`` may start with ``0`` (C then reads it as the zero flag, so ``%05d``
works as in 0.17).  There are no ``+``, space or ``#`` flags, no ``*`` and no
floating point conversions, and no ``%i``: such sequences are not specifiers
and are printed as they are.

Each specifier is applied with C ``snprintf`` semantics to the 64-bit value,
so ``%d``/``%u``/``%o``/``%x`` see the low 32 bits, ``%hd`` the low 16,
``%hhd`` the low 8, ``%ld``/``%lu``/``%lx`` (and ll, j, z, t) all 64 bits;
``%p`` prints ``0x`` + hex, or ``(nil)`` for 0 (glibc); ``%c`` prints the low
byte.  As in 0.17, the text of each "literal prefix + specifier" piece is cut
at the first NUL byte (so ``printf("[%c]", 0)`` prints ``[]``).

Deviation from 0.17 (a 0.17 bug): ``%%`` always prints a single ``%``, as in
C.  (0.17 writes the text after the last specifier raw, so there ``%%``
printed twice.)  ``%%`` is an escape, so ``%%d`` is the literal text ``%d``
and not a specifier -- the compiler must count arguments with the same
scanner (:func:`parse_format` / :func:`count_specifiers`).

Format strings are text; bytes that are not UTF-8 are represented by
``surrogateescape`` code points (U+DC80..U+DCFF) and come back out as the
original bytes.
"""

from __future__ import annotations

from ..printf_grammar import Spec, count_specifiers, parse_format, to_bytes

__all__ = ["Spec", "Format", "parse_format", "count_specifiers",
           "compile_format", "format_printf", "format_int", "format_bytes",
           "format_buffer", "to_bytes"]

_MASK64 = (1 << 64) - 1

_INT_BITS = {None: 32, b"hh": 8, b"h": 16, b"l": 64, b"ll": 64,
             b"j": 64, b"z": 64, b"t": 64}


# --------------------------------------------------------------------------
# conversions

def _pad(body: bytes, spec: Spec, zero_ok: bool = False, prefix_len: int = 0) -> bytes:
    width = spec.width
    if len(body) >= width:
        return body
    fill = width - len(body)
    if spec.left:
        return body + b" " * fill
    if zero_ok and spec.zero:
        return body[:prefix_len] + b"0" * fill + body[prefix_len:]
    return b" " * fill + body


def format_int(value: int, spec: Spec) -> bytes:
    """Apply an integer specifier to a 64-bit value with C semantics."""
    conv = spec.conv
    v = int(value) & _MASK64
    if conv == "c":
        return _pad(bytes((v & 0xFF,)), spec)
    if conv == "p":
        if v == 0:
            return _pad(b"(nil)", spec)
        digits = b"%x" % v
        prefix = b"0x"
        neg = False
    else:
        bits = _INT_BITS[spec.length]
        v &= (1 << bits) - 1
        neg = False
        if conv == "d":
            if v >> (bits - 1):
                v = (1 << bits) - v
                neg = True
            digits = b"%d" % v
        elif conv == "u":
            digits = b"%d" % v
        elif conv == "o":
            digits = b"%o" % v
        elif conv == "x":
            digits = b"%x" % v
        else:
            digits = b"%X" % v
        prefix = b"-" if neg else b""
    prec = spec.prec
    if prec is not None:
        if prec == 0 and v == 0:
            digits = b""
        elif len(digits) < prec:
            digits = b"0" * (prec - len(digits)) + digits
    body = prefix + digits
    # the 0 flag is ignored when a precision is given (C)
    return _pad(body, spec, zero_ok=prec is None, prefix_len=len(prefix))


def format_bytes(data: bytes, spec: Spec) -> bytes:
    """``%s``: precision truncates, width pads (bytes, like C)."""
    if spec.prec is not None:
        data = data[:spec.prec]
    return _pad(data, spec)


def format_buffer(data: bytes, conv: str) -> bytes:
    """``%r``, ``%rx``, ``%rh`` applied to raw bytes (bpftrace buffers)."""
    if conv == "rx":
        return b"".join(b"\\x%02x" % c for c in data)
    if conv == "rh":
        return b" ".join(b"%02x" % c for c in data)
    return b"".join(bytes((c,)) if 32 <= c <= 126 else b"\\x%02x" % c
                    for c in data)


def _value_bytes(value, render) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return to_bytes(render(value)) if render is not None else to_bytes(value)


def _apply(spec: Spec, value, render) -> bytes:
    """The general (slow) path: any specifier, any value."""
    conv = spec.conv
    if conv in ("s", "r", "rx", "rh"):
        data = _value_bytes(value, render)
        if conv != "s":
            data = format_buffer(data, conv)
        return format_bytes(data, spec)
    if isinstance(value, int):
        return format_int(value, spec)
    # not an integer (the compiler rejects this): print it like %s
    return format_bytes(_value_bytes(value, render), spec)


def _compile_spec(spec: Spec):
    """A fast ``f(value, render) -> bytes`` for the common cases, using
    Python's own %-formatting where it agrees with C (no precision)."""
    conv = spec.conv
    flags = ("-" if spec.left else "") + ("0" if spec.zero else "")
    width = str(spec.width) if spec.width else ""
    if spec.prec is None and conv in ("d", "u", "o", "x", "X"):
        bits = _INT_BITS[spec.length]
        mask = (1 << bits) - 1
        pyfmt = ("%" + flags + width + ("d" if conv == "u" else conv)).encode()
        if conv == "d":
            sign = 1 << (bits - 1)
            full = 1 << bits

            def f(value, render):
                if type(value) is not int:
                    return _apply(spec, value, render)
                v = value & mask
                return pyfmt % (v - full if v & sign else v)
        else:
            def f(value, render):
                if type(value) is not int:
                    return _apply(spec, value, render)
                return pyfmt % (value & mask)
        return f
    if spec.prec is None and conv == "s":
        pyfmt = ("%" + ("-" if spec.left else "") + width + "s").encode()

        def f(value, render):
            if type(value) is bytes:
                return pyfmt % value
            return pyfmt % _value_bytes(value, render)
        return f
    return lambda value, render: _apply(spec, value, render)


class Format:
    """A compiled printf format."""

    __slots__ = ("pieces", "tail", "_compiled")

    def __init__(self, fmt):
        self.pieces, self.tail = parse_format(fmt)
        # (literal, converter, may_contain_nul, spec)
        self._compiled = [(lit, _compile_spec(sp), sp.conv == "c" or b"\0" in lit, sp)
                          for lit, sp in self.pieces]

    @property
    def nargs(self) -> int:
        return len(self.pieces)

    def apply(self, values, render=None) -> bytes:
        """Format ``values`` (decoded values, one per specifier).

        ``render(value) -> str`` is used for ``%s`` of values that are neither
        strings nor bytes (tuples, for example).
        """
        out = []
        nvalues = len(values)
        for i, (literal, conv, nul_check, spec) in enumerate(self._compiled):
            if i >= nvalues:
                # no argument for it: print the rest literally
                out.append(literal)
                out.append(spec.text)
                continue
            piece = literal + conv(values[i], render)
            if nul_check:
                nul = piece.find(b"\0")
                if nul >= 0:
                    # 0.17 builds each piece with snprintf into a C string
                    piece = piece[:nul]
            out.append(piece)
        out.append(self.tail)
        return b"".join(out)


_cache: dict = {}


def compile_format(fmt) -> Format:
    f = _cache.get(fmt)
    if f is None:
        if len(_cache) > 4096:
            _cache.clear()
        f = _cache[fmt] = Format(fmt)
    return f


def format_printf(fmt, values, render=None) -> bytes:
    """Format ``values`` with bpftrace printf semantics; returns bytes."""
    return compile_format(fmt).apply(values, render)
