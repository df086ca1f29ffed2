"""DWARF (issue 10): uprobe `args->NAME` typed from the function's DWARF parameters,
the binary's structs and typedefs in casts, an in-script definition overriding the
binary's, `-lv` parameter listings (recorded from bpftrace 0.17) and the errors.
The workload is compiled with -g, as bpftrace's test programs are."""
import subprocess
import sys

import pytest

from conftest import build_c

PYTRACE = [sys.executable, "-m", "pytrace.cli"]

SOURCE = r"""
#include <string.h>
typedef unsigned int u32_t;
struct inner { short x; short y; };
struct outer { int id; struct inner in; int grid[2][2]; char name[8]; struct outer *next; unsigned f : 3; };
union val { long l; int i; };
enum color { RED, GREEN = 5 };
typedef struct outer outer_t;
__attribute__((noipa)) int walk(struct outer *o, u32_t n, const char *label, enum color c,
                                long long big, unsigned char flag) { return n; }
__attribute__((noipa)) int take(outer_t *o, union val *v, void (*cb)(int), char **argv, int arr[4])
{ return 0; }
__attribute__((noipa)) long many(int a, int b, int c, int d, int e, int f, short g, long h)
{ return a + h; }
int main(int argc, char **argv)
{
    char label[8];
    struct outer b = { 2, { 3, 4 }, {{5, 6}, {7, 8}}, "bee", 0, 5 };
    struct outer a = { 1, { -1, -2 }, {{1, 2}, {3, 4}}, "ay", &b, 3 };
    union val v = { .l = 42 };
    int arr[4] = {1, 2, 3, 4};
    strcpy(label, "hello");
    walk(&a, 7, label, GREEN, -5, 200);
    take(&a, &v, 0, argv, arr);
    many(1, 2, 3, 4, 5, 6, -7, 80);
    return 0;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    d = tmp_path_factory.mktemp("dwarf")
    build_c(d, "nodw", SOURCE, "-O0", "-no-pie")
    return build_c(d, "dw", SOURCE, "-g", "-O0", "-no-pie")


def run(*args):
    return subprocess.run(PYTRACE + list(args), capture_output=True, text=True, timeout=60)


def trace(prog, script):
    r = run("-c", prog, "-e", script.replace("{p}", prog))
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_args_by_name_of_every_kind(prog):
    out = trace(prog, 'uprobe:{p}:walk { printf("%d %d %s %d %d %d\\n", args->o->id, args->n, '
                'str(args->label), args->c, args->big, args->flag); print(args->o->in); '
                'print(args->o->grid); printf("%s %d %d\\n", args->o->name, args->o->next->in.y, '
                'args->o->f); @o = *args->o->next; @t = (args->n, args->o->next->id); exit(); }')
    assert out.startswith("Attaching 1 probe...\n1 7 hello 5 -5 200\n{ .x = -1, .y = -2 }\n"
                          "[[1,2],[3,4]]\nay 4 3\n"), out
    # a DWARF bitfield is a member like any other (0.17 drops the struct's fields)
    assert "@o: { .id = 2, .in = { .x = 3, .y = 4 }, .grid = [[5,6],[7,8]], .name = bee, " \
           ".next = 0, .f = 5 }\n" in out
    assert "@t: (7, 2)\n" in out


def test_typedefs_unions_pointers_and_stack_arguments(prog):
    out = trace(prog, 'uprobe:{p}:take { printf("%d %d %s %d\\n", args->v->i, args->o->id, '
                'str(*args->argv), args->arr[3]); } '
                'uprobe:{p}:many { printf("%d %d %d\\n", args->f, args->g, args->h); exit(); }')
    assert f"42 1 {prog} 4\n6 -7 80\n" in out, out


def test_binary_types_in_casts_and_script_override(prog):
    out = trace(prog, 'uprobe:{p}:walk { printf("%d %d %d\\n", ((struct outer *)arg0)->in.y, '
                '((outer_t *)arg0)->next->id, ((union val *)arg0)->i); exit(); }')
    assert "-2 2 1\n" in out, out
    # the script's struct takes precedence over the binary's, also for args
    out = trace(prog, 'struct outer { short lo; short hi; } uprobe:{p}:walk '
                '{ printf("%d %d\\n", ((struct outer *)arg0)->hi, args->o->lo); exit(); }')
    assert "0 1\n" in out, out


def test_lv_lists_parameters_as_bpftrace(prog):
    r = run("-lv", f"uprobe:{prog}:*a*")
    assert r.returncode == 0, r.stderr
    # recorded from bpftrace 0.17 on the same binary
    assert (f"uprobe:{prog}:main\n    int argc\n    char** argv\n"
            f"uprobe:{prog}:many\n    int a\n    int b\n    int c\n    int d\n    int e\n"
            f"    int f\n    short int g\n    long int h\n"
            f"uprobe:{prog}:take\n    outer_t* o\n    union val* v\n    <unknown type>* cb\n"
            f"    char** argv\n    int* arr\n"
            f"uprobe:{prog}:walk\n    struct outer* o\n    u32_t n\n    const char* label\n"
            f"    enum color c\n    long long int big\n    unsigned char flag\n") in r.stdout, r.stdout


@pytest.mark.parametrize("script, message", [
    ("uprobe:{nodw}:walk { print(args->n); }", "No debuginfo found for {nodw}"),
    ("uprobe:{p}:main { print(args->n); }", "Can't find function parameter n"),
    ("uretprobe:{p}:walk { print(args->n); }",
     "The args builtin can only be used with tracepoint/kfunc/uprobe probes (uretprobe used here)"),
    ("uprobe:{p}:walk,uprobe:{p}:take { print(args->o->id); }",
     "Probe has attach points with mixed arguments"),
])
def test_errors_are_located(prog, script, message):
    nodw = prog[:-len("dw")] + "nodw"
    script = script.replace("{p}", prog).replace("{nodw}", nodw)
    r = run("-e", script)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("stdin:1:") and "ERROR: " in first, r.stderr
    assert first.endswith(message.replace("{nodw}", nodw)), r.stderr
