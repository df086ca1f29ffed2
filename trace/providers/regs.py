"""pt_regs probes (kprobe, uprobe, usdt): the register table, register-argument
reading, and the provider base class whose builtins read them.

A program of these providers gets a `struct pt_regs *` context (x86-64): `argN`
are the function-call ABI's registers, `retval` is ax, `sargN` the stack, `func`
the probed function, `reg("name")` any register; `uaddr("sym")` resolves a symbol
of the probed binary.
"""
from __future__ import annotations

from ..codegen import builder as B
from ..codegen.builder import const
from ..language.diagnostics import error
from ..types.model import STRLEN, UINT64, PtrT, StrT
from . import PROG_KPROBE, Provider
from .elf import read_elf
from ..runtime.manifest import UprobeAttach

# struct pt_regs (x86-64) offsets, by bpftrace's register names
REG_OFFSETS = {
    "r15": 0, "r14": 8, "r13": 16, "r12": 24, "bp": 32, "bx": 40, "r11": 48, "r10": 56,
    "r9": 64, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104, "di": 112, "orig_ax": 120,
    "ip": 128, "cs": 136, "flags": 144, "sp": 152, "ss": 160,
}
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")            # the function-call ABI
SYSCALL_ARG_REGS = ("di", "si", "dx", "r10", "r8", "r9")   # the system-call ABI
MAX_ARG = len(ARG_REGS) - 1


class RegsProvider(Provider):
    """A pt_regs context (KPROBE programs): uprobe/uretprobe and usdt in a user process,
    kprobe/kretprobe (which set user_space and lists_targets to False) in the kernel."""
    prog_type = PROG_KPROBE
    user_space = True
    lists_targets = True     # list_matching(parts, pid): the probes of binaries
    stack_args = True        # sargN: the arguments on the stack (not usdt)

    def attach_specs(self, probes, cookies):
        out = []
        for p, c in zip(probes, cookies):
            for loc in p.params.get("locations", [p.params]):
                out.append(UprobeAttach(kind=self.attach_kind, path=p.target, offset=loc["offset"],
                                        ref_ctr_offset=loc.get("ref_ctr_offset") or 0, cookie=c))
        return out

    # -------------------------------------------------- builtins (see builtins.context._RegisterArgs)
    def check_register_builtin(self, ck, node):
        name = node.name
        if name == "retval":
            if not self.retprobe:
                raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' and "
                            "'kfunc' probes", node.span)
            return UINT64
        if name == "func":
            return StrT(func_size(ck.unit.probes))
        n = int(name[4:] if name.startswith("sarg") else name[3:])
        if self.retprobe or (name.startswith("sarg") and not self.stack_args):
            what = "'kprobes' and 'uprobes'" if name.startswith("sarg") else \
                   "'kprobes', 'uprobes' and 'usdt'"
            raise error(f"The {name} builtin can only be used with {what} probes", node.span)
        if name.startswith("arg"):
            return self.check_arg(ck, node, n)
        return UINT64

    def check_arg(self, ck, node, n):
        if n > MAX_ARG:
            raise error(f"x86_64 doesn't support {node.name}", node.span)
        return UINT64

    def lower_register_builtin(self, lw, node):
        name = node.name
        if name == "retval":
            return read_reg(lw, "ax")
        if name == "func":
            return lower_func(lw, node)
        if name.startswith("sarg"):
            n = int(name[4:])
            return read_stack_arg(lw, n)
        return self.lower_arg(lw, node, int(name[3:]))

    def lower_arg(self, lw, node, n):
        return read_reg(lw, ARG_REGS[n])

    def ctx_type(self, unit):
        return PtrT("struct pt_regs", user=False)

    def reg_offset(self, node, name):
        if name not in REG_OFFSETS:
            raise error(f"'{name}' is not a valid register on this architecture (x86_64)", node.span)
        return REG_OFFSETS[name]

    def check_uaddr(self, ck, node, symbol):
        """node.resolved: per probe, (elf, vaddr, size, probe) of `symbol` in the probed binary."""
        resolved = []
        for p in ck.unit.probes:
            elf = read_elf(p.target)
            sym = elf and (elf.objects.get(symbol) or elf.functions.get(symbol))
            if not sym:
                raise error(f"Could not resolve symbol: {p.target}:{symbol}", node.span)
            resolved.append((elf, sym[0], sym[1], p))
        if self.retprobe and any(elf.is_dyn for elf, *_ in resolved):
            raise error("uaddr() in a uretprobe can only resolve symbols of non-PIE executables",
                        node.span)
        node.resolved = resolved
        size = resolved[0][2]
        return PtrT({1: "int8_t", 2: "int16_t", 4: "int32_t"}.get(size, "int64_t"), user=True)

    def lower_uaddr(self, lw, node):
        """The run-time address of a symbol: its link-time address in an executable, or
        (PIE, shared object) the probe's address (`ip` at entry) moved by the symbol's offset."""
        fb, b = lw.fb, lw.b
        slot = fb.scratch("uaddr", 8)
        fb.store(slot, 0, const(0))
        by_probe = {id(p): (elf, vaddr) for elf, vaddr, _size, p in node.resolved}

        def emit(p):
            elf, vaddr = by_probe[id(p)]
            if elf.is_dyn:
                base = b.sub(read_reg(lw, "ip"), const(p.params["vaddr"]))
                fb.store(slot, 0, b.add(base, const(vaddr)))
            else:
                fb.store(slot, 0, const(vaddr))
        per_probe(lw, emit)
        return fb.load(slot, 0)


# ------------------------------------------------------------------ codegen helpers

def read_reg(lw, name):
    return lw.fb.load(lw.fb.ctx, REG_OFFSETS[name])


def read_stack_arg(lw, n):
    """The n-th u64 above the return address at a function's entry (sargN; a
    parameter past the sixth)."""
    return read_user_u64(lw, lw.b.add(read_reg(lw, "sp"), const(8 * (n + 1))))


def read_user_u64(lw, addr, size=8, signed=False):
    fb, b = lw.fb, lw.b
    buf = fb.scratch("uread", 8)
    fb.store(buf, 0, const(0))
    fb.helper(B.PROBE_READ_USER, buf, const(size, B.I32), b.inttoptr(addr, B.PTR))
    if size == 8:
        return fb.load(buf, 0)
    return fb.load(buf, 0, size * 8, signed=signed, align=size)


def per_probe(lw, emit):
    """Run emit(probe) for the probe that fired: directly for a one-probe program,
    else in the case of a switch on the probe's cookie."""
    unit = lw.unit
    if len(unit.probes) == 1:
        emit(unit.probes[0])
        return
    fb, b = lw.fb, lw.b
    done = fb.new_block("probe_done")
    switch = b.switch(unit.provider.probe_cookie(lw), done)
    for p, c in zip(unit.probes, unit.cookies):
        case = fb.new_block("probe_case")
        switch.add_case(const(c), case)
        b.position_at_end(case)
        emit(p)
        b.branch(done)
    b.position_at_end(done)


def func_size(probes):
    return max(1, min(STRLEN, max(len(p.func.encode()) + 1 for p in probes)))


def lower_func(lw, node):
    fb = lw.fb
    size = node.type.size
    buf = fb.temp(size)
    fb.zero(buf, size)
    per_probe(lw, lambda p: fb.store_bytes(buf, p.func.encode()[:size - 1] + b"\0"))
    return buf
