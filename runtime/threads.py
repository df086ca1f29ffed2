"""Threads and locks from `_thread`, without the `threading` module.

The runtime starts a thread in every run (the ring buffer is created in one, see
loader.EarlyMaps) and on teardown; importing `threading` (and functools and
collections, which it imports) cost ~3 ms of a cached one-liner's start, where
nothing else needs them. These threads are daemons: the process does not wait
for them at exit.
"""
from __future__ import annotations

import _thread

Lock = _thread.allocate_lock


class Thread:
    """Runs fn(*args) in a new daemon thread; join() waits for it to end."""

    def __init__(self, fn, *args):
        self._running = _thread.allocate_lock()
        self._running.acquire()
        _thread.start_new_thread(self._run, (fn, args))

    def _run(self, fn, args):
        try:
            fn(*args)
        finally:
            self._running.release()

    def join(self):
        with self._running:
            pass

    def is_alive(self) -> bool:
        return self._running.locked()
