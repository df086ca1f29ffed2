"""signal(), debugf(), override(): actions on the traced system."""
from __future__ import annotations

import signal

from ..codegen import builder as B
from ..codegen.builder import I64, const
from ..language import ast
from ..language.diagnostics import error
from ..types.model import IntT, NoneT
from .output import check_format, format_specs
from .registry import check_unsafe, function, int_arg, nargs

# ---------------------------------------------------------------- unsafe actions

def signal_number(name: str):
    """A signal name ("KILL", "SIGKILL", any case) as its number, or None."""
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal.Signals, name, None) if not name.startswith("SIG_") else None
    return int(sig) if sig is not None else None


def _check_signal(ck, node):
    check_unsafe(ck, node)
    if not node.args:
        raise error("signal() requires at least one argument (0 provided)", node.span)
    if len(node.args) > 1:
        raise error(f"signal() takes up to one argument ({len(node.args)} provided)", node.span)
    for probe_name in (p.name for p in ck.unit.probes):
        if probe_name in ("BEGIN", "END"):
            raise error(f'signal can not be used with "{probe_name}" probes', node.span)
    arg = node.args[0]
    t = ck.expr(arg)
    if isinstance(arg, ast.String):
        text = arg.value.decode("utf-8", "replace")
        node.signal = signal_number(text)
        if node.signal is None:
            raise error(f"{text} is not a valid signal", node.span)
    elif isinstance(t, IntT):
        value = ck.fold(arg)
        if value is not None and not 1 <= value <= 64:
            raise error(f"{value} is not a valid signal, allowed range: [1,64]", node.span)
        node.signal = value
    elif t is not None:
        raise error("signal only accepts string literals or integers", node.span)
    return NoneT()


@function("signal", 'signal(sig): send a signal ("KILL", "SIGUSR1" or a number) to the '
          "current process (--unsafe).", _check_signal, signature="signal(sig)")
def _signal(lw, node):
    sig = const(node.signal) if node.signal is not None else lw.expr(node.args[0])
    lw.fb.helper(B.SEND_SIGNAL, lw.b.trunc(sig, B.I32))
    return const(0)


def _check_debugf(ck, node):
    if not node.args or not isinstance(node.args[0], ast.String):
        check_format(ck, node, "debugf")        # its error comes before the warning
    ck.warn("The debugf() builtin is not recommended for production use. For more "
            "information see bpf_trace_printk in bpf-helpers(7).", node.span)
    fmt, _types = check_format(ck, node, "debugf")
    if len(format_specs(fmt)) > 3:
        raise error("debugf: Cannot use more than 3 conversion specifiers", node.span)
    return NoneT()


@function("debugf", "debugf(fmt, ...): bpf_trace_printk to the kernel's trace_pipe (at most 3 "
          "arguments; for debugging).", _check_debugf, signature="debugf(fmt, ...)")
def _debugf(lw, node):
    fb, b = lw.fb, lw.b
    fmt = node.args[0].value + b"\0"
    buf = fb.temp(len(fmt))
    fb.store_bytes(buf, fmt)
    args = []
    for a in node.args[1:]:
        v = lw.expr(a)
        args.append(v if a.type.in_register else b.ptrtoint(v, I64))   # %s: its address
    fb.helper(B.TRACE_PRINTK, buf, const(len(fmt), B.I32), *args)
    return const(0)


def _check_override(ck, node):
    check_unsafe(ck, node)
    nargs(node, 1, 99)
    if len(node.args) > 1:
        raise error(f"override() takes up to one argument ({len(node.args)} provided)", node.span)
    if not ck.unit.provider.override_return:
        raise error("override can only be used with kprobes.", node.span)
    int_arg(ck, node, 0)
    return NoneT()


@function("override", "override(rc): return rc from the probed kernel function without running "
          "it (kprobe on an error-injectable function; --unsafe).", _check_override,
          signature="override(rc)")
def _override(lw, node):
    lw.fb.helper(B.OVERRIDE_RETURN, lw.fb.ctx, lw.expr(node.args[0]))
    return const(0)
