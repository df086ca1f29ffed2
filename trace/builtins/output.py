"""Entries that print: printf, system, cat (one printf-like path), print, time; skboutput,
which writes packets to a PCAP file; and exit and unwatch, which act on the run."""
from __future__ import annotations

from ..language import ast
from ..codegen import builder as B
from ..codegen.builder import const
from ..runtime.printf_grammar import parse_format
from ..runtime.uapi import (BPF_F_CURRENT_CPU,
                            BPF_MAP_TYPE_PERF_EVENT_ARRAY as MAP_TYPE_PERF_EVENT_ARRAY)
from ..language.diagnostics import CompileError, Diagnostic, error
from ..types.model import (UINT64, AggT, ArgsT, BufT, IntT, NoneT, PtrT, StrT, bpftrace_name)
from .registry import (InternalMap, call_to_map_span, check_unsafe, function, int_arg,
                       literal_int, nargs, printf_kind, record_layout)


# ---------------------------------------------------------------- printf and friends

def format_specs(fmt: str):
    """The conversions of a format string: the runtime's printf grammar, so the
    compiler counts and types exactly the arguments the runtime will format."""
    return [spec.conv for _, spec in parse_format(fmt)[0]]


def check_format(ck, node, func_name, first=0):
    if not node.args or not isinstance(node.args[first], ast.String):
        if not node.args:
            raise error(f"{func_name}() requires at least one argument (0 provided)", node.span)
        t = ck.expr(node.args[first])
        raise error(f"{func_name}() expects a string literal ({printf_kind(t) if t else 'none'} "
                    f"provided)", node.span)
    node.args[first].type = StrT(len(node.args[first].value) + 1)   # formats may exceed 64 bytes
    fmt = node.args[first].value.decode("utf-8", "replace")
    specs = format_specs(fmt)
    args = node.args[first + 1:]
    types = [ck.expr(a) for a in args]
    if len(args) < len(specs):
        raise error(f"{func_name}: Not enough arguments for format string ({len(args)} supplied, "
                    f"{len(specs)} expected)", node.span)
    if len(args) > len(specs):
        raise error(f"{func_name}: Too many arguments for format string ({len(args)} supplied, "
                    f"{len(specs)} expected)", node.span)
    for conv, t, a in zip(specs, types, args):
        if t is None:
            continue
        if conv == "s":
            if not t.prints_as_string:
                raise error(f"{func_name}: %s specifier expects a value of type string "
                            f"({printf_kind(t)} supplied)", node.span)
        elif conv in ("r", "rx", "rh"):
            if isinstance(t, BufT):
                continue
            raise error(f"{func_name}: %{conv} specifier expects a value of type buffer "
                        f"({printf_kind(t)} supplied)", node.span)
        else:
            if not isinstance(t, (IntT, PtrT)):
                raise error(f"{func_name}: %{conv} specifier expects a value of type integer "
                            f"({printf_kind(t)} supplied)", node.span)
    return fmt, types



def formatted_check(name, unsafe=False):
    """The typing rule of printf-like calls: a literal format and its arguments."""
    def check(ck, node):
        if unsafe:
            check_unsafe(ck, node)
        check_format(ck, node, name)
        return NoneT()
    return check


def formatted_action(kind):
    """The async action of printf-like calls: the format and its arguments' layout."""
    def action(node):
        fmt = node.args[0].value.decode("utf-8", "replace")
        return record_layout([a.type for a in node.args[1:]], {"kind": kind, "format": fmt, "args": []})
    return action


def send_args(lw, node):
    """The lowering of printf-like calls: the arguments in one ring buffer record,
    acted on in user space."""
    lw.send(node, [(a.type, lw.expr(a)) for a in node.args[1:]])
    return const(0)


function("printf", "printf(fmt, ...): print formatted output (asynchronously, via the ring buffer).",
         formatted_check("printf"), signature="printf(fmt, ...)",
         action=formatted_action("printf"))(send_args)
function("system", "system(fmt, ...): run a shell command (user space, --unsafe); its "
         "standard output joins the trace output.", formatted_check("system", unsafe=True),
         signature="system(fmt, ...)", action=formatted_action("system"))(send_args)
function("cat", "cat(fmt, ...): print the contents of a file (read in user space).",
         formatted_check("cat"), signature="cat(fmt, ...)", action=formatted_action("cat"))(send_args)


def _check_print(ck, node):
    nargs(node, 1, 3)
    first = node.args[0]
    if isinstance(first, ast.Map) and first.keys is None:
        ck.map_ref(first, call_to_map_span(node, first))
        node.top_div = [literal_int(ck, node, i) for i in range(1, len(node.args))] + [0, 0]
        info = ck.maps[first.name]
        if len(node.args) > 1 and getattr(info.value, "kind", "") == "stats":
            ck.warn("print()'s top and div arguments are ignored when used on stats() maps.", node.span)
        return NoneT()
    if len(node.args) > 1:
        raise error(f"Non-map print() only takes 1 argument, {len(node.args)} found", node.span)
    t = ck.expr(first)
    if isinstance(t, AggT):
        # print(@m[k]) of a plain map is newer bpftrace (0.21); an aggregation's element
        # can not be read in the kernel here, so give 0.17's error
        raise error("The map passed to print() should not be indexed by a key", node.span)
    if t is not None and isinstance(t, (NoneT, ArgsT)):
        raise error(f"print() cannot print a value of type {bpftrace_name(t)}", first.span)
    node.value_type = ck.stored(t, first) if t is not None else None
    return NoneT()


def _print_action(node):
    first = node.args[0]
    if isinstance(first, ast.Map) and first.keys is None:
        top, div = node.top_div[:2]
        return {"kind": "print_map", "map": first.name, "top": top, "div": div}
    return record_layout([node.value_type], {"kind": "print_value", "arg": None})


@function("print", "print(@map[, top[, div]]) prints a map now; print(value) prints a value.",
          _check_print, signature="print(@map | value[, top[, div]])", action=_print_action)
def _print(lw, node):
    first = node.args[0]
    if isinstance(first, ast.Map) and first.keys is None:
        lw.send(node, [])
    elif node.value_type is not first.type:     # a struct or array: print a copy
        copy = lw.fb.temp(node.value_type.size)
        lw.materialize(node.value_type, first.type, lw.expr(first), copy, 0)
        lw.send(node, [(node.value_type, copy)])
    else:
        lw.send(node, [(first.type, lw.expr(first))])
    return const(0)


def _check_time(ck, node):
    nargs(node, 0, 1)
    if node.args:
        if not isinstance(node.args[0], ast.String):
            t = ck.expr(node.args[0])
            raise error(f"time() expects a string literal ({printf_kind(t) if t else 'none'} provided)",
                        node.span)
        ck.expr(node.args[0])
    return NoneT()


def _time_action(node):
    return {"kind": "time", "format": node.args[0].value.decode("utf-8", "replace") if node.args else "%H:%M:%S\n"}


@function("time", "time([fmt]): print the current local time (strftime format, default %H:%M:%S\\n).",
          _check_time, signature="time([fmt])", action=_time_action)
def _time(lw, node):
    lw.send(node, [])
    return const(0)


def _check_exit(ck, node):
    nargs(node, 0)
    return NoneT()


@function("exit", "exit(): stop tracing (ends the current probe too).", _check_exit, signature="exit()",
          action=lambda node: {"kind": "exit"})
def _exit(lw, node):
    lw.send(node, [])
    lw.b.branch(lw.fb.exit_block)
    lw.b.position_at_end(lw.fb.new_block("after_exit"))
    return const(0)


def _check_unwatch(ck, node):
    nargs(node, 1)
    int_arg(ck, node, 0)
    return NoneT()


@function("unwatch", "unwatch(addr): remove the watchpoints (watchpoint:func+argN) armed on addr.",
          _check_unwatch, signature="unwatch(addr)",
          action=lambda node: {"kind": "unwatch"})
def _unwatch(lw, node):
    lw.send(node, [(UINT64, lw.expr(node.args[0]))])
    return const(0)


# ---------------------------------------------------------------- skboutput

SKB_OUTPUT = 111                # bpf_skb_output
SKB_HEADER = 24                 # {u64 async id; u64 captured length; u64 boot ns}
PERF_MAP = InternalMap("perf_events", MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0)   # loader: one per CPU


def _check_skboutput(ck, node):
    """0.17's checks, in its order: what it reports in every pass together (the kernel
    lacks the helper, not assigned to a variable, the argument count), then the
    arguments' types.  The kernel is asked only for scripts that call skboutput."""
    from ..info import skb_output_available     # lazy: start-up time (loads test programs)
    found = []
    if not skb_output_available():
        found.append(Diagnostic("BPF_FUNC_skb_output is not available for your kernel version",
                                node.span))
    if ck.assigned_to_var is not node:
        found.append(Diagnostic("skboutput() should be assigned to a variable", node.span))
    try:
        nargs(node, 4)
    except CompileError as e:
        found += e.diagnostics
    if found:
        raise CompileError(found)
    path, skb, length = node.args[:3]
    if not isinstance(path, ast.String):
        t = ck.expr(path)
        raise error(f"skboutput() expects a string literal ({printf_kind(t)} provided)", node.span)
    ck.expr(path)
    for arg, want, ok in ((skb, "pointer", PtrT), (length, "integer", IntT)):
        t = ck.expr(arg)
        if t is not None and not isinstance(t, ok):
            given = "pointer" if isinstance(t, PtrT) else printf_kind(t)     # 0.17's Type names
            raise error(f"skboutput() only supports {want} arguments ({given} provided)", node.span)
    node.offset = literal_int(ck, node, 3)      # applied in user space
    if node.offset < 0:
        raise error(f"skboutput() offset must not be negative ({node.offset} provided)", node.span)
    return IntT(32, False)


def _skboutput_action(node):
    return {"kind": "skboutput", "path": node.args[0].value.decode("utf-8", "surrogateescape"),
            "offset": node.offset, "map": PERF_MAP.symbol}


@function("skboutput", "skboutput(path, skb, len, offset): write the skb's first len bytes, from "
          "offset on, to the PCAP file path (raw IP); returns 0 or a negative error "
          "(kfunc probes only).", _check_skboutput, signature="skboutput(path, skb, len, offset)",
          action=_skboutput_action, maps=lambda node, options: [PERF_MAP])
def _skboutput(lw, node):
    """bpf_skb_output(skb, perf map, len << 32 | BPF_F_CURRENT_CPU, &header, 24): the
    kernel appends the skb's first len bytes to the header in a perf sample."""
    fb, b = lw.fb, lw.b
    hdr = fb.temp(SKB_HEADER)
    fb.store(hdr, 0, const(node.async_id))
    fb.store(hdr, 16, fb.helper(B.KTIME_GET_BOOT_NS))
    skb = lw.expr(node.args[1])
    length = b.and_(lw.expr(node.args[2]), const(0xFFFFFFFF))
    fb.store(hdr, 8, length)
    flags = b.or_(b.shl(length, const(32)), const(BPF_F_CURRENT_CPU))
    ret = fb.helper(SKB_OUTPUT, skb, fb.map_ptr(lw.gvs[PERF_MAP.symbol]), flags, hdr,
                    const(SKB_HEADER))
    return fb.narrow(ret, 32, False)
