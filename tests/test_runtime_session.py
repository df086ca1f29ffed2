"""session.run against the real kernel with hand-built objects and a
minimal stand-in for the output module (the real one is smoke-tested last)."""

import io
import os
import signal
import struct
import subprocess
import threading
import time

import pytest

pytest.importorskip("llvmlite")

from bpfobj import Map, build_module, ir_emit, ir_function, ir_increment  # noqa: E402
from pytrace.runtime import syscall as S  # noqa: E402
from pytrace.runtime import uapi as U  # noqa: E402
from pytrace.runtime.errors import AttachError, LoadError, RuntimeFailure  # noqa: E402
from pytrace.runtime.session import RunOptions, run  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")


class StubOutput:
    """Stand-in for runtime.output: one plain line per call (given the manifest's
    typed records, runtime.manifest)."""

    def __init__(self, manifest, stream, fmt="text"):
        self.m = manifest
        self.s = stream
        self.fmt = fmt

    def attached(self, n):
        self.s.write(f"Attaching {n} probe{'' if n == 1 else 's'}...\n")

    def lost(self, n):
        self.s.write(f"Lost {n} events\n")

    def record(self, action, rec):
        assert action is self.m.actions[struct.unpack_from("<Q", rec)[0]]
        self.s.write(f"{action.kind} {struct.unpack_from('<q', rec, 8)[0]}\n")

    def _total(self, entries):
        return sum(struct.unpack_from("<q", v)[0] for _, vals in entries for v in vals)

    def print_map(self, meta, entries, top=0, div=0):
        self.s.write(f"map {meta.name} {len(entries)} {self._total(entries)}\n")

    def print_maps_at_exit(self, ms):
        for meta, entries in ms:
            self.print_map(meta, entries)

    def flush(self):
        pass


COMMON_MAPS = [Map("ringbuf", U.BPF_MAP_TYPE_RINGBUF, 0, 0, 65536),
               Map("lost_events", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
               Map("globals", U.BPF_MAP_TYPE_ARRAY, 4, 16, 1),
               Map("map_c", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
               Map("map_b", U.BPF_MAP_TYPE_HASH, 8, 8, 16)]
USER_MAPS = [
    {"name": "@c", "symbol": "map_c", "kind": "count", "percpu": True,
     "key": {"size": 8, "fields": []}, "value": {"kind": "int", "signed": False},
     "value_size": 8},
    {"name": "@b", "symbol": "map_b", "kind": "plain", "percpu": False,
     "key": {"size": 8, "fields": [{"offset": 0, "type": {"kind": "int", "signed": True}}]},
     "value": {"kind": "int", "signed": True}, "value_size": 8},
]
ASYNC = [
    {"kind": "printf", "format": "val %d\n",
     "args": [{"offset": 8, "type": {"kind": "int", "signed": True}}]},   # 0
    {"kind": "exit"},                                                     # 1
    {"kind": "printf", "format": "end %d\n",
     "args": [{"offset": 8, "type": {"kind": "int", "signed": True}}]},   # 2
    {"kind": "print_map", "map": "@c", "top": 0, "div": 0},               # 3
    {"kind": "clear", "map": "@c"},                                       # 4
    {"kind": "zero", "map": "@c"},                                        # 5
]


def obj(functions, programs, probes, maps_=COMMON_MAPS):
    man = {"version": 1, "probes": probes, "programs": programs, "maps": USER_MAPS,
           "internal": {"ringbuf": "ringbuf", "lost": "lost_events", "globals": "globals"},
           "globals": {"start_ns": 0, "cpid": 8}, "async": ASYNC}
    return build_module(functions, maps_, man)


BEGIN_P = {"symbol": "p_begin", "section": "raw_tracepoint/begin", "prog_type": 17,
           "name": "BEGIN", "attach": [{"kind": "begin"}]}
END_P = {"symbol": "p_end", "section": "raw_tracepoint/end", "prog_type": 17,
         "name": "END", "attach": [{"kind": "end"}]}
GETPPID_P = {"symbol": "p_tp", "section": "tracepoint/syscalls/sys_enter_getppid",
             "prog_type": 5, "name": "sys_enter_getp",
             "attach": [{"kind": "tracepoint", "category": "syscalls",
                         "event": "sys_enter_getppid", "cookie": 1}]}

END_IR = ir_function("p_end", "raw_tracepoint/end", ir_emit("ringbuf", 2, "7", "e"))


def run_capture(elf, **kw):
    out = io.StringIO()
    rc = run(elf, RunOptions(out=out, output_factory=StubOutput, **kw))
    return rc, out.getvalue()


def kernel_ids():
    return set(S.prog_ids()), set(S.map_ids())


def assert_nothing_left(before, timeout=5.0):
    """No BPF program or map beyond ``before`` (freed after an RCU grace period)."""
    deadline = time.monotonic() + timeout
    while True:
        p, m = kernel_ids()
        extra = (p - before[0], m - before[1])
        if not extra[0] and not extra[1]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left in the kernel: progs {extra[0]}, maps {extra[1]}")
        time.sleep(0.005)


# ------------------------------------------------------------------ exit from BEGIN

def test_begin_exit_end_and_map_dump():
    begin = ir_function("p_begin", "raw_tracepoint/begin",
                        ir_increment("map_c", "0", "c", "c_done"),
                        ir_emit("ringbuf", 0, "42", "a"),
                        ir_emit("ringbuf", 1, "0", "x"),
                        ir_emit("ringbuf", 0, "99", "b"))  # after exit(): dropped
    tp = ir_function("p_tp", "tracepoint/syscalls/sys_enter_getppid",
                     ir_emit("ringbuf", 0, "1", "t"))
    elf = obj(begin + tp + END_IR, [BEGIN_P, GETPPID_P, END_P],
              ["BEGIN", "tracepoint:syscalls:sys_enter_getppid", "END"])
    before = kernel_ids()
    t0 = time.monotonic()
    rc, text = run_capture(elf)
    assert rc == 0
    assert text == ("Attaching 3 probes...\nprintf 42\nprintf 7\n\n\n"
                    "map @b 0 0\nmap @c 1 1\n")
    assert time.monotonic() - t0 < 1.0
    assert_nothing_left(before)
    rc, text = run_capture(elf, quiet=True)
    assert text.startswith("printf 42\n")


def test_print_clear_zero_actions_and_lost():
    # BEGIN: @c++, print(@c), zero(@c), print(@c), @c++, clear(@c), print(@c),
    # then 300 printf records into a 4 KiB ring buffer (170 fit); the run
    # ends when the -c child exits (an exit() record would not fit).
    # print() reads the map when user space handles the record: @c is 2.
    loop = """
  br label %pre
pre:
  br label %loop
loop:
  %i = phi i64 [0, %pre], [%i2, %ok_l]"""
    emit_a, emit_b = ir_emit("ringbuf", 0, "%i", "l", "lost_events")
    after = """
  %i2 = add i64 %i, 1
  %more = icmp ult i64 %i2, 300
  br i1 %more, label %loop, label %fin
fin:"""
    begin = ir_function("p_begin", "raw_tracepoint/begin",
                        ir_increment("map_c", "0", "c1", "c1_done"),
                        ir_emit("ringbuf", 3, "0", "p1"),
                        ir_emit("ringbuf", 5, "0", "z"),
                        ir_emit("ringbuf", 3, "0", "p2"),
                        ir_increment("map_c", "0", "c2", "c2_done"),
                        ir_emit("ringbuf", 4, "0", "cl"),
                        ir_emit("ringbuf", 3, "0", "p3"),
                        (emit_a, loop + emit_b + after))
    small = [Map("ringbuf", U.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)] + COMMON_MAPS[1:]
    elf = obj(begin, [BEGIN_P], ["BEGIN"], small)
    before = kernel_ids()
    rc, text = run_capture(elf, child_argv=["true"])
    lines = text.splitlines()
    assert lines[:4] == ["Attaching 1 probe...", "map @c 1 2", "map @c 1 0", "map @c 1 0"]
    printed = [ln for ln in lines if ln.startswith("printf ")]
    lost = [int(ln.split()[1]) for ln in lines if ln.startswith("Lost ")]
    assert printed == [f"printf {i}" for i in range(len(printed))]
    assert len(printed) + sum(lost) == 300 and sum(lost) > 0
    assert lines[-2:] == ["map @b 0 0", "map @c 1 0"]
    assert_nothing_left(before)


# ------------------------------------------------------------------ -c, -p, signals

def test_child_gated_cpid_filter(workload):
    filt = """
  %pt = call i64 inttoptr (i64 14 to ptr)()
  %pid = lshr i64 %pt, 32
  %gk = alloca i32, align 4
  store i32 0, ptr %gk
  %g = call ptr inttoptr (i64 1 to ptr)(ptr @globals, ptr %gk)
  %gnull = icmp eq ptr %g, null
  br i1 %gnull, label %no, label %have
have:
  %cp = getelementptr i8, ptr %g, i64 8
  %cpid = load i64, ptr %cp
  %mine = icmp eq i64 %pid, %cpid
  br i1 %mine, label %yes, label %no
no:
  ret i64 0
yes:"""
    tp = ir_function("p_tp", "tracepoint/syscalls/sys_enter_getppid", filt,
                     ir_increment("map_c", "0", "c", "c_done"))
    # the alloca above is not in the entry block: hoist it
    tp = tp.replace("\n  %gk = alloca i32, align 4", "").replace(
        "entry:", "entry:\n  %gk = alloca i32, align 4", 1)
    elf = obj(tp + END_IR, [GETPPID_P, END_P],
              ["tracepoint:syscalls:sys_enter_getppid", "END"])
    before = kernel_ids()
    t0 = time.monotonic()
    rc, text = run_capture(elf, child_argv=[workload, "getppid", "57"])
    assert rc == 0
    assert text == "Attaching 2 probes...\nprintf 7\n\n\nmap @b 0 0\nmap @c 1 57\n"
    assert time.monotonic() - t0 < 2.0
    assert_nothing_left(before)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped


def test_child_exec_failure_tears_down():
    elf = obj(END_IR, [END_P], ["END"])
    before = kernel_ids()
    with pytest.raises(RuntimeFailure, match="Failed to fork child"):
        run_capture(elf, child_argv=["/nonexistent/command-xyz"])
    assert_nothing_left(before)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_pid_exit_ends_session():
    proc = subprocess.Popen(["sleep", "0.3"])
    try:
        elf = obj(END_IR, [END_P], ["END"])
        t0 = time.monotonic()
        rc, text = run_capture(elf, pid=proc.pid)
        dt = time.monotonic() - t0
    finally:
        proc.wait()
    assert rc == 0 and text.startswith("Attaching 1 probe...\nprintf 7\n\n\n")
    assert 0.2 < dt < 2.0
    with pytest.raises(RuntimeFailure, match="does not exist"):
        run_capture(elf, pid=proc.pid)  # reaped: gone


def test_sigterm_stops_interval_probe():
    perf = ir_function("p_perf", "perf_event",
                       ir_increment("map_c", "0", "c", "c_done"),
                       ir_emit("ringbuf", 0, "5", "a"))
    perf_p = {"symbol": "p_perf", "section": "perf_event", "prog_type": 7,
              "name": "interval_ms_5",
              "attach": [{"kind": "perf_event", "type": 1, "config": 0, "period": 5000000,
                          "freq": False, "cpus": "one", "cookie": 0}]}
    elf = obj(perf + END_IR, [perf_p, END_P], ["interval:ms:5", "END"])
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)
    before = kernel_ids()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    t0 = time.monotonic()
    try:
        rc, text = run_capture(elf)
    finally:
        timer.cancel()
    dt = time.monotonic() - t0
    assert rc == 0 and 0.25 < dt < 1.5
    lines = text.splitlines()
    n = lines.count("printf 5")
    assert n >= 20
    assert lines[-5:] == ["printf 7", "", "", "map @b 0 0", f"map @c 1 {n}"]
    assert signal.getsignal(signal.SIGINT) is old_int
    assert signal.getsignal(signal.SIGTERM) is old_term
    assert_nothing_left(before)


# ------------------------------------------------------------------ errors

def test_attach_error_tears_down():
    bad = dict(GETPPID_P, attach=[{"kind": "tracepoint", "category": "nosuch",
                                   "event": "thing", "cookie": 0}])
    tp = ir_function("p_tp", "tracepoint/syscalls/sys_enter_getppid", "")
    begin = ir_function("p_begin", "raw_tracepoint/begin", ir_emit("ringbuf", 0, "1", "a"))
    elf = obj(tp + begin, [BEGIN_P, bad], ["tracepoint:nosuch:thing", "BEGIN"])
    before = kernel_ids()
    out = io.StringIO()
    with pytest.raises(AttachError) as ei:
        run(elf, RunOptions(out=out, output_factory=StubOutput))
    assert ei.value.probe == "tracepoint:nosuch:thing"
    assert out.getvalue() == "Attaching 2 probes...\nprintf 1\n"
    assert_nothing_left(before)


def test_load_error_tears_down():
    ir = r'''
define i64 @p_begin(ptr %ctx) #0 section "raw_tracepoint/begin" {
entry:
  %k = alloca i32, align 4
  store i32 0, ptr %k
  %v = call ptr inttoptr (i64 1 to ptr)(ptr @map_b, ptr %k)
  %o = load i64, ptr %v
  ret i64 %o
}
'''
    elf = obj(ir, [BEGIN_P], ["BEGIN"])
    before = kernel_ids()
    with pytest.raises(LoadError, match="Error loading program") as ei:
        run_capture(elf)
    assert ei.value.program == "p_begin"
    assert_nothing_left(before)


# ------------------------------------------------------------------ with the real output module

def test_with_real_output_module():
    try:
        from pytrace.runtime.output import make_output  # noqa: F401
    except ImportError:
        pytest.skip("runtime.output not available yet")
    begin = ir_function("p_begin", "raw_tracepoint/begin",
                        ir_increment("map_c", "0", "c", "c_done"),
                        ir_emit("ringbuf", 0, "42", "a"),
                        ir_emit("ringbuf", 1, "0", "x"))
    elf = obj(begin + END_IR, [BEGIN_P, END_P], ["BEGIN", "END"])
    out = io.StringIO()
    assert run(elf, RunOptions(out=out)) == 0
    # (the empty @b prints as a blank line, as in bpftrace 0.17)
    assert out.getvalue() == "Attaching 2 probes...\nval 42\nend 7\n\n\n\n@c: 1\n"
    out = io.StringIO()
    assert run(elf, RunOptions(out=out, fmt="json")) == 0
    lines = out.getvalue().split("\n")
    assert lines[0] == '{"type": "attached_probes", "data": {"probes": 2}}'
    assert lines[3:5] == ["", ""]
