"""Arguments in a u64-array context, typed from BTF function prototypes: `args->NAME`
of kfunc/kretfunc (the function's parameters) and rawtracepoint (the tracepoint's).
"""
from __future__ import annotations

from ..types.btf import vmlinux
from ..language.diagnostics import error
from ..types.kernel import from_btf
from ..types.model import IntT, PtrT


def btf_arg_field(e, params, what):
    """Type an `args->name` over BTF function parameters (u64 context slots)."""
    for i, (name, tid) in enumerate(params):
        if name == e.field:
            t = from_btf(tid)
            if not isinstance(t, (IntT, PtrT)):
                raise error(f"Argument '{name}' of type '{vmlinux().type_name(tid)}' is not "
                            f"supported", e.span)
            e.ctx_slot = i
            return t
    raise error(f"Can't find argument '{e.field}' of {what}", e.span)


def read_ctx_arg(lw, e):
    """A u64 context slot, truncated and extended as the argument's integer type says."""
    value = lw.fb.load(lw.fb.ctx, 8 * e.ctx_slot)
    t = e.type
    return lw.fb.narrow(value, t.bits, t.signed) if isinstance(t, IntT) else value
