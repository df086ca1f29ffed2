"""The Python API: run a program, read its maps and what it printed (docs/api.md).

    result = pytrace.run(program, command="ls")      # to the end of the trace
    with pytrace.Trace(program) as t:                # in the background
        t.maps(); t.events()

A trace runs in a thread of its own (the runtime session, without signal
handlers); compiling, the privilege check, loading and attaching happen in
`start()`, which raises their errors.  The CLI runs the same path (`driver`).
"""
from __future__ import annotations

import atexit
import io
import queue
import tempfile
import threading
import weakref
from typing import Optional

from .driver import Request, build, check_privilege, execute, pid_problem, session
from .errors import UsageError
from .runtime.errors import RuntimeFailure
from .runtime.output import TextOutput
from .runtime.output.plain import plain_maps

__all__ = ["run", "Trace", "Result"]


def run(program: str, *, params=(), command: Optional[str] = None, pid: Optional[int] = None,
        duration: Optional[float] = None, unsafe: bool = False) -> "Result":
    """Run `program` to the end of its trace: exit(), `command` ending, `pid`
    exiting, `duration` seconds after attaching, or Ctrl-C (KeyboardInterrupt),
    which ends it as in the CLI (END runs, the maps are read)."""
    trace = Trace(program, params=params, command=command, pid=pid, duration=duration,
                  unsafe=unsafe)
    trace.start()
    try:
        return trace.wait()
    except KeyboardInterrupt:
        return trace.stop()


class Result:
    """A finished trace: ``maps`` ({map name: value}, read after END), ``output``
    (everything the program printed), ``exit_code`` (the CLI's status: 0),
    ``warnings`` (the compiler's and the run's warnings, as the CLI prints them) and
    ``command_output`` (the standard output of ``command``, else None)."""

    def __init__(self, maps: dict, output: str, exit_code: int, warnings: str,
                 command_output: Optional[str]):
        self.maps = maps
        self.output = output
        self.exit_code = exit_code
        self.warnings = warnings
        self.command_output = command_output

    def __repr__(self) -> str:
        return (f"Result(maps={sorted(self.maps)}, output={len(self.output)} characters, "
                f"exit_code={self.exit_code})")


_END = object()         # events(): the trace has ended
_running = weakref.WeakSet()     # traces to stop (and tear down) when Python exits
_atexit_registered = False


class Trace:
    """A trace running in the background; a context manager (start() on entry,
    stop() on exit).  The options are run()'s."""

    def __init__(self, program: str, *, params=(), command: Optional[str] = None,
                 pid: Optional[int] = None, duration: Optional[float] = None,
                 unsafe: bool = False):
        if command is not None and pid is not None:
            raise UsageError("command and pid are mutually exclusive")
        if pid is not None:
            problem = pid_problem(int(pid))
            if problem:
                raise UsageError(problem)
            pid = int(pid)
        if duration is not None and not duration >= 0:
            raise UsageError(f"duration must be a number of seconds >= 0, not {duration!r}")
        self._req = Request(program, "stdin", [str(p) for p in params], command=command,
                                   pid=pid, unsafe=unsafe)
        self._duration = duration
        self._session = None
        self._thread = None
        self._printed = _Printed()
        self._warnings = io.StringIO()
        self._events = queue.SimpleQueue()
        self._attached = threading.Event()      # attached, or ended before that
        self._done = threading.Event()
        self._final_maps = None
        self._error = None
        self._result = None
        self._command_out = None

    # ------------------------------------------------------------ control

    def start(self) -> "Trace":
        """Compile (errors.CompileError), check the privilege (PrivilegeError), load
        and attach (LoadError, AttachError); returns once every probe is attached."""
        if self._thread is not None:
            raise RuntimeError("a Trace starts once")
        compiled = build(self._req)
        check_privilege()
        self._warnings.write(compiled.warnings)
        if self._req.command:
            self._command_out = tempfile.TemporaryFile()
        self._session = session(
            compiled, self._req, out=self._printed, err=self._warnings, quiet=True,
            signals=False, duration=self._duration, on_attached=self._attached.set,
            exit_maps=self._keep_maps, output_factory=self._output,
            child_stdout=self._command_out.fileno() if self._command_out else None)
        self._thread = threading.Thread(target=self._run, args=(compiled,), name="pytrace",
                                        daemon=True)
        _stop_at_exit(self)
        self._thread.start()
        try:
            self._attached.wait()
        except BaseException:       # Ctrl-C while loading: torn down before it goes on
            self._halt()
            raise
        if self._error is not None:
            self._done.wait()
            raise self._error
        return self

    def stop(self) -> Result:
        """End the trace as Ctrl-C ends the CLI's (END runs, the maps are read) and
        wait for its teardown; its Result.  Ending an ended trace does nothing."""
        self._need_started()
        self._session.request_stop()
        return self.wait()

    def wait(self, timeout: Optional[float] = None) -> Optional[Result]:
        """Wait until the trace ends by itself; its Result (None on a timeout).
        Raises what ended the run if it failed."""
        self._need_started()
        if not self._done.wait(timeout):
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def __enter__(self) -> "Trace":
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self._halt()        # the body's exception is the one to see
        return False

    # ------------------------------------------------------------ reading

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    @property
    def result(self) -> Optional[Result]:
        """The Result once the trace has ended, else None."""
        return self._result

    @property
    def output(self) -> str:
        """What the program has printed so far."""
        return self._printed.text()

    def maps(self) -> dict:
        """Every map now, as plain values ({name: value}, as Result.maps): read while
        the trace runs, the final maps once it has ended."""
        self._need_started()
        if not self._done.is_set():
            try:
                return plain_maps(self._session.snapshot(ordered=False))
            except RuntimeFailure:          # ended meanwhile: the final maps
                self._done.wait()
        return self._final_maps if self._final_maps is not None else {}

    def events(self):
        """Each printed record (printf, print, time, join, system, cat: its text as
        printed) as it arrives, until the trace ends; from the first record on,
        whenever it is called (the records are queued once: iterators share them)."""
        self._need_started()
        while True:
            item = self._events.get()
            if item is _END:
                self._events.put(_END)      # for the next caller
                return
            yield item

    # ------------------------------------------------------------ inside

    def _need_started(self):
        if self._session is None:
            raise RuntimeError("the trace has not been started (Trace.start())")

    def _output(self, manifest, stream, fmt):
        return _Recorder(manifest, stream, self._events.put)

    def _keep_maps(self, models: dict) -> None:
        self._final_maps = plain_maps(models)

    def _run(self, compiled) -> None:
        try:
            status = execute(self._session, compiled, self._req)
            self._result = Result(self._final_maps or {}, self._printed.text(), status,
                                  self._warnings.getvalue(), self._command_text())
        except BaseException as e:      # raised in the caller's thread
            self._error = e
        finally:
            if self._command_out is not None:
                self._command_out.close()
            _running.discard(self)
            self._attached.set()
            self._events.put(_END)
            self._done.set()

    def _command_text(self) -> Optional[str]:
        f = self._command_out
        if f is None:
            return None
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    def _halt(self) -> None:
        """Stop and wait for the teardown, raising nothing of the run's."""
        if self._session is not None:
            self._session.request_stop()
        if self._thread is not None:
            self._done.wait()


def _stop_at_exit(trace: Trace) -> None:
    """A trace still running when Python exits is stopped and torn down first (its
    thread is a daemon: it never keeps Python from exiting)."""
    global _atexit_registered
    _running.add(trace)
    if not _atexit_registered:
        atexit.register(_stop_all)
        _atexit_registered = True


def _stop_all() -> None:
    for trace in list(_running):
        trace._halt()


class _Printed(io.TextIOBase):
    """The output's stream: every piece written, kept in order."""

    def __init__(self):
        super().__init__()
        self.parts = []

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def text(self) -> str:
        return "".join(self.parts)


class _Recorder(TextOutput):
    """The text output, also handing the text of each printed record to `event`."""

    def __init__(self, manifest, stream: _Printed, event):
        super().__init__(manifest, stream)
        self._parts = stream.parts
        self._event = event

    def record(self, action, record) -> None:
        start = len(self._parts)
        super().record(action, record)
        self._emitted(start)

    def print_map(self, map_meta, entries, top: int = 0, div: int = 0) -> None:
        start = len(self._parts)
        super().print_map(map_meta, entries, top, div)
        self._emitted(start)

    def _emitted(self, start: int) -> None:
        if len(self._parts) > start:
            self._event("".join(self._parts[start:]))
