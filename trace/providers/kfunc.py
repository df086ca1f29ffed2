"""kfunc / kretfunc: kernel function entry and exit through BPF trampolines.

  kfunc:fn     kfunc:vmlinux:fn     kfunc:vfs_*   (wildcards over BTF FUNC names)

Program type TRACING (26) with expected_attach_type BPF_TRACE_FENTRY (24) or
BPF_TRACE_FEXIT (25) and attach_btf_id = the function's BTF FUNC id (in the
manifest program entry, which the loader passes to PROG_LOAD).  One program per
function (the attach BTF id is part of the program).  The context is an array of
u64: the function's arguments, then (kretfunc) its return value: `args->name`
takes names and types from the FUNC_PROTO, `retval` is the slot after the last
argument.  Kernels without BPF trampolines reject the program type: the loader
and the runtime say so in one line.
"""
from __future__ import annotations

from ..types.btf import vmlinux
from ..language.diagnostics import error
from ..types.kernel import from_btf
from ..types.model import UINT64, IntT, PtrT
from ..runtime.uapi import BPF_TRACE_FENTRY, BPF_TRACE_FEXIT
from . import PROG_TRACING, ExpandedProbe, Provider, glob_match, register, split_attach_point
from .btfargs import btf_arg_field, read_ctx_arg
from ..runtime.manifest import KfuncAttach


class Kfunc(Provider):
    prog_type = PROG_TRACING
    uses_args = True
    program_per_probe = True

    def __init__(self, name, retprobe):
        self.name, self.retprobe = name, retprobe

    def expand(self, ap) -> list[ExpandedProbe]:
        parts = split_attach_point(ap.raw)
        if len(parts) == 3:
            module, spec = parts[1], parts[2]
        elif len(parts) == 2:
            module, spec = "", parts[1]
        else:
            raise error(f"Invalid {self.name} attach point: {ap.raw}", ap.span)
        if not spec:
            raise error(f"{self.name} probe type requires 1 argument", ap.span)
        ap.target, ap.func = module, spec
        b = vmlinux()
        if b is None:
            raise error(f"{self.name} probes need kernel BTF (/sys/kernel/btf/vmlinux)", ap.span)
        if module and module != "vmlinux" and "*" not in module:
            raise error(f"{self.name}: only vmlinux functions are supported (module '{module}')",
                        ap.span)
        if "*" in spec:
            names = sorted(n for n in b.funcs() if glob_match(spec, n))
        else:
            names = [spec] if b.find(spec, "func") else []
        if not names:
            raise error(f"No BTF found for {spec}" if "*" not in spec else
                        f"No probes found for {self.name}:{spec}", ap.span)
        mod = f"{module}:" if module else ""
        return [ExpandedProbe(f"{self.name}:{mod}{n}", self, module, n,
                              {"btf_id": b.find(n, "func")}) for n in names]

    def section(self, probe):
        return f"{'fexit' if self.retprobe else 'fentry'}/{probe.func}"

    def attach_spec(self, probe, cookie):
        return KfuncAttach(kind=self.name, func=probe.func, btf_id=probe.params["btf_id"],
                           cookie=cookie)

    def context_key(self, probe):
        return probe.func

    def program_fields(self, probes):
        """Extra manifest program fields: what PROG_LOAD needs for a TRACING program."""
        return {"expected_attach_type": BPF_TRACE_FEXIT if self.retprobe else BPF_TRACE_FENTRY,
                "attach_btf_id": probes[0].params["btf_id"]}

    def listing(self, verbose, target=None):
        if self.retprobe:        # bpftrace lists kfunc:fn once; kretfunc takes the same names
            return []
        btf = vmlinux()
        return [f"kfunc:{name}" for name in sorted(btf.funcs())] if btf else []

    def describe(self, line):
        """-lv: the function's parameters and return type, from BTF."""
        btf = vmlinux()
        proto = btf.func_proto(line.split(":", 1)[1])
        if proto is None:
            return []
        details = [f"{btf.type_name(tid)} {name}" for name, tid in proto.params]
        if proto.ref:
            details.append(f"{btf.type_name(proto.ref)} retval")
        return details

    def _params(self, probe):
        return vmlinux().func_proto(probe.func).params

    # -------------------------------------------------- builtins
    def args_field(self, ck, e):
        probe = ck.unit.context
        return btf_arg_field(e, self._params(probe), f"{self.name}:{probe.func}")

    def read_field(self, lw, e):
        return read_ctx_arg(lw, e)

    def check_register_builtin(self, ck, node):
        name = node.name
        if name == "retval":
            if not self.retprobe:
                raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' "
                            "and 'kfunc' probes", node.span)
            proto = vmlinux().func_proto(ck.unit.context.func)
            t = from_btf(proto.ref) if proto.ref else None
            node.ctx_slot = len(proto.params)
            return t if isinstance(t, (IntT, PtrT)) else UINT64
        if name == "func":
            raise error("The func builtin can not be used with 'kfunc' probes in 0.17 "
                        "(use probe)", node.span)
        raise error(f"The {name} builtin can only be used with 'kprobes', 'uprobes' and 'usdt' "
                    f"probes (use args->NAME with {self.name})", node.span)

    def lower_register_builtin(self, lw, node):
        return read_ctx_arg(lw, node)


register(Kfunc("kfunc", False))
register(Kfunc("kretfunc", True))
