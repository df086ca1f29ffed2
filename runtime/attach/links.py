"""What the attach mechanisms share: the Attachment, linking a program to a perf
event (on each CPU), the errors, and the PMU types in sysfs."""

import errno as E

from .. import syscall as S
from .. import uapi as U
from ..errors import AttachError, BpfError, PermissionFailure


def errname(err: int) -> str:
    return E.errorcode.get(err, str(err))


def probe_name(cookie: int, probes) -> str:
    """The name of the probe an attach entry serves (its cookie indexes the probes)."""
    return probes[cookie] if 0 <= cookie < len(probes) else ""


class Attachment:
    """One kernel attachment: a perf event fd and/or a BPF link fd."""

    __slots__ = ("probe", "kind", "perf_fd", "link_fd", "needs_enable", "detail")

    def __init__(self, probe, kind, perf_fd=None, link_fd=None, needs_enable=False,
                 detail=""):
        self.probe = probe
        self.kind = kind
        self.perf_fd = perf_fd
        self.link_fd = link_fd
        self.needs_enable = needs_enable
        self.detail = detail

    def enable(self):
        if self.needs_enable and self.perf_fd is not None:
            S.perf_event_enable(self.perf_fd)

    def unlink(self):
        """Detach the program (fast: closing a link only swaps a prog array)."""
        if self.link_fd is not None:
            # forgotten first: an interrupted close leaves an fd open until exit rather
            # than closing it twice (the second time, maybe someone else's)
            fd, self.link_fd = self.link_fd, None
            S.close(fd)

    def close(self):
        """Detach and release everything (a tracepoint perf fd: ~80 ms)."""
        self.unlink()
        if self.perf_fd is not None:
            fd, self.perf_fd = self.perf_fd, None
            S.close(fd)

    def __repr__(self):
        return f"Attachment({self.probe!r}, {self.kind}, perf={self.perf_fd}, link={self.link_fd})"


def link_or_ioctl(probe, kind, prog_fd, pfd, cookie, needs_enable=True):
    """Attach prog_fd to perf event pfd: LINK_CREATE (with bpf_cookie),
    falling back to PERF_EVENT_IOC_SET_BPF on kernels without perf links."""
    try:
        lfd = S.link_create(prog_fd, pfd, U.BPF_PERF_EVENT, cookie)
        return Attachment(probe, kind, pfd, lfd, needs_enable, "link")
    except BpfError as e:
        if e.errno not in (E.EINVAL, E.EOPNOTSUPP, U.ENOTSUPP):
            S.close(pfd)
            raise attach_error(probe, "BPF_LINK_CREATE", e) from None
    try:
        S.perf_event_set_bpf(pfd, prog_fd)
    except BpfError as e:
        S.close(pfd)
        raise attach_error(probe, "PERF_EVENT_IOC_SET_BPF", e) from None
    return Attachment(probe, kind, pfd, None, needs_enable, "ioctl")


def attach_error(probe, what, e: BpfError):
    if e.errno == E.EPERM or e.errno == E.EACCES:
        return PermissionFailure()
    return AttachError(probe, f"{what} failed: {e.strerror} ({errname(e.errno)})", e.errno)


def per_cpu(probe, kind, prog_fd, cookie, cpu_list, open_event) -> list:
    """The perf event `open_event(cpu)` opens on each CPU, linked to the program;
    if one fails, those already attached are closed."""
    out = []
    try:
        for cpu in cpu_list:
            out.append(link_or_ioctl(probe, kind, prog_fd, open_event(cpu), cookie))
    except BaseException:
        for a in out:
            a.close()
        raise
    return out


def pmu_type(name: str):
    try:
        with open(f"/sys/bus/event_source/devices/{name}/type") as f:
            return int(f.read().strip())
    except OSError:
        return None


def pmu_retprobe_bit(name: str) -> int:
    try:
        with open(f"/sys/bus/event_source/devices/{name}/format/retprobe") as f:
            txt = f.read().strip()  # "config:0"
        return int(txt.split(":", 1)[1])
    except (OSError, ValueError, IndexError):
        return 0
