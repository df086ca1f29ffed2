"""iter: an iterator link (BPF_TRACE_ITER), run to its end by run_iterator."""

import os

from .. import syscall as S
from .. import uapi as U
from ..errors import AttachError, BpfError
from .links import Attachment, attach_error


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return [iterator(prog_fd, spec.iterator, spec.pin, probe)]


def iterator(prog_fd: int, name: str, pin: str = "", probe: str = "") -> Attachment:
    """An iterator link (BPF_TRACE_ITER); run it with run_iterator()."""
    probe = probe or f"iter:{name}"
    if pin:
        raise AttachError(probe, "pinning an iterator is not supported by pytrace yet")
    try:
        lfd = S.link_create(prog_fd, 0, U.BPF_TRACE_ITER)
    except BpfError as e:
        raise attach_error(probe, "link_create(iter)", e) from None
    return Attachment(probe, "iter", None, lfd, False, "link")


def run_iterator(att: Attachment, after_chunk) -> None:
    """Run an iterator to its end: every read() runs the program over more objects;
    after_chunk() drains the ring buffer between reads."""
    fd = S.iter_create(att.link_fd)
    try:
        while os.read(fd, 65536):
            after_chunk()
    finally:
        S.close(fd)
    after_chunk()
