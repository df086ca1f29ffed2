"""The BPF object emitter, in this process and in the forked LLVM worker."""
import os
import signal

import pytest

from pytrace.codegen.emit import BackgroundEmitter, emit_object

IR = '''target triple = "bpfel"
define i64 @prog(ptr %ctx) section "tracepoint/x" {
  ret i64 7
}
'''


def no_child_left(pid):
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_worker_emits_what_this_process_emits():
    emitter = BackgroundEmitter()
    pid = emitter._pid
    assert emitter.emit(IR) == emit_object(IR)
    no_child_left(pid)


def test_meanwhile_runs_while_the_worker_compiles():
    ran = []
    emitter = BackgroundEmitter(meanwhile=lambda: ran.append(True))
    assert emitter.emit(IR)[:4] == b"\x7fELF"
    assert ran == [True]


def test_llvm_rejection_is_a_runtime_error():
    emitter = BackgroundEmitter()
    with pytest.raises(RuntimeError, match="undefined value"):
        emitter.emit(IR.replace("ret i64 7", "ret i64 %nowhere"))


def test_close_without_emit_stops_the_worker():
    emitter = BackgroundEmitter()
    pid = emitter._pid
    emitter.close()
    no_child_left(pid)
    emitter.close()                     # twice is harmless


def test_a_dead_worker_falls_back_to_this_process():
    emitter = BackgroundEmitter()
    os.kill(emitter._pid, signal.SIGKILL)
    assert emitter.emit(IR) == emit_object(IR)


def test_llvm_exit_becomes_its_error_message():
    # What LLVM does on a fatal backend error: print to stderr, then exit(1).
    emitter = BackgroundEmitter()
    pid = emitter._pid
    os.kill(pid, signal.SIGSTOP)
    os.write(emitter._stderr, b"error: <unknown>:0:0: in function prog i64 (ptr): "
                              b"Looks like the BPF stack limit is exceeded.\n")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RuntimeError) as e:
        emitter.emit(IR)
    assert str(e.value) == "in function prog i64 (ptr): Looks like the BPF stack limit is exceeded."


def test_a_failed_start_leaves_nothing_open(monkeypatch):
    before = set(os.listdir("/proc/self/fd"))

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(OSError):
        BackgroundEmitter()
    assert set(os.listdir("/proc/self/fd")) == before
