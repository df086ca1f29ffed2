"""`pytrace --info`: the system, the build and what this kernel offers, in bpftrace
0.17's layout.  Every "yes" is found by asking the kernel (a map created, a tiny
program loaded and its verifier answer read), not assumed."""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import struct

from .version import __version__
from .runtime import syscall as S
from .runtime import uapi as U
from .runtime.errors import BpfError, LoadError

_INSN = struct.Struct("<BBhi")
_EXIT = _INSN.pack(0xB7, 0, 0, 0) + _INSN.pack(0x95, 0, 0, 0)      # r0 = 0; exit

HELPERS = (("probe_read", 4), ("probe_read_str", 45), ("probe_read_user", 112),
           ("probe_read_user_str", 114), ("probe_read_kernel", 113),
           ("probe_read_kernel_str", 115), ("get_current_cgroup_id", 80), ("send_signal", 109),
           ("override_return", 58), ("get_boot_ns", 125), ("dpath", 147))
MAP_TYPES = (("hash", U.BPF_MAP_TYPE_HASH), ("percpu hash", U.BPF_MAP_TYPE_PERCPU_HASH),
             ("array", U.BPF_MAP_TYPE_ARRAY), ("percpu array", U.BPF_MAP_TYPE_PERCPU_ARRAY),
             ("stack_trace", U.BPF_MAP_TYPE_STACK_TRACE),
             ("perf_event_array", U.BPF_MAP_TYPE_PERF_EVENT_ARRAY),
             ("ringbuf", U.BPF_MAP_TYPE_RINGBUF))
_UNKNOWN_HELPER = ("unknown func", "invalid func", "cannot use helper")


def _loads(prog_type: int, insns: bytes = _EXIT, **kw) -> str:
    """Whether the kernel loads this program: '' if it does, else the verifier's log."""
    try:
        S.close(S.prog_load(prog_type, insns, name="pytrace_info", **kw))
        return ""
    except LoadError as e:
        return e.log or f"errno {e.errno}"
    except BpfError as e:
        return str(e)


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _helper(helper_id: int) -> str:
    log = _loads(U.BPF_PROG_TYPE_KPROBE, _INSN.pack(0x85, 0, 0, helper_id) + _EXIT)
    return _yes(not any(word in log for word in _UNKNOWN_HELPER))


def _map(map_type: int) -> str:
    ring = map_type == U.BPF_MAP_TYPE_RINGBUF
    try:
        fd = S.map_create(map_type, 0 if ring else 4,
                          0 if ring else (4 if map_type == U.BPF_MAP_TYPE_PERF_EVENT_ARRAY else 8),
                          4096 if ring else 1)
    except (BpfError, OSError):
        return "no"
    S.close(fd)
    return "yes"


def _batch() -> str:
    fd = S.map_create(U.BPF_MAP_TYPE_HASH, 8, 8, 1)
    try:
        keys, values, out = (ctypes.create_string_buffer(8) for _ in range(3))
        S.map_lookup_batch(fd, None, out, keys, values, 1)
        return "yes"
    except BpfError:
        return "no"
    finally:
        S.close(fd)


def _features() -> list:
    big = _INSN.pack(0xB7, 0, 0, 0) * 5000 + _EXIT                # past the old 4096 limit
    loop = (_INSN.pack(0xB7, 1, 0, 0) + _INSN.pack(0x07, 1, 0, 1)   # r1 = 0; r1 += 1
            + _INSN.pack(0xA5, 1, -2, 10) + _EXIT)                  # if r1 < 10 goto -2
    return [("Instruction limit", "1000000" if not _loads(U.BPF_PROG_TYPE_KPROBE, big) else "4096"),
            ("Loop support", _yes(not _loads(U.BPF_PROG_TYPE_KPROBE, loop))),
            ("btf", _yes(os.path.exists("/sys/kernel/btf/vmlinux"))),
            ("map batch", _batch()),
            ("uprobe refcount", _yes(os.path.exists(
                "/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset")))]


def _tracing(funcs, attach: int, insns: bytes = _EXIT) -> bool:
    """Whether a TRACING program (fentry, iter) on the first of ``funcs`` that the
    kernel's BTF has loads."""
    from .types.btf import vmlinux    # lazy: start-up time (the BTF index only when asked)
    btf = vmlinux()
    tid = next((t for t in (btf.find(f, "func") for f in funcs) if t), None) if btf else None
    return bool(tid) and not _loads(U.BPF_PROG_TYPE_TRACING, insns, expected_attach_type=attach,
                                    attach_btf_id=tid)


def _skb_output_insns(map_fd: int) -> bytes:
    """0.17's has_skb_output program: bpf_skb_output(ctx[0], map, 0, &zero, 8)."""
    ld_map = _INSN.pack(0x18, 2 | U.BPF_PSEUDO_MAP_FD << 4, 0, map_fd) + _INSN.pack(0, 0, 0, 0)
    return (_INSN.pack(0x79, 0x11, 0, 0) + ld_map                     # r1 = *(u64 *)ctx
            + _INSN.pack(0xB7, 3, 0, 0) + _INSN.pack(0xBF, 0xA4, 0, 0)  # r3 = 0; r4 = r10
            + _INSN.pack(0x07, 4, 0, -8) + _INSN.pack(0xB7, 6, 0, 0)   # r4 -= 8; r6 = 0
            + _INSN.pack(0x7B, 0x64, 0, 0) + _INSN.pack(0xB7, 5, 0, 8)  # *(u64 *)r4 = r6; r5 = 8
            + _INSN.pack(0x85, 0, 0, 111) + _EXIT)                     # call bpf_skb_output


@functools.lru_cache(maxsize=1)
def skb_output_available() -> bool:
    """bpf_skb_output (helper 111), which only BPF_PROG_TYPE_TRACING programs may call:
    kfunc probes load and one calling it on an skb function loads (0.17's
    has_skb_output).  Asked once per process, and only when asked: skboutput()'s
    check and --info."""
    if not _tracing(("vfs_read",), U.BPF_TRACE_FENTRY):
        return False
    try:
        fd = S.map_create(U.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 1)
    except (BpfError, OSError):
        return False
    try:        # kfree_skb, as 0.17; newer kernels inline it, consume_skb takes an skb too
        return _tracing(("kfree_skb", "consume_skb"), U.BPF_TRACE_FENTRY, _skb_output_insns(fd))
    finally:
        S.close(fd)


def _probe_types() -> list:
    def tracing(func: str, attach: int) -> str:
        return _yes(_tracing((func,), attach))
    return [("kprobe", _yes(os.path.isdir("/sys/bus/event_source/devices/kprobe"))),
            ("tracepoint", _yes(not _loads(U.BPF_PROG_TYPE_TRACEPOINT))),
            ("perf_event", _yes(not _loads(U.BPF_PROG_TYPE_PERF_EVENT))),
            ("uprobe", _yes(os.path.isdir("/sys/bus/event_source/devices/uprobe"))),
            ("kfunc", tracing("vfs_read", U.BPF_TRACE_FENTRY)),
            ("iter:task", tracing("bpf_iter_task", U.BPF_TRACE_ITER)),
            ("iter:task_file", tracing("bpf_iter_task_file", U.BPF_TRACE_ITER)),
            ("raw_tp_special", _yes(not _loads(U.BPF_PROG_TYPE_RAW_TRACEPOINT)))]


def report() -> str:
    import llvmlite.binding as llvm   # lazy: start-up time (only --info names LLVM's version)
    u = os.uname()
    sections = [
        ("System", [("OS", f"{u.sysname} {u.release} {u.version}"), ("Arch", u.machine)]),
        ("Build", [("version", f"v{__version__} (pytrace)"),
                   ("LLVM", ".".join(map(str, llvm.llvm_version_info))),
                   ("Python", platform.python_version()), ("unsafe uprobe", "no"),
                   ("bfd", "no"), ("DWARF support (pyelftools)", "yes")]),
        ("Kernel helpers", [(name, _helper(hid)) for name, hid in HELPERS]
         + [("skboutput", _yes(skb_output_available()))]),
        ("Kernel features", _features()),
        ("Map types", [(name, _map(t)) for name, t in MAP_TYPES]),
        ("Probe types", _probe_types()),
    ]
    return "\n".join(title + "\n" + "".join(f"  {k}: {v}\n" for k, v in rows)
                     for title, rows in sections)
