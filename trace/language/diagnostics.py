"""Diagnostics: bpftrace-style `file:line:col-col: ERROR: msg` with the source line and a ~ underline."""
from __future__ import annotations

from ..runtime.record import record
from .ast import Span


@record
class Diagnostic:
    message: str
    span: Span | None = None
    level: str = "ERROR"
    # False for the errors bpftrace 0.17 prints with no location: the span is
    # still known (for tools and tests), `render` leaves it out as 0.17 does.
    shown: bool = True

    # where it is, 1-based (the end exclusive); None when it has no place in the source
    @property
    def line(self) -> int | None:
        return self.span.line if self.span is not None and self.span.line else None

    @property
    def column(self) -> int | None:
        return self.span.col if self.line is not None else None

    @property
    def end_line(self) -> int | None:
        return self.span.end_line if self.line is not None else None

    @property
    def end_column(self) -> int | None:
        return self.span.end_col if self.line is not None else None


class CompileError(Exception):
    """One or more diagnostics that stop compilation."""

    def __init__(self, diagnostics):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))


class Unresolved(CompileError):
    """An attach point that names nothing on this machine (a uprobe symbol the
    binary does not have). As bpftrace 0.17, a script whose other probes resolve
    skips it (with a warning here); alone it is an error."""


def error(message: str, span: Span | None = None) -> CompileError:
    return CompileError(Diagnostic(message, span))


def unlocated_error(message: str, span: Span) -> CompileError:
    """An error 0.17 prints without a location; the diagnostic still has its span."""
    return CompileError(Diagnostic(message, span, shown=False))


def render(diag: Diagnostic, source: str, filename: str) -> str:
    """Render like bpftrace 0.17:

        stdin:1:14-15: ERROR: syntax error, unexpected ;
        BEGIN { @x = ; }
                     ~
    """
    span = diag.span
    if span is None or span.line == 0 or not diag.shown:
        return f"{diag.level}: {diag.message}\n"
    lines = source.split("\n")
    if span.end_line != span.line:
        return f"{filename}:{span.line}-{span.end_line}: {diag.level}: {diag.message}\n"
    end_col = max(span.end_col, span.col + 1)
    out = f"{filename}:{span.line}:{span.col}-{end_col}: {diag.level}: {diag.message}\n"
    if 1 <= span.line <= len(lines):
        text = lines[span.line - 1]
        out += text + "\n"
        prefix = "".join(c if c == "\t" else " " for c in text[: span.col - 1])
        out += prefix + "~" * (end_col - span.col) + "\n"
    return out
