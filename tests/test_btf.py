"""The BTF reader (pytrace.types.btf) against the kernel's /sys/kernel/btf/vmlinux and what
`bpftool btf dump file ... format raw` says about it."""
import os
import re
import shutil
import subprocess
import time

import pytest

from pytrace.types import btf

VMLINUX = "/sys/kernel/btf/vmlinux"
pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="no kernel BTF")


@pytest.fixture(scope="module")
def raw_dump():
    """bpftool's raw dump: {type id: (header line, [member lines])}."""
    tool = shutil.which("bpftool")
    if tool is None:
        pytest.skip("bpftool is not installed")
    text = subprocess.run([tool, "btf", "dump", "file", VMLINUX, "format", "raw"],
                          capture_output=True, text=True, check=True).stdout
    types, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"\[(\d+)\] (.*)", line)
        if m:
            cur = int(m.group(1))
            types[cur] = (m.group(2), [])
        elif cur is not None:
            types[cur][1].append(line.strip())
    return types


@pytest.fixture(scope="module")
def kbtf():
    return btf.vmlinux()


def _members(raw_members):
    out = []
    for line in raw_members:
        m = re.match(r"'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?", line)
        name = "" if m.group(1) == "(anon)" else m.group(1)
        out.append((name, int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)))
    return out


def test_type_count_matches_bpftool(kbtf, raw_dump):
    assert kbtf.count == max(raw_dump)


@pytest.mark.parametrize("name", ["task_struct", "sock", "sk_buff", "sock_common", "file"])
def test_struct_members_match_bpftool(kbtf, raw_dump, name):
    st = kbtf.struct(name)
    head, members = raw_dump[st.id]
    assert head.startswith(f"STRUCT '{name}' size={st.size} vlen={st.vlen}")
    assert [(m.name, m.type, m.bit_offset, m.bitfield_size) for m in st.members] == _members(members)


def test_task_struct_fields(kbtf, raw_dump):
    st = kbtf.struct("struct task_struct")
    expected = {n: (tid, off) for n, tid, off, _ in _members(raw_dump[st.id][1])}
    for field in ("pid", "tgid", "comm", "real_parent"):
        m = kbtf.member(st, field)
        assert (m.type, m.bit_offset) == expected[field]
        assert m.offset == expected[field][1] // 8
    assert kbtf.type_name(kbtf.member(st, "real_parent").type) == "struct task_struct *"
    assert kbtf.type_name(kbtf.member(st, "comm").type) == "char[16]"
    assert kbtf.size(kbtf.member(st, "comm").type) == 16
    # pid_t → __kernel_pid_t → int
    pid = kbtf.member(st, "pid")
    assert kbtf.size(pid.type) == 4
    resolved = kbtf.type(kbtf.resolve(pid.type))
    assert resolved.kind == btf.INT and resolved.signed and resolved.name == "int"


def test_bitfields(kbtf):
    st = kbtf.struct("task_struct")
    bf = [m for m in st.members if m.bitfield_size]
    assert bf, "task_struct has bitfields (sched_reset_on_fork:1, ...)"
    m = kbtf.member(st, "sched_reset_on_fork")
    assert m.bitfield_size == 1


def test_anonymous_members_are_found(kbtf):
    # sock_common's skc_daddr lives in an anonymous union/struct
    sc = kbtf.struct("sock_common")
    m = kbtf.member(sc, "skc_daddr")
    assert m is not None and kbtf.size(m.type) == 4
    assert kbtf.member(sc, "no_such_field") is None


def test_enum_constant(kbtf, raw_dump):
    value = kbtf.enum_value("SKB_DROP_REASON_NOT_SPECIFIED")
    line = next(l for _, (h, ms) in raw_dump.items() if h.startswith("ENUM")
                for l in ms if l.startswith("'SKB_DROP_REASON_NOT_SPECIFIED'"))
    assert line == f"'SKB_DROP_REASON_NOT_SPECIFIED' val={value}"
    assert kbtf.enum_value("NO_SUCH_ENUMERATOR_X") is None


def test_func_proto_params(kbtf):
    proto = kbtf.func_proto("vfs_read")
    assert [n for n, _ in proto.params] == ["file", "buf", "count", "pos"]
    assert kbtf.type_name(proto.params[0][1]) == "struct file *"


def test_index_is_fast_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    btf.vmlinux.cache_clear()
    try:
        t0 = time.perf_counter()
        cold = btf.vmlinux()
        t1 = time.perf_counter()
        assert list(tmp_path.glob("pytrace/btf-*")), "the name index is cached on disk"
        btf.vmlinux.cache_clear()
        t2 = time.perf_counter()
        warm = btf.vmlinux()
        t3 = time.perf_counter()
        assert list(warm.offsets) == list(cold.offsets) and warm.names == cold.names
        assert warm.struct("task_struct").size == cold.struct("task_struct").size
        # generous bounds (a loaded CI machine); measured here: ~75 ms cold, ~15 ms warm
        assert t1 - t0 < 2.0 and t3 - t2 < 1.0
    finally:
        btf.vmlinux.cache_clear()


def test_thread_info_status_offset(kbtf):
    # the raw syscall programs skip ia32 system calls by reading this field
    from pytrace.providers.syscalls import THREAD_INFO_STATUS
    task = kbtf.struct("task_struct")
    thread_info = kbtf.member(task, "thread_info")
    status = kbtf.member(kbtf.type(kbtf.resolve(thread_info.type)), "status")
    assert thread_info.offset + status.offset == THREAD_INFO_STATUS
