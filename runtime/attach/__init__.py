"""Attach loaded programs to the kernel: one module per mechanism.

Every mechanism returns ``Attachment`` objects and never enables anything
itself: collect them in an ``AttachSet``, call ``enable_all()`` once at the
end so that all probes start together, and ``detach()``/``close()`` to tear
down.  BEGIN/END programs are not attached: ``run_once`` runs them with
BPF_PROG_TEST_RUN.

``attach_entry`` attaches one manifest attach entry (runtime.manifest.AttachSpec)
with the module its kind names in ``MECHANISMS``:

    once             begin, end (run_once)
    tracepoints      tracepoint
    raw_tracepoints  raw_tracepoint
    perf_events      perf_event (interval, profile, software, hardware)
    kprobes          kprobe, kretprobe
    uprobes          uprobe, uretprobe, usdt (and uprobe_multi links)
    tracing          kfunc, kretfunc (not available on this kernel)
    watchpoints      watchpoint (and OnCall: watchpoint:func+argN, armed at run time)
    iterators        iter (run_iterator)

``links`` holds what they share (Attachment, linking a perf event on each CPU).
"""


from .. import manifest as M
from .. import syscall as S
from ..cpus import online_cpus, parse_cpu_list, possible_cpus
from ..errors import AttachError, BpfError
from ..threads import Thread
from . import (iterators, kprobes, once, perf_events, raw_tracepoints, tracepoints, tracing,
               uprobes, watchpoints)
from .iterators import iterator, run_iterator
from .kprobes import kprobe
from .links import Attachment, probe_name
from .once import run_once
from .perf_events import perf_event
from .raw_tracepoints import raw_tracepoint
from .tracepoints import tracepoint
from .uprobes import UPROBE_KINDS, uprobe, uprobe_multi, uprobe_multi_groups, uprobe_multi_supported
from .watchpoints import OnCall, watchpoint

__all__ = [
    "AttachSet", "Attachment", "MECHANISMS", "OnCall", "attach_entry", "attach_program", "close_parallel",
    "iterator", "kprobe", "perf_event", "raw_tracepoint", "run_iterator", "run_once",
    "tracepoint", "UPROBE_KINDS", "uprobe", "uprobe_multi", "uprobe_multi_groups",
    "uprobe_multi_supported", "watchpoint", "online_cpus", "parse_cpu_list", "possible_cpus",
]

# attach entry kind -> attach(prog_fd, spec, probe name, -c child pid) -> [Attachment]
MECHANISMS = {kind: module.attach for spec, module in (
    (M.RunOnceAttach, once), (M.TracepointAttach, tracepoints),
    (M.RawTracepointAttach, raw_tracepoints), (M.PerfEventAttach, perf_events),
    (M.KprobeAttach, kprobes), (M.UprobeAttach, uprobes), (M.KfuncAttach, tracing),
    (M.WatchpointAttach, watchpoints), (M.IterAttach, iterators)) for kind in spec.KINDS}


def _parallel(fn, items, max_threads: int = 128) -> None:
    """Apply ``fn`` to every item, from several threads when there are many
    (detaching a perf-event attachment waits for RCU grace periods: ~25 ms
    to close its link and ~50 ms to close its perf fd)."""
    items = list(items)
    if len(items) <= 1:
        for a in items:
            fn(a)
        return
    nthreads = min(max_threads, len(items))
    chunks = [items[i::nthreads] for i in range(nthreads)]
    errors = []

    def work(chunk):
        for a in chunk:
            try:
                fn(a)
            except BaseException as e:  # keep closing the rest
                errors.append(e)

    threads = [Thread(work, c) for c in chunks[1:]]
    work(chunks[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def close_parallel(items, max_threads: int = 128) -> None:
    """Close many Attachments (cheap ones inline, perf-event ones in parallel)."""
    items = list(items)
    slow = [a for a in items if a.perf_fd is not None]
    for a in items:
        if a.perf_fd is None:
            a.close()
    _parallel(Attachment.close, slow, max_threads)


class AttachSet:
    """Tracks every attachment of a session."""

    def __init__(self):
        self.items = []
        self._detached = []     # taken out of items by detach(): close() makes sure of them
        self._closer = None

    def add(self, atts):
        if isinstance(atts, Attachment):
            self.items.append(atts)
        else:
            self.items.extend(atts)

    def __len__(self):
        return len(self.items)

    def remove(self, atts) -> None:
        """Detach and close these attachments now (unwatch)."""
        gone = {id(a) for a in atts}
        self.items = [a for a in self.items if id(a) not in gone]
        close_parallel(atts)

    def enable_all(self):
        for a in self.items:
            a.enable()

    def detach(self, background: bool = False):
        """Stop every probe now and release the kernel objects.

        Software/hardware perf events stop when disabled (one cheap ioctl).
        Tracepoint programs only stop when their link is closed (~25 ms each,
        done in parallel threads) or, without a link, when the perf fd is
        closed.  The remaining perf fds are then closed in parallel threads
        (~50 ms each), in the background when ``background`` (``close()``
        waits for that).
        """
        items, self.items = self.items, []
        # until close(): a detach cut short (KeyboardInterrupt) must not lose any
        self._detached.extend(items)
        sync, later, slow_links = [], [], []
        for a in items:
            if a.kind == "perf_event" and a.perf_fd is not None:
                try:
                    S.perf_event_disable(a.perf_fd)
                    later.append(a)
                    continue
                except BpfError:
                    pass
            if a.link_fd is not None:
                if a.perf_fd is not None:
                    slow_links.append(a)
                    later.append(a)
                else:
                    a.unlink()  # raw tracepoint link: ~0.2 ms
            elif a.perf_fd is not None:
                sync.append(a)
        # all programs stop here: perf links are closed in parallel, and
        # ioctl-attached events (no link) are closed completely
        _parallel(lambda a: a.unlink() if a.link_fd is not None else a.close(),
                  slow_links + sync)
        if not later:
            return
        if background:
            prev = self._closer

            def work():
                close_parallel(later)
                if prev is not None:
                    prev.join()
            self._closer = Thread(work)
        else:
            close_parallel(later)

    def close(self):
        self.detach(background=False)
        if self._closer is not None:
            self._closer.join()
            self._closer = None
        left, self._detached = self._detached, []
        close_parallel(a for a in left if a.perf_fd is not None or a.link_fd is not None)


def attach_program(prog_fd: int, entries, probes=(), child_pid=None,
                   uprobe_multi_links: bool = False, warn=None) -> list:
    """Attach a program's attach entries (runtime.manifest.AttachSpec): one by one
    (attach_entry), or, for a program loaded for uprobe_multi, with one link per file
    (see uprobes.uprobe_multi).  An `optional` entry (a wildcard's expansion) that
    can't attach is skipped with `warn`, as 0.17 skips it, unless none attaches.
    If one fails, the attachments already made are closed."""
    out = []
    entries = [e for e in entries if not e.deferred]
    try:
        if uprobe_multi_links:
            for (path, retprobe, pid), group in uprobe_multi_groups(entries, child_pid).items():
                out.append(uprobe_multi(prog_fd, path, group, retprobe, pid, probes))
        else:
            for i, entry in enumerate(entries):
                last_chance = i == len(entries) - 1 and not out
                out.extend(_attach_or_skip(prog_fd, entry, probes, child_pid, warn, last_chance))
    except BaseException:
        for a in out:
            a.close()
        raise
    return out


def _attach_or_skip(prog_fd, entry, probes, child_pid, warn, last_chance: bool) -> list:
    try:
        return attach_entry(prog_fd, entry, probes, child_pid)
    except AttachError as e:
        if not entry.optional or warn is None or last_chance:
            raise
        warn(f"WARNING: could not attach probe {e.probe}, skipping.\n")
        return []


def attach_entry(prog_fd: int, entry: M.AttachSpec, probes=(), child_pid=None) -> list:
    """Attach one manifest attach entry; returns a list of Attachments.
    ``begin``/``end`` entries are not attached (see ``run_once``).  ``child_pid``:
    the -c child, the process a watchpoint with pid -1 applies to."""
    probe = probe_name(entry.cookie, probes)
    if entry.kind not in MECHANISMS:
        raise AttachError(probe or str(entry.kind), f"unknown attach kind '{entry.kind}'")
    return MECHANISMS[entry.kind](prog_fd, entry, probe, child_pid)
