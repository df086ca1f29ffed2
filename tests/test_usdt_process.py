"""USDT (and uprobe) probes by process and by wildcarded file, on the real kernel:
`-p PID` searches every object the process maps (its shared libraries too, as
/proc/PID/root/...), probes with several locations attach at each, quoted probe
names, semaphores (the kernel's ref_ctr_offset, with -p or for every process of
the file), and the listings `-l`/`-lv` by process, also in another mount
namespace. Expected texts follow what bpftrace 0.17 prints for the same cases."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

PYTRACE = [sys.executable, "-m", "pytrace.cli"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed"),
]

LIB = r"""
#include <sys/sdt.h>
void lib_fire(int x) { DTRACE_PROBE1(plib, lib_probe, x); }
"""

# a probe with a semaphore (its own file: with _SDT_HAS_SEMAPHORES every probe has one)
SEM = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
__extension__ unsigned short app_sem_semaphore __attribute__((unused))
    __attribute__((section(".probes"))) __attribute__((visibility("hidden")));
void sem_tick(void) { DTRACE_PROBE1(app, sem, app_sem_semaphore); }
"""

APP = r"""
#include <sys/sdt.h>
#include <unistd.h>
void lib_fire(int x);
void sem_tick(void);
__attribute__((always_inline)) static inline void inl(int n)
{
    volatile int on_stack = n;
    DTRACE_PROBE2(app, inl, n, on_stack);
}
__attribute__((noinline)) void app_tick(int i)
{
    DTRACE_PROBE1(app, first, i);
    DTRACE_PROBE1(app2, second, i);
    DTRACE_PROBE1(app, "quoted", 7);
    sem_tick();
    inl(999);
    inl(100);
    lib_fire(i);
}
int main(void)
{
    for (int i = 0;; i++) {
        app_tick(i);
        usleep(2000);
    }
}
"""

# runs argv[2] in a new mount namespace where argv[1] (a directory) is seen at
# /tmp/pytrace-usdt-mountns, a path pytrace's namespace does not have
WRAPPER = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc != 3 || unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        return perror("setup"), 1;
    mkdir("/tmp/pytrace-usdt-mountns", 0700);
    if (mount(argv[1], "/tmp/pytrace-usdt-mountns", NULL, MS_BIND, NULL))
        return perror("mount"), 1;
    char exe[4096];
    snprintf(exe, sizeof exe, "/tmp/pytrace-usdt-mountns/%s", argv[2]);
    execl(exe, exe, (char *)0);
    return perror("exec"), 1;
}
"""
PRIVATE = "/tmp/pytrace-usdt-mountns"


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("usdtproc")
    if subprocess.run(["gcc", "-E", "-x", "c", "-"], input=b"#include <sys/sdt.h>\n",
                      capture_output=True).returncode:
        pytest.skip("no <sys/sdt.h>")
    (d / "lib.c").write_text(LIB)
    (d / "app.c").write_text(APP)
    (d / "sem.c").write_text(SEM)
    (d / "wrapper.c").write_text(WRAPPER)
    subprocess.run(["gcc", "-O1", "-fPIC", "-shared", "-o", str(d / "libprobes.so"),
                    str(d / "lib.c")], check=True)
    # at -O1 gcc passes the semaphore as `2@app_sem_semaphore(%rip)` (PIE: the address
    # is the symbol's relative to the probe's)
    subprocess.run(["gcc", "-O1", "-c", "-o", str(d / "sem.o"), str(d / "sem.c")], check=True)
    subprocess.run(["gcc", "-O1", "-o", str(d / "app"), str(d / "app.c"), str(d / "sem.o"), f"-L{d}", "-lprobes",
                    f"-Wl,-rpath,{d}"], check=True)
    subprocess.run(["gcc", "-O1", "-o", str(d / "wrapper"), str(d / "wrapper.c")], check=True)
    return d


def run(args, timeout=60):
    return subprocess.run(PYTRACE + args, capture_output=True, text=True, timeout=timeout)


class Running:
    """The workload running while a test traces it."""
    def __init__(self, *argv):
        self.proc = subprocess.Popen([str(a) for a in argv])
        time.sleep(0.3)
        self.pid = self.proc.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def root(pid, path):
    return f"/proc/{pid}/root{os.path.realpath(path)}"


def test_list_by_pid_has_the_libraries_usdt_probes_and_the_executables_functions(bins):
    with Running(bins / "app") as app:
        lines = run(["-l", "-p", str(app.pid)]).stdout.splitlines()
        usdt = [x for x in lines if x.startswith("usdt:")]
        exe, lib = root(app.pid, bins / "app"), root(app.pid, bins / "libprobes.so")
        assert usdt == sorted(usdt)
        for probe in ("app2:second", "app:first", 'app:"quoted"', "app:inl", "app:sem"):
            assert f"usdt:{exe}:{probe}" in usdt
        assert f"usdt:{lib}:plib:lib_probe" in usdt
        assert f"uprobe:{exe}:app_tick" in lines
        # uprobes: the executable only, and no return probes (bpftrace 0.17)
        assert all(x.startswith(f"uprobe:{exe}:") for x in lines if not x.startswith("usdt:"))
        only = run(["-l", "usdt:*:plib:*", "-p", str(app.pid)]).stdout.splitlines()
        assert only == [f"usdt:{lib}:plib:lib_probe"]
        assert run(["-lv", "usdt:*", "-p", str(app.pid)]).stdout.splitlines() == usdt


def test_list_wildcarded_files(bins):
    lines = run(["-l", f"usdt:{bins}/app*:app:*"]).stdout.splitlines()
    assert lines == [f'usdt:{bins}/app:app:"quoted"', f"usdt:{bins}/app:app:first",
                     f"usdt:{bins}/app:app:inl", f"usdt:{bins}/app:app:sem"]
    lines = run(["-l", f"uprobe:{bins}/*:*_fire"]).stdout.splitlines()
    assert lines == [f"uprobe:{bins}/libprobes.so:lib_fire"]
    lines = run(["-l", f"*:{bins}/*:*"]).stdout.splitlines()
    assert f"usdt:{bins}/libprobes.so:plib:lib_probe" in lines and f"uprobe:{bins}/app:main" in lines
    assert not [x for x in lines if x.startswith("uretprobe:")]


def test_attach_by_pid_without_a_file(bins):
    with Running(bins / "app") as app:
        r = run(["-e", 'usdt::app:first { printf("%s %d\\n", probe, arg0 > 0); exit(); }',
                 "-p", str(app.pid)])
        assert r.stdout.startswith("Attaching 1 probe...\n" f"usdt:{root(app.pid, bins / 'app')}"
                                   ":app:first 1\n"), r.stderr
        # a library's probe, and a wildcard over providers of every object
        r = run(["-e", 'usdt:::*_probe { printf("%s\\n", probe); exit(); }', "-p", str(app.pid)])
        assert f"usdt:{root(app.pid, bins / 'libprobes.so')}:plib:lib_probe\n" in r.stdout, r.stderr
        r = run(["-e", f'usdt:{bins}/app::*ond {{ printf("%s\\n", probe); exit(); }}',
                 "-p", str(app.pid)])
        assert r.stdout.endswith(f"usdt:{root(app.pid, bins / 'app')}:app2:second\n\n\n"), r.stderr


def test_library_by_name_in_the_process(bins):
    """`libprobes` is no library the linker cache knows: -p finds it among the process's."""
    with Running(bins / "app") as app:
        r = run(["-e", 'uprobe:libprobes:lib_fire { printf("%s\\n", probe); exit(); }',
                 "-p", str(app.pid)])
        assert r.stdout == f"Attaching 1 probe...\nuprobe:{os.path.realpath(bins)}/libprobes.so:" \
            "lib_fire\n\n\n", r.stderr


def test_wildcarded_file_and_empty_provider(bins):
    r = run(["-e", f'usdt:{bins}/*::*o* {{ @[probe] = count(); if (@n++ > 20) {{ exit(); }} }}',
             "-c", str(bins / "app")])
    assert r.returncode == 0, r.stderr
    # app2:second, app:"quoted", plib:lib_probe
    assert r.stdout.startswith("Attaching 3 probes...\n")
    assert f'usdt:{bins}/libprobes.so:plib:lib_probe' in r.stdout


def test_every_location_of_a_duplicated_marker_with_its_own_arguments(bins):
    # the two inlined copies read their argument from different stack slots
    r = run(["-e", f'usdt:{bins}/app:app:inl {{ printf("%d %d\\n", arg0, arg1); '
             'if (@n++ >= 3) { exit(); } }', "-c", str(bins / "app")])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Attaching 2 probes..."
    assert set(lines[1:5]) == {"999 999", "100 100"}


def test_quoted_probe_name(bins):
    r = run(["-e", f'usdt:{bins}/app:app:"\\"quoted\\"" {{ printf("%d %s\\n", arg0, probe); exit(); }}',
             "-c", str(bins / "app")])
    assert f'7 usdt:{bins}/app:app:"quoted"\n' in r.stdout, r.stderr


def test_semaphore_by_pid_and_by_file(bins):
    prog = 'usdt:{}:app:sem {{ printf("semaphore %d\\n", arg0); exit(); }}'
    with Running(bins / "app") as app:
        r = run(["-e", prog.format(""), "-p", str(app.pid)])
        assert "semaphore 1\n" in r.stdout, r.stderr
        for extra in ([], ["--usdt-file-activation"]):
            r = run(["-e", prog.format(bins / "app")] + extra)
            assert "semaphore 1\n" in r.stdout, r.stderr


def test_file_activation_reaches_every_process(bins):
    prog = (f'usdt:{bins}/app:app:sem /arg0 > 0 && @p[pid] == 0/ '
            '{ @p[pid] = 1; @c++; if (@c == 2) { exit(); } } interval:s:5 { exit(); } '
            'END { printf("%d processes\\n", @c); clear(@p); clear(@c); }')
    with Running(bins / "app"), Running(bins / "app"):
        r = run(["--usdt-file-activation", "-e", prog])
        assert "2 processes\n" in r.stdout, r.stderr


def test_process_in_another_mount_namespace(bins):
    with Running(bins / "wrapper", bins, "app") as app:
        exe = f"/proc/{app.pid}/root{PRIVATE}/app"
        assert not os.path.exists(f"{PRIVATE}/app")
        lines = run(["-l", "usdt:*", "-p", str(app.pid)]).stdout.splitlines()
        assert f"usdt:{exe}:app:first" in lines
        assert f"usdt:{root(app.pid, bins / 'libprobes.so')}:plib:lib_probe" in lines
        assert f"uprobe:{exe}:app_tick" in run(["-l", "-p", str(app.pid)]).stdout.splitlines()
        # a path only the process sees
        r = run(["-e", f'uprobe:{PRIVATE}/app:app_tick {{ printf("%s\\n", probe); exit(); }}',
                 "-p", str(app.pid)])
        assert r.stdout == f"Attaching 1 probe...\nuprobe:{exe}:app_tick\n\n\n", r.stderr
        r = run(["-e", f'usdt:{PRIVATE}/app:app:first {{ printf("%s\\n", probe); exit(); }}',
                 "-p", str(app.pid)])
        assert r.stdout == f"Attaching 1 probe...\nusdt:{exe}:app:first\n\n\n", r.stderr


def test_errors(bins):
    r = run(["-e", "usdt::app:first { }"])
    assert r.stderr.startswith("stdin:1:1-16: ERROR: usdt probe must specify at least path or pid "
                               "to probe\n"), r.stderr
    with Running(bins / "app") as app:
        r = run(["-e", "usdt::app:nosuch { }", "-p", str(app.pid)])
        assert f"ERROR: No USDT probes found for process {app.pid}:app:nosuch\n" in r.stderr
    r = run(["-e", f"usdt:{bins}/nosuch*:app:first {{ }}"])
    assert f"ERROR: usdt target file '{bins}/nosuch*' does not exist or is not executable\n" \
        in r.stderr


def test_symbol_relative_argument_spec():
    from pytrace.providers.usdt import parse_arg
    spec = parse_arg("2@app_sem_semaphore(%rip)")
    assert spec["symbol"] == "app_sem_semaphore" and spec["reg"] == ("ip", 64) and spec["size"] == 2
    assert parse_arg("-4@counter+8(%rip)")["disp"] == 8 and parse_arg("8@x-0x10(%rip)")["disp"] == -16


def test_wildcarded_files_are_not_cached(bins, tmp_path):
    """Which files a wildcard matches can change without a probed file changing."""
    shutil.copy(bins / "app", tmp_path / "app1")
    env = dict(os.environ, PYTRACE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYTRACE_NO_CACHE", None)
    script = f"usdt:{tmp_path}/app*:app:first {{ }} BEGIN {{ exit(); }}"

    def attached():
        r = subprocess.run(PYTRACE + ["-e", script], env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()[0]
    assert attached() == "Attaching 2 probes..."          # BEGIN and app1's
    shutil.copy(bins / "app", tmp_path / "app2")
    assert attached() == "Attaching 3 probes..."
    assert not list((tmp_path / "cache").glob("*.o"))


def test_listing_errors_are_located_on_the_pattern():
    r = run(["-l", "usdt:*"])
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "stdin:1:1-7: ERROR: usdt probe type requires 2 or 3 arguments\nusdt:*\n~~~~~~\n"
    r = run(["-l", "uprobe:a:b:c"])
    assert r.stderr.startswith("stdin:1:1-13: ERROR: uprobe probe type requires 2 arguments\n")
