"""Teardown on every exit path (real kernel, through the CLI).

Each case runs a real trace with tests/teardown_launcher.py, which records the
kernel id of every BPF map, program and link the run creates and, once the
session's teardown has run, which of the process's own fds still hold a BPF
object, a perf event (every uprobe is one), a pidfd or an epoll set.  After
the run each case checks:

- the exit status and stderr: one line (bpftrace's words where bpftrace has
  them), never a Python traceback;
- teardown ran, and left none of those fds open in the pytrace process (this
  is what proves the runtime's own teardown: the kernel would close them at
  exit anyway), and the -c child was stopped and reaped by then;
- none of the ids it created is still in the kernel once the process is gone
  (other tools may run BPF beside us, so only our own ids are looked at);
- pytrace opened no tracefs file for writing, and no uprobe_events /
  dynamic_events entry names the probed files (it attaches uprobes through the
  uprobe PMU and writes nothing there: this guards against a change);
- the -c child is gone (not running, not stopped, not a zombie) after the exit too.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import build_workload

from pytrace.runtime import objfile, syscall
from pytrace.runtime.elfread import ElfImage

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")

LAUNCHER = [sys.executable, str(Path(__file__).resolve().parent / "teardown_launcher.py")]
PYTRACE = [sys.executable, "-m", "pytrace.cli"]
TRACEFS = Path("/sys/kernel/tracing")
GET_FD = {"map_id": syscall.map_get_fd_by_id, "prog_id": syscall.prog_get_fd_by_id,
          "link_id": syscall.link_get_fd_by_id}
TICK = 'interval:ms:20 { printf("tick\\n"); } '
END = 'END { printf("end\\n"); }'


class Trace:
    def __init__(self, tmp_path, args, stdout=subprocess.PIPE, env=None):
        self.tmp = tmp_path
        # an entry left in uprobe_events would name a probed file: ours are in these
        self.watched = [str(tmp_path), os.path.dirname(build_workload())]
        self.log = tmp_path / "teardown.log"
        self.events_before = dynamic_events()
        self.p = subprocess.Popen(LAUNCHER + [str(self.log)] + args, stdout=stdout,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **(env or {})))

    def wait_for(self, line: str, timeout: float = 20) -> None:
        """Read stdout up to ``line`` (the probes are attached by then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.p.stdout.readline()
            assert got, "pytrace ended early: " + self.p.stderr.read()
            if got == line + "\n":
                return
        pytest.fail(f"no {line!r} line in {timeout} s")

    def finish(self, timeout: float = 20):
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.communicate()
            pytest.fail(f"pytrace still running {timeout} s after it was asked to end")
        self.assert_clean()
        return self.p.returncode, out or "", err

    def records(self) -> list:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def assert_clean(self) -> None:
        recs = self.records()
        downs = [r for r in recs if r["event"] == "teardown"]
        if not downs and not [r for r in recs if r["event"] == "create"]:
            return                  # no session started: nothing was created
        assert len(downs) == 1, f"teardown ran {len(downs)} times"
        assert downs[0]["open"] == [], "fds left open after teardown"
        assert_ids_gone([r for r in recs if r["event"] == "create"])
        assert downs[0]["child_state"] == "gone", "teardown did not stop and reap the child"
        child = downs[0]["child"]
        if child is not None:
            assert_gone(child)
        assert not [r for r in recs if r["event"] == "tracefs_write"], "pytrace wrote to tracefs"
        new = dynamic_events() - self.events_before
        assert not [e for e in new if any(w in e for w in self.watched)], \
            f"tracefs entries left: {new}"


def dynamic_events() -> set:
    lines = set()
    for name in ("uprobe_events", "dynamic_events"):
        try:
            lines |= set((TRACEFS / name).read_text().splitlines())
        except OSError:
            pass
    return lines


def assert_ids_gone(created) -> None:
    """The kernel frees a closed object after an RCU grace period: allow it a moment."""
    ids = {(k, r[k]) for r in created for k in GET_FD if k in r and k.startswith(r["kind"])}
    deadline = time.monotonic() + 5
    while True:
        alive = []
        for kind, i in sorted(ids):
            try:
                syscall.close(GET_FD[kind](i))
                alive.append(f"{kind} {i}")
            except OSError:
                pass
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not alive, f"left in the kernel: {alive}"


def assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.path.exists(f"/proc/{pid}"):
        pytest.fail(f"the -c child {pid} is still there (state {process_state(pid)})")


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def children_of(pid: int) -> list:
    out = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1] \
                    == str(pid):
                out.append(int(d))
        except OSError:
            pass
    return out


# ------------------------------------------------------------------ the paths

def test_normal_end_when_the_child_ends(tmp_path, workload):
    t = Trace(tmp_path, ["-c", f"{workload} sleep 300", "-e",
                         f"uprobe:{workload}:main /pid == cpid/ {{ @u = count(); }} {TICK}{END}"])
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert "end\n\n\n@u: 1\n" in out


def test_exit(tmp_path, workload):
    t = Trace(tmp_path, ["-e", f"uprobe:{workload}:main {{ @u = count(); }} "
                               "tracepoint:sched:sched_switch { @s = count(); } "
                               "interval:ms:100 { exit(); } " + END])
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert out.startswith("Attaching 4 probes...\nend\n\n\n")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal(tmp_path, workload, sig):
    t = Trace(tmp_path, ["-c", f"{workload} sleep 30000", "-e",
                         f"uprobe:{workload}:main /pid == cpid/ {{ @u = count(); }} {TICK}{END}"])
    t.wait_for("tick")
    t.p.send_signal(sig)
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert "end\n\n\n@u: 1\n" in out


@pytest.mark.parametrize("gap", [0.0005, 0.002])
def test_a_burst_of_sigints(tmp_path, gap):
    """Ctrl-C held down: the second signal ends the run at once, and no later one
    cuts teardown or the exit short (they used to: killed by SIGINT, tracebacks, the
    child left running)."""
    t = Trace(tmp_path, ["-c", "/bin/sleep 30", "-e",
                         'interval:ms:20 { printf("tick\\n"); @[1] = count(); } ' + END])
    t.wait_for("tick")
    for _ in range(30):
        try:
            t.p.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(gap)
    rc, out, err = t.finish()
    assert rc in (0, 130) and err == "", (rc, err)


def test_sigusr1_then_sigint(tmp_path):
    t = Trace(tmp_path, ["-e", "BEGIN { @a = 1; } " + TICK + END])
    t.wait_for("tick")
    t.p.send_signal(signal.SIGUSR1)
    t.wait_for("@a: 1")
    t.p.send_signal(signal.SIGINT)
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert out.endswith("end\n\n\n@a: 1\n")


def test_child_that_cannot_start(tmp_path):
    t = Trace(tmp_path, ["-c", str(tmp_path / "missing"), "-e", TICK + END])
    rc, out, err = t.finish()
    assert rc == 1
    assert one_line(err) == (f"ERROR: Failed to fork child: path '{tmp_path / 'missing'}' "
                             "does not exist or is not executable\n")


def test_child_that_cannot_be_executed(tmp_path):
    """It exists and is executable, but exec fails (no format): found once attached."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01not a program\n")
    junk.chmod(0o755)
    t = Trace(tmp_path, ["-c", str(junk), "-e", TICK + END])
    rc, out, err = t.finish()
    assert rc == 1
    assert one_line(err) == f"ERROR: failed to run command '{junk}': Exec format error\n"


def test_metrics_port_in_use(tmp_path):
    """--metrics on a port another socket holds: found once the maps are loaded and the
    -c child forked, before BEGIN; the maps are closed and the child never runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        t = Trace(tmp_path, ["--metrics", f"127.0.0.1:{port}", "-c", "/bin/sleep 30",
                             "-e", "BEGIN { @a = 1; } " + TICK])
        rc, out, err = t.finish()
    assert rc == 1 and out == ""
    assert one_line(err) == f"ERROR: --metrics 127.0.0.1:{port}: cannot listen: Address already in use\n"
    assert [r for r in t.records() if r.get("kind") == "map"], "no map was loaded first"


def test_metrics_server_ends_with_the_trace(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = Trace(tmp_path, ["--metrics", f"127.0.0.1:{port}", "-e", "BEGIN { @a = 1; } " + TICK])
    t.wait_for("tick")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert b"pytrace_a 1.0" in c.makefile("rb").read()
    t.p.send_signal(signal.SIGINT)
    rc, out, err = t.finish()
    assert (rc, err) == (0, "") and out.endswith("@a: 1\n")
    with socket.socket() as c:
        assert c.connect_ex(("127.0.0.1", port)) != 0, "still listening after the exit"


def test_exit_in_begin_before_the_child_starts(tmp_path):
    t = Trace(tmp_path, ["-c", "/bin/sleep 30", "-e", "BEGIN { exit(); } " + TICK + END])
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert out == "Attaching 3 probes...\nend\n\n\n"


def test_child_killed_by_a_signal(tmp_path):
    t = Trace(tmp_path, ["-c", "/bin/sleep 30", "-e", TICK + END])
    t.wait_for("tick")
    (child,) = children_of(t.p.pid)
    os.kill(child, signal.SIGKILL)
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert "end\n\n\n" in out


def test_stopped_child_is_not_left_stopped(tmp_path):
    """A stopped child acts on SIGTERM only once resumed: it used to wait 5 s for SIGKILL."""
    script = tmp_path / "stopper.sh"
    script.write_text("#!/bin/sh\nkill -STOP $$\n")
    script.chmod(0o755)
    t = Trace(tmp_path, ["-c", str(script), "-e", TICK + END])
    t.wait_for("tick")
    (child,) = children_of(t.p.pid)
    deadline = time.monotonic() + 10
    while process_state(child) != "T":
        assert time.monotonic() < deadline, "the child never stopped"
        time.sleep(0.02)
    t0 = time.monotonic()
    t.p.send_signal(signal.SIGINT)
    rc, out, err = t.finish()
    assert (rc, err) == (0, "")
    assert time.monotonic() - t0 < 3


FIVE = ('BEGIN { printf("begin\\n"); } tracepoint:sched:sched_switch { @a = count(); } '
        'interval:ms:50 { @c = count(); } tracepoint:signal:signal_deliver { @b = count(); } '
        'END { printf("end\\n"); }')


def emit(tmp_path, program: str) -> bytes:
    obj = tmp_path / "prog.o"
    r = subprocess.run(PYTRACE + ["--emit-elf", str(obj), "-e", program],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return obj.read_bytes()


def test_verifier_rejects_the_third_of_five_programs(tmp_path):
    data = bytearray(emit(tmp_path, FIVE))
    spec = objfile.parse(bytes(data))
    third = spec.contract.programs[2]
    probe = spec.contract.probes[third.attach[0].cookie]
    section = ElfImage.from_bytes(bytes(data)).section(spec.programs[third.symbol].section)
    last = section.offset + section.size - 8    # its last instruction becomes "r0 = r5":
    data[last:last + 8] = bytes.fromhex("bf50000000000000")     # no exit, R5 unset
    (tmp_path / "bad.o").write_bytes(data)
    t = Trace(tmp_path, [str(tmp_path / "bad.o")])
    rc, out, err = t.finish()
    assert rc == 1 and out == ""
    assert one_line(err) == f"ERROR: Error loading program: {probe} (try -v)\n"
    loaded = [r for r in t.records() if r.get("kind") == "prog"]
    assert len(loaded) >= 2         # the two before it were loaded, then closed


def test_attach_failure_of_a_later_tracepoint(tmp_path):
    data = emit(tmp_path, FIVE).replace(b"signal_deliver", b"signal_delivex")
    (tmp_path / "bad.o").write_bytes(data)
    t = Trace(tmp_path, [str(tmp_path / "bad.o")])
    rc, out, err = t.finish()
    assert rc == 255
    assert one_line(err) == ("ERROR: Error attaching probe: 'tracepoint:signal:signal_delivex': "
                             "tracepoint signal:signal_delivex does not exist in this kernel\n")
    assert "end" not in out
    assert [r for r in t.records() if r.get("kind") in ("link", "perf")], "nothing attached first"


def test_attach_failure_of_a_uprobe_on_a_vanished_binary(tmp_path, workload):
    victim = tmp_path / "victim"
    victim.write_bytes(Path(workload).read_bytes())
    victim.chmod(0o755)
    data = emit(tmp_path, FIVE.replace("tracepoint:signal:signal_deliver", f"uprobe:{victim}:main"))
    victim.unlink()
    (tmp_path / "bad.o").write_bytes(data)
    t = Trace(tmp_path, [str(tmp_path / "bad.o")])
    rc, out, err = t.finish()
    assert rc == 255
    assert one_line(err) == f"ERROR: Error attaching probe: 'uprobe:{victim}:main': {victim}: no such file\n"


def test_attach_failure_of_a_perf_event_that_cannot_open(tmp_path):
    """A script this time: the error line is located in the source, which follows it."""
    t = Trace(tmp_path, ["-e", "tracepoint:sched:sched_switch { @a = count(); } "
                               "interval:ms:50 { @c = count(); } hardware:cycles:1000 { @h = count(); }"])
    rc, out, err = t.finish()
    if rc == 0:
        pytest.skip("this machine has a hardware PMU")
    assert rc == 255 and "Traceback" not in err
    assert err.splitlines()[0] == (
        "stdin:1:82-102: ERROR: Error attaching probe: 'hardware:cycles:1000': hardware performance "
        "counters are not available in this kernel/VM (no hardware PMU; perf_event_open: ENOENT)")
    assert [r for r in t.records() if r.get("kind") == "link"], "nothing attached first"


def test_exception_in_an_output_handler(tmp_path):
    """Test-only hook (tests/teardown_launcher.py): the first printf handler raises."""
    t = Trace(tmp_path, ["-c", "/bin/sleep 30", "-e", TICK + END],
              env={"PYTRACE_TEST_HANDLER_RAISES": "1"})
    rc, out, err = t.finish()
    assert rc == 1
    assert one_line(err).startswith("ERROR: internal error: RuntimeError: injected failure")


@pytest.mark.parametrize("where", ["-o", "stdout"])
def test_output_that_cannot_be_written(tmp_path, where):
    """A real exception inside the output handlers: their writes fail (ENOSPC)."""
    full = open("/dev/full", "w")
    args = ["-o", "/dev/full"] if where == "-o" else []
    t = Trace(tmp_path, args + ["-c", "/bin/sleep 30", "-e",
                                'tracepoint:sched:sched_switch { printf("%d\\n", pid); }' + END],
              stdout=full)
    full.close()
    rc, out, err = t.finish()
    assert rc == 1
    assert one_line(err) == "ERROR: failed to write the output: No space left on device\n"


def test_output_file_that_cannot_be_opened(tmp_path):
    t = Trace(tmp_path, ["-o", str(tmp_path / "no" / "out"), "-e", TICK + END])
    rc, out, err = t.finish()
    assert rc == 1 and out == ""
    assert one_line(err) == f'ERROR: Failed to open output file: "{tmp_path / "no" / "out"}": ' \
                            'No such file or directory\n'


def test_stdout_closed(tmp_path):
    t = Trace(tmp_path, ["-c", "/bin/sleep 30", "-e",
                         'tracepoint:sched:sched_switch { printf("%d\\n", pid); }' + END])
    t.wait_for("Attaching 2 probes...")
    t.p.stdout.close()              # as `pytrace ... | head -1` does
    try:
        err = t.p.stderr.read()
        t.p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        t.p.kill()
        pytest.fail("pytrace did not end when its stdout closed")
    t.assert_clean()
    assert t.p.returncode == -signal.SIGPIPE, err
    assert err == ""


def test_second_sigint_while_stdout_is_blocked(tmp_path):
    """Nobody reads stdout (`pytrace ... | sleep 60`): the trace blocks in a write and
    cannot act on SIGINT; a second one ends it (status 130), torn down."""
    t = Trace(tmp_path, ["-c", "/bin/sleep 30", "-e",
                         'tracepoint:sched:sched_switch { printf("%d %s\\n", pid, comm); }'])
    deadline = time.monotonic() + 20
    while "pipe_write" not in Path(f"/proc/{t.p.pid}/wchan").read_text():
        assert time.monotonic() < deadline and t.p.poll() is None, "stdout never filled up"
        time.sleep(0.05)
    t.p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert t.p.poll() is None
    t.p.send_signal(signal.SIGINT)
    try:
        t.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        t.p.kill()
        pytest.fail("a second SIGINT did not end a trace blocked on its output")
    t.assert_clean()
    assert t.p.returncode == 130
    assert t.p.stderr.read() == ""



def test_a_detach_cut_short_loses_no_attachment(monkeypatch):
    """A second SIGINT may interrupt the stop's detach (KeyboardInterrupt): teardown's
    close() still closes what detach had already taken out of the set (it once left
    a perf event and its link open)."""
    from pytrace.runtime import attach as A
    pipes = [os.pipe() for _ in range(3)]
    atts = [A.Attachment(f"p{i}", "tracepoint", r, w) for i, (r, w) in enumerate(pipes)]
    s = A.AttachSet()
    s.add(atts)
    real_unlink = A.Attachment.unlink

    def interrupted(self):
        monkeypatch.setattr(A.Attachment, "unlink", real_unlink)
        raise KeyboardInterrupt
    monkeypatch.setattr(A.Attachment, "unlink", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.detach(background=True)
    s.close()
    for fd in (fd for p in pipes for fd in p):
        with pytest.raises(OSError):
            os.fstat(fd)
