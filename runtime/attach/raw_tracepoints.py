"""raw_tracepoint (rawtracepoint:*, and the tracepoint:syscalls:* probes the
compiler serves from raw sys_enter / sys_exit): BPF_RAW_TRACEPOINT_OPEN."""

import errno as E

from .. import syscall as S
from ..errors import AttachError, BpfError
from .links import Attachment, attach_error


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return [raw_tracepoint(prog_fd, spec.name, spec.cookie, probe)]


def raw_tracepoint(prog_fd: int, name: str, cookie: int = 0, probe: str = "") -> Attachment:
    """BPF_RAW_TRACEPOINT_OPEN(name) (active immediately; closing is cheap)."""
    probe = probe or f"rawtracepoint:{name}"
    try:
        lfd = S.raw_tracepoint_open(name, prog_fd, cookie)
    except BpfError as e:
        if e.errno == E.ENOENT:
            raise AttachError(probe, f"raw tracepoint {name} does not exist in this "
                              "kernel", e.errno) from None
        if e.errno == E.EINVAL and cookie:
            # kernels before 6.10 have no raw tracepoint cookie
            try:
                lfd = S.raw_tracepoint_open(name, prog_fd, 0)
            except BpfError as e2:
                raise attach_error(probe, "BPF_RAW_TRACEPOINT_OPEN", e2) from None
        else:
            raise attach_error(probe, "BPF_RAW_TRACEPOINT_OPEN", e) from None
    return Attachment(probe, "raw_tracepoint", None, lfd, False, "link")
