"""tracepoint: a perf event of type PERF_TYPE_TRACEPOINT (its id from tracefs),
linked to the program."""

from .. import syscall as S
from .. import uapi as U
from ..errors import AttachError, BpfError, TracepointNotFound
from .links import Attachment, attach_error, link_or_ioctl


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return [tracepoint(prog_fd, spec.category, spec.event, spec.cookie, probe)]


def tracepoint(prog_fd: int, category: str, event: str, cookie: int = 0,
               probe: str = "") -> Attachment:
    """perf_event_open(PERF_TYPE_TRACEPOINT, id, pid -1, cpu 0, disabled) +
    LINK_CREATE(BPF_PERF_EVENT, bpf_cookie)."""
    from .. import tracefs     # lazy: start-up time (only programs with tracepoints)
    probe = probe or f"tracepoint:{category}:{event}"
    try:
        tracefs.ensure_mounted()
        tp_id = tracefs.event_id(category, event)
    except TracepointNotFound:
        raise AttachError(probe, f"tracepoint {category}:{event} does not exist "
                                 "in this kernel") from None
    attr = S.perf_attr(U.PERF_TYPE_TRACEPOINT, tp_id, sample_period=1,
                       flags=U.PERF_FLAG_DISABLED, sample_type=U.PERF_SAMPLE_RAW,
                       wakeup_events=1)
    try:
        pfd = S.perf_event_open(attr, -1, 0)
    except BpfError as e:
        raise attach_error(probe, "perf_event_open(tracepoint)", e) from None
    return link_or_ioctl(probe, "tracepoint", prog_fd, pfd, cookie)
