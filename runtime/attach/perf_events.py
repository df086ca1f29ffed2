"""perf_event (interval, profile, software, hardware): a sampling perf event on
each CPU (or CPU 0), linked to the program."""

import errno as E

from .. import syscall as S
from .. import uapi as U
from ..cpus import online_cpus
from ..errors import AttachError, BpfError, PermissionFailure
from .links import errname, per_cpu


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return perf_event(prog_fd, spec.type, spec.config, spec.period, spec.freq, spec.cpus,
                      spec.cookie, probe)


_PERF_TYPE_NAMES = {U.PERF_TYPE_HARDWARE: "hardware", U.PERF_TYPE_SOFTWARE: "software",
                    U.PERF_TYPE_TRACEPOINT: "tracepoint", U.PERF_TYPE_HW_CACHE: "hardware cache",
                    U.PERF_TYPE_RAW: "raw", U.PERF_TYPE_BREAKPOINT: "breakpoint"}


def perf_event(prog_fd: int, type_: int, config: int, period: int, freq: bool = False,
               cpus="all", cookie: int = 0, probe: str = "") -> list:
    """One sampling perf event per CPU (``cpus``: "all" = online CPUs, "one" =
    CPU 0, or a list), each opened disabled and linked to the program."""
    if cpus == "all":
        cpu_list = online_cpus()
    elif cpus == "one":
        cpu_list = [0]
    elif isinstance(cpus, int):
        cpu_list = [cpus]
    else:
        cpu_list = list(cpus)
    probe = probe or f"perf_event:{type_}:{config}"
    flags = U.PERF_FLAG_DISABLED | (U.PERF_FLAG_FREQ if freq else 0)

    def open_event(cpu):
        attr = S.perf_attr(type_, config, sample_period=period, flags=flags)
        try:
            return S.perf_event_open(attr, -1, cpu)
        except BpfError as e:
            raise _perf_open_error(probe, type_, config, e) from None
    return per_cpu(probe, "perf_event", prog_fd, cookie, cpu_list, open_event)


def _perf_open_error(probe, type_, config, e: BpfError):
    tname = _PERF_TYPE_NAMES.get(type_, f"type {type_}")
    if e.errno in (E.EPERM, E.EACCES):
        return PermissionFailure()
    if type_ in (U.PERF_TYPE_HARDWARE, U.PERF_TYPE_HW_CACHE, U.PERF_TYPE_RAW) and \
            e.errno in (E.ENOENT, E.EOPNOTSUPP, E.ENODEV, E.EINVAL):
        return AttachError(probe, "hardware performance counters are not available "
                           f"in this kernel/VM (no hardware PMU; perf_event_open: "
                           f"{errname(e.errno)})", e.errno)
    if e.errno in (E.ENOENT, E.EOPNOTSUPP, E.ENODEV):
        return AttachError(probe, f"the kernel does not support {tname} perf event "
                           f"config {config} (perf_event_open: {errname(e.errno)})", e.errno)
    return AttachError(probe, f"perf_event_open({tname}, config {config}) failed: "
                       f"{e.strerror} ({errname(e.errno)})", e.errno)
