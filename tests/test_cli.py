"""The CLI end to end on the real kernel: run modes, signals, errors, teardown."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytrace.runtime import syscall

ROOT = Path(__file__).resolve().parent.parent
PYTRACE = [sys.executable, "-m", "pytrace.cli"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")


def run(args, input=None, timeout=30, **kw):
    return subprocess.run(PYTRACE + args, input=input, capture_output=True, text=True,
                          timeout=timeout, **kw)


PYTRACE_MAPS = {"globals", "lost_events", "ringbuf"}   # every pytrace object has these


def _map_name(map_id):
    try:
        fd = syscall.map_get_fd_by_id(map_id)
    except OSError:
        return None
    try:
        return syscall.map_info(fd)["name"]
    finally:
        syscall.close(fd)


def bpf_ids():
    """The ids of pytrace's maps loaded in the kernel now (other tools may run beside us),
    and of every program."""
    maps = {i for i in syscall.map_ids() if _map_name(i) in PYTRACE_MAPS}
    return set(syscall.prog_ids()), maps


@pytest.fixture
def no_leaks():
    before_progs, before_maps = bpf_ids()
    yield
    # the kernel frees closed objects asynchronously (RCU): allow it a moment
    deadline = time.monotonic() + 5
    while True:
        after_progs, after_maps = bpf_ids()
        if after_maps <= before_maps or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after_maps <= before_maps, "pytrace BPF objects left loaded"


# root without any capability: what an unprivileged user gets from the kernel
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


# ------------------------------------------------------------------ no root needed

def test_buffering_mode_is_checked():
    r = run(["-B", "bogus", "-e", "BEGIN { exit(); }"])
    assert r.returncode == 1
    assert r.stderr == "ERROR: USAGE: -B must be either 'line', 'full', or 'none'.\n"


def test_version_and_help():
    r = run(["-V"])
    assert r.returncode == 0 and r.stdout.startswith("pytrace v")
    r = run(["-h"])
    assert r.returncode == 0 and "USAGE" in r.stdout and "-e 'program'" in r.stdout


def test_no_program_is_an_error():
    r = run([])
    assert r.returncode == 1 and r.stderr.startswith("ERROR: No program specified")


def test_missing_script_file():
    r = run(["/nonexistent/x.pt"])
    assert r.returncode == 255 and "ERROR: failed to open file '/nonexistent/x.pt'" in r.stderr


def test_emit_elf_without_root(tmp_path):
    out = tmp_path / "prog.o"
    r = subprocess.run(NO_CAPS + PYTRACE + ["--emit-elf", str(out), "-e", 'BEGIN { printf("hi\\n"); exit(); }'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"\x7fELF"


def test_missing_privilege_is_a_clear_error():
    r = subprocess.run(NO_CAPS + PYTRACE + ["-e", "BEGIN { exit(); }"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("ERROR: ") and "root" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""


def test_dump_after_parse():
    r = run(["--dump-after", "parse", "-e", "BEGIN { @x = 1 + 2 * 3; }"])
    assert r.returncode == 0
    assert "Binary op='+'" in r.stdout and "Binary op='*'" in r.stdout


def test_dump_ir():
    r = run(["-d", "-e", "BEGIN { @x = 1; }"])
    assert r.returncode == 0 and 'target triple = "bpfel"' in r.stdout


def test_syntax_error_from_script_file(tmp_path):
    script = tmp_path / "bad.pt"
    script.write_text("BEGIN {\n  @x = ;\n}\n")
    r = run([str(script)])
    assert r.returncode == 1
    assert r.stderr == f"{script}:2:8-9: ERROR: syntax error, unexpected ;\n  @x = ;\n       ~\n"


def test_sample_scripts_compile(tmp_path):
    for script in sorted((ROOT / "scripts").glob("*.pt")):
        r = run(["--emit-elf", str(tmp_path / "x.o"), str(script)])
        assert r.returncode == 0, f"{script.name}: {r.stderr}"


# ------------------------------------------------------------------ real kernel

@needs_root
def test_program_from_stdin(no_leaks):
    r = run(["-"], input='BEGIN { printf("from stdin %d\\n", 1 + 1); exit(); }')
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 1 probe...\nfrom stdin 2\n\n\n"


@needs_root
def test_script_file_with_positional_params(no_leaks, tmp_path):
    script = tmp_path / "p.pt"
    script.write_text('#!/usr/bin/env pytrace\nBEGIN { printf("%d %s %d\\n", $1, str($2), $#); exit(); }\n')
    r = run([str(script), "41", "abc"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 1 probe...\n41 abc 2\n\n\n"


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_trace_and_prints_maps(no_leaks, sig):
    p = subprocess.Popen(PYTRACE + ["-e", "interval:ms:10 { @ticks = count(); } END { printf(\"end\\n\"); }"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "Attaching 2 probes...\n"
    time.sleep(0.3)
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["end", "", ""]
    assert lines[3].startswith("@ticks: ") and int(lines[3].split()[1]) >= 5


@needs_root
def test_pid_exit_ends_the_trace(no_leaks):
    sleeper = subprocess.Popen(["sleep", "0.5"])
    try:
        start = time.monotonic()
        r = run(["-p", str(sleeper.pid), "-e", "interval:ms:10 { @ = count(); }"])
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - start < 5
        assert r.stdout.startswith("Attaching 1 probe...\n\n\n@: ")
    finally:
        sleeper.wait()


@needs_root
def test_child_starts_after_probes_attach(no_leaks):
    # the child's very first syscalls after exec must be seen
    r = run(["-c", "/bin/true", "-e",
             "tracepoint:syscalls:sys_enter_execve /pid == cpid/ { @execs = count(); }"
             "tracepoint:syscalls:sys_enter_exit_group /pid == cpid/ { @exits = count(); }"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 2 probes...\n\n\n@execs: 1\n@exits: 1\n"


@needs_root
def test_output_file(no_leaks, tmp_path):
    out = tmp_path / "out.txt"
    r = run(["-o", str(out), "-e", 'BEGIN { printf("to file\\n"); @x = 1; exit(); }'])
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "Attaching 1 probe...\nto file\n\n\n@x: 1\n"
    assert r.stdout == ""


@needs_root
def test_json_output(no_leaks):
    r = run(["-f", "json", "-e", 'BEGIN { printf("hi\\n"); @c = count(); exit(); }'])
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l]
    assert lines == ['{"type": "attached_probes", "data": {"probes": 1}}',
                     '{"type": "printf", "data": "hi\\n"}',
                     '{"type": "map", "data": {"@c": 1}}']


@needs_root
def test_listing():
    r = run(["-l", "tracepoint:syscalls:sys_enter_openat*"])
    assert r.stdout.splitlines() == ["tracepoint:syscalls:sys_enter_openat",
                                     "tracepoint:syscalls:sys_enter_openat2"]
    r = run(["-lv", "t:syscalls:sys_enter_openat"])
    assert r.stdout.splitlines() == ["tracepoint:syscalls:sys_enter_openat", "    int __syscall_nr",
                                     "    int dfd", "    const char * filename", "    int flags",
                                     "    umode_t mode"]
    r = run(["-l", "*sched_switch*"])
    assert "tracepoint:sched:sched_switch" in r.stdout.splitlines()


@needs_root
def test_verifier_rejection_is_reported(no_leaks):
    r = run(["-e", "BEGIN { while (1) { } }"])
    assert r.returncode == 1
    first = r.stderr.splitlines()[0]
    assert first == "stdin:1:1-6: ERROR: Error loading program: BEGIN (try -v)", \
        r.stderr
    assert "Traceback" not in r.stderr
    r = run(["-v", "-e", "BEGIN { while (1) { } }"])      # -v: the verifier's log first
    assert r.returncode == 1 and "infinite loop detected" in r.stderr, r.stderr


def test_llvm_fatal_error_is_a_diagnostic():
    # LLVM's BPF backend prints the stack-limit error and exit()s: the compile worker
    # contains it, and the message points at the probe whose program is too big.
    strs = "; ".join(f"$s{i} = str({i})" for i in range(9))
    uses = ", ".join(f"$s{i}" for i in range(9))
    program = ('BEGIN { exit(); } tracepoint:syscalls:sys_enter_getppid { '
               + strs + '; printf("' + "%s" * 9 + '\\n", ' + uses + "); }")
    r = run(["-e", program], env=dict(os.environ, PYTRACE_NO_CACHE="1"))
    assert r.returncode == 1
    assert r.stderr.startswith("stdin:1:19-"), r.stderr
    assert ": ERROR: LLVM could not compile the program: the program needs more than " \
        "the 512 bytes of BPF stack" in r.stderr.splitlines()[0]
    assert len(r.stderr.splitlines()) == 3, r.stderr      # message, source line, caret
    assert "Traceback" not in r.stderr


@needs_root
def test_missing_hardware_pmu_is_a_clear_error(no_leaks):
    r = run(["-e", "hardware:cycles:100000 { @ = count(); }"])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("stdin:1:1-23: ERROR: "), r.stderr
    assert "hardware" in r.stderr.lower() or "pmu" in r.stderr.lower()


@needs_root
def test_helper_errors_k_and_kk(no_leaks):
    env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX="1", PYTRACE_NO_CACHE="1")
    program = 'BEGIN { @[1] = count(); @[2] = count(); printf("[%s]\\n", str(0)); exit(); }'

    def warnings(*flags):
        r = run([*flags, "-e", program], env=env)
        assert r.returncode == 0, r.stderr
        assert "@[1]: 1" in r.stdout and "[]" in r.stdout
        return [line for line in r.stdout.splitlines() if "WARNING" in line]

    full = "stdin:1:32-39: WARNING: Failed to map_update_elem: Argument list too long (-7)"
    assert warnings() == []
    assert warnings("-k") == [full]
    kk = warnings("-kk")
    assert kk[0] == full and len(kk) == 2
    assert kk[1].startswith("stdin:1:58-64: WARNING: Failed to probe_read_str: ")
    # -kk: reading a key the map does not have (other.runtime_error_check_lookup)
    r = run(["-kk", "-e", 'i:ms:100 { @[1] = 1; printf("%d\\n", @[2]); exit(); }'], env=env)
    assert r.stdout.startswith("Attaching 1 probe...\nstdin:1:37-41: WARNING: Failed to "
                               "map_lookup_elem: 0\n"), r.stdout


@needs_root
def test_a_pointer_without_address_space_reads_with_the_legacy_helper(no_leaks):
    # 0.17: a cast of an integer in BEGIN (profile, interval, software, watchpoint)
    # has no address space and is read with bpf_probe_read, which on x86-64 reads
    # user memory below TASK_SIZE: address 0 fails with EFAULT, not the kernel
    # read's ERANGE (json-output.helper_error, located from the outer `(`)
    r = run(["-kk", "-q", "-f", "json", "-e",
             "struct foo {int a;}; BEGIN { $tmp = ((struct foo*) 0)->a; exit(); }"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == ('{"type": "helper_error", "helper": "probe_read", '
                                        '"retcode": -14, "line": 1, "col": 37}')


@needs_root
def test_debugf_writes_to_the_kernel_trace_buffer(no_leaks):
    marker = f"pytrace-debugf-{os.getpid()}-{time.monotonic_ns()}"
    r = run(["-e", f'BEGIN {{ debugf("{marker} %d\\n", 42); exit(); }}'])
    assert r.returncode == 0, r.stderr
    assert "WARNING: The debugf() builtin is not recommended" in r.stderr
    with open("/sys/kernel/tracing/trace", errors="replace") as f:
        assert f"{marker} 42" in f.read()


@needs_root
def test_a_program_compiled_in_two_halves_runs(workload, no_leaks):
    # 40 programs: enough IR (> codegen.emit.SPLIT_BYTES) for two LLVM workers
    probes = "".join(
        f"tracepoint:syscalls:sys_enter_getppid /pid == cpid/ {{ @a{i}[comm] = count(); "
        f"@b{i} = hist(nsecs & {i}); if (pid > {i}) {{ @c[{i}] = sum({i}); }} }}\n"
        for i in range(40))
    from pytrace.codegen.emit import split_functions
    from pytrace.compiler import CompileOptions, compile_source
    ir = compile_source(probes, "stdin", CompileOptions(has_child=True)).llvm_ir
    assert split_functions(ir) is not None
    r = run(["-c", f"{workload} getppid 3", "-e", probes],
            env=dict(os.environ, PYTRACE_NO_CACHE="1"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Attaching 40 probes..."
    assert all(f"@a{i}[workload]: 3" in lines for i in range(40))
    assert all(f"@c[{i}]: {3 * i}" in lines for i in range(40))


IA32_PROGRAM = r"""
/* ia32 system calls without libc: 3 x getppid (ia32 number 64, x86-64's semget), exit */
static int sys0(int nr) { int r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr) : "memory"); return r; }
void _start(void) { for (int i = 0; i < 3; i++) sys0(64); __asm__ volatile("int $0x80" :: "a"(1), "b"(0)); }
"""


@needs_root
def test_ia32_system_calls_are_not_traced(tmp_path, no_leaks):
    # like the syscalls:* tracepoints, which ignore compat system calls; the raw
    # sys_enter/sys_exit ones see them with their ia32 numbers
    src, binary = tmp_path / "ia32.c", tmp_path / "ia32"
    src.write_text(IA32_PROGRAM)
    built = subprocess.run(["gcc", "-m32", "-nostdlib", "-static", "-O1", "-o", str(binary),
                            str(src)], capture_output=True)
    if built.returncode != 0:
        pytest.skip("gcc can not build a 32-bit program here")
    probes = ("tracepoint:syscalls:sys_enter_semget /pid == cpid/ { @semget = count(); } "
              "tracepoint:syscalls:sys_exit_semget /pid == cpid/ { @semget_exit = count(); } "
              "tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @getppid = count(); }")
    r = run(["-c", str(binary), "-e", probes])
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("@getppid: 0\n@semget: 0\n@semget_exit: 0\n"), r.stdout


@needs_root
def test_many_tracepoints_attach_and_detach(no_leaks):
    start = time.monotonic()
    r = run(["-c", "/bin/true", "-e",
             "tracepoint:syscalls:sys_enter_* /pid == cpid/ { @[probe] = count(); }"], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "@[tracepoint:syscalls:sys_enter_execve]: 1\n" in r.stdout
    assert r.stdout.startswith("Attaching ")
    print(f"wildcard run took {time.monotonic() - start:.1f}s")


@needs_root
def test_time_and_runtime_builtins(no_leaks):
    year = time.strftime("%Y")
    r = run(["-e", 'begin { time("%Y\\n"); '
             'printf("%d %d %d %d\\n", rand >= 0, cgroup > 0, curtask > 0, elapsed >= 0); '
             '@u[username] = count(); exit(); } end { printf("end\\n"); }'])
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Attaching 2 probes...\n{year}\n1 1 1 1\nend\n\n\n@u[root]: 1\n"


@needs_root
def test_software_event_probe(no_leaks):
    r = run(["-c", "/bin/true", "-e", "software:page-faults:1 /pid == cpid/ { @faults = 1; }"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 1 probe...\n\n\n@faults: 1\n"


@needs_root
def test_interval_units(no_leaks):
    r = run(["-e", "interval:us:100000 { @us = count(); } interval:hz:20 { @hz = count(); } "
                   "interval:ms:450 { exit(); }"])
    assert r.returncode == 0, r.stderr
    counts = dict(line.split(": ") for line in r.stdout.splitlines() if line.startswith("@"))
    assert 3 <= int(counts["@us"]) <= 5 and 7 <= int(counts["@hz"]) <= 10, r.stdout


@needs_root
def test_lost_events_are_counted_and_reported(no_leaks):
    # a 1-page ring buffer per CPU cannot hold 400 records written at once by BEGIN
    r = run(["-e", 'BEGIN { unroll(100) { printf("%s %s %s %s\\n", comm, comm, comm, comm); } '
                   'unroll(100) { printf("%s %s %s %s\\n", comm, comm, comm, comm); } '
                   'unroll(100) { printf("%s %s %s %s\\n", comm, comm, comm, comm); } '
                   'unroll(100) { printf("%s %s %s %s\\n", comm, comm, comm, comm); } exit(); }'],
            env={**os.environ, "BPFTRACE_PERF_RB_PAGES": "1"})
    assert r.returncode == 0, r.stderr
    lost = [l for l in r.stdout.splitlines() if l.startswith("Lost ")]
    printed = [l for l in r.stdout.splitlines() if l == "pytrace pytrace pytrace pytrace"]
    assert lost and int(lost[0].split()[1]) + len(printed) == 400, r.stdout[-300:]


@needs_root
def test_tracefs_is_mounted_when_missing(no_leaks):
    # pytrace uses whichever tracefs is mounted, and debugfs (mounted by other tools,
    # e.g. the conformance runner) brings one back at debug/tracing on access: all go,
    # as on a fresh machine; debugfs is mounted again afterwards
    debugfs = subprocess.run(["mountpoint", "-q", "/sys/kernel/debug"]).returncode == 0
    for where in ("/sys/kernel/debug/tracing", "/sys/kernel/debug", "/sys/kernel/tracing"):
        mounted = subprocess.run(["mountpoint", "-q", where]).returncode == 0
        if mounted and subprocess.run(["umount", where]).returncode != 0:
            pytest.skip(f"{where} is busy: cannot unmount it to test mounting")
    try:
        r = run(["-c", "/bin/true", "-e",
                 "tracepoint:sched:sched_process_exec /pid == cpid/ { @ = count(); }"])
    finally:
        if debugfs:
            subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"])
    assert subprocess.run(["mountpoint", "-q", "/sys/kernel/tracing"]).returncode == 0
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 1 probe...\n\n\n@: 1\n"


@needs_root
def test_emitted_object_runs_later(no_leaks, tmp_path):
    obj = tmp_path / "prog.o"
    r = run(["--emit-elf", str(obj), "-e", 'BEGIN { printf("from object %d\\n", 6 * 7); @n = 1; exit(); }'])
    assert r.returncode == 0, r.stderr
    r = run([str(obj)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 1 probe...\nfrom object 42\n\n\n@n: 1\n"


@needs_root
def test_sample_script_opensnoop(no_leaks):
    r = run([str(ROOT / "scripts" / "opensnoop.pt"), "-c", "cat /etc/hostname"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["Attaching 6 probes...", "Tracing open syscalls... Hit Ctrl-C to end.",
                         "PID    COMM               FD ERR PATH"]
    assert any(l.split()[1:] == ["cat", "3", "0", "/etc/hostname"] for l in lines), r.stdout


@needs_root
def test_one_liner_counts_opens_until_ctrl_c(no_leaks):
    p = subprocess.Popen(PYTRACE + ["-e", "tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "Attaching 1 probe...\n"
    for _ in range(3):
        subprocess.run(["cat", "/etc/hostname"], capture_output=True)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert out.startswith("\n\n@[")
    counts = {l.split(": ")[0]: int(l.split(": ")[1]) for l in out.splitlines() if l.startswith("@[")}
    assert counts["@[cat]"] >= 3
    assert list(counts.values()) == sorted(counts.values())


@needs_root
def test_compiled_objects_are_cached_by_content(no_leaks, tmp_path):
    env = {**os.environ, "PYTRACE_CACHE_DIR": str(tmp_path)}
    prog = ["-e", 'BEGIN { printf("%d\\n", $1); exit(); }']
    first = run(prog + ["1"], env=env)
    assert first.returncode == 0, first.stderr
    assert len(list(tmp_path.glob("*.o"))) == 1
    again = run(prog + ["1"], env=env)
    assert again.stdout == first.stdout == "Attaching 1 probe...\n1\n\n\n"
    assert len(list(tmp_path.glob("*.o"))) == 1
    other = run(prog + ["2"], env=env)
    assert other.stdout == "Attaching 1 probe...\n2\n\n\n"
    assert len(list(tmp_path.glob("*.o"))) == 2
    nocache = run(prog + ["3"], env={**env, "PYTRACE_NO_CACHE": "1"})
    assert nocache.stdout == "Attaching 1 probe...\n3\n\n\n"
    assert len(list(tmp_path.glob("*.o"))) == 2


@needs_root
def test_warnings_are_printed_on_every_run(tmp_path):
    env = {**os.environ, "PYTRACE_CACHE_DIR": str(tmp_path)}
    src = 'BEGIN { $a = -1; if ($a < pid) { } @s = stats(1); print(@s, 1); exit(); }'
    expected = ("stdin:1:25-26: WARNING: comparison of integers of different signs: 'int64' and "
                "'unsigned int64' can lead to undefined behavior\n" + src + "\n" + " " * 24 + "~\n"
                "stdin:1:51-63: WARNING: print()'s top and div arguments are ignored when used on "
                "stats() maps.\n" + src + "\n" + " " * 50 + "~" * 12 + "\n")
    for _ in range(2):   # compiled, then from the cache
        r = run(["-e", src], env=env)
        assert r.returncode == 0
        assert r.stderr == expected


def _cgroup2_mount():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


def test_cgroup_path_names_the_cgroup_a_process_runs_in(workload, no_leaks, tmp_path):
    root = _cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    cg = os.path.join(root, f"pytrace-test-{os.getpid()}")
    os.mkdir(cg)
    try:
        prog = ('tracepoint:syscalls:sys_enter_getppid /pid == cpid && comm != "sh"/ { '
                'printf("[%s]\\n", cgroup_path(cgroup, "unified")); print(cgroup_path(cgroup, "uni*")); '
                '@p = cgroup_path(cgroup, "unif*"); @none = cgroup_path(0); exit(); }')
        script = tmp_path / "join.sh"
        script.write_text(f"echo $$ > {cg}/cgroup.procs && exec {workload} getppid 1\n")
        cmd = f"sh {script}"        # -c is split at spaces, as bpftrace splits it
        r = run(["-c", cmd, "-e", prog])
        rel = "unified:/" + os.path.basename(cg)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[1:3] == [f"[{rel}]", rel]
        assert f"@p: {rel}\n" in r.stdout and "@none: \n" in r.stdout
        r = run(["-f", "json", "-e", 'BEGIN { print(cgroup_path(1 - 1)); exit(); }'])
        assert '{"type": "value", "data": ""}' in r.stdout
    finally:
        os.rmdir(cg)


@pytest.mark.parametrize("src, message", [
    ('cgroup_path("x")', "cgroup_path() only supports integer arguments (string provided)"),
    ("cgroup_path(1, 2)", "cgroup_path() only supports string arguments (integer provided)"),
    ("cgroup_path()", "cgroup_path() requires at least one argument (0 provided)"),
])
def test_cgroup_path_errors(src, message):
    r = run(["-e", f"BEGIN {{ $a = {src}; }}"])
    assert r.returncode == 1 and f"ERROR: {message}" in r.stderr
    r = run(["-e", "BEGIN { @[cgroup_path(1)] = 1; }"])
    assert "ERROR: Invalid map key type: cgroup_path_t" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["-p", "a1111"], "ERROR: pid 'a1111' is not a valid decimal number\n"),
    (["-p", "111a1"], "ERROR: pid '111a1' is not a valid decimal number\n"),
    (["-p", "5000000"], "ERROR: pid '5000000' out of valid pid range [1,4194304]\n"),
    (["-p", "0"], "ERROR: pid '0' out of valid pid range [1,4194304]\n"),
    (["-f", "jsonx"], "ERROR: Invalid output format \"jsonx\"\nValid formats: 'text', 'json', 'folded'\n"),
    (["-l", "\\n"], "stdin:1:1-2: ERROR: invalid character '\\'\n\\n\n~\n"),
])
def test_bad_options_are_answered_as_bpftrace(args, message):
    """bpftrace 0.17's words (basic.pid fails validation…, json-output.invalid_format,
    basic.errors on invalid character in search expression); the list of valid formats
    has pytrace's `folded` after 0.17's two."""
    extra = [] if "-l" in args else ["-e", "BEGIN { exit(); }"]
    r = run(args + extra)
    assert r.returncode == 1 and r.stderr == message, r.stderr


def test_command_is_split_at_spaces_without_a_shell(workload):
    """-c is split as bpftrace splits it (json-output.join_delim): quotes stay."""
    r = run(["--unsafe", "-e", 'tracepoint:syscalls:sys_enter_execve /pid == cpid/ '
             '{ join(args->argv, ","); }', "-c", f"{workload}  exec /bin/echo 'A'"])
    assert r.returncode == 0, r.stderr
    assert "/bin/echo,'A'\n" in r.stdout, r.stdout


def test_notify_probes_attached_line_for_bpftrace_test_harnesses():
    """With __BPFTRACE_NOTIFY_PROBES_ATTACHED set, one line on stderr once every probe
    is attached and BEGIN has run (bpftrace 0.17's runtime tests wait for it)."""
    prog = 'BEGIN { printf("begin\\n"); } interval:ms:50 { exit(); }'
    r = run(["-e", prog], env=dict(os.environ, __BPFTRACE_NOTIFY_PROBES_ATTACHED="1"))
    assert r.returncode == 0 and r.stderr == "__BPFTRACE_NOTIFY_PROBES_ATTACHED\n", r.stderr
    assert "__BPFTRACE" not in run(["-e", prog]).stderr


def test_updates_a_full_map_drops_are_reported(workload):
    """Nothing lost silently (issue 13): the kernel counts the updates a full map
    refuses, per map; the count is reported at exit, and with -v as it grows."""
    env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX="10")
    prog = 'BEGIN { $i = 0; while ($i < 30) { @[$i] = $i; @c[$i] = count(); $i++; } @k = 1; exit(); }'
    r = run(["-e", prog], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("@c[") == 10 and "@k: 1" in r.stdout
    assert r.stderr == (
        "WARNING: map @ is full (10 keys): 20 updates dropped (BPFTRACE_MAP_KEYS_MAX raises the limit)\n"
        "WARNING: map @c is full (10 keys): 20 updates dropped (BPFTRACE_MAP_KEYS_MAX raises the limit)\n")
    # -v: reported while the trace runs, each drop once
    prog = ('tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @[nsecs] = 1; } '
            'interval:ms:1500 { exit(); }')
    r = run(["-v", "-c", f"{workload} getppid 25 sleep 1200 getppid 5", "-e", prog], env=env)
    warnings = [line for line in r.stderr.splitlines() if "is full" in line]
    assert [w.split(": ")[1] for w in warnings] == ["map @ is full (10 keys)"] * 2, r.stderr
    assert sum(int(w.split(": ")[2].split()[0]) for w in warnings) == 20, r.stderr


@pytest.mark.parametrize("setting, message", [
    ("BPFTRACE_MAP_KEYS_MAX=abc",
     "ERROR: Env var 'BPFTRACE_MAP_KEYS_MAX' did not contain a valid uint64_t, or was zero-valued.\n"),
    ("BPFTRACE_PERF_RB_PAGES=x1",
     "ERROR: Env var 'BPFTRACE_PERF_RB_PAGES' did not contain a valid uint64_t, or was zero-valued.\n"),
    ("BPFTRACE_STRLEN=1000", "ERROR: 'BPFTRACE_STRLEN' 1000 exceeds the current maximum of 200 "
     "bytes.\nThis limitation is because strings are currently stored on the 512 byte BPF stack.\n"),
    ("BPFTRACE_NO_USER_SYMBOLS=yes",
     "ERROR: Env var 'BPFTRACE_NO_USER_SYMBOLS' did not contain a valid value (0 or 1).\n"),
])
def test_bad_environment_values_are_answered_as_bpftrace(setting, message):
    name, value = setting.split("=")
    r = run(["-e", "BEGIN { exit(); }"], env=dict(os.environ, **{name: value}))
    assert r.returncode == 1 and r.stderr == message, r.stderr


def test_strlen_sets_the_string_size(workload):
    """BPFTRACE_STRLEN: str() keeps STRLEN - 1 bytes (recorded from bpftrace 0.17)."""
    prog = 'tracepoint:syscalls:sys_enter_openat /pid == cpid/ { printf("%s\\n", str(args->filename)); }'
    r = run(["-c", f"{workload} openat /etc/hostname/xyz/abc 1", "-e", prog],
            env=dict(os.environ, BPFTRACE_STRLEN="8"))
    assert r.returncode == 0 and "\n/etc/ho\n" in r.stdout, r.stdout + r.stderr


@needs_root
def test_info_reports_what_the_kernel_offers():
    """--info: bpftrace 0.17's layout (basic.info flag), each answer asked of the kernel."""
    r = run(["--info"])
    assert r.returncode == 0 and r.stdout == "", r.stderr
    titles = [line for line in r.stderr.splitlines() if line and not line.startswith(" ")]
    assert titles == ["System", "Build", "Kernel helpers", "Kernel features", "Map types",
                      "Probe types"]
    for line in ("  perf_event_array: yes", "  probe_read_kernel: yes", "  tracepoint: yes",
                 "  btf: yes", "  kfunc: no", "  kprobe: no"):     # this machine: no kprobes, no fentry
        assert line in r.stderr.splitlines(), r.stderr
