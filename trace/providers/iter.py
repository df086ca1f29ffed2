"""iter:task, iter:task_file, iter:task_vma, with an optional pin path:
BPF iterators over kernel objects.

Program type TRACING (26) with expected_attach_type BPF_TRACE_ITER (28) and
attach_btf_id = the BTF FUNC `bpf_iter_<name>`. The program's `ctx` is a
`struct bpf_iter__<name> *` (`ctx->task->comm`, `ctx->file`, `ctx->vma`).
Kernels without the tracing program type refuse to load it: the runtime says so
in one line.
"""
from __future__ import annotations

from ..language.diagnostics import error
from ..types.model import PtrT
from ..runtime.uapi import BPF_TRACE_ITER
from . import PROG_TRACING, ExpandedProbe, Provider, register, split_attach_point
from ..runtime.manifest import IterAttach

ITERATORS = ("task", "task_file", "task_vma")


def _btf():
    from ..types.btf import vmlinux    # lazy: start-up time (-l lists the iterators without BTF)
    return vmlinux()


class Iter(Provider):
    name = "iter"
    prog_type = PROG_TRACING
    program_per_probe = True

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) not in (2, 3) or not parts[1]:
            raise error("iter probe type requires an iterator name: iter:task, iter:task_file "
                        "or iter:task_vma", ap.span)
        it = parts[1]
        if it not in ITERATORS:
            raise error(f"iter probe type does not support the iterator '{it}' "
                        f"(supported: {', '.join(ITERATORS)})", ap.span)
        ap.target = it
        pin = parts[2] if len(parts) == 3 else ""
        b = _btf()
        btf_id = b.find(f"bpf_iter_{it}", "func") if b is not None else 0
        if not btf_id:
            raise error(f"iter:{it} needs kernel BTF with bpf_iter_{it}", ap.span)
        name = f"iter:{it}" + (f":{pin}" if pin else "")
        return [ExpandedProbe(name, self, it, pin, {"btf_id": btf_id})]

    def section(self, probe):
        return f"iter/{probe.target}"

    def attach_spec(self, probe, cookie):
        return IterAttach(kind="iter", iterator=probe.target, pin=probe.func, cookie=cookie)

    def program_fields(self, probes):
        return {"expected_attach_type": BPF_TRACE_ITER, "attach_btf_id": probes[0].params["btf_id"]}

    def ctx_type(self, unit):
        return PtrT(f"struct bpf_iter__{unit.context.target}")

    def listing(self, verbose, target=None):
        return [f"iter:{it}" for it in ITERATORS]


register(Iter())
