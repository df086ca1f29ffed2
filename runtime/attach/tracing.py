"""kfunc / kretfunc (fentry / fexit): TRACING programs, which this kernel can't
attach."""

from ..errors import AttachError


def attach(prog_fd: int, spec, probe: str, child_pid) -> list:
    raise AttachError(probe or spec.kind, "kfunc/kretfunc (fentry/fexit) are not "
                      "available in this kernel (no BPF tracing program support)")
