"""runtime.manifest: the typed records of the .pytrace manifest (no root, no kernel)."""

import pytest

from pytrace.runtime import objfile
from pytrace.runtime.errors import ObjectFormatError
from pytrace.runtime.manifest import (MANIFEST_VERSION, AsyncAction, AttachSpec, ExitAction,
                                      FormattedAction, KprobeAttach, Manifest, PerfEventAttach,
                                      Program, RunOnceAttach, UnknownAction, UnknownAttach,
                                      UprobeAttach, UserMap)

HAND = {
    "version": 1,
    "probes": ["BEGIN", "interval:s:1", "uprobe:/bin/sh:main"],
    "programs": [
        {"symbol": "prog_0", "section": "raw_tracepoint/begin", "prog_type": 17,
         "name": "BEGIN", "attach": [{"kind": "begin"}], "span": [1, 1, 1, 6]},
        {"symbol": "prog_1", "section": "perf_event", "prog_type": 7, "name": "a",
         "attach": [{"kind": "perf_event", "type": 1, "config": 0, "period": 1000000000,
                     "freq": False, "cpus": "one", "cookie": 1}]},
        {"symbol": "prog_2", "section": "uprobe", "prog_type": 2, "name": "u",
         "attach": [{"kind": "usdt", "path": "/bin/sh", "offset": 64, "pid": -1, "cookie": 2,
                     "ref_ctr_offset": 8}]},
    ],
    "maps": [{"name": "@l", "symbol": "map_l", "kind": "lhist", "percpu": True,
              "key": {"size": 8, "fields": []}, "value_size": 8,
              "value": {"kind": "int", "signed": False},
              "lhist": {"min": 0, "max": 100, "step": 10}}],
    "internal": {"ringbuf": "ringbuf", "lost": "lost_events", "globals": "globals"},
    "globals": {"start_ns": 0, "cpid": 8},
    "async": [{"kind": "printf", "format": "%d\n",
               "args": [{"offset": 8, "type": {"kind": "int", "signed": True}}]},
              {"kind": "print_map", "map": "@l", "top": 0, "div": 0},
              {"kind": "join", "delim": ",", "max_args": 16, "arg_size": 64},
              {"kind": "exit"}],
}


def test_records_read_and_write_the_json():
    m = Manifest.from_json(HAND)
    assert m.to_json() == HAND
    assert Manifest.from_json(m.to_json()) == m
    begin, perf, usdt = (p.attach[0] for p in m.programs)
    assert isinstance(begin, RunOnceAttach) and begin.cookie == 0
    assert isinstance(perf, PerfEventAttach) and (perf.period, perf.cpus) == (10 ** 9, "one")
    assert isinstance(usdt, UprobeAttach) and usdt.ref_ctr_offset == 8 and not usdt.is_return
    assert m.maps[0].lhist.step == 10 and m.maps[0].key.fields == ()
    assert m.internal.ringbuf == "ringbuf" and m.globals.cpid == 8
    assert [type(a) for a in m.actions][-1] is ExitAction
    assert m.actions[2].max_args == 16


def test_defaults_of_missing_keys():
    m = Manifest.from_json({"programs": [{"symbol": "p", "attach": [
        {"kind": "kretprobe", "func": "vfs_read"}, {"kind": "perf_event", "type": 1}]}],
        "maps": [{"name": "@x", "kind": "count", "key": {"size": 8}}],
        "async": [{"kind": "time"}, {"kind": "print_map", "map": "@x", "top": None}],
        "internal": None})
    assert m.version == MANIFEST_VERSION and m.probes == ()
    p = m.programs[0]
    assert (p.name, p.prog_type, p.section, p.expected_attach_type) == ("p", None, "", 0)
    kr, pe = p.attach
    assert isinstance(kr, KprobeAttach) and kr.is_return and kr.offset == 0 and kr.cookie == 0
    assert (pe.config, pe.period, pe.freq, pe.cpus) == (0, 0, False, "all")
    assert m.maps[0].value == {"kind": "int", "signed": True} and m.maps[0].lhist is None
    assert m.actions[0].format == "%H:%M:%S\n" and m.actions[1].top == 0
    assert m.internal.ringbuf is None and m.globals.start_ns is None


def test_unknown_kinds_are_kept_for_who_acts_on_them():
    spec = AttachSpec.from_json({"kind": "nosuch", "cookie": 2, "x": 1})
    assert isinstance(spec, UnknownAttach) and spec.cookie == 2
    assert spec.to_json() == {"kind": "nosuch", "cookie": 2, "x": 1}
    action = AsyncAction.from_json({"kind": "nosuch", "y": 2})
    assert isinstance(action, UnknownAction) and action.to_json() == {"kind": "nosuch", "y": 2}
    assert isinstance(AsyncAction.from_json({"kind": "cat", "format": "/x"}), FormattedAction)


@pytest.mark.parametrize("version", [0, 2, "1", None, True])
def test_unknown_version_is_refused(version):
    with pytest.raises(ObjectFormatError, match="manifest version"):
        Manifest.from_json(dict(HAND, version=version))


@pytest.mark.parametrize("obj,what", [
    ([], "not a JSON object"),
    ({"programs": [{"section": "x"}]}, "program has no 'symbol'"),
    ({"maps": [{"name": "@x", "kind": "count"}]}, "map has no 'key'"),
    ({"programs": [{"symbol": "p", "attach": [{"kind": "tracepoint", "category": "a"}]}]},
     "attach entry has no 'event'"),
    ({"programs": [{"symbol": "p", "attach": [{"kind": "perf_event", "type": "x"}]}]},
     "attach entry 'type'"),
    ({"async": [{"kind": "join", "max_args": 2}]}, "async action has no 'arg_size'"),
    ({"async": [{"cookie": 1}]}, "async action has no 'kind'"),
])
def test_malformed_manifests_are_refused(obj, what):
    with pytest.raises(ObjectFormatError, match="invalid .pytrace manifest: " + what):
        Manifest.from_json(obj)


def test_records_built_in_code_serialize():
    prog = Program("prog_0", "kprobe/vfs_read", 2, attach=(KprobeAttach("kprobe", 1, "vfs_read"),))
    assert prog.to_json() == {"symbol": "prog_0", "section": "kprobe/vfs_read", "prog_type": 2,
                              "name": "prog_0", "attach": [{"kind": "kprobe", "cookie": 1,
                                                            "func": "vfs_read", "offset": 0}]}
    m = UserMap.from_json({"name": "@", "kind": "sum", "key": {"size": 8}})
    assert UserMap.from_json(m.to_json()) == m


def test_parse_refuses_an_object_of_another_version():
    pytest.importorskip("llvmlite")
    from pytrace.compiler import CompileOptions, compile_source
    st = compile_source("BEGIN { exit(); }", "stdin", CompileOptions())
    spec = objfile.parse(st.elf)
    assert spec.contract == Manifest.from_json(spec.manifest)
    other = objfile.ObjectSpec(programs=spec.programs, maps=spec.maps, data=spec.data,
                               manifest=dict(spec.manifest, version=2))
    with pytest.raises(ObjectFormatError, match="unsupported .pytrace manifest version 2"):
        objfile.parse(objfile.write(other))


SCRIPTS = [
    ('BEGIN { @c = count(); @s[comm] = sum(5); @mn = min(-1); @mx = max(2); @a = avg(3); '
     '@st = stats(4); @h = hist(5); @l = lhist(5, 0, 100, 10); @p["x", 1] = (1, "y"); '
     'printf("%d %s\\n", 1, "a"); print(@c); print(@h, 2, 3); print(5); time(); time("%Y"); '
     'clear(@s); zero(@c); exit(); } END { printf("end\\n"); }', {}),
    ('interval:ms:100 { printf("%s\\n", kstack(perf, 3)); @[ustack(2)] = count(); } '
     'profile:hz:99 { @p = count(); } software:cpu-clock:1000 { @q = count(); }', {}),
    ('tracepoint:syscalls:sys_enter_openat, tracepoint:sched:sched_switch { @[probe] = count(); } '
     'rawtracepoint:sys_enter { @r = count(); }', {}),
    ('kprobe:vfs_read, kretprobe:vfs_read { @[probe] = count(); }', {}),
    ('tracepoint:syscalls:sys_enter_execve { join(args->argv); join(args->argv, ","); }', {}),
    ('BEGIN { system("echo %d", 1); cat("/proc/%s", "version"); @x[1] = 1; delete(@x[2]); }',
     {"unsafe": True, "helper_errors": 1}),
    ('watchpoint:0x10000000:4:w { @w = count(); }', {"has_child": True}),
    ('uprobe:{workload}:add, uretprobe:{workload}:add { @[probe] = count(); }', {"pid": 1}),
]


@pytest.mark.parametrize("src,options", SCRIPTS)
def test_what_the_compiler_writes_round_trips(src, options, request):
    pytest.importorskip("llvmlite")
    if "{workload}" in src:
        src = src.replace("{workload}", request.getfixturevalue("workload"))
    from pytrace.compiler import CompileOptions, compile_source
    from pytrace.language.diagnostics import CompileError
    try:
        st = compile_source(src, "stdin", CompileOptions(**options))
    except CompileError as e:       # a probe this machine lacks (BTF, a binary)
        pytest.skip(str(e.diagnostics[0].message))
    m = Manifest.from_json(st.manifest)
    assert m.to_json() == st.manifest
    assert objfile.parse(st.elf).contract == m
