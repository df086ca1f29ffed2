"""The C declaration front-end (pytrace.types.cparse) and the C type model
(pytrace.types.cmodel): layouts against gcc, includes, macros, the BTF fallback and
the located errors."""
import os
import shutil
import subprocess
import sys

import pytest
from pytrace.language.ast import Span
from pytrace.language.diagnostics import CompileError
from pytrace.types import cmodel as M
from pytrace.types import cparse

VMLINUX = "/sys/kernel/btf/vmlinux"
needs_btf = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="no kernel BTF")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")

LAYOUTS = r"""
#define N 3
enum color { RED, GREEN = 5, BLUE };
enum neg { MINUS = -1, PLUS = 1 };
enum big { HUGE = 0x100000000 };
struct a { char c; int i; short s; };
struct b { char c; long long l; char d; };
struct c { short s; char arr[5]; long l; };
struct d { struct a inner; char c; struct b pair[2]; };
struct e { int x; struct { char p; short q; }; union { int u1; char u2[7]; }; char tail; };
union f { char c; int i; double d; struct a s; char big[13]; };
struct g { unsigned a:3, b:5, c:9, d:17; unsigned char e:1; };
struct h { char c; int x:20; int y:20; short z:3; long long w:40; long long v:30; };
struct i { char c; int :0; char d; long long :0; char e; };
struct j { unsigned char a:4; unsigned short b:10; unsigned int c:20; unsigned long d:40; };
struct k { int m[2][3]; char n[3][5][2]; short s; struct a arr[N]; };
struct l { struct l *next; void *p; int (*fp)(int, char); char **pp; struct a *pa; };
struct m { enum color col; enum neg ng; char c; enum big bg; };
struct n { char c; int :3; char d; unsigned e:4; int f:31; int g:2; };
struct o { union { struct { short lo, hi; }; int whole; }; char z; union { char q; long r; } named; };
typedef struct { unsigned int flag:1; unsigned long long mask; } p_t;
struct q { p_t t[2]; _Bool b; float f; double d; long double ld; };
struct r { char c; long long x:5; char d; short y:9; short z:9; char e:3; char f:6; };
struct s { int len; char data[]; };
struct t { unsigned short a:15; unsigned short b:2; unsigned char c:7; unsigned char d:2; };
struct u { char a; short b:3; int c:4; long d:5; };
struct packed_one { char c; int i; short s; } __attribute__((packed));
struct __attribute__((packed)) packed_two { char c; long l; };
struct aligned_one { char c; } __attribute__((aligned(16)));
struct w2 { char c; struct packed_one p; struct aligned_one a; };
"""
TYPES = ["struct a", "struct b", "struct c", "struct d", "struct e", "union f", "struct g",
         "struct h", "struct i", "struct j", "struct k", "struct l", "struct m", "struct n",
         "struct o", "p_t", "struct q", "struct r", "struct s", "struct t", "struct u",
         "struct packed_one", "struct packed_two", "struct aligned_one", "struct w2",
         "enum color", "enum neg", "enum big"]


def parse(text, **kw):
    return cparse.parse([(text, 1, 1)], **kw)


def fail(text, **kw) -> CompileError:
    with pytest.raises(CompileError) as e:
        parse(text, **kw)
    return e.value


# ---------------------------------------------------------------- layouts vs gcc

def walk(t, prefix, base, out):
    """Every member reachable by value: ('M', path, byte offset) or ('B', path, first
    bit from the start of the outer record, width)."""
    t = M.resolve(None, t)
    if not isinstance(t, M.CRecord):
        return
    for m in t.members:
        if not m.name:
            walk(m.type, prefix, base + m.offset, out)
            continue
        path = prefix + m.name
        if m.bits:
            out.append(("B", path, (base + m.offset) * 8 + m.bit_offset, m.bits))
        else:
            out.append(("M", path, base + m.offset))
            walk(m.type, path + ".", base + m.offset, out)


def gcc_program(decls, space):
    lines = [LAYOUTS, "#include <stdio.h>\n#include <stddef.h>\n#include <string.h>\n",
             "static void bits(const char *t, const char *p, unsigned char *b, int n) {",
             "  int lo = -1, hi = -1;",
             "  for (int i = 0; i < n * 8; i++) if (b[i / 8] >> (i % 8) & 1) { if (lo < 0) lo = i; hi = i; }",
             '  printf("B %s %s %d %d\\n", t, p, lo, hi - lo + 1); }',
             "int main(void) {"]
    for name in TYPES:
        lines.append(f'printf("S {name} %zu %zu\\n", sizeof({name}), _Alignof({name}));')
        t = space.lookup(name)
        if name.startswith("enum"):
            continue
        out = []
        walk(t, "", 0, out)
        for item in out:
            if item[0] == "M":
                lines.append(f'printf("M {name} {item[1]} %zu\\n", offsetof({name}, {item[1]}));')
            else:
                lines.append(f"{{ {name} v; memset(&v, 0, sizeof v); v.{item[1]} = -1; "
                             f'bits("{name}", "{item[1]}", (unsigned char *)&v, sizeof v); }}')
    lines.append("return 0; }")
    return "\n".join(lines)


def expected(space):
    rows = set()
    for name in TYPES:
        t = space.lookup(name)
        rows.add(f"S {name} {M.sizeof(t)} {M.alignof(t)}")
        if name.startswith("enum"):
            continue
        out = []
        walk(t, "", 0, out)
        for item in out:
            rows.add(" ".join(["M" if item[0] == "M" else "B", name] + [str(x) for x in item[1:]]))
    return rows


@needs_gcc
def test_layouts_match_gcc(tmp_path):
    decls = parse(LAYOUTS)
    src = tmp_path / "layout.c"
    src.write_text(gcc_program(decls, decls.space))
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-w", "-o", str(exe), str(src)], check=True)
    got = set(subprocess.run([str(exe)], check=True, capture_output=True,
                             text=True).stdout.splitlines())
    want = expected(decls.space)
    assert len(want) > 120
    assert sorted(want - got) == sorted(got - want) == []


def test_enum_values_and_sizes():
    d = parse(LAYOUTS)
    assert d.enums["GREEN"] == 5 and d.enums["BLUE"] == 6 and d.enums["MINUS"] == -1
    assert d.space.lookup("enum neg").signed and M.sizeof(d.space.lookup("enum big")) == 8
    assert d.macros["N"] == 3


def test_members_and_names():
    d = parse(LAYOUTS)
    e = d.space.lookup("struct e")
    assert M.member(e, "q").offset == 6 and M.member(e, "u2").offset == 8
    assert M.member(e, "nope") is None
    assert M.c_name(M.member(d.space.lookup("struct k"), "m").type) == "int[2][3]"
    l_ = d.space.lookup("struct l")
    assert M.c_name(M.member(l_, "next").type) == "struct l *"
    assert M.c_name(M.member(l_, "pp").type) == "char **"
    assert M.resolve(d.space, M.member(l_, "next").type.target) is l_
    assert M.member(d.space.lookup("struct s"), "data").type == M.CArray(M.BUILTINS["char"], 0)
    assert M.c_name(M.BUILTINS["uint32_t"]) == "unsigned int"


# ---------------------------------------------------------------- the front-end

def test_typedefs_and_recursion():
    d = parse("typedef unsigned long long u64_t;\n"
              "typedef struct node node_t;\n"
              "struct node { node_t *next; u64_t v; struct tree *t; };\n"
              "struct tree { struct node *root; struct tree *kids[2]; int8_t x; size_t n; pid_t p; };\n")
    node = d.space.lookup("node_t")
    assert M.resolve(d.space, node).size == 24
    tree = d.space.lookup("struct tree")
    assert (tree.size, M.member(tree, "x").offset, M.member(tree, "p").offset) == (48, 24, 40)
    assert M.resolve(d.space, M.member(tree, "root").type.target).name == "node"


def test_stdint_and_c_names_without_include():
    d = parse("struct s { uint8_t a; uint16_t b; uint32_t c; uint64_t d; int64_t e; "
              "unsigned char f; signed char g; long int h; short int i; unsigned j; ssize_t k; };")
    s = d.space.lookup("struct s")
    assert [m.offset for m in s.members] == [0, 2, 4, 8, 16, 24, 25, 32, 40, 44, 48]
    assert s.members[9].type == M.CInt(4, False, "unsigned int")


def test_errno_include_and_includes_option():
    d = parse("#include <errno.h>\nstruct x { int a; };\n")
    assert d.macros["EPERM"] == 1 and d.macros["ENOENT"] == 2
    d = cparse.parse([], includes=["errno.h"])
    assert d.macros["EAGAIN"] == 11 and d.macros["EWOULDBLOCK"] == 11


def test_system_headers():
    d = parse("#include <linux/types.h>\n#include <sys/socket.h>\n#include <stdint.h>\n"
              "struct x { __u32 a; struct sockaddr sa; uint16_t p; };\n")
    assert d.space.lookup("struct x").size == 4 + 16 + 2 + 2
    assert d.macros["AF_INET"] == 2


def test_include_dirs_and_conditionals(tmp_path):
    (tmp_path / "mine.h").write_text('#define GREETING "hello"\n#define SIZE (4 * 2)\n'
                                     "struct from_header { char c[SIZE]; };\n")
    d = parse('#include "mine.h"\n#ifdef SIZE\nstruct y { struct from_header h; int z; };\n'
              "#else\nstruct y { char nope; };\n#endif\n"
              "#if defined(BPFTRACE_HAVE_BTF) && SIZE > 4\n#define HAVE 1\n#elif 1\n#define HAVE 0\n#endif\n",
              include_dirs=[str(tmp_path)])
    assert d.space.lookup("struct y").size == 12
    assert d.macros["GREETING"] == "hello" and d.macros["SIZE"] == 8
    assert d.macros["HAVE"] == int(os.path.exists(VMLINUX))


def test_chunks_keep_script_positions():
    e = fail_chunks([("struct a { int x; };", 1, 1), ("struct b {\n  struct nope n;\n};", 4, 3)])
    assert e.diagnostics[0].span == Span(5, 3, 5, 14)


def fail_chunks(chunks, **kw):
    with pytest.raises(CompileError) as e:
        cparse.parse(chunks, **kw)
    return e.value


@pytest.mark.parametrize("text, message, span", [
    ("struct A {\n  struct Foo f;\n};", 'Cannot resolve unknown type "struct Foo"', Span(2, 3, 2, 13)),
    ("struct A { foo_t x; };", 'Cannot resolve unknown type "foo_t"', Span(1, 12, 1, 17)),
    ("struct A { int x y; };", 'syntax error, unexpected "y"', Span(1, 18, 1, 19)),
    ("\n#include <nope/missing.h>\n", "'nope/missing.h' file not found", Span(2, 1, 2, 26)),
    ('#include "foo.h"', "'foo.h' file not found", Span(1, 1, 1, 17)),
    ("int f(void) { return 1; }", "function definitions are not supported here", Span(1, 5, 1, 6)),
    ("struct A { char c:9; };", "invalid width of bit-field 'c'", Span(1, 19, 1, 20)),
    ("#error no way\n", "#error no way", Span(1, 1, 1, 14)),
    ("struct A { int a; };\nstruct A { char b; };", "redefinition of 'struct A'", Span(2, 8, 2, 16)),
    ("struct A { int a[-1]; };", "array has a negative size", None),
])
def test_errors(text, message, span):
    e = fail(text)
    diag = e.diagnostics[0]
    assert diag.message == message
    if span is not None:
        assert diag.span == span
    else:
        assert diag.span.line == 1


def test_error_inside_a_header_points_at_the_include(tmp_path):
    (tmp_path / "bad.h").write_text("struct z { int a b; };\n")
    e = fail("struct ok { int a; };\n#include \"bad.h\"\n", include_dirs=[str(tmp_path)])
    diag = e.diagnostics[0]
    assert diag.span.line == 2 and "bad.h:1" in diag.message


def test_no_parser_import_without_c():
    code = ("import sys; from pytrace.types import cparse, cmodel; "
            "assert 'pycparser' not in sys.modules and 'pcpp' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


# ---------------------------------------------------------------- BTF

@pytest.fixture(scope="module")
def kbtf():
    from pytrace.types.btf import vmlinux
    return vmlinux()


@needs_btf
def test_from_btf_task_struct(kbtf):
    tid = kbtf.find("task_struct")
    ts = M.from_btf(kbtf, tid)
    assert ts.size == kbtf.size(tid) and ts.align == 8
    assert M.member(ts, "pid").offset == kbtf.member(kbtf.struct("task_struct"), "pid").offset
    assert M.c_name(M.member(ts, "comm").type) == "char[16]"
    parent = M.member(ts, "parent").type
    assert parent == M.CPointer(M.CRef("struct", "task_struct"))
    for m in (m for m in kbtf.struct("task_struct").members if m.bitfield_size):
        mine = M.member(ts, m.name)
        assert mine.offset * 8 + mine.bit_offset == m.bit_offset and mine.bits == m.bitfield_size


@needs_btf
def test_from_btf_sockaddr_in(kbtf):
    sa = M.from_btf(kbtf, kbtf.find("sockaddr_in"))
    space = M.TypeSpace(M.btf_fallback(kbtf))
    assert (sa.size, sa.align) == (16, 4)
    assert [(m.name, m.offset) for m in sa.members] == [
        ("sin_family", 0), ("sin_port", 2), ("sin_addr", 4), ("__pad", 8)]
    assert M.sizeof(M.member(sa, "sin_addr").type, space) == 4


@needs_btf
def test_btf_fallback_by_value_and_pointer(kbtf):
    d = parse("struct w { struct task_struct *t; struct sockaddr_in sa; u32 k; "
              "struct list_head l; };", btf_fallback=M.btf_fallback(kbtf))
    w = d.space.lookup("struct w")
    assert [(m.name, m.offset) for m in w.members] == [("t", 0), ("sa", 8), ("k", 24), ("l", 32)]
    assert w.size == 48
    task = M.resolve(d.space, M.member(w, "t").type.target)
    assert task.size == kbtf.size(kbtf.find("task_struct"))
    assert d.space.lookup("struct w") is w
    # the script's definitions win over the kernel's
    d = parse("struct list_head { int only; };\nstruct v { struct list_head l; };",
              btf_fallback=M.btf_fallback(kbtf))
    assert d.space.lookup("struct v").size == 4


def test_macro_expressions_and_function_pointers():
    d = parse("#define A (1 << 4)\n#define B 0x10UL\n#define C (-A + 3)\n#define D 010\n"
              "#define E 'a'\n#define F A\n#define G(x) x\n#define H sizeof(int)\n"
              "typedef int (*cb_t)(int);\nstruct s { cb_t cb; void (*v)(void); char pad[B]; };\n")
    assert [d.macros[k] for k in "ABCDEF"] == [16, 16, -13, 8, 97, 16]
    assert "G" not in d.macros and "H" not in d.macros
    s = d.space.lookup("struct s")
    assert s.size == 32 and M.c_name(s.members[0].type) == "void (*)()"


def test_attributes_on_structs():
    d = parse("struct p { char c; int i; } __attribute__((packed));\n"
              "struct __attribute__((__packed__)) q { char c; long l; };\n"
              "struct a { char c; } __attribute__((aligned(8)));\n"
              "struct m { int x __attribute__((unused)); };\n")
    sizes = [(M.sizeof(t), M.alignof(t)) for t in
             (d.space.lookup(n) for n in ("struct p", "struct q", "struct a", "struct m"))]
    assert sizes == [(5, 1), (9, 1), (8, 8), (4, 4)]


def test_stdio_and_stdarg():
    d = parse("#include <stdio.h>\n#include <stdarg.h>\nstruct x { FILE f; va_list v; };")
    assert d.space.lookup("struct x").size == 216 + 24
    assert d.macros["EOF"] == -1


@pytest.mark.parametrize("text, message, span", [
    ("struct a { char d[*]; };", "variable length arrays are not supported", Span(1, 19, 1, 20)),
    ("struct a { int x; }}; ", 'syntax error, unexpected "}"', Span(1, 20, 1, 21)),
    ("struct a { int x;\n", "syntax error, unexpected end of the C definitions", Span(1, 17, 1, 18)),
    ("struct q { int a; } x = ;", "syntax error: Invalid expression", Span(1, 25, 1, 26)),
    ("struct a { int f(int); };", "member 'f' has an unsupported type", Span(1, 16, 1, 17)),
])
def test_more_errors(text, message, span):
    diag = fail(text).diagnostics[0]
    assert (diag.message, diag.span) == (message, span)
