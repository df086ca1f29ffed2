"""The BPF object emitter, in this process and in the forked LLVM worker."""
import os
import signal

import pytest

from pytrace.codegen.emit import BackgroundEmitter, emit_object, reap_exited, split_functions

IR = '''target triple = "bpfel"
define i64 @prog(ptr %ctx) section "tracepoint/x" {
  ret i64 7
}
'''


def no_child_left(pid):
    reap_exited(block=True)         # a worker that answered is killed, reaped later
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


def test_split_functions_keeps_globals_in_both_halves():
    globals_ = '@"m0" = global {i32} {i32 1}, section "maps"\n'
    fns = [f'define i64 @"prog_{i}"(ptr %c) section "s{i}"\n{{\nentry:\n  ret i64 {i}\n}}\n'
           for i in range(4)]
    ir = 'target triple = "bpfel"\n' + globals_ + "".join(fns) + '@"_license" = global i8 0\n'
    assert split_functions(ir, min_bytes=len(ir) + 1) is None          # too small
    first, second = split_functions(ir, min_bytes=1)
    for half, mine in ((first, (0, 2)), (second, (1, 3))):
        assert half.startswith('target triple = "bpfel"\n' + globals_)
        assert '@"_license"' in half
        assert [f'@"prog_{i}"' in half for i in range(4)] == [i in mine for i in range(4)]


def test_a_large_module_compiles_in_two_halves_joined():
    from pytrace.compiler import CompileOptions, compile_source
    from pytrace.runtime import objfile
    probes = "".join(
        f"interval:ms:{i + 1} {{ @a{i}[comm, pid] = count(); @b{i} = hist(nsecs & {i}); "
        f'if (pid > {i}) {{ printf("%d %s\\n", pid, comm); }} }}\n' for i in range(40))
    st = compile_source(probes, "stdin", CompileOptions())
    assert split_functions(st.llvm_ir) is not None          # big enough to split
    joined = BackgroundEmitter().emit(st.llvm_ir)
    whole, parts = objfile.parse(st.elf), objfile.parse(joined)
    assert parts.programs == whole.programs and parts.manifest == whole.manifest
    assert {m.symbol: (m.type, m.key_size, m.value_size, m.max_entries)
            for m in parts.maps.values()} == \
        {m.symbol: (m.type, m.key_size, m.value_size, m.max_entries) for m in whole.maps.values()}


def test_a_large_source_gets_its_second_worker_before_the_module():
    """expect(): the second worker is forked (and loads LLVM) while the IR is built;
    the first still sees the end of its module though the second holds no pipe of it."""
    from pytrace.codegen import emit
    from pytrace.compiler import CompileOptions, compile_source
    from pytrace.runtime import objfile
    probes = "".join(
        f"interval:ms:{i + 1} {{ @a{i}[comm, pid] = count(); @b{i} = hist(nsecs & {i}); "
        f'if (pid > {i}) {{ printf("%d %s\\n", pid, comm); }} }}\n' for i in range(40))
    assert len(probes) >= emit.LARGE_SOURCE
    em = BackgroundEmitter()
    em.expect(len(probes))
    second = em._second
    assert second is not None and second._pid > 0
    em.expect(len(probes))                      # once
    assert em._second is second
    forked = []
    real = emit.BackgroundEmitter.__init__

    def spy(self, *a, **k):
        forked.append(self)
        real(self, *a, **k)
    emit.BackgroundEmitter.__init__ = spy
    try:
        st = compile_source(probes, "stdin", CompileOptions())
        joined = em.emit(st.llvm_ir)
    finally:
        emit.BackgroundEmitter.__init__ = real
    assert objfile.parse(joined).programs == objfile.parse(st.elf).programs
    assert forked == [] and em._second is None and second._pid == -1


def test_a_small_source_gets_no_second_worker():
    from pytrace.codegen import emit
    em = BackgroundEmitter()
    try:
        em.expect(emit.LARGE_SOURCE - 1)
        assert em._second is None
    finally:
        em.close()
