"""The Python API (docs/api.md) end to end on the real kernel: pytrace.run, pytrace.Trace,
the value shapes of maps, output and events, its errors, and what it leaves behind."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pytrace
from test_cli import NO_CAPS, PYTRACE, no_leaks  # noqa: F401  (fixture)

HERE = Path(__file__).resolve().parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")
GETPPID, WRITE = 110, 1      # x86-64 system call numbers


def open_fds() -> set:
    return {(fd, os.readlink(f"/proc/self/fd/{fd}")) for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


@pytest.fixture
def own_workload(workload, tmp_path):
    """The workload under a name (its comm) no other process on the machine has: the
    probes of a Trace without a command filter on it."""
    path = tmp_path / f"apiw{os.getpid()}"
    shutil.copy(workload, path)
    return str(path)


@pytest.fixture
def nothing_left(no_leaks):  # noqa: F811
    """No BPF object (no_leaks), fd or pytrace thread of this process is left behind."""
    before = open_fds()
    yield
    assert not [t for t in threading.enumerate() if t.name == "pytrace"]
    assert open_fds() <= before


# ------------------------------------------------------------------ no root needed

def test_import_pytrace_loads_neither_compiler_nor_runtime():
    code = ("import sys, pytrace; print(sorted(m for m in sys.modules if m.startswith('pytrace') "
            "or m.split('.')[0] in ('lark', 'llvmlite')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pytrace', 'pytrace.bytecode', 'pytrace.version']"
    code = "import pytrace; print(pytrace.run.__module__, pytrace.CompileError.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pytrace.api", "pytrace.errors"]


def test_compile_error_has_the_places_and_the_cli_text():
    program = 'BEGIN {\n  printf("%d\\n", "not a number");\n}'
    with pytest.raises(pytrace.CompileError) as info:
        pytrace.run(program)
    cli = subprocess.run(PYTRACE + ["-e", program], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1
    assert str(info.value) == cli.stderr
    first = info.value.diagnostics[0]
    assert (first.line, first.column) == (2, 3) and "printf" in first.message
    assert first.end_line == 2 and first.end_column > first.column


def test_bad_options_are_usage_errors():
    with pytest.raises(pytrace.UsageError, match="mutually exclusive"):
        pytrace.Trace("BEGIN { exit(); }", command="true", pid=1)
    with pytest.raises(pytrace.UsageError, match="process 4194000 does not exist"):
        pytrace.Trace("BEGIN { exit(); }", pid=4194000)
    with pytest.raises(ValueError):
        pytrace.Trace("BEGIN { exit(); }", duration=-1)
    with pytest.raises(RuntimeError):
        pytrace.Trace("BEGIN { exit(); }").maps()


def test_unsafe_builtins_need_unsafe():
    with pytest.raises(pytrace.CompileError, match="unsafe"):
        pytrace.run('BEGIN { system("echo hi"); exit(); }')


# ------------------------------------------------------------------ real kernel

@needs_root
def test_notebook_script(workload, no_leaks):  # noqa: F811
    """A notebook-style script using only the documented API, as a user runs it."""
    r = subprocess.run([sys.executable, str(HERE / "api_notebook.py"), workload],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)      # nothing but the script's own line on stdout
    assert got["getppid"] == 4 and got["write"] == 3
    assert got["buckets"] == [[1, 2, 3]]          # three 1-byte writes: [1, 2)
    assert got["output"] == "getppid from workload\n" * 4
    assert got["exit_code"] == 0
    assert got["error"]["where"] == [[2, 14, "syntax error, unexpected ;"]]
    assert got["error"]["text"] == ("stdin:2:14-15: ERROR: syntax error, unexpected ;\n"
                                    "BEGIN { @y = ; }\n             ~\n")
    assert r.stderr == ""


@needs_root
def test_run_with_a_command(workload, nothing_left, capfd):
    result = pytrace.run(
        "tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @[comm, args.id] = count(); @n = count(); }\n"
        "tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @one[pid] = count(); }\n"
        'END { printf("done\\n"); }',
        command=f"{workload} getppid 5 write 2 exec /bin/echo hello")
    calls = result.maps["@"]
    assert calls[("workload", GETPPID)] == 5 and calls[("workload", WRITE)] == 2
    assert list(calls.values()) == sorted(calls.values())        # as bpftrace prints it
    assert result.maps["@n"] == sum(calls.values())
    (pid, n), = result.maps["@one"].items()
    assert isinstance(pid, int) and n == 5
    assert result.output == "done\n" and result.exit_code == 0
    assert result.command_output == ""           # (exec sends echo's to /dev/null)
    assert capfd.readouterr().out == ""          # nothing printed to the caller's stdout


@needs_root
def test_the_command_output_is_kept(nothing_left, capfd):
    result = pytrace.run("BEGIN { }", command="/bin/echo hello there")
    assert result.command_output == "hello there\n"
    assert capfd.readouterr().out == ""


@needs_root
def test_value_shapes(nothing_left):
    result = pytrace.run(
        'BEGIN { @c = count(); @s = sum(-5); @mn = min(3); @mx = max(9); @a = avg(7); @a = avg(2);'
        ' @st = stats(10); @h = hist(0); @h = hist(1); @h = hist(100); @h = hist(-1);'
        ' @l = lhist(15, 0, 30, 10); @l = lhist(45, 0, 30, 10);'
        ' @t = (1, "two"); @str = "text"; @k[1, "a", (2, 3)] = 4; @hk["x"] = hist(5);'
        ' @stack = kstack; @ks[kstack] = count(); exit(); }')
    m = result.maps
    assert (m["@c"], m["@s"], m["@mn"], m["@mx"]) == (1, -5, 3, 9)
    assert m["@a"] == pytrace.Stats(count=2, total=9, average=4)
    assert (m["@st"].count, m["@st"].total, m["@st"].average) == (1, 10, 10)
    assert m["@h"] == [pytrace.Bucket(None, 0, 1), pytrace.Bucket(0, 1, 1), pytrace.Bucket(1, 2, 1)] \
        + [pytrace.Bucket(1 << i, 2 << i, 0) for i in range(1, 6)] + [pytrace.Bucket(64, 128, 1)]
    assert [(b.low, b.high, b.count) for b in m["@l"]] == [(10, 20, 1), (20, 30, 0), (30, None, 1)]
    assert m["@t"] == (1, "two") and m["@str"] == "text"
    assert m["@k"] == {(1, "a", (2, 3)): 4}
    assert m["@hk"] == {"x": [pytrace.Bucket(4, 8, 1)]}
    assert isinstance(m["@stack"], list) and all(isinstance(f, str) for f in m["@stack"])
    assert any("BEGIN" in f for f in m["@stack"])
    (key, n), = m["@ks"].items()
    # (BEGIN's offset differs.) The two stacks go to one STACK_TRACE map without
    # BPF_F_REUSE_STACKID, as bpftrace's do: when the kernel puts them in the same
    # bucket, the second bpf_get_stackid() gets -EEXIST and its stack prints empty,
    # which this 6.18 kernel did in ~1 run of 10 of this program.
    assert n == 1 and (key == () or key[1:] == tuple(m["@stack"][1:]))


@needs_root
def test_duration_ends_the_run(nothing_left):
    start = time.monotonic()
    result = pytrace.run("tracepoint:syscalls:sys_enter_getppid { @ = count(); }\n"
                         'END { printf("end\\n"); }', duration=0.5)
    took = time.monotonic() - start
    assert 0.5 <= took < 10
    assert result.output == "end\n" and isinstance(result.maps["@"], int)


@needs_root
def test_pid_exiting_ends_the_run(nothing_left):
    sleeper = subprocess.Popen(["sleep", "0.5"])
    try:
        result = pytrace.run('tracepoint:syscalls:sys_enter_getppid { @ = count(); }\n'
                             'END { printf("pid gone\\n"); }', pid=sleeper.pid)
    finally:
        sleeper.wait()
    assert result.output == "pid gone\n"


@needs_root
def test_trace_maps_while_running_events_and_stop(own_workload, nothing_left):
    workload = own_workload
    name = os.path.basename(workload)
    program = ('tracepoint:syscalls:sys_enter_getppid /comm == str($1)/ {'
               ' @[comm] = count(); printf("call\\n"); }\n'
               'END { printf("end\\n"); }')
    with pytrace.Trace(program, params=[name]) as t:
        assert t.running and t.maps() == {"@": {}}
        subprocess.run([workload, "getppid", "3"], check=True)
        events = t.events()
        got = [next(events) for _ in range(3)]
        assert got == ["call\n"] * 3          # one item per printed record
        assert t.maps() == {"@": {name: 3}}
        subprocess.run([workload, "getppid", "2"], check=True)
        time.sleep(0.2)
        assert t.maps() == {"@": {name: 5}}
    result = t.result
    assert not t.running and result is t.stop()       # stopping an ended trace: the same
    assert result.maps == {"@": {name: 5}} == t.maps()
    assert result.output == "call\n" * 5 + "end\n" == t.output
    assert list(events) == ["call\n", "call\n", "end\n"]
    assert list(t.events()) == []                # the trace has ended


@needs_root
def test_trace_that_exits_by_itself(nothing_left):
    t = pytrace.Trace('interval:ms:50 { @i++; printf("tick %d\\n", @i); if (@i == 3) { exit(); } }')
    t.start()
    assert [e for e in t.events()] == ["tick 1\n", "tick 2\n", "tick 3\n"]
    result = t.wait(timeout=10)
    assert result.maps == {"@i": 3} and result.output == "tick 1\ntick 2\ntick 3\n"


@needs_root
def test_maps_of_100k_keys_are_cheap_to_read(own_workload, nothing_left, monkeypatch):
    monkeypatch.setenv("BPFTRACE_MAP_KEYS_MAX", "200000")
    with pytrace.Trace('tracepoint:syscalls:sys_enter_getppid /comm == str($1)/ {'
                       ' @[nsecs] = count(); @n = count(); }',
                       params=[os.path.basename(own_workload)]) as t:
        subprocess.run([own_workload, "getppid", "100000"], check=True)
        start = time.thread_time()      # CPU time: other tests' load does not count
        snap = t.maps()
        took = time.thread_time() - start
    assert len(snap["@"]) == snap["@n"] >= 100000 - 100     # (a few lost to the map's races)
    assert took < 0.9, f"maps() of a 100k-key map took {took:.2f} s"


@needs_root
def test_unsafe_allows_system(nothing_left):
    result = pytrace.run('BEGIN { system("echo hi from sh"); exit(); }', unsafe=True)
    assert result.output == "hi from sh\n"


@needs_root
def test_load_and_attach_errors(nothing_left):
    with pytest.raises(pytrace.LoadError) as info:
        pytrace.run("BEGIN { while (1) { } }")
    assert str(info.value).startswith("stdin:1:1-6: ERROR: Error loading program: BEGIN")
    assert isinstance(info.value, pytrace.TraceError)
    with pytest.raises(pytrace.TraceError) as info:
        pytrace.run("hardware:cycles:100000 { @ = count(); }")
    cli = subprocess.run(PYTRACE + ["-e", "hardware:cycles:100000 { @ = count(); }"],
                         capture_output=True, text=True, timeout=60)
    assert str(info.value) == cli.stderr and info.value.status == cli.returncode


@needs_root
def test_missing_privilege_is_a_permission_error(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import pytrace\n"
                      "try:\n"
                      "    pytrace.run('BEGIN { exit(); }')\n"
                      "except PermissionError as e:\n"
                      "    print(type(e).__name__, isinstance(e, pytrace.TraceError), repr(str(e)))\n")
    r = subprocess.run(NO_CAPS + [sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.startswith("PrivilegeError True 'ERROR: "), r.stdout + r.stderr
    assert "root" in r.stdout


@needs_root
def test_a_running_trace_is_stopped_when_python_exits(tmp_path, no_leaks):  # noqa: F811
    script = tmp_path / "s.py"
    script.write_text("import pytrace\n"
                      "t = pytrace.Trace('tracepoint:syscalls:sys_enter_getppid { @ = count(); }"
                      " END { printf(\"end\\\\n\"); }')\n"
                      "t.start()\n"
                      "print('started', flush=True)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "started\n" and r.stderr == ""


@needs_root
def test_ctrl_c_ends_run_with_its_result(tmp_path, no_leaks):  # noqa: F811
    """run() of a program that never ends by itself returns its result on Ctrl-C."""
    marker = tmp_path / "attached"
    command = tmp_path / "cmd.sh"           # started once every probe is attached
    command.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 60\n")
    command.chmod(0o755)
    script = tmp_path / "s.py"
    script.write_text("import pytrace\n"
                      f"r = pytrace.run('interval:ms:10 {{ @ticks = count(); }} END {{ printf(\"end\\\\n\"); }}',"
                      f" command={str(command)!r})\n"
                      "print(repr(r.output), r.maps['@ticks'] > 0)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "'end\\n' True\n" and err == ""


@needs_root
def test_an_exception_in_the_with_body_tears_the_trace_down(nothing_left):
    with pytest.raises(ZeroDivisionError):
        with pytrace.Trace("tracepoint:syscalls:sys_enter_getppid { @ = count(); }") as t:
            1 / 0
    assert not t.running and t.result is not None


@needs_root
def test_params(nothing_left):
    result = pytrace.run('BEGIN { printf("%s %d\\n", str($1), $2 + 1); exit(); }', params=("x", 5))
    assert result.output == "x 6\n"
