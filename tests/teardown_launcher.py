"""Run the pytrace CLI with a record of what it creates in the kernel (test-only).

    python3 tests/teardown_launcher.py LOGFILE [pytrace arguments...]

Used by tests/test_teardown.py.  Before handing over to ``pytrace.cli.main`` it
wraps the runtime's system-call functions so that every BPF map, program and link
the run creates is written to LOGFILE (one JSON object a line) with its kernel id,
read from the process's own /proc/self/fdinfo, and every perf event with its fd.
Any open of a tracefs file for writing is logged too.  After
``Session.teardown`` it writes which of the process's fds still refer to a
BPF object, a perf event, a pidfd or an epoll set (none should), and the -c
child's pid and state ("gone": stopped and reaped by teardown itself).  Lines are flushed as written, so the record survives a process
killed by SIGPIPE.

One fault is injected on request (a test-only hook, nothing in pytrace reads it):
with PYTRACE_TEST_HANDLER_RAISES=1, the first async action handler called (a
printf, say) raises RuntimeError, as a bug in an output handler would.
"""
import json
import os
import sys

_LOG = open(sys.argv[1], "a", buffering=1)
KINDS = ("bpf-map", "bpf-prog", "bpf_link", "bpf-link", "perf_event", "pidfd", "eventpoll")


def log(**rec):
    _LOG.write(json.dumps(rec) + "\n")


def fd_ids(fd: int) -> dict:
    out = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("map_id", "prog_id", "link_id"):
                    out[key] = int(value)
    except OSError:
        pass
    return out


def kernel_fds() -> list:
    """This process's fds that hold a kernel tracing object (or a pidfd / epoll set)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if any(k in target for k in KINDS):
            out.append(f"{name} -> {target}")
    return out


def process_state(pid) -> str:
    """The -c child's state now: "gone" once it is reaped ("Z" if not yet)."""
    if pid is None:
        return "gone"
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def record_fd(kind, fn):
    def wrapper(*args, **kw):
        fd = fn(*args, **kw)
        log(event="create", kind=kind, fd=fd, **fd_ids(fd))
        return fd
    return wrapper


def watch_tracefs_writes():
    """Log every open of a tracefs file for writing (uprobe_events, kprobe_events,
    an event's enable...): pytrace attaches through PMUs and should open none."""
    import builtins
    real_open, real_os_open = builtins.open, os.open

    def is_tracefs(path) -> bool:
        return isinstance(path, (str, bytes)) and "tracing/" in os.fsdecode(path)

    def logged_open(file, mode="r", *args, **kw):
        if is_tracefs(file) and any(c in mode for c in "wax+"):
            log(event="tracefs_write", path=os.fsdecode(file))
        return real_open(file, mode, *args, **kw)

    def logged_os_open(path, flags, *args, **kw):
        if is_tracefs(path) and flags & (os.O_WRONLY | os.O_RDWR):
            log(event="tracefs_write", path=os.fsdecode(path))
        return real_os_open(path, flags, *args, **kw)
    builtins.open, os.open = logged_open, logged_os_open


def install():
    watch_tracefs_writes()
    from pytrace.runtime import actions, session
    from pytrace.runtime import syscall as S
    for name, kind in (("map_create", "map"), ("prog_load", "prog"),
                       ("link_create", "link"), ("link_create_uprobe_multi", "link"),
                       ("raw_tracepoint_open", "link"), ("perf_event_open", "perf")):
        setattr(S, name, record_fd(kind, getattr(S, name)))
    teardown = session.Session.teardown

    def logged_teardown(self):
        teardown(self)
        log(event="teardown", open=kernel_fds(), child=self.child_pid,
            child_state=process_state(self.child_pid))
    session.Session.teardown = logged_teardown
    if os.environ.get("PYTRACE_TEST_HANDLER_RAISES"):
        handlers = actions.handlers

        def raising_handlers(*args, **kw):
            def boom(rec):
                raise RuntimeError("injected failure in an output handler (test hook)")
            return [boom if h is not None else None for h in handlers(*args, **kw)]
        session.actions.handlers = raising_handlers


if __name__ == "__main__":
    install()
    from pytrace import cli
    sys.argv = ["pytrace"] + sys.argv[2:]
    sys.exit(cli.main())
