"""BEGIN / END: not attached, run once with BPF_PROG_TEST_RUN."""

from .. import syscall as S
from .. import uapi as U


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    return []


def run_once(prog_fd: int) -> int:
    """Run a BEGIN/END (raw_tracepoint) program once with BPF_PROG_TEST_RUN
    and a zeroed context of MAX_BPF_FUNC_ARGS u64."""
    return S.prog_test_run(prog_fd, bytes(U.RAW_TP_MAX_CTX))
