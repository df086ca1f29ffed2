"""LLVM IR text → optimised BPF ELF object bytes.

`emit_object` compiles in this process.  `BackgroundEmitter` compiles in a forked
process that loads LLVM (its shared library and the BPF target machine, ~10 ms)
while this one parses and checks the program, so on a machine with a second CPU
a compile pays only for LLVM's optimisation and code generation (a few ms); the
CLI always uses it, because it also turns LLVM's fatal errors into diagnostics.
A large module is compiled in two halves by two workers, and the two objects are
joined (runtime.objfile.join).
"""
from __future__ import annotations

import functools
import os
import select
import signal
import sys

from ..runtime.threads import Thread


# The optimisation passes, in order: what our IR needs (its stack slots promoted to
# registers, its branches and stores simplified) and no more. LLVM's O2 pipeline
# took four times as long (160 probes: 649 against 161 ms; with code generation,
# 1022 against 557 ms) for 0.8% fewer BPF instructions over the golden scripts,
# all of them in BEGIN programs; see docs/performance.md.
PASSES = ("sroa", "simplify_cfg", "instruction_combine", "dead_store_elimination", "simplify_cfg")

# The target machine, however LLVM is reached (llvmcapi, or _Binding)
TARGET = {"triple": "bpfel", "cpu": "v3", "opt": 2, "reloc": "static", "codemodel": "small"}


class _Binding:
    """LLVM through llvmlite.binding: for llvmlite versions llvmcapi was not tested with."""

    def __init__(self):
        # lazy: start-up time (LLVM's shared library, loaded in the emitting process only)
        import llvmlite.binding as llvm
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        options = dict(TARGET)
        target = llvm.Target.from_triple(options.pop("triple"))
        self._llvm = llvm
        self._tm = target.create_target_machine(**options)

    def compile(self, llvm_ir: str, passes) -> bytes:
        llvm = self._llvm
        mod = llvm.parse_assembly(llvm_ir)
        mod.verify()
        pb = llvm.create_pass_builder(self._tm, llvm.create_pipeline_tuning_options(speed_level=2))
        pm = llvm.create_new_module_pass_manager()
        for name in passes:
            getattr(pm, f"add_{name}_pass")()
        pm.run(mod, pb)
        return self._tm.emit_object(mod)


@functools.lru_cache(maxsize=None)
def _llvm():
    """LLVM loaded, with the BPF target machine made (the first call's ~10 ms)."""
    from . import llvmcapi      # lazy: start-up time (ctypes and LLVM's shared library)
    return llvmcapi.load(TARGET) or _Binding()


def emit_object(llvm_ir: str) -> bytes:
    """Raises RuntimeError (LLVM's message) if LLVM rejects the module."""
    return _llvm().compile(llvm_ir, PASSES)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return b""
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_EXITING = {}       # pid -> the thread that waits for a killed worker's exit
_HELD = set()       # this process's ends of its workers' pipes (a new worker closes them)


def _wait_for(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def reap_exited(block: bool = False) -> None:
    """Forget the killed workers that have been reaped (waiting for the rest with `block`)."""
    for pid, thread in list(_EXITING.items()):
        if block:
            thread.join()
        if not thread.is_alive():
            del _EXITING[pid]


def _write_all(fd: int, data: bytes):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# What the worker compiles while it waits for the module (if the module has not come
# by the time LLVM is loaded): LLVM's first module costs several ms more than the next
# one (its passes' and the BPF backend's first use), which this moves off the
# critical path.
_WARM_UP_IR = """target triple = "bpfel"
%map = type { i32, i32, i32, i32, i32 }
@m = global %map { i32 2, i32 4, i32 8, i32 1, i32 0 }, section "maps", align 4
define i64 @f(ptr %ctx) section "tracepoint/warm/up" {
  %k = alloca i32, align 4
  store i32 0, ptr %k, align 4
  %v = call ptr inttoptr (i64 1 to ptr)(ptr @m, ptr %k)
  %z = icmp eq ptr %v, null
  br i1 %z, label %out, label %add
add:
  %x = load i64, ptr %v, align 8
  %y = add i64 %x, 1
  store i64 %y, ptr %v, align 8
  br label %out
out:
  ret i64 0
}
"""

# The worker's answer: one status byte, then the object or the message.
_OK, _LLVM_ERROR, _OTHER_ERROR = b"O", b"E", b"X"


class BackgroundEmitter:
    """A forked worker that loads LLVM now and compiles one module later.

    Call `emit(llvm_ir)` once (it returns what `emit_object` returns and raises the
    same RuntimeError), or `close()` to drop the worker when no module will come.
    `meanwhile` runs in this process while the worker compiles (e.g. imports that
    the caller needs next).

    The worker also contains LLVM's fatal errors: on some (the BPF stack limit)
    LLVM prints to stderr and exit()s its process.  The worker's stderr goes to a
    memfd, and `emit` raises its text as a RuntimeError.  If the worker dies
    without a word, `emit` compiles in this process."""

    def __init__(self, meanwhile=None):
        """Raises OSError (with nothing left open) if the worker can't be started."""
        reap_exited()
        self._meanwhile = meanwhile
        self._ir_write = self._result_read = self._stderr = -1
        self._pid = -1
        self._second = None         # a second worker, for a large module
        try:
            self._stderr = os.memfd_create("pytrace-llvm-stderr")
            ir_read, self._ir_write = os.pipe()
            self._result_read, result_write = os.pipe()
        except OSError:
            self.close()
            raise
        try:
            self._pid = os.fork()
        except OSError:
            for fd in (ir_read, result_write):
                os.close(fd)
            self.close()
            raise
        if self._pid == 0:
            for fd in _HELD | {self._ir_write, self._result_read}:   # (an earlier worker
                os.close(fd)                                         # must see its EOF)
            self._work(ir_read, result_write, self._stderr)       # never returns
        os.close(ir_read)
        os.close(result_write)
        _HELD.update((self._ir_write, self._result_read, self._stderr))

    @staticmethod
    def _work(ir_read: int, result_write: int, stderr: int):
        status = 0
        try:
            # Ctrl-C reaches the whole process group: the parent decides what ends.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.dup2(stderr, 2)
            _llvm()
            if not select.select([ir_read], [], [], 0)[0]:    # no module yet: warm up
                emit_object(_WARM_UP_IR)
            llvm_ir = _read_all(ir_read)
            if llvm_ir:
                try:
                    answer = _OK + emit_object(llvm_ir.decode())
                except RuntimeError as e:
                    answer = _LLVM_ERROR + str(e).encode()
                except Exception as e:
                    answer = _OTHER_ERROR + repr(e).encode()
                _write_all(result_write, len(answer).to_bytes(8, "little") + answer)
                os.close(result_write)      # the parent has it all: it need not wait for the exit
        except BaseException:
            status = 1
        finally:
            os._exit(status)

    def expect(self, source_bytes: int):
        """The program's source is this long: a large one (whose module will be split)
        gets its second worker now, to load LLVM while this process builds the IR."""
        if source_bytes >= LARGE_SOURCE and self._second is None:
            try:
                self._second = BackgroundEmitter()
            except OSError:
                pass

    def emit(self, llvm_ir: str) -> bytes:
        parts = split_functions(llvm_ir)
        if parts is not None:
            return self._emit_in_two(parts)
        self._submit(llvm_ir)
        if self._meanwhile is not None:
            self._meanwhile()
        return self._result(llvm_ir)

    def _emit_in_two(self, parts) -> bytes:
        """A large module: half its functions here, half in a second worker forked now
        (after this one has its IR, so that it holds none of this one's pipes)."""
        first, second = parts
        self._submit(first)
        other, self._second = self._second, None
        if other is None:
            try:
                other = BackgroundEmitter()
            except OSError:
                pass
        if other is not None:
            other._submit(second)
        if self._meanwhile is not None:
            self._meanwhile()
        try:
            objects = [self._result(first),
                       other._result(second) if other is not None else emit_object(second)]
        finally:
            if other is not None:
                other.close()
        # lazy: start-up time (only large modules are split)
        from ..runtime.objfile import join
        return join(objects)

    def _submit(self, llvm_ir: str):
        try:
            _write_all(self._ir_write, llvm_ir.encode())
        except OSError:         # the worker is gone
            pass
        self._close_ir()

    def _result(self, llvm_ir: str) -> bytes:
        size = int.from_bytes(_read_exactly(self._result_read, 8), "little")
        answer = _read_exactly(self._result_read, size)     # b"" if the worker died first
        os.lseek(self._stderr, 0, os.SEEK_SET)
        llvm_said = _read_all(self._stderr).decode(errors="replace")
        self.close()
        if answer[:1] == _OK:
            if llvm_said:
                sys.stderr.write(llvm_said)
            return answer[1:]
        if answer[:1] == _LLVM_ERROR:
            raise RuntimeError(answer[1:].decode(errors="replace"))
        if "error:" in llvm_said:
            raise RuntimeError(_first_error(llvm_said))
        return emit_object(llvm_ir)

    def _close_ir(self):
        if self._ir_write >= 0:
            os.close(self._ir_write)
            _HELD.discard(self._ir_write)
            self._ir_write = -1

    def _reap(self):
        """Kill the worker and reap it in a thread: unmapping LLVM takes a process a
        few ms to exit, which nobody need wait for."""
        if self._pid > 0:
            try:
                os.kill(self._pid, 9)
            except ProcessLookupError:
                pass
            _EXITING[self._pid] = Thread(_wait_for, self._pid)
            self._pid = -1
        reap_exited()

    def close(self):
        """Stop the worker (if still running), reap it (now or later) and close its files."""
        self._close_ir()
        self._reap()
        for name in ("_result_read", "_stderr"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                _HELD.discard(fd)
                setattr(self, name, -1)
        if self._second is not None:
            self._second.close()
            self._second = None


# LLVM takes ~0.65 ms per KiB of our IR; a second worker costs ~30 ms (fork, loading
# LLVM, joining the objects), so only modules above this size are split.
SPLIT_BYTES = 256 * 1024
# A source this long makes a module about that size (~60 bytes of IR a byte: 40
# probes of bench.py's row 6 are 5 KiB of source and 320 KiB of IR).
LARGE_SOURCE = 4 * 1024


def split_functions(llvm_ir: str, min_bytes: int = SPLIT_BYTES):
    """Two modules with every global and alternate functions of `llvm_ir` (programs
    never call each other), or None if it is too small to be worth splitting."""
    if len(llvm_ir) < min_bytes:
        return None
    common, functions, current = [], [], None
    for line in llvm_ir.splitlines(keepends=True):
        if current is not None:
            current.append(line)
            if line.startswith("}"):
                functions.append("".join(current))
                current = None
        elif line.startswith("define "):
            current = [line]
        else:
            common.append(line)
    if current is not None or len(functions) < 2:
        return None
    head = "".join(common)
    return [head + "".join(functions[0::2]), head + "".join(functions[1::2])]


def _first_error(text: str) -> str:
    """The first `error:` line LLVM printed, without its `<unknown>:0:0:` location."""
    for line in text.splitlines():
        if line.startswith("error:"):
            message = line[len("error:"):].strip()
            if message.startswith("<unknown>:0:0:"):
                message = message[len("<unknown>:0:0:"):].strip()
            return message
    return text.strip()
