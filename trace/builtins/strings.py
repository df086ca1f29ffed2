"""Pointers and strings: kptr, uptr, str, join, strncmp, strcontains."""
from __future__ import annotations

import contextlib


from ..language import ast
from ..codegen import builder as B
from ..codegen.builder import const
from ..language.diagnostics import error
from ..types.model import (STRLEN, UINT64, IntT, NoneT, PtrT, StrT, StructT, bpftrace_name,
                           kind_name)
from .registry import (function, int_arg, literal_int, nargs, printf_kind, reads_user)


JOIN_MAX_ARGS = 16


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
    helper = B.read_helper(reads_user(lw, node.args[0]), string=True)
    length = const(size, B.I32)
    if len(node.args) == 2 and not isinstance(node.args[1], ast.Integer):
        n = b.add(lw.expr(node.args[1]), const(1))
        n = b.select(b.icmp_unsigned(">", n, const(size)), const(size), n)
        length = b.trunc(n, B.I32)
    fb.helper(helper, buf, length, b.inttoptr(value, B.PTR))
    return buf


def _check_path(ck, node):
    nargs(node, 1)
    t = ck.expr(node.args[0])
    if t is not None and not isinstance(t, (PtrT, StructT)):
        raise error(f"path() only supports pointer or record argument ({kind_name(t)} provided)",
                    node.span)
    if ck.unit.provider.name not in ("kfunc", "kretfunc", "iter"):
        raise error("The path function can only be used with 'kfunc', 'kretfunc', 'iter' probes",
                    node.span)
    return StrT(STRLEN)


@function("path", "path(struct path *): the full path of a file (bpf_d_path; kfunc, kretfunc "
          "and iter probes).", _check_path, signature="path(p)")
def _path(lw, node):
    """bpf_d_path wants a pointer the verifier trusts: the chain from the context
    (`ctx->file->f_path`, `args->path`) is followed with direct loads, each loaded
    pointer checked for NULL before it is moved (an empty string if one is)."""
    fb, b = lw.fb, lw.b
    buf = fb.temp(STRLEN)
    fb.zero(buf, STRLEN)
    with contextlib.ExitStack() as guards:
        ptr = _trusted(lw, node.args[0], guards)
        fb.helper(B.D_PATH, b.inttoptr(ptr, B.PTR), buf, const(STRLEN, B.I32))
    return buf


def _trusted(lw, e, guards):
    """The value of a pointer expression as a BTF pointer: `ctx`, a pointer member
    loaded directly (then NULL-checked: the rest is emitted under `guards`), a struct
    member's address; anything else (kfunc's args->x) as lowered."""
    fb, b = lw.fb, lw.b
    if isinstance(e, ast.FieldAccess) and e.kaccess is not None and not e.kaccess.in_copy \
            and isinstance(e.expr.type, PtrT) and e.expr.type.user is False:
        base = _trusted(lw, e.expr, guards)
        if isinstance(e.type, StructT):
            return b.add(base, const(e.kaccess.offset))
        value = fb.load(b.inttoptr(b.add(base, const(e.kaccess.offset)), B.PTR), 0)
        guards.enter_context(b.if_then(b.icmp_unsigned("!=", value, const(0))))
        return value
    if isinstance(e, ast.Builtin) and e.name == "ctx":
        return b.ptrtoint(fb.ctx, B.I64)
    return lw.expr(e)


def _check_join(ck, node):
    nargs(node, 1, 2)
    t = ck.expr(node.args[0])
    if t is not None and not isinstance(t, (PtrT, IntT)):
        raise error(f"join() expects an array of strings (char **) ({bpftrace_name(t)} provided)",
                    node.args[0].span)
    if len(node.args) == 2 and not isinstance(node.args[1], ast.String):
        raise error("join() expects a string literal delimiter", node.args[1].span)
    return NoneT()


def _join_action(node):
    delim = node.args[1].value.decode("utf-8", "replace") if len(node.args) == 2 else " "
    return {"kind": "join", "delim": delim, "max_args": JOIN_MAX_ARGS, "arg_size": STRLEN}


@function("join", "join(char *arr[][, delim]): print the strings of a NULL-terminated array.",
          _check_join, signature="join(argv[, delim])", action=_join_action)
def _join(lw, node):
    fb, b = lw.fb, lw.b
    argv = lw.expr(node.args[0])
    user = reads_user(lw, node.args[0])
    read = B.read_helper(user)
    read_str = B.read_helper(user, string=True)
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

    lw.write_record(node.async_id, [], size, extra=fill)
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


def _string_args(ck, node):
    """The first two arguments of strncmp/strcontains: strings."""
    for i in (0, 1):
        t = ck.expr(node.args[i])
        if t is not None and not isinstance(t, StrT):
            raise error(f"{node.name}() only supports string arguments ({printf_kind(t)} "
                        f"provided)", node.span)


def _check_strncmp(ck, node):
    nargs(node, 3)
    _string_args(ck, node)
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
    _string_args(ck, node)
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
