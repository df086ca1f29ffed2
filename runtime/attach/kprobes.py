"""kprobe / kretprobe: a perf event of the kprobe PMU, linked to the program."""

import ctypes
import errno as E

from .. import syscall as S
from .. import uapi as U
from ..errors import AttachError, BpfError
from .links import Attachment, attach_error, errname, link_or_ioctl, pmu_retprobe_bit, pmu_type


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return [kprobe(prog_fd, spec.func, spec.offset, spec.is_return, spec.cookie, probe)]


def kprobe(prog_fd: int, func: str, offset: int = 0, retprobe: bool = False,
           cookie: int = 0, probe: str = "") -> Attachment:
    """kprobe/kretprobe via the kprobe PMU."""
    probe = probe or f"{'kretprobe' if retprobe else 'kprobe'}:{func}"
    ptype = pmu_type("kprobe")
    if ptype is None:
        raise AttachError(probe, "kprobes are not supported by this kernel (no kprobe "
                          "PMU in /sys/bus/event_source/devices; CONFIG_KPROBES is "
                          "not set)")
    fb = ctypes.create_string_buffer(func.encode() + b"\0")
    cfg = (1 << pmu_retprobe_bit("kprobe")) if retprobe else 0
    attr = S.perf_attr(ptype, cfg, sample_period=1, flags=U.PERF_FLAG_DISABLED,
                       config1=ctypes.addressof(fb), config2=offset)
    try:
        pfd = S.perf_event_open(attr, -1, 0)
    except BpfError as e:
        if e.errno in (E.ENOENT, E.EINVAL):
            raise AttachError(probe, f"cannot probe kernel function {func} "
                              f"({errname(e.errno)})", e.errno) from None
        raise attach_error(probe, "perf_event_open(kprobe)", e) from None
    return link_or_ioctl(probe, "kprobe", prog_fd, pfd, cookie)
