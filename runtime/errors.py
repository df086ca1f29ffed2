"""Exceptions raised by the runtime.

``RuntimeFailure`` (and subclasses) are what the CLI renders: each carries a
human-readable ``.message``.  ``BpfError`` is the low-level syscall failure
(an ``OSError`` with ``errno``); the session turns stray ones into
``RuntimeFailure``/``PermissionFailure``.
"""

import errno as _errno
import os

from .uapi import ENOTSUPP


class RuntimeFailure(Exception):
    """Base class of every error the CLI prints (``.message``)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ObjectFormatError(RuntimeFailure):
    """The ELF object does not follow docs/object-contract.md."""


class LoadError(RuntimeFailure):
    """The verifier (or PROG_LOAD) rejected a program.

    ``program`` (also ``program_symbol``, ``symbol``): program symbol; ``probe``: the
    probe it serves, if known; ``log``: the full verifier log (may be "");
    ``log_tail``: the relevant last lines; ``errno``: PROG_LOAD's errno.  The
    message is bpftrace's one line (``hint``: with "(try -v)"); the log
    is printed only with -v.
    """

    TAIL_LINES = 20

    def __init__(self, program: str, log: str, errno: int = 0, name: str = "",
                 probe: str = "", hint: bool = True):
        self.program = program
        self.program_symbol = program
        self.symbol = program
        self.name = name
        self.probe = probe
        self.log = log or ""
        self.errno = errno
        self.log_tail = relevant_log_tail(self.log, self.TAIL_LINES)
        what = probe or (program if not name or name == program else f"{program} ({name})")
        super().__init__(f"Error loading program: {what}" + (" (try -v)" if hint else ""))


class AttachError(RuntimeFailure):
    """A probe could not be attached; ``reason`` names what the kernel lacks."""

    def __init__(self, probe: str, reason: str, errno: int = 0):
        self.probe = probe
        self.reason = reason
        self.errno = errno
        super().__init__(f"Error attaching probe: '{probe}': {reason}")


class PermissionFailure(RuntimeFailure):
    def __init__(self, message: str = ""):
        super().__init__(message or
                         "pytrace currently only supports running as the root user.")


class TracepointNotFound(RuntimeFailure):
    def __init__(self, category: str, event: str):
        self.category = category
        self.event = event
        super().__init__(f"tracepoint not found: {category}:{event}")


class BpfError(OSError):
    """bpf()/perf_event_open() failure.  ``errno``, ``strerror``, ``cmd``."""

    def __init__(self, err: int, cmd: str = ""):
        super().__init__(err, _strerror(err))
        self.cmd = cmd

    def __str__(self):
        name = _errno.errorcode.get(self.errno, str(self.errno))
        if self.cmd:
            return f"{self.cmd}: {self.strerror} ({name})"
        return f"{self.strerror} ({name})"


def _strerror(err: int) -> str:
    if err == ENOTSUPP:
        return "Operation not supported (ENOTSUPP)"
    return os.strerror(err)


def relevant_log_tail(log: str, n: int = 20) -> list:
    """The last ``n`` meaningful lines of a verifier log.

    Drops blank lines and the trailing statistics ("processed N insns",
    "verification time") so the error itself stays visible.
    """
    lines = [ln.rstrip() for ln in log.replace("\0", "").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    while lines and (lines[-1].startswith("processed ")
                     or lines[-1].startswith("verification time")
                     or lines[-1].startswith("stack depth")):
        lines.pop()
    return lines[-n:]
