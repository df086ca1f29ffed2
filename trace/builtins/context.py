"""Builtin variables: the process, time and CPU, the probe's context and arguments."""
from __future__ import annotations


from ..codegen import builder as B
from ..codegen.builder import I64, const
from ..language.diagnostics import error
from ..types.model import (UINT32, UINT64, ArgsT, IntT, ProbeT, PtrT, StrT, UsernameT)
from .registry import (variable)


# ---------------------------------------------------------------- builtin variables

def _pid_tgid(lw):
    return lw.fb.helper(B.GET_CURRENT_PID_TGID)


@variable("pid", "Process ID (the kernel's tgid).", UINT64)
def _pid(lw, node):
    return lw.b.lshr(_pid_tgid(lw), const(32))


@variable("tid", "Thread ID (the kernel's pid).", UINT64)
def _tid(lw, node):
    return lw.b.and_(_pid_tgid(lw), const(0xFFFFFFFF))


@variable("uid", "User ID.", UINT64)
def _uid(lw, node):
    return lw.b.and_(lw.fb.helper(B.GET_CURRENT_UID_GID), const(0xFFFFFFFF))


@variable("gid", "Group ID.", UINT64)
def _gid(lw, node):
    return lw.b.lshr(lw.fb.helper(B.GET_CURRENT_UID_GID), const(32))


@variable("username", "User name of the current uid (resolved in user space).", UsernameT())
def _username(lw, node):
    return _uid(lw, node)


@variable("nsecs", "Nanoseconds since boot (bpf_ktime_get_boot_ns).", UINT64)
def _nsecs(lw, node):
    return lw.fb.helper(B.KTIME_GET_BOOT_NS)


@variable("elapsed", "Nanoseconds since pytrace started.", UINT64)
def _elapsed(lw, node):
    return lw.b.sub(lw.fb.helper(B.KTIME_GET_BOOT_NS), lw.global_value("start_ns"))


@variable("cpu", "The CPU the probe fired on.", UINT64)
def _cpu(lw, node):
    return lw.fb.helper(B.GET_SMP_PROCESSOR_ID)


@variable("numaid", "The NUMA node of the CPU the probe fired on.", UINT32)
def _numaid(lw, node):
    return lw.fb.helper(B.GET_NUMA_NODE_ID)


@variable("comm", "Name of the current process (16 bytes).", StrT(16))
def _comm(lw, node):
    buf = lw.fb.temp(16)
    lw.fb.helper(B.GET_CURRENT_COMM, buf, const(16, B.I32))
    return buf


@variable("rand", "A pseudo-random 32-bit number.", UINT32)
def _rand(lw, node):
    return lw.fb.helper(B.GET_PRANDOM_U32)


@variable("cgroup", "The cgroup v2 id of the current process.", UINT64)
def _cgroup(lw, node):
    return lw.fb.helper(B.GET_CURRENT_CGROUP_ID)


@variable("curtask", "Pointer to the current task_struct.", PtrT("struct task_struct"))
def _curtask(lw, node):
    return lw.fb.helper(B.GET_CURRENT_TASK)


class _Ctx:
    """The probe's raw context pointer: `struct bpf_iter__X *` in iter probes,
    `struct pt_regs *` in kprobe/uprobe probes."""

    @staticmethod
    def check(ck, node):
        provider = ck.unit.provider
        t = provider.ctx_type(ck.unit)      # None: no ctx in this probe type
        if t is not None:
            return t
        raise error(provider.no_ctx_message(), node.span)

    @staticmethod
    def lower(lw, node):
        return lw.b.ptrtoint(lw.fb.ctx, I64)


variable("ctx", "The probe's context pointer (iter: struct bpf_iter__X *, kprobe/uprobe: "
         "struct pt_regs *).")(_Ctx)


class _Cpid:
    """The pid of the -c child."""

    @staticmethod
    def check(ck, node):
        if not ck.options.has_child:
            raise error("cpid cannot be used without child command", node.span)
        return UINT64

    @staticmethod
    def lower(lw, node):
        return lw.global_value("cpid")


variable("cpid", "The pid of the -c child command.")(_Cpid)


class _Probe:
    """The full name of the probe that fired."""

    @staticmethod
    def check(ck, node):
        return ProbeT()

    @staticmethod
    def lower(lw, node):
        unit = lw.unit
        if len(unit.cookies) == 1:
            return const(unit.cookies[0])
        return unit.provider.probe_cookie(lw)


variable("probe", "The full name of the probe that fired.")(_Probe)


class _Args:
    """The tracepoint's arguments: args->field (also args.field)."""

    @staticmethod
    def check(ck, node):
        if not ck.unit.provider.uses_args:
            raise error(f"The args builtin can only be used with tracepoint/kfunc/uprobe probes "
                        f"({ck.unit.provider.name} used here)", node.span)
        return ArgsT()

    @staticmethod
    def lower(lw, node):
        return lw.fb.ctx


variable("args", "The probe's arguments (tracepoint fields).")(_Args)


class _RegisterArgs:
    """arg0..arg9, retval, func: register-based probes only (kprobe, uprobe, usdt)."""

    @staticmethod
    def check(ck, node):
        return ck.unit.provider.check_register_builtin(ck, node)

    @staticmethod
    def lower(lw, node):
        return lw.unit.provider.lower_register_builtin(lw, node)


variable("arg*", "Probe arguments by register (kprobe, uprobe, usdt).")(_RegisterArgs)


def read_tracepoint_field(lw, e):
    """args->field: direct context loads for integers, copies for strings."""
    value = lw.unit.provider.read_field(lw, e)     # None: at its tracepoint-format offset
    if value is not None:
        return value
    fb, b = lw.fb, lw.b
    f = e.field_info
    t = e.type
    ctx = fb.ctx
    if f.is_data_loc:
        loc = fb.load(ctx, f.offset, 32, align=4)
        off = b.and_(loc, const(0xFFFF))
        buf = fb.temp(t.size)
        fb.helper(B.PROBE_READ_KERNEL_STR, buf, const(t.size, B.I32), fb.at(ctx, off))
        return buf
    if isinstance(t, StrT):
        buf = fb.temp(t.size)
        fb.helper(B.PROBE_READ_KERNEL, buf, const(t.size, B.I32), fb.at(ctx, f.offset))
        return buf
    bits = f.size * 8
    return fb.load(ctx, f.offset, bits, signed=bool(f.signed) and isinstance(t, IntT), align=f.size)
