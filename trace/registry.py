"""The one registry of builtins and functions.

Each entry holds its name, kind ("variable", "function" or "aggregation"), its
typing rule (`check(checker, node) -> Type`), its lowering
(`lower(lowerer, node, ...) -> value`) and its documentation. User-space
formatting follows from the type each entry returns (its manifest descriptor).
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Optional

from .runtime.record import record
from . import ast
from .codegen import builder as B
from .codegen.builder import I64, const
from .diagnostics import CompileError, error
from .types import (STRLEN, INT64, UINT32, UINT64, AggT, ArgsT, BufT, InetT, IntT, KsymT, MacT, NoneT,
                    ProbeT, PtrT, StackT, StrerrorT, StrftimeT, StrT, TupleT, UsernameT, UsymT,
                    bpftrace_name, pointer_of)

JOIN_MAX_ARGS = 16


@record
class Entry:
    name: str
    kind: str
    doc: str
    check: Callable
    lower: Callable
    signature: str = ""


_VARIABLES: Dict[str, Entry] = {}
_FUNCTIONS: Dict[str, Entry] = {}


def lookup_builtin(name: str) -> Optional[Entry]:
    if re.fullmatch(r"arg[0-9]|sarg[0-9]|retval|func", name):
        return _VARIABLES.get("arg*")
    return _VARIABLES.get(name)


def lookup_function(name: str) -> Optional[Entry]:
    return _FUNCTIONS.get(name)


def all_entries():
    return sorted(list(_VARIABLES.values()) + list(_FUNCTIONS.values()), key=lambda e: e.name)


def variable(name, doc, type_=None):
    """Register a builtin variable. With type_, the typing rule is that constant type."""
    def deco(fn):
        if type_ is not None:
            _VARIABLES[name] = Entry(name, "variable", doc, lambda ck, node: type_, fn)
        else:
            _VARIABLES[name] = Entry(name, "variable", doc, fn.check, fn.lower)
        return fn
    return deco


def function(name, doc, check, kind="function", signature=""):
    def deco(lower):
        _FUNCTIONS[name] = Entry(name, kind, doc, check, lower, signature)
        return lower
    return deco


# ---------------------------------------------------------------- argument checks

def nargs(node, low, high=None):
    n = len(node.args)
    high = low if high is None else high
    if low == high and n != low:
        if low == 0:
            raise error(f"{node.name}() requires no arguments ({n} provided)", node.span)
        if low == 1:
            raise error(f"{node.name}() requires one argument ({n} provided)", node.span)
        raise error(f"{node.name}() requires {low} arguments ({n} provided)", node.span)
    if n < low:
        what = "one argument" if low == 1 else f"{low} arguments"
        raise error(f"{node.name}() requires at least {what} ({n} provided)", node.span)
    if high is not None and n > high:
        if high == 0:
            raise error(f"{node.name}() requires no arguments ({n} provided)", node.span)
        what = "one argument" if high == 1 else f"{high} arguments"
        raise error(f"{node.name}() takes up to {what} ({n} provided)", node.span)


def int_arg(ck, node, i, what="integer"):
    t = ck.expr(node.args[i])
    if t is not None and not isinstance(t, (IntT, PtrT)):
        raise error(f"{node.name}() only supports {what} arguments ({_printf_kind(t)} provided)",
                    node.span)
    return t


def literal_int(ck, node, i, what="integer literal"):
    v = ck.fold(node.args[i])
    if v is None:
        try:
            t = ck.expr(node.args[i])
        except CompileError:
            t = NoneT()
        raise error(f"{node.name}() expects a {what} ({_printf_kind(t) if t else 'none'} provided)",
                    node.span)
    return v


def call_to_map_span(node, m):
    """bpftrace reports a map passed to a function (undefined, wrong keys) from the call's
    start to the map's end: `print(@x` in `print(@x, 1)`."""
    return ast.Span(node.span.line, node.span.col, m.span.end_line, m.span.end_col)


def map_arg(ck, node, i=0):
    m = node.args[i]
    if not isinstance(m, ast.Map):
        raise error(f"{node.name}() expects a map to be provided", node.span)
    return m


# ---------------------------------------------------------------- builtin variables

def _pid_tgid(lw):
    return lw.fb.helper(B.GET_CURRENT_PID_TGID)


@variable("pid", "Process ID (the kernel's tgid).", UINT64)
def _pid(lw, node):
    return lw.b.lshr(_pid_tgid(lw), const(32))


@variable("tid", "Thread ID (the kernel's pid).", UINT64)
def _tid(lw, node):
    return lw.b.and_(_pid_tgid(lw), const(0xFFFFFFFF))


@variable("uid", "User ID.", UINT64)
def _uid(lw, node):
    return lw.b.and_(lw.fb.helper(B.GET_CURRENT_UID_GID), const(0xFFFFFFFF))


@variable("gid", "Group ID.", UINT64)
def _gid(lw, node):
    return lw.b.lshr(lw.fb.helper(B.GET_CURRENT_UID_GID), const(32))


@variable("username", "User name of the current uid (resolved in user space).", UsernameT())
def _username(lw, node):
    return _uid(lw, node)


@variable("nsecs", "Nanoseconds since boot (bpf_ktime_get_boot_ns).", UINT64)
def _nsecs(lw, node):
    return lw.fb.helper(B.KTIME_GET_BOOT_NS)


@variable("elapsed", "Nanoseconds since pytrace started.", UINT64)
def _elapsed(lw, node):
    return lw.b.sub(lw.fb.helper(B.KTIME_GET_BOOT_NS), lw.global_value("start_ns"))


@variable("cpu", "The CPU the probe fired on.", UINT64)
def _cpu(lw, node):
    return lw.fb.helper(B.GET_SMP_PROCESSOR_ID)


@variable("numaid", "The NUMA node of the CPU the probe fired on.", UINT32)
def _numaid(lw, node):
    return lw.fb.helper(B.GET_NUMA_NODE_ID)


@variable("comm", "Name of the current process (16 bytes).", StrT(16))
def _comm(lw, node):
    buf = lw.fb.temp(16)
    lw.fb.helper(B.GET_CURRENT_COMM, buf, const(16, B.I32))
    return buf


@variable("rand", "A pseudo-random 32-bit number.", UINT32)
def _rand(lw, node):
    return lw.fb.helper(B.GET_PRANDOM_U32)


@variable("cgroup", "The cgroup v2 id of the current process.", UINT64)
def _cgroup(lw, node):
    return lw.fb.helper(B.GET_CURRENT_CGROUP_ID)


@variable("curtask", "Pointer to the current task_struct.", PtrT("struct task_struct"))
def _curtask(lw, node):
    return lw.fb.helper(B.GET_CURRENT_TASK)


class _Ctx:
    """The probe's raw context pointer: `struct bpf_iter__X *` in iter probes,
    `struct pt_regs *` in kprobe/uprobe probes."""

    @staticmethod
    def check(ck, node):
        provider = ck.unit.provider
        t = provider.ctx_type(ck.unit)      # None: no ctx in this probe type
        if t is not None:
            return t
        raise error(f"The ctx builtin can not be used with '{provider.name}' probes", node.span)

    @staticmethod
    def lower(lw, node):
        return lw.b.ptrtoint(lw.fb.ctx, I64)


variable("ctx", "The probe's context pointer (iter: struct bpf_iter__X *, kprobe/uprobe: "
         "struct pt_regs *).")(_Ctx)


class _Cpid:
    """The pid of the -c child."""

    @staticmethod
    def check(ck, node):
        if not ck.options.has_child:
            raise error("cpid cannot be used without child command", node.span)
        return UINT64

    @staticmethod
    def lower(lw, node):
        return lw.global_value("cpid")


variable("cpid", "The pid of the -c child command.")(_Cpid)


class _Probe:
    """The full name of the probe that fired."""

    @staticmethod
    def check(ck, node):
        return ProbeT()

    @staticmethod
    def lower(lw, node):
        unit = lw.unit
        if len(unit.cookies) == 1:
            return const(unit.cookies[0])
        return unit.provider.probe_cookie(lw)


variable("probe", "The full name of the probe that fired.")(_Probe)


class _Args:
    """The tracepoint's arguments: args->field (also args.field)."""

    @staticmethod
    def check(ck, node):
        if not ck.unit.provider.uses_args:
            raise error(f"The args builtin can only be used with tracepoint/kfunc/uprobe probes "
                        f"({ck.unit.provider.name} used here)", node.span)
        return ArgsT()

    @staticmethod
    def lower(lw, node):
        return lw.fb.ctx


variable("args", "The probe's arguments (tracepoint fields).")(_Args)


class _RegisterArgs:
    """arg0..arg9, retval, func: register-based probes only (kprobe, uprobe, usdt)."""

    @staticmethod
    def check(ck, node):
        return ck.unit.provider.check_register_builtin(ck, node)

    @staticmethod
    def lower(lw, node):
        return lw.unit.provider.lower_register_builtin(lw, node)


variable("arg*", "Probe arguments by register (kprobe, uprobe, usdt).")(_RegisterArgs)


def read_tracepoint_field(lw, e):
    """args->field: direct context loads for integers, copies for strings."""
    value = lw.unit.provider.read_field(lw, e)     # None: at its tracepoint-format offset
    if value is not None:
        return value
    fb, b = lw.fb, lw.b
    f = e.field_info
    t = e.type
    ctx = fb.ctx
    if f.is_data_loc:
        loc = fb.load(ctx, f.offset, 32, align=4)
        off = b.and_(loc, const(0xFFFF))
        buf = fb.temp(t.size)
        fb.helper(B.PROBE_READ_KERNEL_STR, buf, const(t.size, B.I32), fb.at(ctx, off))
        return buf
    if isinstance(t, StrT):
        buf = fb.temp(t.size)
        fb.helper(B.PROBE_READ_KERNEL, buf, const(t.size, B.I32), fb.at(ctx, f.offset))
        return buf
    bits = f.size * 8
    return fb.load(ctx, f.offset, bits, signed=bool(f.signed) and isinstance(t, IntT), align=f.size)


# ---------------------------------------------------------------- printf and friends

# bpftrace 0.17: %[-][width][.prec][length]conversion
FORMAT_SPEC = re.compile(r"%(-?)(\d*)(?:\.(\d+))?(hh|h|ll|l|j|z|t)?(rx|rh|r|s|c|d|u|o|x|X|p)")
_STRINGLIKE = (StrT, ProbeT, UsernameT, StackT, KsymT, UsymT, InetT, MacT, StrerrorT, StrftimeT)


def format_specs(fmt: str):
    """The conversions of a format string, ignoring %% pairs."""
    specs, i = [], 0
    while i < len(fmt):
        if fmt[i] != "%":
            i += 1
            continue
        if fmt.startswith("%%", i):
            i += 2
            continue
        m = FORMAT_SPEC.match(fmt, i)
        if m:
            specs.append(m.group(5))
            i = m.end()
        else:
            i += 1
    return specs


def check_format(ck, node, func_name, first=0):
    if not node.args or not isinstance(node.args[first], ast.String):
        if not node.args:
            raise error(f"{func_name}() requires at least one argument (0 provided)", node.span)
        t = ck.expr(node.args[first])
        raise error(f"{func_name}() expects a string literal ({_printf_kind(t) if t else 'none'} "
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
            if not isinstance(t, _STRINGLIKE):
                raise error(f"{func_name}: %s specifier expects a value of type string "
                            f"({_printf_kind(t)} supplied)", node.span)
        elif conv in ("r", "rx", "rh"):
            if isinstance(t, BufT):
                continue
            raise error(f"{func_name}: %{conv} specifier expects a value of type buffer "
                        f"({_printf_kind(t)} supplied)", node.span)
        else:
            if not isinstance(t, (IntT, PtrT)):
                raise error(f"{func_name}: %{conv} specifier expects a value of type integer "
                            f"({_printf_kind(t)} supplied)", node.span)
    return fmt, types


def _printf_kind(t):
    if isinstance(t, BufT):
        return "buffer"
    if isinstance(t, _STRINGLIKE):
        return "string"
    if isinstance(t, (IntT, PtrT)):
        return "integer"
    if isinstance(t, TupleT):
        return "tuple"
    return bpftrace_name(t)


def formatted_check(name, unsafe=False):
    """The typing rule of printf-like calls: a literal format and its arguments."""
    def check(ck, node):
        if unsafe:
            check_unsafe(ck, node)
        check_format(ck, node, name)
        return NoneT()
    return check


def formatted_record(kind):
    """The lowering of printf-like calls: the format and its arguments in one ring
    buffer record, acted on in user space."""
    def lower(lw, node):
        fmt = node.args[0].value.decode("utf-8", "replace")
        lw.emit_record({"kind": kind, "format": fmt, "args": []},
                       [(a.type, lw.expr(a)) for a in node.args[1:]])
        return const(0)
    return lower


def check_unsafe(ck, node):
    if not ck.options.unsafe:
        raise error(f"{node.name}() is an unsafe function being used in safe mode", node.span)


function("printf", "printf(fmt, ...): print formatted output (asynchronously, via the ring buffer).",
         formatted_check("printf"), signature="printf(fmt, ...)")(formatted_record("printf"))
function("system", "system(fmt, ...): run a shell command (user space, --unsafe); its "
         "standard output joins the trace output.", formatted_check("system", unsafe=True),
         signature="system(fmt, ...)")(formatted_record("system"))
function("cat", "cat(fmt, ...): print the contents of a file (read in user space).",
         formatted_check("cat"), signature="cat(fmt, ...)")(formatted_record("cat"))


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
    return NoneT()


@function("print", "print(@map[, top[, div]]) prints a map now; print(value) prints a value.",
          _check_print, signature="print(@map | value[, top[, div]])")
def _print(lw, node):
    first = node.args[0]
    if isinstance(first, ast.Map) and first.keys is None:
        top, div = node.top_div[:2]
        lw.emit_record({"kind": "print_map", "map": first.name, "top": top, "div": div}, [])
        return const(0)
    lw.emit_record({"kind": "print_value", "arg": None}, [(first.type, lw.expr(first))])
    return const(0)


def _check_time(ck, node):
    nargs(node, 0, 1)
    if node.args:
        if not isinstance(node.args[0], ast.String):
            t = ck.expr(node.args[0])
            raise error(f"time() expects a string literal ({_printf_kind(t) if t else 'none'} provided)",
                        node.span)
        ck.expr(node.args[0])
    return NoneT()


@function("time", "time([fmt]): print the current local time (strftime format, default %H:%M:%S\\n).",
          _check_time, signature="time([fmt])")
def _time(lw, node):
    fmt = node.args[0].value.decode() if node.args else "%H:%M:%S\n"
    lw.emit_record({"kind": "time", "format": fmt}, [])
    return const(0)


def _check_exit(ck, node):
    nargs(node, 0)
    return NoneT()


@function("exit", "exit(): stop tracing (ends the current probe too).", _check_exit, signature="exit()")
def _exit(lw, node):
    lw.emit_record({"kind": "exit"}, [])
    lw.b.branch(lw.fb.exit_block)
    lw.b.position_at_end(lw.fb.new_block("after_exit"))
    return const(0)


# ---------------------------------------------------------------- unsafe actions

def signal_number(name: str):
    """A signal name ("KILL", "SIGKILL", any case) as its number, or None."""
    import signal
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


def _check_kptr_uptr(ck, node):
    nargs(node, 1)
    t = int_arg(ck, node, 0, "integer or pointer")
    user = node.name == "uptr"
    if isinstance(t, PtrT):
        return PtrT(t.target, user)
    # an integer stays one (printed as such); reads through it (str, buf) take its space
    node.ptr_base = PtrT("void", user)
    return t


function("kptr", "kptr(addr): addr as a kernel address (reads through it use the kernel's "
         "memory).", _check_kptr_uptr, signature="kptr(addr)")(lambda lw, node: lw.expr(node.args[0]))
function("uptr", "uptr(addr): addr as a user-space address (reads through it use the process's "
         "memory).", _check_kptr_uptr, signature="uptr(addr)")(lambda lw, node: lw.expr(node.args[0]))


def _check_str(ck, node):
    nargs(node, 1, 2)
    t = ck.expr(node.args[0])
    if len(node.args) == 2:
        int_arg(ck, node, 1)
    if isinstance(t, StrT) and ((isinstance(node.args[0], ast.String) and node.args[0].from_positional)
                                or isinstance(node.args[0], ast.FieldAccess)):
        # str($1, len) with a non-literal len: the parameter's text; str(args->f) of a
        # __data_loc or char[] tracepoint field (0.17 scripts wrap those in str())
        if len(node.args) == 2:
            v = ck.fold(node.args[1])
            if v is not None:
                return StrT(max(1, min(v + 1, t.length)))
        return t
    if t is not None and not isinstance(t, (IntT, PtrT)):
        raise error(f"str() expects an integer or a pointer type as first argument "
                    f"({bpftrace_name(t)} provided)", node.span)
    size = STRLEN
    if len(node.args) == 2:
        v = ck.fold(node.args[1])
        if v is not None:
            size = max(1, min(v + 1, STRLEN))
    return StrT(size)


@function("str", "str(ptr[, len]): read a NUL-terminated string (at most 64 bytes).", _check_str,
          signature="str(ptr[, len])")
def _str(lw, node):
    fb, b = lw.fb, lw.b
    src_t = node.args[0].type
    value = lw.expr(node.args[0])
    if isinstance(src_t, StrT):
        size = node.type.size
        if size >= src_t.size:
            return value
        # str(args->name, n) of a string field: its first n bytes
        buf = fb.temp(size)
        fb.copy(buf, value, size)
        fb.store(buf, size - 1, const(0), bits=8)
        return buf
    size = node.type.size
    buf = fb.temp(size)
    helper = B.PROBE_READ_USER_STR if reads_user(lw, node.args[0]) else B.PROBE_READ_KERNEL_STR
    length = const(size, B.I32)
    if len(node.args) == 2 and not isinstance(node.args[1], ast.Integer):
        n = b.add(lw.expr(node.args[1]), const(1))
        n = b.select(b.icmp_unsigned(">", n, const(size)), const(size), n)
        length = b.trunc(n, B.I32)
    fb.helper(helper, buf, length, b.inttoptr(value, B.PTR))
    return buf


def reads_user(lw, node) -> bool:
    """Whether a pointer value reads user memory: a typed pointer says so itself; a plain
    integer (arg0 of a uprobe) is in the probe's address space."""
    ptr = pointer_of(node)
    if ptr is not None:
        return ptr.user
    return lw.unit.provider.user_space


def string_literal_arg(ck, node) -> str:
    """The one argument of reg("..."), uaddr("..."): a string literal."""
    nargs(node, 1)
    if not isinstance(node.args[0], ast.String):
        t = ck.expr(node.args[0])
        raise error(f"{node.name}() expects a string literal ({_printf_kind(t) if t else 'none'} "
                    f"provided)", node.span)
    ck.expr(node.args[0])
    return node.args[0].value.decode("utf-8", "replace")


def _check_reg(ck, node):
    name = string_literal_arg(ck, node)
    node.reg_offset = ck.unit.provider.reg_offset(node, name)
    return UINT64


@function("reg", "reg(name): a register of the probe's context (pt_regs: kprobe, uprobe, usdt).",
          _check_reg, signature='reg("name")')
def _reg(lw, node):
    return lw.fb.load(lw.fb.ctx, node.reg_offset)


def _check_uaddr(ck, node):
    symbol = string_literal_arg(ck, node)
    return ck.unit.provider.check_uaddr(ck, node, symbol)


@function("uaddr", "uaddr(sym): the address of a symbol in the probed binary (uprobe, usdt).",
          _check_uaddr, signature='uaddr("sym")')
def _uaddr(lw, node):
    return lw.unit.provider.lower_uaddr(lw, node)


def _check_join(ck, node):
    nargs(node, 1, 2)
    t = ck.expr(node.args[0])
    if t is not None and not isinstance(t, (PtrT, IntT)):
        raise error(f"join() expects an array of strings (char **) ({bpftrace_name(t)} provided)",
                    node.args[0].span)
    if len(node.args) == 2 and not isinstance(node.args[1], ast.String):
        raise error("join() expects a string literal delimiter", node.args[1].span)
    return NoneT()


@function("join", "join(char *arr[][, delim]): print the strings of a NULL-terminated array.",
          _check_join, signature="join(argv[, delim])")
def _join(lw, node):
    fb, b = lw.fb, lw.b
    delim = node.args[1].value.decode() if len(node.args) == 2 else " "
    argv = lw.expr(node.args[0])
    user = reads_user(lw, node.args[0])
    read = B.PROBE_READ_USER if user else B.PROBE_READ_KERNEL
    read_str = B.PROBE_READ_USER_STR if user else B.PROBE_READ_KERNEL_STR
    async_id = lw.res.add_async({"kind": "join", "delim": delim, "max_args": JOIN_MAX_ARGS,
                                 "arg_size": STRLEN})
    size = 16 + JOIN_MAX_ARGS * STRLEN
    ptr_buf = fb.scratch("join_ptr", 8)

    def fill(rec):
        done = fb.new_block("join_done")
        count = const(0)
        fb.store(rec, 8, count)
        for i in range(JOIN_MAX_ARGS):
            fb.store(ptr_buf, 0, const(0))
            fb.helper(read, ptr_buf, const(8, B.I32), b.inttoptr(b.add(argv, const(8 * i)), B.PTR))
            p = fb.load(ptr_buf, 0)
            nxt = fb.new_block("join_arg")
            b.cbranch(b.icmp_unsigned("==", p, const(0)), done, nxt)
            b.position_at_end(nxt)
            slot = fb.at(rec, 16 + i * STRLEN)
            fb.store(slot, 0, const(0, B.I8), 8)
            fb.helper(read_str, slot, const(STRLEN, B.I32), b.inttoptr(p, B.PTR))
            fb.store(rec, 8, const(i + 1))
        b.branch(done)
        b.position_at_end(done)

    lw.write_record(async_id, [], size, extra=fill)
    return const(0)


def string_equal(lw, a, a_size, b_ptr, b_size, limit):
    """1 if the strings are equal (up to NUL, or the first `limit` bytes), else 0."""
    fb, b = lw.fb, lw.b
    n = min(a_size, b_size)
    if limit is not None:
        n = min(n, limit)
    result = fb.scratch("streq", 8)
    fb.store(result, 0, const(0))
    done = fb.new_block("streq_done")
    for i in range(n):
        ca = fb.load(a, i, 8, align=1)
        cb = fb.load(b_ptr, i, 8, align=1)
        nxt = fb.new_block("streq_next")
        b.cbranch(b.icmp_unsigned("!=", ca, cb), done, nxt)
        b.position_at_end(nxt)
        eos = fb.new_block("streq_more")
        matched = fb.new_block("streq_match")
        b.cbranch(b.icmp_unsigned("==", ca, const(0)), matched, eos)
        b.position_at_end(matched)
        fb.store(result, 0, const(1))
        b.branch(done)
        b.position_at_end(eos)
    if limit is not None or a_size == b_size:
        fb.store(result, 0, const(1))
    else:
        # all compared bytes equal and non-NUL: equal only if the longer one ends here
        longer, size = (a, a_size) if a_size > b_size else (b_ptr, b_size)
        c = fb.load(longer, n, 8, align=1)
        fb.store(result, 0, fb.from_bool(b.icmp_unsigned("==", c, const(0))))
    b.branch(done)
    b.position_at_end(done)
    return fb.load(result, 0)


def _check_strncmp(ck, node):
    nargs(node, 3)
    for i in (0, 1):
        t = ck.expr(node.args[i])
        if t is not None and not isinstance(t, StrT):
            raise error(f"strncmp() only supports string arguments ({_printf_kind(t)} provided)",
                        node.span)
    v = literal_int(ck, node, 2)
    if v < 0:
        raise error("strncmp() expects a integer literal (integer provided)", node.span)
    node.limit = v
    return UINT64


@function("strncmp", "strncmp(a, b, n): 0 if the first n bytes of the strings match, else 1.",
          _check_strncmp, signature="strncmp(a, b, n)")
def _strncmp(lw, node):
    a, c = node.args[0], node.args[1]
    eq = string_equal(lw, lw.expr(a), a.type.size, lw.expr(c), c.type.size, node.limit)
    return lw.b.xor(eq, const(1))


def _check_strcontains(ck, node):
    nargs(node, 2)
    for i in (0, 1):
        t = ck.expr(node.args[i])
        if t is not None and not isinstance(t, StrT):
            raise error(f"strcontains() only supports string arguments ({_printf_kind(t)} provided)",
                        node.span)
    return UINT64


@function("strcontains", "strcontains(haystack, needle): 1 if needle occurs in haystack, else 0.",
          _check_strcontains, signature="strcontains(haystack, needle)")
def _strcontains(lw, node):
    fb, b = lw.fb, lw.b
    hay, needle = lw.expr(node.args[0]), lw.expr(node.args[1])
    hs, ns = node.args[0].type.size, node.args[1].type.size
    result = fb.scratch("strcontains", 8)
    fb.store(result, 0, const(0))
    done = fb.new_block("contains_done")
    # empty needle: found
    first = fb.load(needle, 0, 8, align=1)
    start = fb.new_block("contains_start")
    found = fb.new_block("contains_found")
    b.cbranch(b.icmp_unsigned("==", first, const(0)), found, start)
    b.position_at_end(start)
    for i in range(hs):
        next_pos = fb.new_block("contains_pos")
        hc = fb.load(hay, i, 8, align=1)
        body = fb.new_block("contains_cmp")
        b.cbranch(b.icmp_unsigned("==", hc, const(0)), done, body)
        b.position_at_end(body)
        for j in range(min(ns, hs - i)):
            nc = fb.load(needle, j, 8, align=1)
            if j > 0:
                more = fb.new_block("contains_more")
                b.cbranch(b.icmp_unsigned("==", nc, const(0)), found, more)
                b.position_at_end(more)
            c = fb.load(hay, i + j, 8, align=1)
            nxt = fb.new_block("contains_next")
            b.cbranch(b.icmp_unsigned("==", c, nc), nxt, next_pos)
            b.position_at_end(nxt)
        if ns <= hs - i:
            b.branch(found)
        else:
            b.branch(next_pos)
        b.position_at_end(next_pos)
    b.branch(done)
    b.position_at_end(found)
    fb.store(result, 0, const(1))
    b.branch(done)
    b.position_at_end(done)
    return fb.load(result, 0)


# ---------------------------------------------------------------- map functions

def _check_delete(ck, node):
    nargs(node, 1)
    m = node.args[0]
    if not isinstance(m, ast.Map):
        raise error("delete() expects a map to be provided", node.span)
    ck.map_keys(m, call_to_map_span(node, m))
    return NoneT()


@function("delete", "delete(@map[key]): remove one element.", _check_delete, signature="delete(@m[k])")
def _delete(lw, node):
    m = node.args[0]
    info = lw.maps[m.name]
    if info.kind not in ("hist", "lhist"):
        lw.fb.map_delete(info.gv, lw.map_key(info, m.keys))
        return const(0)
    # a histogram element is one map entry per bucket: delete them all
    fb, b = lw.fb, lw.b
    if info.kind == "hist":
        buckets = 66
    else:
        lo, hi, step = info.value.lhist
        buckets = 2 + (hi - lo) // step
    key = lw.map_key(info, m.keys, bucket=const(0))
    start = b.block
    loop, done = fb.new_block("delete_bucket"), fb.new_block("delete_done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(const(0), start)
    fb.store(key, info.user_key_size, i)
    fb.map_delete(info.gv, key)
    nxt = b.add(i, const(1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_unsigned("<", nxt, const(buckets)), loop, done)
    b.position_at_end(done)
    return const(0)


def _check_whole_map(ck, node):
    nargs(node, 1)
    m = node.args[0]
    if not isinstance(m, ast.Map):
        raise error(f"{node.name}() expects a map to be provided", node.span)
    if m.keys is not None:
        raise error(f"The map passed to {node.name}() should not be indexed by a key", node.span)
    ck.map_ref(m, call_to_map_span(node, m))
    return NoneT()


@function("clear", "clear(@map): delete every element (asynchronously).", _check_whole_map,
          signature="clear(@m)")
def _clear(lw, node):
    lw.emit_record({"kind": "clear", "map": node.args[0].name}, [])
    return const(0)


@function("zero", "zero(@map): set every value to zero (asynchronously).", _check_whole_map,
          signature="zero(@m)")
def _zero(lw, node):
    lw.emit_record({"kind": "zero", "map": node.args[0].name}, [])
    return const(0)


# ---------------------------------------------------------------- aggregations

def _agg_check(kind):
    def check(ck, node):
        if kind == "count":
            nargs(node, 0)
            return AggT("count", False)
        if kind == "lhist":
            nargs(node, 4)
        else:
            nargs(node, 1)
        t = ck.expr(node.args[0])
        if t is not None and not isinstance(t, (IntT, PtrT)):
            raise error(f"{kind}() only supports integer arguments ({_printf_kind(t)} provided)",
                        node.span)
        signed = bool(getattr(t, "signed", False))
        if kind == "lhist":
            params = []
            for i in (1, 2, 3):
                v = ck.fold(node.args[i])
                if v is None:
                    at = ck.expr(node.args[i])
                    raise error(f"lhist() expects a integer literal ({_printf_kind(at) if at else 'integer'} "
                                f"provided)", node.span)
                params.append(v)
            lo, hi, step = params
            if lo < 0:
                raise error(f"lhist() min must be non-negative (provided min {lo})", node.span)
            if lo > hi:
                raise error(f"lhist() min must be less than max (provided min {lo} and max {hi})",
                            node.span)
            if step <= 0:
                raise error(f"lhist() step must be >= 1 ({step} provided)", node.span)
            buckets = (hi - lo) // step
            if buckets > 1000:
                raise error(f"lhist() too many buckets, must be <= 1000 (would need {buckets})", node.span)
            return AggT("lhist", signed, (lo, hi, step))
        return AggT(kind, signed if kind != "count" else False)
    return check


def _agg_update(lw, info, key, init_size, init_fill, update_in_place):
    """Look up this CPU's value; update it in place if present, else insert an initial value."""
    fb, b = lw.fb, lw.b
    p = fb.map_lookup(info.gv, key)
    with b.if_else(fb.is_null(p)) as (missing, present):
        with missing:
            buf = fb.scratch(("val", info.name), init_size)
            init_fill(buf)
            fb.map_update(info.gv, key, buf)
        with present:
            update_in_place(p)


@function("count", "count(): count events.", _agg_check("count"), "aggregation", "@m = count()")
def _count(lw, node, info, target):
    fb, b = lw.fb, lw.b
    key = lw.map_key(info, target.keys)
    _agg_update(lw, info, key, 8, lambda buf: fb.store(buf, 0, const(1)),
                lambda p: fb.store(p, 0, b.add(fb.load(p, 0), const(1))))


@function("sum", "sum(n): sum of values.", _agg_check("sum"), "aggregation", "@m = sum(n)")
def _sum(lw, node, info, target):
    fb, b = lw.fb, lw.b
    v = lw.expr(node.args[0])
    key = lw.map_key(info, target.keys)
    _agg_update(lw, info, key, 8, lambda buf: fb.store(buf, 0, v),
                lambda p: fb.store(p, 0, b.add(fb.load(p, 0), v)))


def _minmax(kind):
    def lower(lw, node, info, target):
        fb, b = lw.fb, lw.b
        v = lw.expr(node.args[0])
        key = lw.map_key(info, target.keys)
        signed = info.value.signed
        op = "<" if kind == "min" else ">"

        def init(buf):
            fb.store(buf, 0, v)
            fb.store(buf, 8, const(1))

        def update(p):
            cur = fb.load(p, 0)
            is_set = fb.load(p, 8)
            cmp = (b.icmp_signed if signed else b.icmp_unsigned)(op, v, cur)
            better = b.or_(cmp, b.icmp_unsigned("==", is_set, const(0)))
            with b.if_then(better):
                fb.store(p, 0, v)
                fb.store(p, 8, const(1))
        _agg_update(lw, info, key, 16, init, update)
    return lower


function("min", "min(n): minimum value.", _agg_check("min"), "aggregation", "@m = min(n)")(_minmax("min"))
function("max", "max(n): maximum value.", _agg_check("max"), "aggregation", "@m = max(n)")(_minmax("max"))


def _avg_lower(lw, node, info, target):
    fb, b = lw.fb, lw.b
    v = lw.expr(node.args[0])
    key = lw.map_key(info, target.keys)

    def init(buf):
        fb.store(buf, 0, const(1))
        fb.store(buf, 8, v)

    def update(p):
        fb.store(p, 0, b.add(fb.load(p, 0), const(1)))
        fb.store(p, 8, b.add(fb.load(p, 8), v))
    _agg_update(lw, info, key, 16, init, update)


function("avg", "avg(n): average value.", _agg_check("avg"), "aggregation", "@m = avg(n)")(_avg_lower)
function("stats", "stats(n): count, average and total.", _agg_check("stats"), "aggregation",
         "@m = stats(n)")(_avg_lower)


def log2_bucket(lw, v, signed):
    """hist() bucket: 0 for n < 0, 1 for 0, p+2 for 2^p <= n < 2^(p+1)."""
    b = lw.b
    p = const(0)
    x = v
    for s in (32, 16, 8, 4, 2, 1):
        big = b.icmp_unsigned(">=", x, const(1 << s))
        x = b.select(big, b.lshr(x, const(s)), x)
        p = b.select(big, b.add(p, const(s)), p)
    idx = b.add(p, const(2))
    idx = b.select(b.icmp_unsigned("==", v, const(0)), const(1), idx)
    if signed:
        idx = b.select(b.icmp_signed("<", v, const(0)), const(0), idx)
    return idx


def linear_bucket(lw, v, signed, lo, hi, step):
    """lhist() bucket, as bpftrace computes it: 0 below min, 1 + (max-min)/step above max,
    else 1 + (v-min)/step (so a last partial bucket shares the overflow index)."""
    b = lw.b
    cmp = b.icmp_signed if signed else b.icmp_unsigned
    idx = b.add(b.udiv(b.sub(v, const(lo)), const(step)), const(1))
    idx = b.select(cmp(">", v, const(hi)), const(1 + (hi - lo) // step), idx)
    idx = b.select(cmp("<", v, const(lo)), const(0), idx)
    return idx


def _hist_lower(kind):
    def lower(lw, node, info, target):
        fb, b = lw.fb, lw.b
        v = lw.expr(node.args[0])
        signed = bool(getattr(node.args[0].type, "signed", False))
        if kind == "hist":
            bucket = log2_bucket(lw, v, signed)
        else:
            bucket = linear_bucket(lw, v, signed, *info.value.lhist)
        key = lw.map_key(info, target.keys, bucket=bucket)
        _agg_update(lw, info, key, 8, lambda buf: fb.store(buf, 0, const(1)),
                    lambda p: fb.store(p, 0, b.add(fb.load(p, 0), const(1))))
    return lower


function("hist", "hist(n): log2 histogram.", _agg_check("hist"), "aggregation", "@m = hist(n)")(
    _hist_lower("hist"))
function("lhist", "lhist(n, min, max, step): linear histogram.", _agg_check("lhist"), "aggregation",
         "@m = lhist(n, min, max, step)")(_hist_lower("lhist"))

