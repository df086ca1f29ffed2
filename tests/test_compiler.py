"""Compiler tests without root: passes, type errors, and properties of the emitted object."""
import json

import pytest

from pytrace.language import ast
from pytrace.compiler import CompileOptions, compile_source
from pytrace.language.diagnostics import CompileError, render
from pytrace.runtime import objfile


def compile_ok(src, **kw):
    return compile_source(src, "stdin", CompileOptions(**kw))


def compile_error(src, **kw):
    with pytest.raises(CompileError) as exc:
        compile_source(src, "stdin", CompileOptions(**kw))
    d = exc.value.diagnostics[0]
    return render(d, src, "stdin").splitlines()[0]


# ------------------------------------------------------------------ passes

def test_filter_becomes_if():
    st = compile_source("BEGIN /1/ { exit(); }", "stdin", CompileOptions(dump_after="desugar", dump=lambda s: None))
    probe = st.program.probes[0]
    assert probe.predicate is None
    assert isinstance(probe.body[0], ast.If)


def test_positional_params_become_literals():
    st = compile_source('BEGIN { printf("%d %s %d\\n", $1, str($2), $#); }', "stdin",
                        CompileOptions(params=["0x10", "abc"], dump_after="desugar", dump=lambda s: None))
    call = st.program.probes[0].body[0].expr
    assert isinstance(call.args[1], ast.Integer) and call.args[1].value == 16
    assert isinstance(call.args[2], ast.String) and call.args[2].value == b"abc"
    assert call.args[3].value == 2


def test_positional_non_numeric_error():
    line = compile_error('BEGIN { printf("%d\\n", $1); }', params=["abc"])
    assert 'ERROR: $1 used numerically but given "abc". Try using str($1).' in line


def test_typecheck_map_types():
    st = compile_ok('BEGIN { @a[comm, 1] = count(); @s = "x"; @s = "longer"; @t = (1, "a"); }')
    maps = st.maps
    assert maps["@a"].kind == "count"
    assert str(maps["@s"].value) == "string[7]"
    assert maps["@t"].value.size == 16


def test_map_read_before_assignment_in_other_probe():
    compile_ok('END { printf("%d\\n", @x); } BEGIN { @x = 1; }')


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("src,expected", [
    ("BEGIN { @x = 1; @x = \"a\"; }",
     "stdin:1:17-19: ERROR: Type mismatch for @x: trying to assign value of type 'string[2]' "
     "when map already contains a value of type 'int64"),
    ("BEGIN { @x = $y; }", "stdin:1:14-16: ERROR: Undefined or undeclared variable: $y"),
    ("BEGIN { nosuch(1); }", "stdin:1:9-15: ERROR: Unknown function: nosuch"),
    ("BEGIN { @x = count(1); }", "stdin:1:14-22: ERROR: count() requires no arguments (1 provided)"),
    ("BEGIN { printf(\"%s\\n\", 1); }",
     "stdin:1:9-26: ERROR: printf: %s specifier expects a value of type string (integer supplied)"),
    ("BEGIN { @l = lhist(1, 0, 10, 0); }", "stdin:1:14-32: ERROR: lhist() step must be >= 1 (0 provided)"),
    ("BEGIN { printf(\"%d\\n\", cpid); }", "stdin:1:24-28: ERROR: cpid cannot be used without child command"),
    ("BEGIN { count(); }", "stdin:1:9-16: ERROR: count() should be directly assigned to a map"),
    ("BEGIN { break; }", "stdin:1:9-14: ERROR: break used outside of a loop"),
    ("BEGIN { $x = (1, 2); printf(\"%d\\n\", $x.5); }",
     "stdin:1:37-41: ERROR: Invalid tuple index: 5. Found 2 elements in tuple."),
    ("BEGIN { @x[1] = 1; @x = 2; }",
     "stdin:1:20-22: ERROR: Argument mismatch for @x: trying to access with arguments: [] when map "
     "expects arguments: [unsigned int64]"),
    ("BEGIN { if (\"a\") { exit(); } }", "stdin:1:13-16: ERROR: Invalid condition in if(): string"),
    ("interval:s:1 { printf(\"%d\\n\", args->x); }",
     "stdin:1:31-35: ERROR: The args builtin can only be used with tracepoint/kfunc/uprobe probes "
     "(interval used here)"),
    ("interval:xs:1 { exit(); }", "stdin:1:1-14: ERROR: xs is not an accepted unit of time"),
    ("BEGIN { exit(); } BEGIN { exit(); }", "stdin:1:19-24: ERROR: More than one BEGIN probe defined"),
])
def test_error_messages(src, expected):
    assert compile_error(src) == expected


# ------------------------------------------------------------------ object file

def test_object_sections_relocations_manifest():
    st = compile_ok('BEGIN { @c = count(); @h[comm] = hist(5); printf("%s %d\\n", comm, 5); exit(); }')
    spec = objfile.parse(st.elf)
    manifest = spec.manifest
    assert manifest == json.loads(json.dumps(st.manifest))
    prog = manifest["programs"][0]
    assert prog["prog_type"] == 17 and prog["attach"] == [{"kind": "begin"}]
    names = {m["name"]: m for m in manifest["maps"]}
    assert names["@c"]["kind"] == "count" and names["@c"]["key"]["fields"] == []
    assert names["@h"]["key"]["fields"] == [{"offset": 0, "type": {"kind": "str", "size": 16},
                                             "name": "comm"}]
    kinds = [a["kind"] for a in manifest["async"]]
    assert kinds == ["printf", "exit"]
    assert manifest["async"][0]["args"] == [
        {"offset": 8, "type": {"kind": "str", "size": 16}},
        {"offset": 24, "type": {"kind": "int", "signed": True}}]
    assert spec.license == "GPL"
    relocated = {r.map_symbol for p in spec.programs.values() for r in p.relocations}
    assert {"ringbuf", names["@c"]["symbol"], names["@h"]["symbol"]} <= relocated



def test_key_field_names_are_the_builtins_every_access_uses():
    """--metrics labels: a key part is named after its builtin variable when every access
    to the map has that builtin there (not an enum constant, not another expression)."""
    st = compile_ok('enum E { A = 1 }; BEGIN { @a[comm, pid, 5, A] = count(); '
                    '@b[tid, cpu] = sum(1); @b[pid, cpu] = sum(2); @c[probe] = 1; $x = @c[probe]; }')
    names = {m["name"]: [f.get("name") for f in m["key"]["fields"]] for m in st.manifest["maps"]}
    assert names == {"@a": ["comm", "pid", None, None], "@b": [None, "cpu"], "@c": ["probe"]}

def test_wildcard_probes_share_one_program():
    st = compile_ok("tracepoint:sched:sched_process_fo* , t:sched:sched_process_exit { @[probe] = count(); }")
    progs = st.manifest["programs"]
    assert len(progs) == 1
    assert [a["event"] for a in progs[0]["attach"]] == ["sched_process_fork", "sched_process_exit"]
    assert [a["cookie"] for a in progs[0]["attach"]] == [0, 1]
    assert st.manifest["probes"] == ["tracepoint:sched:sched_process_fork",
                                     "tracepoint:sched:sched_process_exit"]


def test_syscall_tracepoints_use_one_raw_tracepoint_attach():
    st = compile_ok("tracepoint:syscalls:sys_enter_getpp* , t:syscalls:sys_enter_getpid, "
                    "t:syscalls:sys_exit_getpid { @[probe] = count(); }")
    progs = st.manifest["programs"]
    assert [p["attach"] for p in progs] == [
        [{"kind": "raw_tracepoint", "name": "sys_enter", "cookie": 0}],
        [{"kind": "raw_tracepoint", "name": "sys_exit", "cookie": 2}]]
    assert st.manifest["probes"] == ["tracepoint:syscalls:sys_enter_getppid",
                                     "tracepoint:syscalls:sys_enter_getpid",
                                     "tracepoint:syscalls:sys_exit_getpid"]
    assert all(p["prog_type"] == 17 for p in progs)


def test_syscall_table_covers_every_syscall_event():
    from pytrace.providers.syscalls import syscall_number
    from pytrace.providers.tracepoint import all_events
    events = [e for c, e in all_events() if c == "syscalls"]
    assert len(events) > 300
    assert [e for e in events if syscall_number(e) is None] == []
    assert syscall_number("sys_enter_getppid") == 110 and syscall_number("sys_exit_newstat") == 4


def test_args_probes_get_one_program_per_event():
    st = compile_ok("tracepoint:syscalls:sys_enter_read, tracepoint:syscalls:sys_enter_write "
                    "{ @[probe] = sum(args->count); }")
    assert len(st.manifest["programs"]) == 2


def test_no_rodata_for_string_constants():
    st = compile_ok('BEGIN { @s = "a fairly long constant string value"; '
                    'if (comm == "bash") { printf("%s\\n", "x"); } }')
    spec = objfile.parse(st.elf)
    assert not spec.rodata          # (the only global data: .data's map-full counters)
    assert all(r.map_symbol in spec.maps or r.map_symbol == objfile.DATA_SECTION
               for p in spec.programs.values() for r in p.relocations)


def test_dump_after_prints_ast():
    out = []
    compile_source("BEGIN { @x = 1 + 2; }", "stdin", CompileOptions(dump_after="parse", dump=out.append))
    assert "Program" in out[0] and "Binary op='+'" in out[0]


def test_provider_module_table_matches_registrations():
    from pytrace import providers
    providers.all_providers()
    assert set(providers._PROVIDERS) == set(providers.MODULES)
    for name, provider in providers._PROVIDERS.items():
        assert provider.__module__.rsplit(".", 1)[1] == providers.MODULES[name]


@pytest.mark.parametrize("fmt, n, args", [("%ls %d", 1, "1"), ("%5%d", 0, ""), ("%%d %hhx", 1, "1"),
                                          ("%-5.2s%rx", 2, '"ab", buf("x", 1)')])
def test_printf_arguments_are_counted_with_the_runtime_grammar(fmt, n, args):
    from pytrace.runtime.printf_grammar import count_specifiers
    assert count_specifiers(fmt) == n
    src = f'BEGIN {{ printf("{fmt}"{", " + args if args else ""}); }}'
    compile_ok(src)
    too_many = compile_error(src.replace("); }", ", 1); }"))
    assert f"Too many arguments for format string ({n + 1} supplied, {n} expected)" in too_many
