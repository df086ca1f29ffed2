"""Registry entries for stacks, symbols and values formatted in user space.

kstack / ustack (builtins and functions), ksym, usym, kaddr, buf, ntop, pton, bswap,
strerror, cgroupid, macaddr, strftime. Each is one registry entry (typing rule, lowering,
doc); the value types they return (trace/types/model.py) carry the descriptors that the runtime's
output layer decodes (docs/object-contract.md). Imported by pytrace.builtins.
"""
from __future__ import annotations

import os

from ..codegen import builder as B
from ..codegen.builder import const
from ..language import ast
from ..language.diagnostics import error, unlocated_error
from ..runtime.uapi import BPF_MAP_TYPE_STACK_TRACE as MAP_TYPE_STACK_TRACE
from ..types.model import (
    STRLEN,
    UINT64,
    ArrayT,
    BufT,
    ByteArrayT,
    CgroupPathT,
    InetT,
    IntT,
    KsymT,
    MacT,
    PtrT,
    StackT,
    StrerrorT,
    StrftimeT,
    StrT,
    UsymT,
    bpftrace_name,
    kind_name,
    stack_map_symbol,
)
from .registry import (
    InternalMap,
    function,
    int_arg,
    literal_int,
    nargs,
    printf_kind,
    reads_user,
    variable,
)

AF_INET, AF_INET6 = 2, 10            # the address families ntop() and pton() know

STACK_MODES = ("bpftrace", "perf", "raw")
DEFAULT_STACK_LIMIT = 127
MAX_STACK_LIMIT = 1024          # bpftrace 0.17's MAX_STACK_SIZE
STACK_MAP_ENTRIES = 4096
BUF_MAX = STRLEN


def _quoted(ck, node, i=0):
    """The value of a string-literal argument, or bpftrace's error."""
    a = node.args[i]
    if not isinstance(a, ast.String):
        t = ck.expr(a)
        raise error(f"{node.name}() expects a string literal ({printf_kind(t) if t else 'none'} "
                    f"provided)", node.span)
    ck.expr(a)
    return a.value.decode("utf-8", "surrogateescape")


def _pid(lw):
    return lw.b.lshr(lw.fb.helper(B.GET_CURRENT_PID_TGID), const(32))


# ---------------------------------------------------------------- kstack / ustack

def _perf_event_max_stack():
    try:
        with open("/proc/sys/kernel/perf_event_max_stack") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_STACK_LIMIT


def _check_stack(ck, node):
    user = node.name == "ustack"
    mode, limit = "bpftrace", DEFAULT_STACK_LIMIT
    if isinstance(node, ast.Call):
        nargs(node, 0, 2)
        args = list(node.args)
        first = args[0] if args else None
        if isinstance(first, ast.Builtin) and first.name in STACK_MODES:
            mode = first.name
            if len(args) == 2:
                if isinstance(args[1], ast.Builtin) and args[1].name in STACK_MODES:
                    raise error(f"{node.name}() expects a integer literal (stack mode provided)",
                                node.span)
                limit = literal_int(ck, node, 1)
        elif len(args) == 2:
            t = ck.expr(first)
            raise error(f"{node.name}() expects a stack mode literal ({printf_kind(t)} provided)",
                        node.span)
        elif args:
            limit = literal_int(ck, node, 0)
        if limit > MAX_STACK_LIMIT:
            raise error(f"{node.name}([int limit]): limit shouldn't exceed {MAX_STACK_LIMIT}, "
                        f"{limit} given", node.span)
        if limit < 1:
            raise error(f"{node.name}([int limit]): limit must be at least 1, {limit} given",
                        node.span)
        kernel_max = _perf_event_max_stack()
        if limit > kernel_max:
            raise error(f"{node.name}([int limit]): kernel.perf_event_max_stack is smaller than "
                        f"{limit} ({kernel_max}); raise it with sysctl "
                        f"kernel.perf_event_max_stack=<new value>", node.span)
    return StackT(user, mode, limit)


def _stack_maps(node, options):
    """The STACK_TRACE map for stacks of the node's depth (one per depth)."""
    limit = node.type.limit
    entries = options.max_map_keys or STACK_MAP_ENTRIES
    return [InternalMap(stack_map_symbol(limit), MAP_TYPE_STACK_TRACE, 4, 8 * limit, entries)]


def _lower_stack(lw, node):
    t = node.type
    fb = lw.fb
    flags = B.BPF_F_USER_STACK if t.user else 0
    sid = fb.helper(B.GET_STACKID, fb.ctx, fb.map_ptr(lw.gvs[stack_map_symbol(t.limit)]), const(flags))
    if not t.user:
        return sid
    buf = fb.temp(16)
    fb.store(buf, 0, sid)
    fb.store(buf, 8, _pid(lw))
    return buf


class _KStack:
    check = staticmethod(_check_stack)
    lower = staticmethod(_lower_stack)


variable("kstack", "The kernel stack (same as kstack()).", maps=_stack_maps)(_KStack)
variable("ustack", "The user stack (same as ustack()).", maps=_stack_maps)(_KStack)
function("kstack", "kstack([mode,] [limit]): the kernel stack; mode bpftrace (default) or perf, "
         "limit the number of frames (default 127).", _check_stack,
         signature="kstack([mode,] [limit])", maps=_stack_maps)(_lower_stack)
function("ustack", "ustack([mode,] [limit]): the user stack, symbolized in user space while the "
         "process lives.", _check_stack, signature="ustack([mode,] [limit])", maps=_stack_maps)(_lower_stack)


# ---------------------------------------------------------------- symbols

def _check_sym(result):
    def check(ck, node):
        nargs(node, 1)
        t = ck.expr(node.args[0])
        if t is not None and not isinstance(t, (IntT, PtrT)):
            raise error(f"{node.name}() expects an integer or pointer argument", node.span)
        return result
    return check


@function("ksym", "ksym(addr): the kernel symbol name of an address (from /proc/kallsyms).",
          _check_sym(KsymT()), signature="ksym(addr)")
def _ksym(lw, node):
    return lw.expr(node.args[0])


@function("usym", "usym(addr): the symbol of a user address in the current process.",
          _check_sym(UsymT()), signature="usym(addr)")
def _usym(lw, node):
    fb = lw.fb
    addr = lw.expr(node.args[0])
    buf = fb.temp(16)
    fb.store(buf, 0, addr)
    fb.store(buf, 8, _pid(lw))
    return buf


def resolve_kernel_symbol(name, path="/proc/kallsyms"):
    """The address of a kernel symbol (the first match), or None."""
    try:
        with open(path, "rb") as f:
            want = name.encode("utf-8", "surrogateescape")   # the literal's bytes
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == want:
                    return int(parts[0], 16)
    except OSError:
        pass
    return None


def _check_kaddr(ck, node):
    nargs(node, 1)
    name = _quoted(ck, node)
    if not ck.lenient:
        addr = resolve_kernel_symbol(name)
        if not addr:
            raise unlocated_error(f"Failed to compile: Failed to resolve kernel symbol: {name}",
                                  node.span)
        node.addr = addr
    return UINT64


@function("kaddr", "kaddr(name): the address of a kernel symbol, resolved at compile time.",
          _check_kaddr, signature='kaddr("name")')
def _kaddr(lw, node):
    return const(node.addr)


# ---------------------------------------------------------------- bytes from memory

def _source_size(t):
    """Bytes of an in-memory array value (None: the argument is an address)."""
    if isinstance(t, (StrT, ByteArrayT)):
        return t.size
    return None


def _fill(lw, arg, dst, offset, size, length=None):
    """Copy `size` bytes of the argument's array value, or read them (`length`: a run-time
    length, at most size) from the address it holds, to dst+offset."""
    fb, b = lw.fb, lw.b
    t = arg.type
    value = lw.expr(arg)
    if _source_size(t) is not None:
        fb.copy(dst, value, min(size, t.size), dst_off=offset)
        return
    if isinstance(t, ArrayT):
        user = t.user
    else:
        user = reads_user(lw, arg)
    helper = B.read_helper(user)
    n = const(size, B.I32) if length is None else b.trunc(length, B.I32)
    fb.helper(helper, fb.at(dst, offset), n, b.inttoptr(value, B.PTR))


def _array_size(t):
    if isinstance(t, ByteArrayT):
        return t.count
    if isinstance(t, ArrayT):
        return t.count * t.elem_size
    return None


def _check_buf(ck, node):
    nargs(node, 1, 2)
    t = ck.expr(node.args[0])
    if t is None:
        return BufT(BUF_MAX)
    if len(node.args) == 1:
        size = _array_size(t)
        if size is None:
            raise error(f"buf() expects a length argument for non-array type {kind_name(t)}",
                        node.span)
        node.const_len = min(size, BUF_MAX)
        return BufT(node.const_len)
    if not isinstance(t, (IntT, PtrT, StrT, ByteArrayT, ArrayT)):
        raise error(f"buf() expects an integer, pointer or array argument "
                    f"({bpftrace_name(t)} provided)", node.span)
    int_arg(ck, node, 1)
    v = ck.fold(node.args[1])
    cap = BUF_MAX
    if v is not None:
        if v < 0:
            raise error("buf() length must be non-negative", node.span)
        if v > BUF_MAX:
            ck.warn(f"buf() length is too long and will be shortened to {BUF_MAX} bytes "
                    f"(see BPFTRACE_STRLEN)", node.span)
        cap = min(v, BUF_MAX)
        node.const_len = cap
    else:
        node.const_len = None
    # an in-memory source shorter than len is zero-padded (bpftrace reads past a string
    # literal's NUL into its zeroed stack buffer)
    return BufT(max(cap, 1))


@function("buf", "buf(ptr[, len]): up to 64 bytes of memory, printed with printf %r, %rx or %rh.",
          _check_buf, signature="buf(ptr[, len])")
def _buf(lw, node):
    fb, b = lw.fb, lw.b
    cap = node.type.cap
    out = fb.temp(8 + cap)
    n = node.const_len
    if n is not None:
        if n > 0:
            _fill(lw, node.args[0], out, 8, n)
        fb.store(out, 0, const(n))
        return out
    length = lw.expr(node.args[1])
    length = b.select(b.icmp_unsigned(">", length, const(cap)), const(cap), length)
    if _source_size(node.args[0].type) is not None:
        _fill(lw, node.args[0], out, 8, cap)
    else:
        _fill(lw, node.args[0], out, 8, cap, length)
    fb.store(out, 0, length)
    return out


# ---------------------------------------------------------------- network addresses

def _check_ntop(ck, node):
    nargs(node, 1, 2)
    if len(node.args) == 2:
        int_arg(ck, node, 0)
    t = ck.expr(node.args[-1])
    if t is None:
        return InetT()
    if isinstance(t, (IntT, PtrT)):
        return InetT()
    size = _source_size(t) or _array_size(t)
    if size not in (4, 16):
        raise error("ntop() argument must be 4 or 16 bytes in size", node.span)
    return InetT()


@function("ntop", "ntop([af,] addr): an IPv4 (int or 4 bytes) or IPv6 (16 bytes) address as text.",
          _check_ntop, signature="ntop([af,] addr)")
def _ntop(lw, node):
    fb = lw.fb
    out = fb.temp(24)
    addr = node.args[-1]
    t = addr.type
    size = 4 if isinstance(t, (IntT, PtrT)) else (_source_size(t) or _array_size(t))
    if len(node.args) == 2:
        af = lw.expr(node.args[0])
    else:
        af = const(AF_INET if size == 4 else AF_INET6)
    fb.store(out, 0, af)
    if isinstance(t, (IntT, PtrT)):
        fb.store(out, 8, lw.expr(addr))
    else:
        _fill(lw, addr, out, 8, size)
    return out


def _check_pton(ck, node):
    nargs(node, 1)
    text = _quoted(ck, node)
    import socket                       # lazy: start-up time (only pton() parses addresses)
    family = AF_INET6 if ":" in text else AF_INET
    try:
        node.addr_bytes = socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise error(f"pton() expects a valid IPv4/IPv6 address, got {text}", node.span) from None
    return ByteArrayT(len(node.addr_bytes))


@function("pton", 'pton("addr"): an IPv4/IPv6 address as a byte array (compile time).',
          _check_pton, signature='pton("addr")')
def _pton(lw, node):
    buf = lw.fb.temp(len(node.addr_bytes))
    lw.fb.store_bytes(buf, node.addr_bytes)
    return buf


def _check_macaddr(ck, node):
    nargs(node, 1)
    t = ck.expr(node.args[0])
    if t is None or isinstance(t, (IntT, PtrT)):
        return MacT()
    size = _source_size(t) or _array_size(t)
    if size != 6:
        raise error("macaddr() argument must be 6 bytes in size", node.span)
    return MacT()


@function("macaddr", "macaddr(addr): 6 bytes (an array, or read from an address) as a MAC "
          "address, XX:XX:XX:XX:XX:XX.", _check_macaddr, signature="macaddr(addr)")
def _macaddr(lw, node):
    fb = lw.fb
    out = fb.temp(8)
    _fill(lw, node.args[0], out, 0, 6)
    return fb.load(out, 0)


# ---------------------------------------------------------------- integers formatted later

def _check_int_fn(result):
    def check(ck, node):
        nargs(node, 1)
        t = int_arg(ck, node, 0)
        if result is None:          # bswap: the argument's own type
            return t if isinstance(t, IntT) else UINT64
        return result
    return check


@function("bswap", "bswap(n): n with its bytes reversed (at n's width).", _check_int_fn(None),
          signature="bswap(n)")
def _bswap(lw, node):
    b = lw.b
    v = lw.expr(node.args[0])
    t = node.type
    bits = t.bits if isinstance(t, IntT) else 64
    if bits == 8:
        return v
    if bits == 64:
        return b.bswap(v)
    narrow = b.bswap(b.trunc(v, B.INT_BITS[bits]))
    return b.sext(narrow, B.I64) if t.signed else b.zext(narrow, B.I64)


@function("strerror", "strerror(errno): the error message of an errno value.",
          _check_int_fn(StrerrorT()), signature="strerror(errno)")
def _strerror(lw, node):
    return lw.expr(node.args[0])


def _check_cgroup_path(ck, node):
    nargs(node, 1, 2)
    int_arg(ck, node, 0)
    if len(node.args) == 1:
        return CgroupPathT()
    t = ck.expr(node.args[1])
    if t is not None and not isinstance(t, StrT):
        raise error(f"cgroup_path() only supports string arguments ({printf_kind(t)} provided)",
                    node.span)
    return CgroupPathT(_quoted(ck, node, 1))


@function("cgroup_path", "cgroup_path(id[, filter]): the paths of cgroup `id` in the mounted "
          "cgroup hierarchies (those whose name matches the wildcard `filter`).",
          _check_cgroup_path, signature="cgroup_path(id[, filter])")
def _cgroup_path(lw, node):
    return lw.expr(node.args[0])


def _check_strftime(ck, node):
    nargs(node, 2)
    fmt = _quoted(ck, node, 0)
    int_arg(ck, node, 1)
    return StrftimeT(fmt)


@function("strftime", "strftime(fmt, nsecs): a boot-time timestamp (nsecs) as local time, "
          "formatted in user space; %f is the microseconds.", _check_strftime,
          signature='strftime("fmt", nsecs)')
def _strftime(lw, node):
    return lw.expr(node.args[1])


def _check_cgroupid(ck, node):
    nargs(node, 1)
    path = _quoted(ck, node)
    try:
        node.inode = os.stat(path).st_ino
    except (OSError, ValueError) as e:   # ValueError: a NUL in the path, which 0.17 refuses too
        reason = e.strerror if isinstance(e, OSError) else "Invalid argument"
        shown = path.split("\0", 1)[0]
        raise unlocated_error(f'Failed to compile: Failed to get `cgroupid` for path: "{shown}": '
                              f'{reason}', node.span) from None
    return UINT64


@function("cgroupid", 'cgroupid("path"): the id (inode) of a cgroup v2 path, at compile time.',
          _check_cgroupid, signature='cgroupid("path")')
def _cgroupid(lw, node):
    return const(node.inode)
