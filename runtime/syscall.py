"""bpf(2) and perf_event_open(2) through ctypes.

Every helper builds a zeroed attribute buffer, keeps every buffer a pointer
field refers to alive for the duration of the call, and turns a failing
syscall into ``BpfError`` (an ``OSError`` carrying ``errno`` and the command
name).  No RLIMIT_MEMLOCK handling: kernels since 5.11 account BPF memory to
the memory cgroup.
"""

import ctypes
import errno as E
import fcntl
import os
import struct

from . import uapi as U
from .errors import BpfError, LoadError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_c_long = ctypes.c_long
_c_void_p = ctypes.c_void_p
_c_int = ctypes.c_int
_c_uint = ctypes.c_uint
_c_ulong = ctypes.c_ulong
_addr = ctypes.addressof
_get_errno = ctypes.get_errno
_pack_into = struct.pack_into
_unpack_from = struct.unpack_from

_NR_BPF = _c_long(U.NR_BPF)
_ATTR_SIZE = _c_uint(U.BPF_ATTR_SIZE)


def _attr():
    return ctypes.create_string_buffer(U.BPF_ATTR_SIZE)


def bpf(cmd: int, attr) -> int:
    """Raw bpf(cmd, &attr, sizeof attr); returns the result or raises BpfError."""
    ret = _syscall(_NR_BPF, _c_int(cmd), _c_void_p(_addr(attr)), _ATTR_SIZE)
    if ret < 0:
        err = _get_errno()
        raise BpfError(err, U.BPF_CMD_NAMES.get(cmd, f"bpf cmd {cmd}"))
    return ret


def _bpf_errno(cmd: int, attr) -> int:
    """bpf() returning -errno instead of raising (for hot/expected failures)."""
    ret = _syscall(_NR_BPF, _c_int(cmd), _c_void_p(_addr(attr)), _ATTR_SIZE)
    if ret < 0:
        return -_get_errno()
    return ret


def _buf(data):
    """bytes → ctypes buffer (a ctypes buffer is passed through)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        b = ctypes.create_string_buffer(bytes(data), len(data))
        return b
    return data


def sanitize_name(name: str) -> bytes:
    """A kernel object name: at most 15 chars of [A-Za-z0-9_.]."""
    out = []
    for ch in name:
        if ch.isascii() and (ch.isalnum() or ch in "_."):
            out.append(ch)
        else:
            out.append("_")
    return "".join(out)[: U.OBJ_NAME_LEN - 1].encode()


# ================================================================ maps

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, name: str = "") -> int:
    a = _attr()
    _pack_into("<IIIII", a, 0, map_type, key_size, value_size, max_entries, flags)
    nm = sanitize_name(name)
    a[U.MC_MAP_NAME:U.MC_MAP_NAME + len(nm)] = nm
    return bpf(U.BPF_MAP_CREATE, a)


def map_lookup(fd: int, key, value_size: int):
    """The value bytes for ``key`` (bytes), or None if absent."""
    kb = _buf(key)
    vb = ctypes.create_string_buffer(value_size)
    a = _attr()
    _pack_into("<IxxxxQQ", a, 0, fd, _addr(kb), _addr(vb))
    r = _bpf_errno(U.BPF_MAP_LOOKUP_ELEM, a)
    if r == -E.ENOENT:
        return None
    if r < 0:
        raise BpfError(-r, "BPF_MAP_LOOKUP_ELEM")
    return vb.raw


def map_update(fd: int, key, value, flags: int = U.BPF_ANY) -> None:
    kb = _buf(key)
    vb = _buf(value)
    a = _attr()
    _pack_into("<IxxxxQQQ", a, 0, fd, _addr(kb), _addr(vb), flags)
    bpf(U.BPF_MAP_UPDATE_ELEM, a)


def map_freeze(fd: int) -> None:
    """No more writes from user space (with BPF_F_RDONLY_PROG: the verifier takes
    the map's values for constants)."""
    a = _attr()
    _pack_into("<I", a, 0, fd)
    bpf(U.BPF_MAP_FREEZE, a)


def map_delete(fd: int, key) -> bool:
    """Delete ``key``; False if it was not there."""
    kb = _buf(key)
    a = _attr()
    _pack_into("<IxxxxQ", a, 0, fd, _addr(kb))
    r = _bpf_errno(U.BPF_MAP_DELETE_ELEM, a)
    if r == -E.ENOENT:
        return False
    if r < 0:
        raise BpfError(-r, "BPF_MAP_DELETE_ELEM")
    return True


def map_get_next_key(fd: int, key, key_size: int):
    """The key after ``key`` (None: the first key); None at the end."""
    kb = _buf(key) if key is not None else None
    nb = ctypes.create_string_buffer(key_size)
    a = _attr()
    _pack_into("<IxxxxQQ", a, 0, fd, _addr(kb) if kb is not None else 0, _addr(nb))
    r = _bpf_errno(U.BPF_MAP_GET_NEXT_KEY, a)
    if r == -E.ENOENT:
        return None
    if r < 0:
        raise BpfError(-r, "BPF_MAP_GET_NEXT_KEY")
    return nb.raw


def map_lookup_batch(fd: int, in_batch, out_batch, keys, values, count: int):
    """One BPF_MAP_LOOKUP_BATCH call.

    ``in_batch`` is None for the first call, else a ctypes buffer holding the
    previous ``out_batch``.  Returns ``(n, done)``: ``n`` elements were
    written to ``keys``/``values``; ``done`` when the kernel said ENOENT
    (the last batch, which may still carry elements).  Other errors raise
    (EINVAL/ENOTSUPP: batch unsupported for this map type; ENOSPC: a hash
    bucket did not fit in ``count``).
    """
    a = _attr()
    _pack_into("<QQQQII", a, 0,
               _addr(in_batch) if in_batch is not None else 0,
               _addr(out_batch), _addr(keys), _addr(values), count, fd)
    r = _bpf_errno(U.BPF_MAP_LOOKUP_BATCH, a)
    n = _unpack_from("<I", a, U.MB_COUNT)[0]
    if r == -E.ENOENT:
        return n, True
    if r < 0:
        raise BpfError(-r, "BPF_MAP_LOOKUP_BATCH")
    return n, False


def map_delete_batch(fd: int, keys, count: int) -> int:
    """BPF_MAP_DELETE_BATCH of ``count`` keys in ``keys``; returns how many went."""
    a = _attr()
    _pack_into("<QQQQII", a, 0, 0, 0, _addr(keys), 0, count, fd)
    r = _bpf_errno(U.BPF_MAP_DELETE_BATCH, a)
    n = _unpack_from("<I", a, U.MB_COUNT)[0]
    if r < 0 and r != -E.ENOENT:
        raise BpfError(-r, "BPF_MAP_DELETE_BATCH")
    return n


# ================================================================ programs

LOG_SIZE_FIRST = 1 << 20
LOG_SIZE_MAX = 16 << 20


def _prog_load_attr(prog_type, insns_buf, n_insns, lic_buf, name, log_buf,
                    log_size, log_level, expected_attach_type, attach_btf_id,
                    prog_flags):
    a = _attr()
    _pack_into("<IIQQIIQII", a, 0, prog_type, n_insns, _addr(insns_buf),
               _addr(lic_buf), log_level, log_size,
               _addr(log_buf) if log_buf is not None else 0, 0, prog_flags)
    nm = sanitize_name(name)
    a[U.PL_PROG_NAME:U.PL_PROG_NAME + len(nm)] = nm
    _pack_into("<I", a, U.PL_EXPECTED_ATTACH_TYPE, expected_attach_type)
    _pack_into("<I", a, U.PL_ATTACH_BTF_ID, attach_btf_id)
    return a


def prog_load(prog_type: int, insns: bytes, license: str = "GPL", name: str = "",
              symbol: str = "", expected_attach_type: int = 0,
              attach_btf_id: int = 0, prog_flags: int = 0,
              log_level: int = 0) -> int:
    """Load a program; on failure retry with a verifier log and raise LoadError.

    With ``log_level`` > 0 the first load already asks for a log (verbose).
    EPERM is raised as BpfError (the caller maps it to PermissionFailure).
    """
    if len(insns) % U.BPF_INSN_SIZE:
        raise ValueError("instruction bytes are not a multiple of 8")
    ib = ctypes.create_string_buffer(bytes(insns), len(insns))
    lb = ctypes.create_string_buffer(license.encode() + b"\0")
    n = len(insns) // U.BPF_INSN_SIZE
    if not log_level:
        a = _prog_load_attr(prog_type, ib, n, lb, name, None, 0, 0,
                            expected_attach_type, attach_btf_id, prog_flags)
        r = _bpf_errno(U.BPF_PROG_LOAD, a)
        if r >= 0:
            return r
        if r == -E.EPERM:
            raise BpfError(E.EPERM, "BPF_PROG_LOAD")
        first_err = -r
    else:
        first_err = 0
    size = LOG_SIZE_FIRST
    while True:
        logb = ctypes.create_string_buffer(size)
        a = _prog_load_attr(prog_type, ib, n, lb, name, logb, size,
                            max(1, log_level), expected_attach_type,
                            attach_btf_id, prog_flags)
        r = _bpf_errno(U.BPF_PROG_LOAD, a)
        if r >= 0:
            if log_level:
                return r
            # loaded with a log but not without: odd, keep it anyway
            return r
        err = -r
        if err == E.ENOSPC and size < LOG_SIZE_MAX:
            size = LOG_SIZE_MAX
            continue
        if err == E.EPERM:
            raise BpfError(E.EPERM, "BPF_PROG_LOAD")
        log = logb.value.decode("utf-8", "replace")
        if err == E.ENOSPC and first_err:
            err = first_err
        raise LoadError(symbol or name, log, err, name)


def prog_test_run(prog_fd: int, ctx: bytes = b"", cpu=None) -> int:
    """BPF_PROG_TEST_RUN once with context ``ctx``; returns the program's retval."""
    cb = ctypes.create_string_buffer(bytes(ctx), len(ctx)) if ctx else None
    a = _attr()
    _pack_into("<I", a, U.TR_PROG_FD, prog_fd)
    if cb is not None:
        _pack_into("<I", a, U.TR_CTX_SIZE_IN, len(ctx))
        _pack_into("<Q", a, U.TR_CTX_IN, _addr(cb))
    if cpu is not None:
        _pack_into("<II", a, U.TR_FLAGS, U.BPF_F_TEST_RUN_ON_CPU, cpu)
    bpf(U.BPF_PROG_TEST_RUN, a)
    return _unpack_from("<I", a, U.TR_RETVAL)[0]


def raw_tracepoint_open(name: str, prog_fd: int, cookie: int = 0) -> int:
    nb = ctypes.create_string_buffer(name.encode() + b"\0")
    a = _attr()
    _pack_into("<QI", a, 0, _addr(nb), prog_fd)
    if cookie:
        _pack_into("<Q", a, U.RT_COOKIE, cookie)
    return bpf(U.BPF_RAW_TRACEPOINT_OPEN, a)


def link_create(prog_fd: int, target_fd: int, attach_type: int,
                cookie: int = 0, flags: int = 0) -> int:
    a = _attr()
    _pack_into("<IIII", a, 0, prog_fd, target_fd, attach_type, flags)
    if cookie:
        _pack_into("<Q", a, U.LC_PERF_EVENT_BPF_COOKIE, cookie)
    return bpf(U.BPF_LINK_CREATE, a)


def link_create_uprobe_multi(prog_fd: int, path: str, offsets, ref_ctr_offsets, cookies,
                             flags: int = 0, pid: int = 0) -> int:
    """One BPF_TRACE_UPROBE_MULTI link: a uprobe at each file offset of ``path``
    (pid 0: every process)."""
    n = len(offsets)
    path_buf = ctypes.create_string_buffer(os.fsencode(path) + b"\0")
    arrays = [(ctypes.c_uint64 * n)(*values) for values in (offsets, ref_ctr_offsets, cookies)]
    a = _attr()
    _pack_into("<IIII", a, 0, prog_fd, 0, U.BPF_TRACE_UPROBE_MULTI, 0)
    _pack_into("<QQQQIII", a, U.LC_UPROBE_MULTI_PATH, ctypes.addressof(path_buf),
               *(ctypes.addressof(arr) for arr in arrays), n, flags, max(pid, 0))
    return bpf(U.BPF_LINK_CREATE, a)


def iter_create(link_fd: int) -> int:
    """An fd whose read() runs a BPF iterator (BPF_ITER_CREATE)."""
    a = _attr()
    _pack_into("<II", a, 0, link_fd, 0)
    return bpf(U.BPF_ITER_CREATE, a)


# ================================================================ object ids / info

def _get_next_id(cmd: int, start: int):
    a = _attr()
    _pack_into("<I", a, U.GN_START_ID, start)
    r = _bpf_errno(cmd, a)
    if r == -E.ENOENT:
        return None
    if r < 0:
        raise BpfError(-r, U.BPF_CMD_NAMES.get(cmd, str(cmd)))
    return _unpack_from("<I", a, U.GN_NEXT_ID)[0]


def _ids(cmd: int) -> list:
    out = []
    cur = 0
    while True:
        nxt = _get_next_id(cmd, cur)
        if nxt is None:
            return out
        out.append(nxt)
        cur = nxt


def prog_get_next_id(start: int = 0):
    return _get_next_id(U.BPF_PROG_GET_NEXT_ID, start)


def map_get_next_id(start: int = 0):
    return _get_next_id(U.BPF_MAP_GET_NEXT_ID, start)


def prog_ids() -> list:
    """Every BPF program id loaded in the kernel."""
    return _ids(U.BPF_PROG_GET_NEXT_ID)


def map_ids() -> list:
    return _ids(U.BPF_MAP_GET_NEXT_ID)


def link_ids() -> list:
    return _ids(U.BPF_LINK_GET_NEXT_ID)


def prog_get_fd_by_id(id_: int) -> int:
    a = _attr()
    _pack_into("<I", a, U.GF_ID, id_)
    return bpf(U.BPF_PROG_GET_FD_BY_ID, a)


def map_get_fd_by_id(id_: int) -> int:
    a = _attr()
    _pack_into("<I", a, U.GF_ID, id_)
    return bpf(U.BPF_MAP_GET_FD_BY_ID, a)


def link_get_fd_by_id(id_: int) -> int:
    a = _attr()
    _pack_into("<I", a, U.GF_ID, id_)
    return bpf(U.BPF_LINK_GET_FD_BY_ID, a)


def link_info(fd: int) -> dict:
    """{type, id, prog_id} of a BPF link (struct bpf_link_info)."""
    ltype, lid, prog_id = _unpack_from("<III", obj_get_info_by_fd(fd), 0)
    return {"type": ltype, "id": lid, "prog_id": prog_id}


def obj_get_info_by_fd(fd: int, size: int = 256) -> bytes:
    ib = ctypes.create_string_buffer(size)
    a = _attr()
    _pack_into("<IIQ", a, 0, fd, size, _addr(ib))
    bpf(U.BPF_OBJ_GET_INFO_BY_FD, a)
    return ib.raw


def prog_info(fd: int) -> dict:
    """{type, id, name} of a loaded program (struct bpf_prog_info)."""
    raw = obj_get_info_by_fd(fd)
    ptype, pid = _unpack_from("<II", raw, 0)
    name = raw[64:80].split(b"\0", 1)[0].decode()
    return {"type": ptype, "id": pid, "name": name}


def map_info(fd: int) -> dict:
    """{type, id, key_size, value_size, max_entries, flags, name} (struct bpf_map_info)."""
    raw = obj_get_info_by_fd(fd)
    t, i, ks, vs, me, fl = _unpack_from("<IIIIII", raw, 0)
    name = raw[24:40].split(b"\0", 1)[0].decode()
    return {"type": t, "id": i, "key_size": ks, "value_size": vs,
            "max_entries": me, "flags": fl, "name": name}


# ================================================================ perf events

def perf_attr(type_: int, config: int = 0, sample_period: int = 0,
              flags: int = 0, config1: int = 0, config2: int = 0,
              sample_type: int = 0, wakeup_events: int = 0):
    """A zeroed 128-byte perf_event_attr (ctypes buffer)."""
    a = ctypes.create_string_buffer(U.PERF_ATTR_SIZE)
    _pack_into("<IIQQQQQI", a, 0, type_, U.PERF_ATTR_SIZE, config,
               sample_period, sample_type, 0, flags, wakeup_events)
    _pack_into("<QQ", a, U.PA_CONFIG1, config1, config2)
    return a


_NR_PERF = _c_long(U.NR_PERF_EVENT_OPEN)


def perf_event_open(attr, pid: int = -1, cpu: int = 0, group_fd: int = -1,
                    flags: int = U.PERF_FLAG_FD_CLOEXEC) -> int:
    ret = _syscall(_NR_PERF, _c_void_p(_addr(attr)), _c_int(pid), _c_int(cpu),
                   _c_int(group_fd), _c_ulong(flags))
    if ret < 0:
        raise BpfError(_get_errno(), "perf_event_open")
    return ret


def ioctl(fd: int, request: int, arg: int = 0) -> None:
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as e:
        raise BpfError(e.errno, f"ioctl({request:#x})") from None


def perf_event_enable(fd: int) -> None:
    ioctl(fd, U.PERF_EVENT_IOC_ENABLE, 0)


def perf_event_disable(fd: int) -> None:
    ioctl(fd, U.PERF_EVENT_IOC_DISABLE, 0)


def perf_event_set_bpf(fd: int, prog_fd: int) -> None:
    ioctl(fd, U.PERF_EVENT_IOC_SET_BPF, prog_fd)


# ================================================================ misc

def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
