"""watchpoint:func+argN and asyncwatchpoint:func+argN (issue 10), end to end on the real
kernel: a uprobe on func arms a hardware watchpoint at the address in argN (the
synchronous form stops the process until it is armed), unwatch(addr), the limit of 4
debug registers, wildcards, several functions, -p; nothing is left in the kernel and a
traced process is never left stopped.  The workload is compiled here with gcc."""
import os
import signal
import subprocess
import time

import pytest

from conftest import build_c

from test_cli import PYTRACE, no_leaks  # noqa: F401  (fixture)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")

SOURCE = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) void bump(int tag, int *p) { (*p)++; }
__attribute__((noinline)) void touch(int *p) { (*p)++; }
__attribute__((noinline)) void f_0(int *p) { (*p)++; }
__attribute__((noinline)) void f_1(int *p) { (*p)++; }
__attribute__((noinline)) void f_2(int *p) { (*p)++; }
__attribute__((noinline)) void poke(char *p) { p[0] = 1; }

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "loop";
    if (!strcmp(mode, "loop")) {            /* forever: bump(0, p) every ms */
        int *p = malloc(sizeof(int));
        for (;;) { bump(0, p); (*p)++; usleep(1000); }
    }
    if (!strcmp(mode, "many")) {            /* touch() on 6 addresses */
        for (int i = 0; i < 6; i++) touch(malloc(sizeof(int)));
        return 0;
    }
    if (!strcmp(mode, "unwatch")) {         /* one write in touch(), 3 after a pause */
        int *p = malloc(sizeof(int));
        touch(p);
        usleep(300000);
        (*p)++; (*p)++; (*p)++;
        return 0;
    }
    if (!strcmp(mode, "wild")) {
        f_0(malloc(sizeof(int))); f_1(malloc(sizeof(int))); f_2(malloc(sizeof(int)));
        return 0;
    }
    if (!strcmp(mode, "misaligned")) {      /* forever: poke() at an odd address */
        char *buf = malloc(64);
        for (;;) { poke(buf + 1); usleep(1000); }
    }
    return 1;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("watch"), "wp", SOURCE, "-O0")


def run(args, timeout=30):
    return subprocess.run(PYTRACE + args, capture_output=True, text=True, timeout=timeout)


def state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("State:"):
                return line.split()[1]
    return ""


@pytest.fixture
def looping(prog):
    """A process calling bump() forever (for -p); killed at the end."""
    p = subprocess.Popen([prog, "loop"])
    time.sleep(0.2)
    yield p
    p.kill()
    p.wait()


# ------------------------------------------------------------------ compile errors

@pytest.mark.parametrize("ap, extra, message", [
    ("watchpoint:bump+arg1:4:w", [], "-p PID or -c CMD required for watchpoint"),
    ("aw:0x1000:4:w", [], "asyncwatchpoint requires a function name"),
    ("watchpoint:0:4:w", [], "watchpoint must be attached to a non-zero address"),
    ("watchpoint:bump+arg7:4:w", ["-c", "{prog}"], "x86_64 doesn't support arg7"),
    ("watchpoint:bump+foo:4:w", ["-c", "{prog}"], "Invalid function argument"),
    ("watchpoint:bump+arg1+x:4:w", ["-c", "{prog}"], "Invalid function/address argument"),
    ("watchpoint:bump+arg1:4:rx", ["-c", "{prog}"], "invalid watchpoint mode: rx"),
    ("watchpoint:nosuch+arg1:4:w", ["-c", "{prog}"], "Could not resolve symbol: "),
])
def test_function_form_errors(prog, tmp_path, ap, extra, message):
    extra = [a.replace("{prog}", prog) for a in extra]
    r = run(["--emit-elf", str(tmp_path / "x.o"), *extra, "-e", f"{ap} {{ }}"])
    assert r.returncode == 1
    first = r.stderr.splitlines()[0]
    assert first.startswith("stdin:1:1-") and f"ERROR: {message}" in first, r.stderr


def test_manifest_of_the_function_form(prog, tmp_path):
    out = tmp_path / "x.o"
    r = run(["--emit-elf", str(out), "-c", prog, "-e", "watchpoint:bump+arg1:4:w { }"])
    assert r.returncode == 0, r.stderr
    from pytrace.runtime import objfile
    m = objfile.parse(out.read_bytes()).contract
    watch, setup = m.programs
    assert [a.to_json() for a in watch.attach] == [
        {"kind": "watchpoint", "addr": 0, "len": 4, "bp_type": 2, "pid": -1, "on_call": True,
         "cookie": 0}]
    (entry,) = setup.attach
    assert (entry.kind, entry.path, entry.child, entry.cookie) == ("uprobe", prog, True, 1)
    (action,) = m.actions
    assert action.to_json() == {"kind": "watchpoint_arm", "cookie": 0, "async": False}
    assert m.probes[0] == f"watchpoint:{prog}:bump:1:4:w"


# ------------------------------------------------------------------ on the kernel

@needs_root
@pytest.mark.parametrize("provider", ["watchpoint", "asyncwatchpoint"])
def test_function_arg_addr(prog, no_leaks, provider):  # noqa: F811
    r = run(["-c", f"{prog} loop", "-e",
             f'{provider}:bump+arg1:4:w {{ printf("hit %s\\n", probe); exit() }}'])
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Attaching 1 probe...\nhit {provider}:{prog}:bump:1:4:w\n\n\n"


@needs_root
def test_function_arg_addr_with_p_leaves_the_process_running(looping, no_leaks):  # noqa: F811
    r = run(["-p", str(looping.pid), "-e",
             'watchpoint:bump+arg1:4:w { @hits++; if (@hits == 3) { exit() } }'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Attaching 1 probe...\n\n\n@hits: ")
    assert int(r.stdout.split()[-1]) >= 3      # exit() is asynchronous: a few more may come
    time.sleep(0.1)
    assert state(looping.pid) in ("S", "R")


@needs_root
def test_out_of_watchpoint_registers(prog, no_leaks):  # noqa: F811
    r = run(["-c", f"{prog} many", "-e", 'watchpoint:touch+arg0:4:w { printf("hit!\\n") }'])
    assert r.returncode == 0, r.stderr
    msg = "Failed to attach watchpoint probe. You are out of watchpoint registers."
    assert r.stdout == "Attaching 1 probe...\n" + "hit!\n" * 4 + (msg + "\n") * 2 + "\n\n"


@needs_root
def test_unwatch(prog, no_leaks):  # noqa: F811
    script = ("BEGIN { @count = 0; } "
              f"uprobe:{prog}:touch {{ @addr = (uint64)arg0; }} "
              "watchpoint:touch+arg0:4:w { @count++; unwatch(@addr); } "
              'END { printf("count=%d\\n", @count); clear(@addr); }')
    r = run(["-c", f"{prog} unwatch", "-e", script])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Attaching 4 probes...\ncount=1\n")


@needs_root
def test_wildcards_and_several_functions(prog, no_leaks):  # noqa: F811
    r = run(["-c", f"{prog} wild", "-e", "watchpoint:f_*+arg0:4:w { @[probe] = count(); }"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("Attaching 3 probes...\n\n\n" + "".join(
        f"@[watchpoint:{prog}:f_{i}:4:w]: 1\n" for i in range(3)))
    r = run(["-c", f"{prog} wild", "-e",
             "watchpoint:f_0+arg0:4:w, watchpoint:f_2+arg0:4:w { @ = count(); }"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 2 probes...\n\n\n@: 2\n"


@needs_root
def test_ctrl_c_stops_at_once_and_resumes_the_process(looping, no_leaks):  # noqa: F811
    p = subprocess.Popen(PYTRACE + ["-p", str(looping.pid), "-e",
                                    "watchpoint:bump+arg1:4:w { @ = count(); }"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "Attaching 1 probe...\n"
        time.sleep(0.5)
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        assert time.monotonic() - start < 2, "Ctrl-C must stop the trace at once"
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.startswith("\n\n@: ")
    time.sleep(0.1)
    assert state(looping.pid) in ("S", "R")


@needs_root
def test_failed_arming_is_an_error_and_resumes_the_process(prog, no_leaks):  # noqa: F811
    """An 8-byte watchpoint at an odd address: the kernel refuses it (EINVAL); the run
    ends with the error, and the process the uprobe stopped goes on."""
    target = subprocess.Popen([prog, "misaligned"])
    try:
        time.sleep(0.2)
        r = run(["-p", str(target.pid), "-e", "watchpoint:poke+arg0:8:w { }"])
        assert r.returncode != 0
        first = r.stderr.splitlines()[0]
        assert first.startswith("stdin:1:1-25: ERROR: Error attaching probe: ") and \
            "EINVAL" in first and "Traceback" not in r.stderr, r.stderr
        time.sleep(0.1)
        assert state(target.pid) in ("S", "R")
    finally:
        target.kill()
        target.wait()


@needs_root
def test_object_run_without_its_process_is_refused(prog, tmp_path, no_leaks):  # noqa: F811
    """An object compiled with -c run without it: its uprobe would stop every process of
    the binary, with nobody to resume them."""
    obj = tmp_path / "w.o"
    r = run(["--emit-elf", str(obj), "-c", prog, "-e", "watchpoint:bump+arg1:4:w { }"])
    assert r.returncode == 0, r.stderr
    r = run([str(obj)])
    assert r.returncode != 0
    assert "-p PID or -c CMD required for watchpoint" in r.stderr and "Traceback" not in r.stderr
    r = run([str(obj), "-c", f"{prog} many"])
    assert r.returncode == 0, r.stderr


@needs_root
def test_other_processes_of_the_binary_are_not_stopped(prog, looping, no_leaks):  # noqa: F811
    """With -c, the setup uprobe fires in the child only: another process running the
    same binary is neither stopped nor watched."""
    r = run(["-c", f"{prog} many", "-e", "watchpoint:bump+arg1:4:w { @ = count(); }"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Attaching 1 probe...\n\n\n@: 0\n"     # untouched, as 0.17 prints it
    assert state(looping.pid) in ("S", "R")
    r = run(["-c", f"{prog} loop", "-e", "watchpoint:bump+arg1:4:w { @[pid] = count(); "
             "if (pid == " + str(looping.pid) + ") { exit() } } interval:ms:300 { exit() }"])
    assert r.returncode == 0, r.stderr
    assert f"@[{looping.pid}]" not in r.stdout
    time.sleep(0.1)
    assert state(looping.pid) in ("S", "R")
