"""Tests for pytrace.language.parser (grammar/pytrace.lark + trace/language/parser.py).

Expected behaviour comes from bpftrace 0.17 (`bpftrace -d -e ...` on this machine):
precedence, AST shapes and error messages were compared against it.
"""
import os
import random
import subprocess
import sys
import textwrap

import pytest

from pytrace.language import ast as A
from pytrace.language.ast import Span, dump
from pytrace.language.diagnostics import CompileError, render
from pytrace.language.parser import parse


# ------------------------------------------------------------------ helpers

def body(src):
    """Statements of `BEGIN { src }`."""
    return parse("BEGIN { " + src + " }").probes[0].body


def expr(src):
    """The expression of the expression statement `BEGIN { src }`."""
    stmts = body(src)
    assert len(stmts) == 1 and isinstance(stmts[0], A.ExprStmt), stmts
    return stmts[0].expr


def sx(node):
    """Compact s-expression form, for precedence assertions."""
    if isinstance(node, A.Integer):
        return str(node.value)
    if isinstance(node, A.String):
        return repr(node.value)
    if isinstance(node, (A.Builtin, A.Variable)):
        return node.name
    if isinstance(node, A.Positional):
        return f"${node.index}"
    if isinstance(node, A.PositionalCount):
        return "$#"
    if isinstance(node, A.Map):
        return node.name if node.keys is None else f"{node.name}[{', '.join(sx(k) for k in node.keys)}]"
    if isinstance(node, A.Binary):
        return f"({node.op} {sx(node.left)} {sx(node.right)})"
    if isinstance(node, A.Unary):
        return f"({node.op} {sx(node.operand)})"
    if isinstance(node, A.IncDec):
        return f"({node.op}{'pre' if node.prefix else 'post'} {sx(node.target)})"
    if isinstance(node, A.Ternary):
        return f"(? {sx(node.cond)} {sx(node.then)} {sx(node.orelse)})"
    if isinstance(node, A.Cast):
        return f"(cast<{node.type_name}> {sx(node.operand)})"
    if isinstance(node, A.Tuple):
        return f"(tuple {' '.join(sx(e) for e in node.elements)})"
    if isinstance(node, A.FieldAccess):
        return f"({'->' if node.arrow else '.'} {sx(node.expr)} {node.field})"
    if isinstance(node, A.Index):
        return f"([] {sx(node.expr)} {sx(node.index)})"
    if isinstance(node, A.Call):
        return f"{node.name}({', '.join(sx(a) for a in node.args)})"
    if isinstance(node, A.Sizeof):
        return f"sizeof<{node.type_name}>" if node.type_name else f"sizeof({sx(node.operand)})"
    raise AssertionError(f"no sx for {node!r}")


def e(src):
    return sx(expr(src))


def err(src):
    """The single diagnostic of a program that must fail to parse."""
    with pytest.raises(CompileError) as info:
        parse(src)
    diags = info.value.diagnostics
    assert len(diags) == 1
    return diags[0]


def first_line(src):
    return render(err(src), src, "stdin").splitlines()[0]


# ------------------------------------------------------------------ program structure

def test_minimal_program_dump():
    prog = parse("BEGIN { printf(\"hello\\n\"); }")
    assert dump(prog) == textwrap.dedent("""\
        Program
          .probes
            Probe
              .attach_points
                AttachPoint raw='BEGIN' provider='BEGIN'
              .body
                ExprStmt
                  .expr
                    Call name='printf'
                      .args
                        String value=b'hello\\n'
        """)


def test_program_returns_ast_types():
    prog = parse("BEGIN { @x = 1 }")
    assert isinstance(prog, A.Program)
    assert prog.c_definitions == []
    assert isinstance(prog.probes[0], A.Probe)
    assert prog.probes[0].predicate is None


def test_multiple_probes():
    prog = parse("BEGIN { @a = 1 }\nkprobe:f { @b = 2 }\nEND { print(@a) }")
    assert [p.attach_points[0].raw for p in prog.probes] == ["BEGIN", "kprobe:f", "END"]
    assert prog.span == Span(1, 1, 3, 18)


def test_empty_action_blocks():
    prog = parse("BEGIN {} END { }")
    assert [p.body for p in prog.probes] == [[], []]


def test_shebang_is_ignored_and_keeps_positions():
    src = "#!/usr/bin/env bpftrace\nBEGIN { @x = 1 }\n"
    prog = parse(src)
    assert prog.c_definitions == []
    assert prog.probes[0].span == Span(2, 1, 2, 17)


def test_shebang_only_on_first_line():
    # A later "#!" line is a preprocessor-style line, i.e. a C definition.
    prog = parse("#include <a.h>\n#!x\nBEGIN {}")
    assert prog.c_definitions == ["#include <a.h>", "#!x"]


def test_c_definitions():
    src = textwrap.dedent("""\
        #!/usr/bin/env bpftrace
        #include <linux/sched.h>
        #ifndef BPFTRACE_HAVE_BTF
        #include <net/sock.h>
        #else
        #include <sys/socket.h>
        #endif
        #define FOO(a) \\
           ((a) + 1)
        // a comment
        struct X { int a; struct { int b; } c; };
        union U { int a; char b; }
        /* block
           comment */
        enum E { A, B = 2 };
        struct Y {
            int arr[4];
        };
        BEGIN { @ = FOO(1) }
        """)
    prog = parse(src)
    assert prog.c_definitions == [
        "#include <linux/sched.h>",
        "#ifndef BPFTRACE_HAVE_BTF",
        "#include <net/sock.h>",
        "#else",
        "#include <sys/socket.h>",
        "#endif",
        "#define FOO(a) \\\n   ((a) + 1)",
        "struct X { int a; struct { int b; } c; };",
        "union U { int a; char b; };",        # the ';' is added when missing
        "enum E { A, B = 2 };",
        "struct Y {\n    int arr[4];\n};",
    ]
    assert len(prog.probes) == 1
    assert prog.span.line == 2           # starts at the first C definition


def test_c_definitions_after_probes_are_errors():
    d = err("BEGIN { @ = 1 }\n#define FOO 1\nEND {}")
    assert d.message == "syntax error, unexpected preprocessor directive, expecting {"
    assert d.span == Span(2, 1, 2, 14)
    d = err("BEGIN { @ = 1 } struct X { int a; }; END {}")
    assert d.message == "syntax error, unexpected struct definition, expecting {"
    assert d.span == Span(1, 17, 1, 36)


@pytest.mark.parametrize("src", ["", "   ", "\n\n", "// only a comment", "/* c */",
                                 "#include <x.h>\n", "struct X { int a; };"])
def test_at_least_one_probe_is_required(src):
    d = err(src)
    assert d.message.startswith("unexpected end of file, expected {")


# ------------------------------------------------------------------ comments

def test_comments_everywhere():
    src = textwrap.dedent("""\
        // leading
        /* block */ BEGIN /* between */ , // after comma
        END /* before pred */ /pid == 1/ /* after pred */ {
            @x = 1; // trailing
            /* inside */ @y /* mid */ = /* mid */ 2;
            @z = 6 /* not a division */ / 3;
        } // end
        /* final */
        """)
    prog = parse(src)
    p = prog.probes[0]
    assert [a.raw for a in p.attach_points] == ["BEGIN", "END"]
    assert sx(p.predicate) == "(== pid 1)"
    assert [sx(s.value) for s in p.body] == ["1", "2", "(/ 6 3)"]


def test_comment_markers_inside_strings_are_text():
    assert expr('printf("// not /* a comment */")').args[0].value == b"// not /* a comment */"


def test_unterminated_block_comment():
    d = err("BEGIN { } /* x")
    assert d.message == "end of file during comment"
    assert d.span == Span(1, 11, 1, 15)
    d = err("BEGIN { @x = 1 /* x }")
    assert d.message == "end of file during comment"
    assert d.span == Span(1, 16, 1, 22)
    d = err("BEGIN {\n/* one\ntwo")
    assert d.message == "end of file during comment"
    assert d.span == Span(2, 1, 3, 4)


# ------------------------------------------------------------------ attach points

@pytest.mark.parametrize("raw,provider", [
    ("BEGIN", "BEGIN"),
    ("END", "END"),
    ("begin", "begin"),
    ("end", "end"),
    ("tracepoint:syscalls:sys_enter_*", "tracepoint"),
    ("t:sched:sched_switch", "t"),
    ("uprobe:/bin/bash:readline", "uprobe"),
    ('uprobe:"/path with space/x":func', "uprobe"),
    ("uretprobe:/lib/x86_64-linux-gnu/libc.so.6:getpid", "uretprobe"),
    ("uprobe:./a.out:f", "uprobe"),
    ("uprobe:libc:0x1234", "uprobe"),
    ("kprobe:do_sys_open+0x10", "kprobe"),
    ("kprobe:vfs_*read", "kprobe"),
    ("kretprobe:vfs_read", "kretprobe"),
    ("interval:s:1", "interval"),
    ("i:ms:$1", "i"),
    ("profile:hz:99", "profile"),
    ("software:page-faults:100", "software"),
    ("hardware:cache-misses:1000000", "hardware"),
    ("usdt:/usr/bin/python3.11:python:function__entry", "usdt"),
    ("usdt:/usr/bin/python3.11:*:function__entry", "usdt"),
    ("watchpoint:0x1000:4:w", "watchpoint"),
    ("kfunc:vmlinux:vfs_read", "kfunc"),
    ("iter:task", "iter"),
    ("tracepoint:syscalls:sys_enter_open[a]t", "tracepoint"),
])
def test_attach_point_raw_text(raw, provider):
    for src in (f"{raw} {{ @x = 1 }}", f"{raw}{{ @x = 1 }}", f"{raw} /pid/ {{ @x = 1 }}"):
        ap = parse(src).probes[0].attach_points[0]
        assert ap.raw == raw
        assert ap.provider == provider
        assert ap.target == "" and ap.func == "" and ap.expanded == []
        assert ap.span == Span(1, 1, 1, 1 + len(raw))


def test_several_attach_points():
    prog = parse("kprobe:a,kprobe:b , kprobe:c,\n  uprobe:/bin/sh:main { }")
    aps = prog.probes[0].attach_points
    assert [a.raw for a in aps] == ["kprobe:a", "kprobe:b", "kprobe:c", "uprobe:/bin/sh:main"]
    assert [a.span for a in aps] == [Span(1, 1, 1, 9), Span(1, 10, 1, 18), Span(1, 21, 1, 29),
                                     Span(2, 3, 2, 22)]


def test_trailing_comma_after_attach_points():
    # bpftrace 0.17 accepts it.
    prog = parse("tracepoint:a:b,\ntracepoint:a:c,\n{ }")
    assert [a.raw for a in prog.probes[0].attach_points] == ["tracepoint:a:b", "tracepoint:a:c"]


def test_slash_in_attach_point_needs_no_space_before_predicate():
    prog = parse("uprobe:/bin/bash:readline /pid == 1/ { }")
    assert prog.probes[0].attach_points[0].raw == "uprobe:/bin/bash:readline"
    assert sx(prog.probes[0].predicate) == "(== pid 1)"


def test_semicolon_after_probe_is_an_error():
    d = err("BEGIN { @x = 1 } ;")
    assert d.message == "syntax error, unexpected ;, expecting {"
    assert d.span == Span(1, 18, 1, 19)


def test_bad_attach_point_characters():
    assert err("k:f;x { @ = 1 }").message == "syntax error, unexpected ;, expecting {"
    assert err("k:f@x { @ = 1 }").message == "syntax error, unexpected map, expecting {"
    assert err("kprobe:f/pid==1/ { @ = 1 }").message == "syntax error, unexpected ==, expecting {"


# ------------------------------------------------------------------ predicates

@pytest.mark.parametrize("pred,expected", [
    ("/pid == 1/", "(== pid 1)"),
    ("/ $1 != 0 /", "(!= $1 0)"),
    ('/comm == "bash"/', "(== comm b'bash')"),
    ("/pid/", "pid"),
    ("/10 / 2 == 5/", "(== (/ 10 2) 5)"),            # division works, as in bpftrace
    ("/(10 / 2) == 5/", "(== (/ 10 2) 5)"),
    ("/ @x[tid] /", "@x[tid]"),
    ("/!@done && $# > 0/", "(&& (! @done) (> $# 0))"),
])
def test_predicates(pred, expected):
    for gap in ("", " ", "\n", " /* c */ ", " // c\n"):
        prog = parse(f"kprobe:f {pred}{gap}{{ @x = 1 }}")
        assert sx(prog.probes[0].predicate) == expected


def test_predicate_spans():
    prog = parse("BEGIN /pid == 1/ { }")
    assert prog.probes[0].predicate.span == Span(1, 8, 1, 16)


def test_division_in_blocks():
    assert e("10 / 2 / 5") == "(/ (/ 10 2) 5)"
    assert sx(body("@x = $a / $b")[0].value) == "(/ $a $b)"


# ------------------------------------------------------------------ statements

def test_statement_separators():
    assert len(body("@a = 1; @b = 2")) == 2
    assert len(body("@a = 1; @b = 2;")) == 2
    assert len(body("")) == 0


def test_empty_statements_are_errors_like_bpftrace():
    d = err("BEGIN { ;; @x = 1;; }")
    assert d.message == "syntax error, unexpected ;, expecting }"
    assert d.span == Span(1, 9, 1, 10)
    assert err("BEGIN { @x = 1;; }").message == "syntax error, unexpected ;, expecting }"
    assert err("BEGIN { ; }").message == "syntax error, unexpected ;, expecting }"


def test_missing_separator_is_an_error():
    d = err("BEGIN { @x = 1 @y = 2 }")
    assert d.message == "syntax error, unexpected map, expecting }"
    assert d.span == Span(1, 16, 1, 18)


def test_block_statements_need_no_semicolon_and_reject_one():
    stmts = body("if (1) { @x = 1 } @y = 2; if (2) {} if (3) {} @z = 1")
    assert [type(s).__name__ for s in stmts] == ["If", "Assign", "If", "If", "Assign"]
    d = err("BEGIN { if (1) { @x = 1 }; @y = 2 }")
    assert d.message == "syntax error, unexpected ;, expecting }"
    assert d.span == Span(1, 26, 1, 27)
    assert err("BEGIN { while (1) { }; }").message == "syntax error, unexpected ;, expecting }"


def test_block_statement_followed_by_identifier_statements():
    # Regression: after an inner `}` an identifier is a statement, not an attach point.
    stmts = body("if ($ns) { @u = 1; } delete(@q[1]); if (1) {} uint8; exit()")
    assert [sx(s.expr) for s in stmts if isinstance(s, A.ExprStmt)] == [
        "delete(@q[1])", "uint8", "exit()"]


@pytest.mark.parametrize("src,op", [
    ("@x = 1", None), ("@x += 1", "+"), ("@x -= 1", "-"), ("@x *= 1", "*"), ("@x /= 1", "/"),
    ("@x %= 1", "%"), ("@x &= 1", "&"), ("@x |= 1", "|"), ("@x ^= 1", "^"),
    ("@x <<= 1", "<<"), ("@x >>= 1", ">>"),
])
def test_assignment_operators(src, op):
    (stmt,) = body(src)
    assert isinstance(stmt, A.Assign)
    assert stmt.op == op
    assert sx(stmt.target) == "@x" and sx(stmt.value) == "1"


def test_assignment_targets():
    s = body("$x = 1; @ = 2; @m[1, comm] = 3; $y += $x")
    assert [sx(x.target) for x in s] == ["$x", "@", "@m[1, comm]", "$y"]
    assert isinstance(s[0].target, A.Variable) and isinstance(s[2].target, A.Map)


@pytest.mark.parametrize("src,col", [
    ("BEGIN { 1 = 2 }", 11), ("BEGIN { $x->a = 1 }", 15), ("BEGIN { *$x = 1 }", 13),
    ("BEGIN { @x[1].a = 2 }", 17), ("BEGIN { comm = 1 }", 14), ("BEGIN { @y[1][2] = 1 }", 18),
])
def test_invalid_assignment_targets(src, col):
    d = err(src)
    assert d.message == "syntax error, unexpected =, expecting }"
    assert d.span == Span(1, col, 1, col + 1)


def test_compound_assignment_to_field():
    d = err("BEGIN { $x.a += 1 }")
    assert d.message == "syntax error, unexpected +=, expecting }"
    assert d.span == Span(1, 14, 1, 16)


def test_assignment_is_not_an_expression():
    assert err("BEGIN { @x = 1 = 2 }").message.startswith("syntax error, unexpected =")
    assert err("BEGIN { if (@x = 1) {} }").message == "syntax error, unexpected =, expecting )"
    assert err("BEGIN { @a = $b = 1 }").message.startswith("syntax error, unexpected =")


def test_tuple_elements_are_immutable():
    d = err("BEGIN { $t = (1,2); $t.0 = 3 }")
    assert d.message == ("Tuples are immutable once created. Consider creating a new tuple "
                         "and assigning it instead.")
    assert d.span == Span(1, 21, 1, 29)
    assert err("BEGIN { @t.0 = 3 }").span == Span(1, 9, 1, 17)


def test_if_else_chain():
    (stmt,) = body("if (1) { @a = 1; } else if (2) { @b = 1 } else if (3) { } else { @c = 1; @d = 1 }")
    assert isinstance(stmt, A.If)
    assert sx(stmt.cond) == "1" and len(stmt.then) == 1
    (elif1,) = stmt.orelse
    assert isinstance(elif1, A.If) and sx(elif1.cond) == "2"
    (elif2,) = elif1.orelse
    assert isinstance(elif2, A.If) and sx(elif2.cond) == "3" and elif2.then == []
    assert [sx(s.target) for s in elif2.orelse] == ["@c", "@d"]


def test_if_without_else():
    (stmt,) = body("if (pid > 1) { @x = 1 }")
    assert stmt.orelse is None
    assert dump(stmt) == textwrap.dedent("""\
        If
          .cond
            Binary op='>'
              .left
                Builtin name='pid'
              .right
                Integer value=1
          .then
            Assign
              .target
                Map name='@x'
              .value
                Integer value=1
        """)


def test_if_else_empty_block():
    (stmt,) = body("if (1) { @x = 1 } else { }")
    assert stmt.orelse == []


def test_if_requires_parentheses():
    assert err("BEGIN { if 1 { } }").message == "syntax error, unexpected integer, expecting ("
    assert err("BEGIN { if (1) { } else { } else {} }").message == \
        "syntax error, unexpected else, expecting }"


def test_unroll():
    (s,) = body("unroll(5) { @x++; @y = 1 }")
    assert isinstance(s, A.Unroll)
    assert isinstance(s.count, A.Integer) and s.count.value == 5
    assert len(s.body) == 2
    (s,) = body("unroll($1) { }")
    assert isinstance(s.count, A.Positional) and s.count.index == 1
    (s,) = body("unroll(0x10) { }")
    assert s.count.value == 16


def test_unroll_count_must_be_literal_or_positional():
    assert err("BEGIN { unroll(1+1) { @x = 1 } }").message == \
        "syntax error, unexpected +, expecting )"
    assert err("BEGIN { unroll(x) {} }").message.startswith("syntax error, unexpected identifier")


def test_while_break_continue_return():
    (w,) = body("while ($i < 10) { $i++; if ($i == 5) { break } continue; }")
    assert isinstance(w, A.While)
    assert sx(w.cond) == "(< $i 10)"
    assert [type(s).__name__ for s in w.body] == ["ExprStmt", "If", "Continue"]
    assert isinstance(w.body[1].then[0], A.Break)
    assert [type(s).__name__ for s in body("return")] == ["Return"]
    assert [type(s).__name__ for s in body("@x = 1; return;")] == ["Assign", "Return"]


def test_incdec_statements():
    stmts = body("$x++; @x--; ++$x; --@y; @m[1]++; ++@m[comm, pid]")
    got = [(s.expr.op, s.expr.prefix, sx(s.expr.target)) for s in stmts]
    assert got == [("++", False, "$x"), ("--", False, "@x"), ("++", True, "$x"),
                   ("--", True, "@y"), ("++", False, "@m[1]"), ("++", True, "@m[comm, pid]")]
    assert all(isinstance(s, A.ExprStmt) and isinstance(s.expr, A.IncDec) for s in stmts)


def test_incdec_inside_expressions():
    assert sx(body("@y = @x++")[0].value) == "(++post @x)"
    assert sx(body("@y = $x++ + 1")[0].value) == "(+ (++post $x) 1)"
    assert sx(body("@y = -++$x")[0].value) == "(- (++pre $x))"


def test_incdec_needs_map_or_variable():
    d = err("BEGIN { x++ }")
    assert d.message == "The ++ operator must be applied to a map or variable"
    assert d.span == Span(1, 9, 1, 10)
    assert err("BEGIN { --pid }").message == "The -- operator must be applied to a map or variable"
    d = err("BEGIN { (1)++ }")
    assert d.message == "syntax error, unexpected ++" and d.span == Span(1, 12, 1, 14)
    assert err("BEGIN { $x.a++ }").message == "syntax error, unexpected ++"
    assert err("BEGIN { $x = --5; }").message == "syntax error, unexpected integer"


def test_ternary_statement():
    (s,) = body('1 ? printf("a") : printf("b")')
    assert isinstance(s, A.ExprStmt) and isinstance(s.expr, A.Ternary)
    assert sx(s.expr) == "(? 1 printf(b'a') printf(b'b'))"


def test_nested_blocks_are_not_statements():
    assert err("BEGIN { { @x = 1 } }").message == "syntax error, unexpected {, expecting }"


# ------------------------------------------------------------------ expressions: precedence

@pytest.mark.parametrize("src,expected", [
    ("1 + 2 * 3", "(+ 1 (* 2 3))"),
    ("1 * 2 + 3", "(+ (* 1 2) 3)"),
    ("(1 + 2) * 3", "(* (+ 1 2) 3)"),
    ("1 - 2 - 3", "(- (- 1 2) 3)"),
    ("8 / 4 / 2", "(/ (/ 8 4) 2)"),
    ("7 % 3 * 2", "(* (% 7 3) 2)"),
    ("a || b && c", "(|| a (&& b c))"),
    ("a && b || c", "(|| (&& a b) c)"),
    ("a | b ^ c & d", "(| a (^ b (& c d)))"),
    ("a & b == c", "(& a (== b c))"),
    ("a == b < c", "(== a (< b c))"),
    ("a != b >= c", "(!= a (>= b c))"),
    ("1 < 2 < 3", "(< (< 1 2) 3)"),
    ("a < b << c", "(< a (<< b c))"),
    ("a << b + c", "(<< a (+ b c))"),
    ("a >> b - c", "(>> a (- b c))"),
    ("1 << 2 >> 3", "(>> (<< 1 2) 3)"),
    ("a <= b > c", "(> (<= a b) c)"),
    ("-x * y", "(* (- x) y)"),
    ("-$x * $y", "(* (- $x) $y)"),
    ("!a && b", "(&& (! a) b)"),
    ("~a | b", "(| (~ a) b)"),
    ("*$p + 1", "(+ (* $p) 1)"),
    ("!!x", "(! (! x))"),
    ("~-!x", "(~ (- (! x)))"),
    ("a ? b : c ? d : e", "(? a b (? c d e))"),
    ("a ? b ? c : d : e", "(? a (? b c d) e)"),
    ("a || b ? c + 1 : d * 2", "(? (|| a b) (+ c 1) (* d 2))"),
    ("(a ? b : c) + 1", "(+ (? a b c) 1)"),
    ("$x++ + ++$y", "(+ (++post $x) (++pre $y))"),
    ("1 - -2", "(- 1 -2)"),
    ("3-5", "(- 3 5)"),
    ("$x - 1", "(- $x 1)"),
    ("$x-1", "(- $x 1)"),
])
def test_precedence(src, expected):
    assert e(src) == expected


@pytest.mark.parametrize("src,expected", [
    ("(uint8)$x + 1", "(+ (cast<uint8> $x) 1)"),
    ("(uint8)-1", "(cast<uint8> -1)"),
    ("-(uint8)$x", "(- (cast<uint8> $x))"),
    ("(uint8)$x.a", "(cast<uint8> (. $x a))"),
    ("(int64)$x * 2", "(* (cast<int64> $x) 2)"),
    ("(uint32)(int16)$x", "(cast<uint32> (cast<int16> $x))"),
    ("(int8)255", "(cast<int8> 255)"),
    ("(uint16)!$x", "(cast<uint16> (! $x))"),
    ("(struct task_struct *)curtask->pid",
     "(cast<struct task_struct *> (-> curtask pid))"),
    ("((struct task_struct *)curtask)->pid",
     "(-> (cast<struct task_struct *> curtask) pid)"),
    ("(struct X**)0", "(cast<struct X **> 0)"),
    ("(struct X * *)0", "(cast<struct X **> 0)"),
    ("(struct X)$y", "(cast<struct X> $y)"),
    ("(union U *)0", "(cast<union U *> 0)"),
    ("(enum E)1", "(cast<enum E> 1)"),
    ("(uint8 *)0", "(cast<uint8 *> 0)"),
])
def test_casts(src, expected):
    assert e(src) == expected


@pytest.mark.parametrize("name", ["int8", "int16", "int32", "int64",
                                  "uint8", "uint16", "uint32", "uint64"])
def test_cast_type_names(name):
    node = expr(f"({name})$x")
    assert isinstance(node, A.Cast) and node.type_name == name


def test_parenthesised_identifier_is_not_a_cast():
    assert e("(a) - 1") == "(- a 1)"
    assert e("(pid)") == "pid"


@pytest.mark.parametrize("src,expected", [
    ("args->filename", "(-> args filename)"),
    ("args.filename", "(. args filename)"),
    ("curtask->real_parent->pid", "(-> (-> curtask real_parent) pid)"),
    ("str(args->filename)", "str((-> args filename))"),
    ("$t.0", "(. $t 0)"),
    ("$t.0.1", "(. (. $t 0) 1)"),
    ("$t.10", "(. $t 10)"),
    ("(1, 2).0", "(. (tuple 1 2) 0)"),
    ("$x[1]", "([] $x 1)"),
    ("$x[1][2]", "([] ([] $x 1) 2)"),
    ("args->argv[0]", "([] (-> args argv) 0)"),
    ("@x[1][2]", "([] @x[1] 2)"),
    ("@x[1].a", "(. @x[1] a)"),
    ("*$x.a", "(* (. $x a))"),
    ("-args->x", "(- (-> args x))"),
    ("a->b->c", "(-> (-> a b) c)"),
    ("1.5", "(. 1 5)"),                  # as in bpftrace: no floats
    ("$s->if", "(-> $s if)"),            # keywords are fine as field names
])
def test_postfix(src, expected):
    assert e(src) == expected


def test_field_access_node():
    node = expr("args->filename")
    assert isinstance(node, A.FieldAccess)
    assert (node.field, node.arrow) == ("filename", True)
    node = expr("$t.0")
    assert (node.field, node.arrow) == ("0", False)


# ------------------------------------------------------------------ expressions: primaries

@pytest.mark.parametrize("name", ["pid", "tid", "comm", "args", "arg0", "arg5", "retval",
                                  "curtask", "nsecs", "func", "probe", "cpu", "kstack",
                                  "ustack", "elapsed", "username", "AF_INET", "uint8", "BEGIN"])
def test_identifiers_are_builtins(name):
    node = expr(name)
    assert isinstance(node, A.Builtin) and node.name == name


def test_keywords_are_not_identifiers():
    assert err("BEGIN { @x = if }").message == "syntax error, unexpected if"
    assert err("BEGIN { @x = while(1) }").message == "syntax error, unexpected while"


def test_variables_maps_positionals():
    assert isinstance(expr("$x"), A.Variable) and expr("$x").name == "$x"
    assert expr("$_a1").name == "$_a1"
    m = expr("@")
    assert isinstance(m, A.Map) and m.name == "@" and m.keys is None
    m = expr("@name")
    assert m.name == "@name" and m.keys is None
    m = expr("@[comm]")
    assert m.name == "@" and [sx(k) for k in m.keys] == ["comm"]
    m = expr("@x[comm, pid, 1 + 2]")
    assert [sx(k) for k in m.keys] == ["comm", "pid", "(+ 1 2)"]
    p = expr("$1")
    assert isinstance(p, A.Positional) and p.index == 1
    assert expr("$12").index == 12
    assert expr("$01").index == 1
    assert isinstance(expr("$#"), A.PositionalCount)


def test_positional_zero_is_an_error():
    d = err("BEGIN { $0 }")
    assert d.message == "param $0 is out of integer range [1, 9223372036854775807]"
    assert d.span == Span(1, 9, 1, 11)


def test_map_key_errors():
    assert err("BEGIN { @x[] }").message == "syntax error, unexpected ]"
    assert err("BEGIN { @x[1,] }").message == "syntax error, unexpected ]"


def test_calls():
    c = expr("printf(\"%d %s\\n\", pid, comm)")
    assert isinstance(c, A.Call) and c.name == "printf" and len(c.args) == 3
    assert expr("count()").args == []
    assert e("hist(arg0)") == "hist(arg0)"
    assert e("lhist(arg0, 0, 100, 10)") == "lhist(arg0, 0, 100, 10)"
    assert e("kstack(perf, 5)") == "kstack(perf, 5)"
    assert e("str($1 + 1, 5)") == "str((+ $1 1), 5)"
    assert e("delete(@x[1])") == "delete(@x[1])"
    assert e("print(@x, 10, 2)") == "print(@x, 10, 2)"
    assert e("exit()") == "exit()"
    assert e("foo(1)") == "foo(1)"                 # unknown functions are the checker's job


def test_sizeof():
    s = expr("sizeof(struct task_struct)")
    assert isinstance(s, A.Sizeof) and s.type_name == "struct task_struct" and s.operand is None
    assert expr("sizeof(uint8)").type_name == "uint8"
    assert expr("sizeof(struct X *)").type_name == "struct X *"
    s = expr("sizeof($x)")
    assert s.type_name is None and sx(s.operand) == "$x"
    assert sx(expr("sizeof(comm)").operand) == "comm"
    assert sx(expr("sizeof(1 + 2)").operand) == "(+ 1 2)"


def test_tuples():
    t = expr("(1, \"a\", $x)")
    assert isinstance(t, A.Tuple) and [sx(x) for x in t.elements] == ["1", "b'a'", "$x"]
    assert e("((1, 2), 3)") == "(tuple (tuple 1 2) 3)"
    assert e("(1)") == "1"
    assert err("BEGIN { $x = (1,); }").message == "syntax error, unexpected )"
    assert err("BEGIN { $x = (1,2,); }").message == "syntax error, unexpected )"


# ------------------------------------------------------------------ integer literals

@pytest.mark.parametrize("src,value", [
    ("0", 0), ("00", 0), ("42", 42), ("1_000_000", 1000000), ("1__0", 10),
    ("0x1F", 31), ("0X1f", 31), ("0xffffffffffffffff", 0xffffffffffffffff),
    ("0777", 511), ("0_7", 7),
    ("1e3", 1000), ("1E6", 1000000), ("1e0", 1), ("9e16", 9 * 10 ** 16), ("01e2", 100),
    ("10U", 10), ("10u", 10), ("10L", 10), ("10UL", 10), ("10ul", 10), ("10LL", 10),
    ("10ULL", 10), ("10ull", 10), ("5e1u", 50), ("1e2UL", 100),
    ("18446744073709551615", 18446744073709551615),
    ("9223372036854775808", 9223372036854775808),
])
def test_integer_literals(src, value):
    node = expr(src)
    assert isinstance(node, A.Integer) and node.value == value
    assert node.span == Span(1, 9, 1, 9 + len(src))


@pytest.mark.parametrize("src,value", [
    ("-5", -5), ("- 5", -5), ("-0x10", -16), ("-9223372036854775808", -9223372036854775808),
])
def test_negative_literals_are_folded(src, value):
    node = expr(src)
    assert isinstance(node, A.Integer) and node.value == value
    assert node.span == Span(1, 9, 1, 9 + len(src))


def test_negation_not_folded_like_bpftrace():
    assert e("-(5)") == "(- 5)"
    assert e("- -5") == "(- -5)"
    assert e("-$x") == "(- $x)"
    assert e("-5 * 2") == "(* -5 2)"


@pytest.mark.parametrize("src,message", [
    ("08", "Found trailing non-numeric characters"),
    ("09", "Found trailing non-numeric characters"),
    ("1e17", "Exponent will overflow integer range: 17"),
    ("2e20", "Exponent will overflow integer range: 20"),
    ("1_0e2", "Coefficient part of scientific literal must be in range (0,9), got: 10"),
    ("1_000e0", "Coefficient part of scientific literal must be in range (0,9), got: 1000"),
    ("18446744073709551616", "integer literal out of range: 18446744073709551616"),
    ("0x10000000000000000", "integer literal out of range: 0x10000000000000000"),
])
def test_integer_literal_errors(src, message):
    d = err(f"BEGIN {{ $x = {src}; }}")
    assert d.message == message
    assert d.span == Span(1, 14, 1, 14 + len(src))


@pytest.mark.parametrize("src,col", [
    ("10lu", 17), ("1e", 15), ("0x1_0", 17), ("1_", 15), ("0b101", 15), ("1e+3", 15),
])
def test_integer_literal_garbage(src, col):
    d = err(f"BEGIN {{ $x = {src}; }}")
    assert d.message == "syntax error, unexpected identifier, expecting }"
    assert (d.span.line, d.span.col) == (1, col)


# ------------------------------------------------------------------ string literals

@pytest.mark.parametrize("src,value", [
    (r'""', b""),
    (r'"abc"', b"abc"),
    (r'"a\nb\tc\rd\"e\\f"', b'a\nb\tc\rd"e\\f'),
    (r'"\101\x41\x4g\0\1234"', b"AA\x04g\x00S4"),
    (r'"\08"', b"\x008"),
    (r'"\377"', b"\xff"),
    (r'"\xff\xA"', b"\xff\x0a"),
    ('"é"', "é".encode()),
    ('"%s\\n"', b"%s\n"),
    ('"' + "x" * 100 + '"', b"x" * 100),      # too long is the checker's business
])
def test_string_literals(src, value):
    node = expr(src)
    assert isinstance(node, A.String) and node.value == value
    assert node.span == Span(1, 9, 1, 9 + len(src))


@pytest.mark.parametrize("src,message,span", [
    (r'BEGIN { printf("\q"); }', r"invalid escape character '\q'", Span(1, 17, 1, 19)),
    (r'BEGIN { printf("\x"); }', r"invalid escape character '\x'", Span(1, 17, 1, 19)),
    (r'BEGIN { printf("\e"); }', r"invalid escape character '\e'", Span(1, 17, 1, 19)),
    (r'BEGIN { printf("ab\a"); }', r"invalid escape character '\a'", Span(1, 19, 1, 21)),
    (r'BEGIN { printf("\400"); }', r"octal escape sequence out of range '\400'", Span(1, 17, 1, 21)),
    (r'BEGIN { printf("\777"); }', r"octal escape sequence out of range '\777'", Span(1, 17, 1, 21)),
    ('BEGIN { printf("abc); }', "unterminated string", Span(1, 16, 1, 24)),
    ('BEGIN { printf("a\nb"); }', "unterminated string", Span(1, 16, 1, 18)),
    ("BEGIN { printf('a'); }", "invalid character '''", Span(1, 16, 1, 17)),
    ("BEGIN { $ }", "invalid character '$'", Span(1, 9, 1, 10)),
    ("BEGIN { @x = `a` }", "invalid character '`'", Span(1, 14, 1, 15)),
])
def test_lexical_errors(src, message, span):
    d = err(src)
    assert d.message == message
    assert d.span == span


# ------------------------------------------------------------------ spans

def test_spans_of_nodes():
    src = "kprobe:f /arg0 > 1/ {\n  @x[comm, pid] = count();\n  $y = (uint8)arg1 + -2;\n}"
    probe = parse(src).probes[0]
    assert probe.span == Span(1, 1, 4, 2)
    assert probe.predicate.span == Span(1, 11, 1, 19)
    assign, assign2 = probe.body
    assert assign.span == Span(2, 3, 2, 26)
    assert assign.target.span == Span(2, 3, 2, 16)
    assert assign.target.keys[1].span == Span(2, 12, 2, 15)
    assert assign.value.span == Span(2, 19, 2, 26)
    assert assign2.value.span == Span(3, 8, 3, 24)           # (uint8)arg1 + -2
    assert assign2.value.left.span == Span(3, 8, 3, 19)      # (uint8)arg1
    assert assign2.value.left.operand.span == Span(3, 15, 3, 19)
    assert assign2.value.right.span == Span(3, 22, 3, 24)    # -2


def test_spans_of_statements():
    src = "BEGIN {\n  if (1) {\n    @x++;\n  } else {\n    return\n  }\n  while (1) { break }\n  unroll(2) { }\n}"
    s_if, s_while, s_unroll = parse(src).probes[0].body
    assert s_if.span == Span(2, 3, 6, 4)
    assert s_if.then[0].span == Span(3, 5, 3, 9)
    assert s_if.then[0].expr.target.span == Span(3, 5, 3, 7)
    assert s_if.orelse[0].span == Span(5, 5, 5, 11)
    assert s_while.span == Span(7, 3, 7, 22)
    assert s_while.body[0].span == Span(7, 15, 7, 20)
    assert s_unroll.span == Span(8, 3, 8, 16)


def test_spans_of_postfix_and_calls():
    node = expr("curtask->real_parent->pid")
    assert node.span == Span(1, 9, 1, 34)
    assert node.expr.span == Span(1, 9, 1, 29)
    node = expr('printf("%d\\n", $x[1])')
    assert node.span == Span(1, 9, 1, 30)
    assert node.args[1].span == Span(1, 24, 1, 29)
    node = expr("sizeof(struct X)")
    assert node.span == Span(1, 9, 1, 25)
    node = expr("(1, 2)")
    assert node.span == Span(1, 9, 1, 15)
    node = expr("a ? b : c")
    assert node.span == Span(1, 9, 1, 18)


def test_spans_count_tabs_as_one_column():
    prog = parse("BEGIN {\n\t@x = 1;\n}")
    assert prog.probes[0].body[0].target.span == Span(2, 2, 2, 4)


def test_every_node_has_a_span():
    src = textwrap.dedent("""\
        #include <x.h>
        kprobe:a, kprobe:b /pid == 1 && $# > 0/ {
          @m[comm, pid] = hist((uint64)arg0 / 1000);
          $t = (1, "s", sizeof(struct X), -5, $1);
          if (!$t.0) { @c++ } else if (1) { --@c } else { $y = *$x ? ~$z : args->a[2]; }
          unroll(3) { @u += 1 } while ($i < 5) { $i++; continue; break; } return;
        }
        END { clear(@m); }
        """)
    prog = parse(src)
    for node in A.walk(prog):
        assert node.span != A.NOSPAN, node
        s = node.span
        assert (s.line, s.col) < (s.end_line, s.end_col), node


# ------------------------------------------------------------------ syntax error messages

@pytest.mark.parametrize("src,message,span", [
    ("BEGIN { @x = ; }", "syntax error, unexpected ;", Span(1, 14, 1, 15)),
    ("BEGIN {", "syntax error, unexpected end of file, expecting }", Span(1, 7, 1, 8)),
    ("BEGIN {   ", "syntax error, unexpected end of file, expecting }", Span(1, 11, 1, 11)),
    ("BEGIN {\n \n", "syntax error, unexpected end of file, expecting }", Span(3, 1, 3, 1)),
    ("BEGIN { @x = 1", "syntax error, unexpected end of file, expecting }", Span(1, 14, 1, 15)),
    ("BEGIN", "unexpected end of file, expected {", Span(1, 1, 1, 6)),
    ("BEGIN {} foo", "unexpected end of file, expected {", Span(1, 10, 1, 13)),
    ("BEGIN /pid == 1/", "syntax error, unexpected end of file", Span(1, 16, 1, 17)),
    ("BEGIN { $x = 1 } }", "syntax error, unexpected }, expecting {", Span(1, 18, 1, 19)),
    ("} BEGIN { }", "syntax error, unexpected }, expecting {", Span(1, 1, 1, 2)),
    ("BEGIN { @x = 1 ? 2 }", "syntax error, unexpected }, expecting :", Span(1, 20, 1, 21)),
    ("BEGIN { @x = (1 }", 'syntax error, unexpected }, expecting ) or ","', Span(1, 17, 1, 18)),
    ("BEGIN { @x = 1, 2 }", 'syntax error, unexpected ",", expecting }', Span(1, 15, 1, 16)),
    ("BEGIN { count( }", "syntax error, unexpected }", Span(1, 16, 1, 17)),
    ('BEGIN { @x = "a" "b" }', "syntax error, unexpected string, expecting }", Span(1, 18, 1, 21)),
    ("BEGIN { @x = 1 pid }", "syntax error, unexpected builtin, expecting }", Span(1, 16, 1, 19)),
    ("BEGIN { @x = 1 printf }", "syntax error, unexpected call, expecting }", Span(1, 16, 1, 22)),
    ("BEGIN { @x = 1 kstack }", "syntax error, unexpected call_builtin, expecting }", Span(1, 16, 1, 22)),
    ("BEGIN { @x = 1 perf }", "syntax error, unexpected stack_mode, expecting }", Span(1, 16, 1, 20)),
    ("BEGIN { @x = 1 foo }", "syntax error, unexpected identifier, expecting }", Span(1, 16, 1, 19)),
    ("BEGIN { @x = 1 $1 }", "syntax error, unexpected positional parameter, expecting }", Span(1, 16, 1, 18)),
    ("BEGIN { @x = 1 $# }", "syntax error, unexpected $#, expecting }", Span(1, 16, 1, 18)),
    ("BEGIN { @x = 1 $y }", "syntax error, unexpected variable, expecting }", Span(1, 16, 1, 18)),
    ("BEGIN { @x = 1 if }", "syntax error, unexpected if, expecting }", Span(1, 16, 1, 18)),
    ("BEGIN { @x = 1 else }", "syntax error, unexpected else, expecting }", Span(1, 16, 1, 20)),
    ("BEGIN { @x = 1 ( }", "syntax error, unexpected (, expecting }", Span(1, 16, 1, 17)),
    ("BEGIN { @x = 1 <<= }", "syntax error, unexpected <<=, expecting }", Span(1, 16, 1, 19)),
    ("BEGIN { @x = 1 ? }", "syntax error, unexpected }", Span(1, 18, 1, 19)),
    ("BEGIN { @x = 1 && }", "syntax error, unexpected }", Span(1, 19, 1, 20)),
    ("BEGIN { @x = 1 #x }", "syntax error, unexpected preprocessor directive, expecting }",
     Span(1, 16, 1, 20)),
    ("BEGIN { @x = (1, 2 }", 'syntax error, unexpected }, expecting ) or ","', Span(1, 20, 1, 21)),
    ("BEGIN { $9a }", "syntax error, unexpected identifier, expecting }", Span(1, 11, 1, 12)),
])
def test_syntax_errors(src, message, span):
    d = err(src)
    assert d.message == message
    assert d.span == span
    assert d.level == "ERROR"


def test_error_renders_like_bpftrace():
    src = "BEGIN { @x = ; }"
    assert render(err(src), src, "stdin") == (
        "stdin:1:14-15: ERROR: syntax error, unexpected ;\n"
        "BEGIN { @x = ; }\n"
        "             ~\n")
    src = "BEGIN {"
    assert render(err(src), src, "stdin") == (
        "stdin:1:7-8: ERROR: syntax error, unexpected end of file, expecting }\n"
        "BEGIN {\n"
        "      ~\n")


def test_error_on_later_line():
    src = "BEGIN {\n  @x = 1;\n  @y = (2 + ;\n}"
    d = err(src)
    assert d.message == "syntax error, unexpected ;"
    assert d.span == Span(3, 13, 3, 14)


def test_no_lark_exception_escapes():
    rng = random.Random(1234)
    alphabet = list("BEGIN{}()[];,:/*-+!~$@#\"'\\ \n\tabc019_.?<>=&|^%`") + [
        "BEGIN", "kprobe:f", "if", "else", "while", "unroll", "sizeof", "struct", "(uint8)",
        "@x", "$x", "$1", "printf(", "/*", "*/", "//", "\"str\"", "0x", "1e3", "->"]
    for _ in range(1500):
        src = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        try:
            parse(src)
        except CompileError as exc:
            assert exc.diagnostics and exc.diagnostics[0].message
        # anything else propagates and fails the test


def test_deep_nesting():
    depth = 200
    node = expr("(" * depth + "1" + ")" * depth)
    assert isinstance(node, A.Integer)
    node = expr("1" + " + 1" * 500)
    assert isinstance(node, A.Binary)


# ------------------------------------------------------------------ realistic scripts

def test_runqlat_like_script():
    src = textwrap.dedent("""\
        #!/usr/bin/env bpftrace
        /*
         * runqlat.bt	CPU scheduler run queue latency as a histogram.
         */
        #include <linux/sched.h>

        BEGIN
        {
        	printf("Tracing CPU scheduler... Hit Ctrl-C to end.\\n");
        }

        tracepoint:sched:sched_wakeup,
        tracepoint:sched:sched_wakeup_new
        {
        	@qtime[args->pid] = nsecs;
        }

        tracepoint:sched:sched_switch
        {
        	if (args->prev_state == TASK_RUNNING) {
        		@qtime[args->prev_pid] = nsecs;
        	}

        	$ns = @qtime[args->next_pid];
        	if ($ns) {
        		@usecs = hist((nsecs - $ns) / 1000);
        	}
        	delete(@qtime[args->next_pid]);
        }

        END
        {
        	clear(@qtime);
        }
        """)
    prog = parse(src, "runqlat.bt")
    assert prog.c_definitions == ["#include <linux/sched.h>"]
    assert [[a.raw for a in p.attach_points] for p in prog.probes] == [
        ["BEGIN"], ["tracepoint:sched:sched_wakeup", "tracepoint:sched:sched_wakeup_new"],
        ["tracepoint:sched:sched_switch"], ["END"]]
    switch = prog.probes[2].body
    assert [type(s).__name__ for s in switch] == ["If", "Assign", "If", "ExprStmt"]
    assert sx(switch[2].then[0].value) == "hist((/ (- nsecs $ns) 1000))"


def test_tcp_style_script_with_struct_casts():
    src = textwrap.dedent("""\
        #ifndef BPFTRACE_HAVE_BTF
        #include <net/sock.h>
        #endif
        kprobe:tcp_connect
        {
        	$sk = ((struct sock *) arg0);
        	$inet_family = $sk->__sk_common.skc_family;
        	if ($inet_family == AF_INET || $inet_family == AF_INET6) {
        		$daddr = ntop($sk->__sk_common.skc_daddr);
        		$dport = $sk->__sk_common.skc_dport;
        		$dport = ($dport >> 8) | (($dport << 8) & 0x00FF00);
        		printf("%-8s %-6d %-16s ", strftime("%H:%M:%S", nsecs), pid, comm);
        		printf("%-39s %-6d\\n", $daddr, $dport);
        	}
        }
        """)
    prog = parse(src)
    body_ = prog.probes[0].body
    assert sx(body_[0].value) == "(cast<struct sock *> arg0)"
    assert sx(body_[1].value) == "(. (-> $sk __sk_common) skc_family)"
    assert sx(body_[2].then[2].value) == "(| (>> $dport 8) (& (<< $dport 8) 65280))"


@pytest.mark.skipif(not os.path.exists("/usr/sbin/runqlat.bt"), reason="bpftrace tools not installed")
def test_installed_bpftrace_tools_parse():
    import glob
    files = sorted(glob.glob("/usr/sbin/*.bt"))
    for f in files:
        with open(f) as fh:
            prog = parse(fh.read(), f)
        assert prog.probes, f


# ------------------------------------------------------------------ module behaviour

def _run(code, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_import_is_cheap_and_lark_is_lazy():
    r = _run("import sys, pytrace.language.parser; print('lark' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_cache_is_written_and_reused(tmp_path):
    code = ("import pytrace.language.parser as P; p = P.parse('BEGIN { @x = 1 }'); "
            "print(len(p.probes))")
    r = _run(code, {"XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    files = list((tmp_path / "pytrace").glob("parser-*.lark"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    r = _run(code, {"XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    assert files[0].stat().st_mtime_ns == mtime          # loaded, not rewritten
    assert r.stderr == ""


def test_unwritable_cache_falls_back_silently(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code = "import pytrace.language.parser as P; print(len(P.parse('BEGIN { @x = 1 }').probes))"
    r = _run(code, {"XDG_CACHE_HOME": str(blocker)})
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    assert r.stderr == ""


def test_corrupt_cache_is_rebuilt(tmp_path):
    code = "import pytrace.language.parser as P; print(len(P.parse('BEGIN { @x = 1 }').probes))"
    r = _run(code, {"XDG_CACHE_HOME": str(tmp_path)})
    (cache,) = list((tmp_path / "pytrace").glob("parser-*.lark"))
    cache.write_bytes(b"garbage")
    r = _run(code, {"XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr


def test_parser_is_built_once():
    import pytrace.language.parser as P
    parse("BEGIN {}")
    first = P._get_parser()
    parse("END {}")
    assert P._get_parser() is first


def test_filename_argument_is_accepted():
    prog = parse("BEGIN { }", filename="x.bt")
    assert prog.probes[0].attach_points[0].raw == "BEGIN"
