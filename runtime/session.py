"""One tracing session: load, BEGIN, attach, event loop, END, print maps, teardown.

    from pytrace.runtime.session import run, RunOptions
    rc = run(elf_bytes, RunOptions(out=sys.stdout, fmt="text"))

Teardown (every fd closed, every probe detached, the -c child reaped)
happens on every path, errors and signals included.  Errors are raised as
``errors.RuntimeFailure`` subclasses for the CLI to render.
"""

from __future__ import annotations

import errno as E
import os
import select
import _signal as signal     # (not `signal`: its enums import enum, ~5 ms of a start)
import struct
import sys
import time

from .record import record
from .threads import Lock as _Lock
from . import attach as A
from . import uapi as U
from . import actions, loader, maps, objfile
from . import syscall as S
from .errors import BpfError, LoadError, PermissionFailure, RuntimeFailure
from .events import FullCounter, LostCounter, RingBuffer, full_text
from .manifest import Manifest


@record
class RunOptions:
    out: object = None            # text stream for trace output (None: sys.stdout)
    fmt: str = "text"             # "text" | "json" | "folded"
    quiet: bool = False           # no "Attaching N probes..." line
    child_argv: list | None = None   # -c: command to run, gated until attached
    pid: int | None = None     # -p: stop when this process exits
    verbose: bool = False
    buffering: str | None = None   # -B: "line" / "none" (flush every record), "full"
    # where the "\n\n" before the exit map dump goes; None: ``out``.  bpftrace
    # writes it to stdout even with -o, the CLI can pass sys.stdout for that.
    sep_stream: object = None
    err: object = None            # stream for verbose/warning messages (None: sys.stderr)
    # (manifest, stream, fmt) -> output object; None: runtime.output.make_output
    output_factory: object = None
    # the process exits after the run (the CLI): SIGINT/SIGTERM stay ignored after
    # teardown instead of getting their old handlers back
    exiting: bool = False
    metrics: tuple | None = None     # --metrics: (host, port) to serve /metrics on
    # SIGINT/SIGTERM stop the run, SIGUSR1 prints the maps (the CLI; only possible in
    # the main thread).  False (the Python API's thread): only request_stop() stops it
    signals: bool = True
    duration: float | None = None    # stop this many seconds after attaching
    on_attached: object = None   # () -> None, once every probe is attached
    # the maps at exit: None prints them (after "\n\n"), else they are passed to
    # this, {name: output.values.MapModel} as snapshot() gives them, and not printed
    exit_maps: object = None
    child_stdout: int | None = None  # an fd the -c child's stdout goes to (None: ours)


def run(elf_bytes: bytes, options: RunOptions = None) -> int:
    """Run a compiled object until exit()/signal/child exit; returns the exit code."""
    return run_session(Session(elf_bytes, options or RunOptions()))


def run_session(sess: "Session") -> int:
    """Run a session to its end and tear it down; low-level failures become
    ``RuntimeFailure``s."""
    try:
        return sess.run()
    except BpfError as e:
        if e.errno == E.EPERM:
            raise PermissionFailure() from e
        raise RuntimeFailure(str(e)) from e
    except OSError as e:
        if e.errno not in _WRITE_ERRORS:
            raise
        # the output cannot be written (-o on a full disk, stdout on /dev/full)
        raise RuntimeFailure(f"failed to write the output: {os.strerror(e.errno)}") from e
    finally:
        sess.teardown()


_WRITE_ERRORS = (E.ENOSPC, E.EDQUOT, E.EFBIG, E.EIO)


_U64 = struct.Struct("<Q")
_BATCH = 4096  # records per ring buffer read (the consumer position is published per read)
# Once a stop is asked (signal, -c/-p exit), the records already queued are
# printed for at most this long; the rest are dropped and counted.
STOP_BUDGET = 0.25
# How often the memory map of a -c child or -p process is read while a program that
# prints user symbols runs (to resolve them after the process exits)
KEEP_MAPS_EVERY = 0.05


def _write_text(stream, s: str) -> None:
    """Write to a text or binary stream."""
    try:
        stream.write(s)
    except TypeError:
        stream.write(s.encode())


class Session:
    def __init__(self, elf_bytes: bytes, options: RunOptions, manifest: dict | None = None):
        """`manifest`: the object's manifest, already decoded (by the caller that
        compiled it, or from the object cache), else read from the object."""
        self.elf = elf_bytes
        self._given_manifest = manifest
        self.opt = options
        self.out = options.out if options.out is not None else sys.stdout
        self.errs = options.err if options.err is not None else sys.stderr
        self.spec = None
        self.manifest = Manifest()
        self.obj = None
        self._early = None          # loader.EarlyMaps, until load takes them
        self.output = None
        self.rb = None
        self.lost = None
        self.full = None
        self.perf = None            # skboutput(): perf buffers and PCAP files (perfbuf.py)
        self.reader = None
        self.attachments = A.AttachSet()
        self.ep = None
        self.stop_reason = None
        self._sig_flag = False      # SIGINT/SIGTERM seen
        self._usr1_flag = False     # SIGUSR1 seen: print every map
        self._stopping = False      # the stop is under way: another SIGINT ends at once
        self._interrupted = False   # KeyboardInterrupt raised (once; later signals ignored)
        self._backlog = []          # records read but not handled when a stop was asked
        self._wake_r = self._wake_w = None
        self._old_handlers = {}
        self._old_wakeup = None
        self._signals_installed = False
        self._pidfds = {}           # fd -> "child" | "pid"
        self.child_pid = None
        self._child_reaped = False
        self._gate_w = None
        self._err_r = None
        self._handlers = []
        self.watches = A.OnCall(self.attachments, None, (), self._notice)   # func+argN
        self._warned = set()
        self._last_lost_check = 0.0
        self._torn_down = False
        self.metrics = None         # --metrics: the /metrics server (runtime.metrics)
        # held while the maps are read from another thread (snapshot), and while
        # teardown closes them and the wake-up pipe: no fd is used once closed
        self._lock = _Lock()

    # ------------------------------------------------------------ main sequence

    def run(self) -> int:
        if os.geteuid() != 0:
            raise PermissionFailure()
        self._prepare()
        self._load()
        self._start()
        begin, end, others = self._programs_by_role()
        for lp in begin:
            A.run_once(lp.fd)
        self._process_events()  # BEGIN's output, and maybe its exit()
        if self.stop_reason is None and not self._sig_flag:
            self._trace(others)
        self._stop(end)
        return 0

    def _prepare(self) -> None:
        """Parse the object; tracefs (for tracepoints), the output, the -p watch."""
        self.spec = objfile.parse(self.elf, manifest=self._given_manifest)
        self._early = loader.EarlyMaps(self.spec)   # the ring buffer, made meanwhile
        m = self.manifest = self.spec.contract
        if any("tracepoint" in p.attach_kinds for p in m.programs):
            from . import tracefs     # lazy: start-up time (only programs with tracepoints)
            tracefs.ensure_mounted()
        factory = self.opt.output_factory
        if factory is None:
            from .output import make_output as factory     # lazy: start-up time
        self.output = factory(m, self.out, self.opt.fmt)
        if self.opt.buffering in ("line", "none"):
            self.output.flush_every_record = True
        elif self.opt.buffering == "full":
            self.output.flush_every_record = False
        if self.opt.pid is not None:
            self._watch_pid(self.opt.pid)

    def _load(self) -> None:
        """Maps and programs into the kernel; the ring buffer, the lost-events
        counter, the maps reader and the async action handlers."""
        m = self.manifest
        try:
            self.obj = loader.load(self.spec, early=self._early)
        except LoadError as e:
            if not self.opt.verbose:
                raise
            if e.log_tail:
                print("\n".join(e.log_tail), file=self.errs)     # the verifier's words first
            raise LoadError(e.program, e.log, e.errno, e.name, e.probe, hint=False) from None
        if self.opt.verbose:
            self._verbose_programs()
        rbm = self.obj.optional_map(m.internal.ringbuf)
        if rbm is not None:
            self.rb = RingBuffer(rbm.fd, rbm.max_entries)
        lm = self.obj.optional_map(m.internal.lost)
        if lm is not None:
            self.lost = LostCounter(lm)
        fm = self.obj.optional_map(m.internal.full)
        if fm is not None:
            self.full = FullCounter(fm, [(u, self.obj.maps[u.symbol].max_entries)
                                         for u in m.maps])
        self.reader = maps.MapsReader(self.obj, m)
        self.watches.probes = m.probes
        set_reader = getattr(self.output, "set_maps_reader", None)
        if set_reader is not None:          # stacks: the output reads the stack maps
            set_reader(self.reader)
        self._build_handlers()
        self._open_perf()

    def _start(self) -> None:
        """The -c child (held until attached), /metrics, globals, signals, epoll,
        "Attaching"."""
        if self.opt.child_argv:     # forked before the /metrics thread exists
            self._spawn_gated_child(list(self.opt.child_argv))
        if self.opt.metrics is not None:
            from .metrics import MetricsServer     # lazy: start-up time (only --metrics)
            self.metrics = MetricsServer(self.opt.metrics, self.manifest.maps, self.snapshot)
        self.watches.pid = self.child_pid or self.opt.pid
        self._write_globals()
        self._open_wake_pipe()
        if self.opt.signals:
            self._install_signals()
        self._setup_epoll()
        if not self.opt.quiet:
            # as 0.17, a watchpoint armed at run time is not counted (its uprobe is)
            deferred = sum(e.deferred for p in self.manifest.programs for e in p.attach)
            self.output.attached(len(self.manifest.probes) - deferred)
            self._flush()

    def _programs_by_role(self) -> tuple:
        """The loaded programs to run as BEGIN, as END, and to attach."""
        begin, end, others = [], [], []
        for p in self.manifest.programs:
            kinds = p.attach_kinds
            lp = self.obj.programs[p.symbol]
            if "begin" in kinds:
                begin.append(lp)
            if "end" in kinds:
                end.append(lp)
            if kinds - {"begin", "end"}:
                others.append(lp)
        return begin, end, others

    def _trace(self, programs) -> None:
        """Attach and enable every probe, release the -c child, and trace until a
        stop (iter probes: run once over their objects, then the run ends)."""
        for lp in _attach_order(programs):
            for entry in lp.meta.attach:
                if entry.deferred:
                    self.watches.add(lp.fd, entry)
            self.attachments.add(A.attach_program(
                lp.fd, lp.meta.attach, self.manifest.probes, self.child_pid,
                uprobe_multi_links=lp.expected_attach_type == U.BPF_TRACE_UPROBE_MULTI,
                warn=self.errs.write))
        self.attachments.enable_all()
        if self.child_pid is not None:
            self._release_child()
        if os.environ.get("__BPFTRACE_NOTIFY_PROBES_ATTACHED"):
            # bpftrace's runtime tests wait for this line to start their workload
            self.errs.write("__BPFTRACE_NOTIFY_PROBES_ATTACHED\n")
            self.errs.flush()
        if self.opt.on_attached is not None:
            self.opt.on_attached()
        iterators = [a for a in self.attachments.items if a.kind == "iter"]
        if iterators:
            for att in iterators:
                A.run_iterator(att, self._process_events)
            self.stop_reason = self.stop_reason or "iter"
        else:
            self._loop()

    def _stop(self, end_programs) -> None:
        """Detach, what was queued (bounded), END and its output, the maps."""
        self._stopping = True
        stop_time = time.monotonic()
        self.watches.stop()
        self.attachments.detach(background=True)
        self.watches.resume()
        self._drain_at_stop(stop_time + STOP_BUDGET)
        for lp in end_programs:
            A.run_once(lp.fd)
        self._drain()
        self._report_lost()
        self._report_full()
        if self.opt.exit_maps is not None:
            self._flush()
            self.opt.exit_maps(self.snapshot())
            return
        sep = self.opt.sep_stream if self.opt.sep_stream is not None else self.out
        self._flush()
        _write_text(sep, "\n\n")
        if sep is not self.out:
            sep.flush()
        self._print_all_maps()

    def _dump_all_maps(self) -> list:
        """(UserMap, raw entries) of every map, in bytewise name order."""
        user_maps = sorted(self.manifest.maps, key=lambda mm: mm.name.encode())
        return [(mm, maps.dump(self.obj.maps[mm.symbol])) for mm in user_maps]

    def _print_all_maps(self) -> None:
        """Every map, in bytewise name order (at exit, and on SIGUSR1)."""
        self.output.print_maps_at_exit(self._dump_all_maps())
        self._flush()

    def snapshot(self, ordered: bool = True) -> dict:
        """Every map decoded now, name -> ``output.values.MapModel`` (its entries
        sorted as printed, unless not ``ordered``: cheaper, for reading values).  Safe
        to call from another thread while the trace runs: it only reads the maps.
        Raises RuntimeFailure when the maps are not loaded (yet, or any more)."""
        with self._lock:
            if self.obj is None or self._torn_down:
                raise RuntimeFailure("the trace's maps are not loaded")
            return {mm.name: self.output.model(mm, entries, ordered=ordered)
                    for mm, entries in self._dump_all_maps()}

    # ------------------------------------------------------------ events

    def _open_perf(self):
        """skboutput()'s PCAP files and perf buffers, polled with the ring buffer."""
        if any(a.kind == "skboutput" for a in self.manifest.actions):
            from . import perfbuf     # lazy: start-up time (only programs that call skboutput)
            from .output.values import boot_time_ns
            self.perf = perfbuf.SkbOutput(self.manifest.actions, self.obj.maps, boot_time_ns())

    def _build_handlers(self):
        self._handlers = actions.handlers(self.manifest.actions, self.output, self.reader,
                                          self.watches)

    def _notice(self, text: str) -> None:
        self.output.notice(text)

    def _dispatch(self, recs, honour_exit: bool, deadline) -> tuple:
        """Act on records in order, until a stop is asked (or, with a deadline,
        until it passes): each check is per record, as one system() record can
        take milliseconds.  Returns (records handled, exit record seen); an
        honoured exit record is the last one handled."""
        hs = self._handlers
        n = len(hs)
        unpack = _U64.unpack_from
        clock = time.monotonic
        for i, rec in enumerate(recs):
            if deadline is None:
                if self._sig_flag and not self._stopping:
                    return i, False
            elif clock() > deadline:
                return i, False
            if len(rec) < 8:
                continue
            aid = unpack(rec)[0]
            if aid >= n:
                self._warn_once(aid, f"WARNING: unknown async action id {aid}")
                continue
            h = hs[aid]
            if h is None:
                if honour_exit:
                    return i + 1, True
                continue
            h(rec)
        return len(recs), False

    def _process_events(self, honour_exit: bool = True, deadline=None) -> None:
        """Print the records queued when called, never those that arrive
        meanwhile: the reader's own writes may be traced, and chasing them
        would keep it from ever seeing a signal.  An exit() record stops the
        run, and bpftrace drops the events queued after it."""
        if self.perf is not None:
            self.perf.poll()
        rb = self.rb
        if rb is None:
            return
        upto = rb.producer_pos()
        while True:
            recs, self._backlog = self._backlog or rb.read(_BATCH, upto), []
            if not recs:
                break
            handled, exited = self._dispatch(recs, honour_exit, deadline)
            if exited:
                self.stop_reason = "exit"
                rb.discard_pending()
                break
            if handled < len(recs):     # a stop was asked, or the deadline passed
                self._backlog = recs[handled:]
                break
        self._flush()
        if honour_exit:
            self._maybe_lost()

    def _drain(self) -> None:
        """Everything queued now (once every probe is detached: END's output)."""
        self._process_events(honour_exit=False)

    def _drain_at_stop(self, deadline: float) -> None:
        """After detaching: what was queued is printed until the deadline, the
        rest dropped and counted; after exit(), all of it is dropped, as bpftrace."""
        if self.rb is None:
            return
        if self.stop_reason != "exit":
            self._process_events(honour_exit=False, deadline=deadline)
        dropped = len(self._backlog) + self.rb.discard_pending()
        self._backlog = []
        if dropped and self.stop_reason != "exit":
            self._flush()
            print(f"WARNING: {dropped} events were not printed: they were still queued "
                  f"{STOP_BUDGET:g} s after the trace was asked to stop", file=self.errs)

    def _loop(self) -> None:
        ep = self.ep
        timeout = 1.0 if self.lost is not None else -1
        wake = self._wake_r
        pidfds = self._pidfds
        end = None if self.opt.duration is None else time.monotonic() + self.opt.duration
        keep = self._maps_keeper()
        if keep is not None:
            timeout = KEEP_MAPS_EVERY if timeout < 0 else min(timeout, KEEP_MAPS_EVERY)
        while self.stop_reason is None:
            if keep is not None:
                keep()
            if self._sig_flag:
                self.stop_reason = "signal"
                break
            if self._usr1_flag:
                self._usr1_flag = False
                self._print_all_maps()
            wait = timeout
            if end is not None:
                wait = end - time.monotonic()
                if wait <= 0:
                    self.stop_reason = "duration"
                    break
                wait = wait if timeout < 0 else min(wait, timeout)
            try:
                evs = ep.poll(0 if self._backlog else wait)
            except InterruptedError:
                continue
            for fd, _ in evs:
                if fd == wake:
                    self._drain_wake()
                elif fd in pidfds:
                    self.stop_reason = pidfds[fd]
            self._process_events()
            if self._sig_flag and self.stop_reason is None:
                self.stop_reason = "signal"

    def _maps_keeper(self):
        """For programs that print user symbols or stacks: a function that keeps the
        -c child's (or -p process's) memory map, read every KEEP_MAPS_EVERY seconds,
        so that its frames still resolve once it has exited (bpftrace 0.17 prints
        them as addresses then); None for other programs."""
        pid = self.child_pid or self.opt.pid
        ctx = getattr(self.output, "ctx", None)
        if pid is None or ctx is None or not _uses_user_symbols(self.spec.manifest):
            return None
        last = [0.0]

        def keep():
            now = time.monotonic()
            if now - last[0] >= KEEP_MAPS_EVERY:
                last[0] = now
                ctx.symbols.user.remember(pid)
        return keep

    def _maybe_lost(self):
        if self.lost is None:
            return
        now = time.monotonic()
        if now - self._last_lost_check < 0.1:
            return
        self._last_lost_check = now
        self._report_lost()
        if self.opt.verbose:
            self._report_full()

    def _report_full(self):
        """Updates dropped because a map was full: at the stop, and with -v as they
        happen."""
        if self.full is None:
            return
        for name, limit, dropped in self.full.poll():
            self.errs.write(full_text(name, limit, dropped))
        self.errs.flush()

    def _report_lost(self):
        if self.lost is None:
            return
        n = self.lost.poll() + (self.perf.take_lost() if self.perf is not None else 0)
        if n:
            self.output.lost(n)
            self._flush()

    def _flush(self):
        try:
            fl = getattr(self.output, "flush", None)
            if fl is not None:
                fl()
            else:
                self.out.flush()
        except BrokenPipeError:
            raise                   # stdout's reader is gone: the run ends
        except OSError as e:
            if e.errno in _WRITE_ERRORS:
                raise               # the output cannot be written: the run ends
        except (AttributeError, ValueError):
            pass

    def _warn_once(self, key, msg):
        if key not in self._warned:
            self._warned.add(key)
            print(msg, file=self.errs)

    # ------------------------------------------------------------ setup pieces

    def _write_globals(self):
        gm = self.obj.optional_map(self.manifest.internal.globals)
        if gm is None:
            return
        slots = self.manifest.globals
        buf = bytearray(gm.value_size)
        for off, value in ((slots.start_ns, time.clock_gettime_ns(time.CLOCK_BOOTTIME)),
                           (slots.cpid, self.child_pid or 0)):
            if off is not None and off + 8 <= len(buf):
                struct.pack_into("<Q", buf, off, value)
        maps.update(gm, bytes(gm.key_size), bytes(buf))

    def _open_wake_pipe(self):
        """The pipe a signal (set_wakeup_fd) or request_stop() writes to wake the loop."""
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake_r, self._wake_w = r, w

    def request_stop(self) -> None:
        """Stop the run as SIGINT does (END runs, the maps are taken); safe from
        another thread, before or during the run."""
        self._sig_flag = True
        with self._lock:
            if self._wake_w is not None:
                try:
                    os.write(self._wake_w, b"\0")
                except OSError:         # full: the loop is woken already
                    pass

    def _install_signals(self):
        w = self._wake_w

        def stop(signum, frame):
            # a second one ends at once: during END or the map dump, or while a write
            # to an output nobody reads keeps the trace from acting on the first
            if self._stopping or self._sig_flag:
                if not self._interrupted:   # once: teardown is not to be cut short
                    self._interrupted = True
                    raise KeyboardInterrupt
                return
            self._sig_flag = True

        def print_maps(signum, frame):
            self._usr1_flag = True

        try:
            self._old_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, stop)
        except ValueError:      # not the main thread (the Python API's): request_stop() stops it
            return
        self._old_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, stop)
        self._old_handlers[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, print_maps)
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._signals_installed = True

    def _hold_signals(self):
        """Teardown is not to be cut short: SIGINT/SIGTERM are ignored until it ends."""
        if self._signals_installed:
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)

    def _restore_signals(self):
        if not self._signals_installed:
            return
        self._signals_installed = False
        try:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
        except (ValueError, OSError):
            signal.set_wakeup_fd(-1)
        for s, h in self._old_handlers.items():
            if self.opt.exiting and s in (signal.SIGINT, signal.SIGTERM):
                continue            # still held: a late one would only cut the exit short
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._old_handlers.clear()

    def _drain_wake(self):
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _setup_epoll(self):
        self.ep = select.epoll()
        if self.rb is not None:
            self.ep.register(self.rb.fd, select.EPOLLIN)
        if self._wake_r is not None:
            self.ep.register(self._wake_r, select.EPOLLIN)
        for fd in self._pidfds:
            self.ep.register(fd, select.EPOLLIN)
        for fd in self.perf.fds() if self.perf is not None else ():
            self.ep.register(fd, select.EPOLLIN)

    def _watch_pid(self, pid: int):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise RuntimeFailure(f"process {pid} does not exist") from None
        except OSError as e:
            raise RuntimeFailure(f"cannot watch process {pid}: {e.strerror}") from None
        self._pidfds[fd] = "pid"

    def _spawn_gated_child(self, argv):
        """fork now; the child execs only once _release_child() writes the gate."""
        if not _executable(argv[0]):
            raise RuntimeFailure(f"Failed to fork child: path '{argv[0]}' does not exist "
                                 "or is not executable")
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            for fd in (gate_r, gate_w, err_r, err_w):
                os.close(fd)
            raise RuntimeFailure(f"failed to fork child: {e.strerror}") from None
        if pid == 0:  # child
            code = 127
            try:
                os.close(gate_w)
                os.close(err_r)
                for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
                    signal.signal(s, signal.SIG_DFL)
                if self.opt.child_stdout is not None:
                    os.dup2(self.opt.child_stdout, 1)
                while True:
                    try:
                        b = os.read(gate_r, 8)   # 8 bytes, as bpftrace's child reads
                        break
                    except InterruptedError:
                        continue
                if not b:
                    code = 0  # session aborted before release
                else:
                    os.close(gate_r)
                    os.execvp(argv[0], argv)
            except OSError as e:
                try:
                    os.write(err_w, f"{e.errno}".encode())
                except OSError:
                    pass
            except BaseException:
                pass
            os._exit(code)
        os.close(gate_r)
        os.close(err_w)
        self.child_pid = pid
        self._gate_w = gate_w
        self._err_r = err_r
        try:
            self._pidfds[os.pidfd_open(pid)] = "child"
        except OSError:
            pass

    def _release_child(self):
        if self._gate_w is None:
            return
        os.write(self._gate_w, b"\0" * 8)
        os.close(self._gate_w)
        self._gate_w = None
        data = b""
        while True:  # EOF as soon as exec succeeds (err_w is close-on-exec)
            try:
                chunk = os.read(self._err_r, 64)
            except InterruptedError:
                continue
            if not chunk:
                break
            data += chunk
        os.close(self._err_r)
        self._err_r = None
        if data:
            err = int(data.decode() or 0)
            raise RuntimeFailure(f"failed to run command '{self.opt.child_argv[0]}': "
                                 f"{os.strerror(err)}")

    def _verbose_programs(self):
        for lp in self.obj.programs.values():
            try:
                info = S.prog_info(lp.fd)
                print(f"Program ID: {info['id']} ({lp.symbol}, {lp.name})", file=self.errs)
            except BpfError:
                pass

    # ------------------------------------------------------------ teardown

    def teardown(self):
        if self._torn_down:
            return
        self._torn_down = True
        errors = []

        def step(fn):
            try:
                fn()
            except BaseException as e:  # keep tearing down
                errors.append(e)

        step(self._hold_signals)
        if self.metrics is not None:
            step(self.metrics.close)    # before the maps close: waits for a scrape under way
        step(self.watches.stop)
        step(self.attachments.close)
        step(self.watches.resume)       # a process a watchpoint's uprobe stopped goes on
        if self.rb is not None:
            step(self.rb.close)
        if self.perf is not None:
            step(self.perf.close)
        with self._lock:                # no snapshot() reads a closed map
            if self.obj is not None:
                step(self.obj.close)
        if self._early is not None:     # made, never loaded (a failure in between)
            step(self._early.close)
        step(self._stop_child)
        for fd in list(self._pidfds):
            step(lambda fd=fd: os.close(fd))
        self._pidfds.clear()
        if self.ep is not None:
            step(self.ep.close)
        with self._lock:                # no request_stop() writes to a closed fd
            for fd in (self._wake_r, self._wake_w, self._gate_w, self._err_r):
                if fd is not None:
                    step(lambda fd=fd: os.close(fd))
            self._wake_r = self._wake_w = self._gate_w = self._err_r = None
        step(self._restore_signals)

    def _stop_child(self):
        pid = self.child_pid
        if pid is None or self._child_reaped:
            return
        if self._gate_w is not None:  # never released: EOF makes it exit
            os.close(self._gate_w)
            self._gate_w = None
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            self._child_reaped = True
            return
        if done == 0:
            try:
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)    # a stopped child acts on SIGTERM only once resumed
            except ProcessLookupError:
                pass
            if not self._wait_child(pid, 5.0):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._wait_child(pid, None)
        self._child_reaped = True

    def _wait_child(self, pid, timeout):
        pidfd = None
        for fd, what in self._pidfds.items():
            if what == "child":
                pidfd = fd
        if pidfd is not None and timeout is not None:
            p = select.poll()
            p.register(pidfd, select.POLLIN)
            if not p.poll(int(timeout * 1000)):
                return False
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        return True


def _uses_user_symbols(obj) -> bool:
    """Whether a manifest (as stored) has a value printed with user symbols."""
    if isinstance(obj, dict):
        return obj.get("kind") in ("ustack", "usym") or any(_uses_user_symbols(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_uses_user_symbols(v) for v in obj)
    return False


def _executable(name: str) -> bool:
    """Whether exec can run ``name`` (a path, or a command looked up in PATH), checked
    before any probe is attached, as bpftrace checks it."""
    if "/" in name:
        return os.path.isfile(name) and os.access(name, os.X_OK)
    import shutil       # lazy: start-up time (only -c looks a command up)
    return shutil.which(name) is not None


def _attach_order(programs) -> list:
    """Programs in the order to attach them so that several probes on one event run
    in script order (as bpftrace): the blocks of those whose kernel list runs the
    newest attachment first go in reverse; the programs of one block (a wildcard's
    expansions) keep their order."""
    oldest, newest = [], []
    for lp in programs:
        (newest if any(a.NEWEST_FIRST for a in lp.meta.attach) else oldest).append(lp)
    newest.sort(key=lambda lp: tuple(lp.meta.span or ())[:2], reverse=True)    # stable
    return oldest + newest
