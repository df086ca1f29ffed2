"""Runtime pieces against the real kernel (root): load, test-run, attach,
ring buffer, maps, tracefs, verifier errors."""

import os
import select
import struct
import threading
import time

import pytest

pytest.importorskip("llvmlite")

from bpfobj import Map, build_module, ir_emit, ir_function, ir_increment  # noqa: E402
from pytrace.runtime import attach, loader, maps, objfile, tracefs  # noqa: E402
from pytrace.runtime import syscall as S  # noqa: E402
from pytrace.runtime import uapi as U  # noqa: E402
from pytrace.runtime.errors import AttachError, LoadError  # noqa: E402
from pytrace.runtime.events import FullCounter, LostCounter, RingBuffer  # noqa: E402
from pytrace.runtime.manifest import AttachSpec  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")

NCPU = maps.num_possible_cpus()


def manifest(programs, maps_=(), internal=None, probes=None, async_=()):
    return {"version": 1, "probes": probes or [p.get("name", p["symbol"]) for p in programs],
            "programs": list(programs), "maps": list(maps_),
            "internal": internal or {}, "globals": {}, "async": list(async_)}


def prog(symbol, section, prog_type, attach_=(), name=None):
    return {"symbol": symbol, "section": section, "prog_type": prog_type,
            "name": name or symbol, "attach": list(attach_)}


def wait_no_new_objects(before_progs, before_maps, timeout=5.0):
    """True once no prog (if before_progs) / map id beyond the given sets exists
    (the kernel frees closed objects after an RCU grace period)."""
    deadline = time.monotonic() + timeout
    while True:
        extra_p = set(S.prog_ids()) - before_progs if before_progs else set()
        extra_m = set(S.map_ids()) - before_maps if before_maps else set()
        if not extra_p and not extra_m:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def u64(b):
    return struct.unpack_from("<Q", b)[0]


def load_ir(functions, maps_, programs):
    elf = build_module(functions, maps_, manifest(programs))
    return loader.load(objfile.parse(elf))


# ------------------------------------------------------------------ BEGIN / test run

def test_begin_percpu_count():
    ir = ir_function("prog_0", "raw_tracepoint/begin", ir_increment("map_c", "0", "a", "done"))
    before_maps = set(S.map_ids())
    with load_ir(ir, [Map("map_c", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)],
                 [prog("prog_0", "raw_tracepoint/begin", 17, [{"kind": "begin"}], "BEGIN")]) as obj:
        p = obj.programs["prog_0"]
        assert S.prog_info(p.fd)["name"] == "BEGIN"
        assert S.prog_info(p.fd)["type"] == U.BPF_PROG_TYPE_RAW_TRACEPOINT
        m = obj.maps["map_c"]
        assert S.map_info(m.fd)["name"] == "map_c"
        attach.run_once(p.fd)
        S.prog_test_run(p.fd, bytes(8), cpu=0)
        if NCPU > 1:
            S.prog_test_run(p.fd, b"", cpu=1)
        entries = maps.dump(m)
        assert len(entries) == 1
        key, vals = entries[0]
        assert key == bytes(4)
        assert len(vals) == NCPU and all(len(v) == 8 for v in vals)
        assert sum(u64(v) for v in vals) == (3 if NCPU > 1 else 2)
        if NCPU > 1:
            assert u64(vals[1]) >= 1
        assert maps._dump_keys(m) == entries
        maps.clear(m)  # keyless per-CPU array: zeroed
        assert [u64(v) for v in maps.dump(m)[0][1]] == [0] * NCPU
    assert wait_no_new_objects(set(), before_maps)


# ------------------------------------------------------------------ tracepoint

def test_tracepoint_getppid_filtered_with_cookie():
    tid = threading.get_native_id()
    filt = f"""
  %pt = call i64 inttoptr (i64 14 to ptr)()
  %tid = and i64 %pt, 4294967295
  %mine = icmp eq i64 %tid, {tid}
  br i1 %mine, label %yes, label %no
no:
  ret i64 0
yes:
  %cookie = call i64 inttoptr (i64 174 to ptr)(ptr %ctx)
  %ck = trunc i64 %cookie to i32"""
    ir = ir_function("prog_1", "tracepoint/syscalls/sys_enter_getppid", filt,
                     ir_increment("map_c", "%ck", "a", "done"))
    with load_ir(ir, [Map("map_c", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4)],
                 [prog("prog_1", "tracepoint/syscalls/sys_enter_getppid", 5)]) as obj:
        aset = attach.AttachSet()
        try:
            a = attach.tracepoint(obj.programs["prog_1"].fd, "syscalls", "sys_enter_getppid",
                                  cookie=3, probe="tracepoint:syscalls:sys_enter_getppid")
            aset.add(a)
            assert a.link_fd is not None  # BPF link with the cookie
            aset.enable_all()
            for _ in range(100):
                os.getppid()
            aset.detach()
            for _ in range(10):
                os.getppid()  # detached: not counted
        finally:
            aset.close()
        got = {k: sum(u64(v) for v in vals) for k, vals in maps.dump(obj.maps["map_c"])}
        assert got[struct.pack("<I", 3)] == 100
        assert sum(got.values()) == 100


# ------------------------------------------------------------------ perf events

def test_perf_event_interval_and_profile():
    body = """
  %cookie = call i64 inttoptr (i64 174 to ptr)(ptr %ctx)
  %ck = trunc i64 %cookie to i32"""
    ir = ir_function("prog_2", "perf_event", body, ir_increment("map_c", "%ck", "a", "done"))
    with load_ir(ir, [Map("map_c", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4)],
                 [prog("prog_2", "perf_event", 7)]) as obj:
        fd = obj.programs["prog_2"].fd
        aset = attach.AttachSet()
        try:
            one = attach.attach_entry(fd, AttachSpec.from_json(
                {"kind": "perf_event", "type": 1, "config": 0, "period": 5_000_000,
                 "freq": False, "cpus": "one", "cookie": 1}), ["BEGIN", "interval:ms:5"])
            aset.add(one)
            allc = attach.perf_event(fd, 1, 0, 1000, freq=True, cpus="all", cookie=2)
            aset.add(allc)
            assert len(one) == 1 and len(allc) == len(attach.online_cpus())
            assert all(a.probe == "interval:ms:5" for a in one)
            aset.enable_all()
            time.sleep(0.2)
            aset.detach(background=True)
        finally:
            aset.close()
        got = {struct.unpack("<I", k)[0]: sum(u64(v) for v in vals)
               for k, vals in maps.dump(obj.maps["map_c"])}
        assert 10 <= got[1] <= 60, got
        assert got[2] >= 20, got


def test_attach_errors():
    ir = ir_function("prog_2", "perf_event", "")
    with load_ir(ir, [], [prog("prog_2", "perf_event", 7)]) as obj:
        fd = obj.programs["prog_2"].fd
        with pytest.raises(AttachError, match="hardware") as ei:
            attach.perf_event(fd, U.PERF_TYPE_HARDWARE, 0, 1000000, cpus="one",
                              probe="hardware:cpu-cycles:1000000")
        assert ei.value.probe == "hardware:cpu-cycles:1000000"
        with pytest.raises(AttachError, match="does not exist"):
            attach.tracepoint(fd, "nosuch", "thing")
        with pytest.raises(AttachError, match="[kK]probe"):
            attach.kprobe(fd, "vfs_read")
        with pytest.raises(AttachError, match="kfunc"):
            attach.attach_entry(fd, AttachSpec.from_json({"kind": "kfunc", "func": "vfs_read"}))


def test_raw_tracepoint_attach():
    tid = threading.get_native_id()
    filt = f"""
  %pt = call i64 inttoptr (i64 14 to ptr)()
  %tid = and i64 %pt, 4294967295
  %mine = icmp eq i64 %tid, {tid}
  br i1 %mine, label %yes, label %no
no:
  ret i64 0
yes:"""
    ir = ir_function("prog_3", "raw_tracepoint/sys_enter", filt,
                     ir_increment("map_c", "0", "a", "done"))
    with load_ir(ir, [Map("map_c", U.BPF_MAP_TYPE_ARRAY, 4, 8, 1)],
                 [prog("prog_3", "raw_tracepoint/sys_enter", 17)]) as obj:
        with pytest.raises(AttachError, match="does not exist"):
            attach.raw_tracepoint(obj.programs["prog_3"].fd, "no_such_raw_tp_xyz")
        a = attach.raw_tracepoint(obj.programs["prog_3"].fd, "sys_enter")
        try:
            for _ in range(20):
                os.getppid()
        finally:
            a.close()
        n = u64(maps.lookup(obj.maps["map_c"], bytes(4))[0])
        assert n >= 20


# ------------------------------------------------------------------ ring buffer

def test_ringbuf_roundtrip_and_lost():
    ir = ir_function("prog_0", "raw_tracepoint/begin",
                     ir_emit("rb", 0, "10", "a", "lost"),
                     ir_emit("rb", 1, "20", "b", "lost"),
                     ir_emit("rb", 2, "30", "c", "lost"))
    mp = [Map("rb", U.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096),
          Map("lost", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)]
    with load_ir(ir, mp, [prog("prog_0", "raw_tracepoint/begin", 17, [{"kind": "begin"}])]) as obj:
        rbm = obj.maps["rb"]
        with RingBuffer(rbm.fd, rbm.max_entries) as rb:
            lost = LostCounter(obj.maps["lost"])
            assert rb.read() == []
            attach.run_once(obj.programs["prog_0"].fd)
            ep = select.epoll()
            ep.register(rb.fileno(), select.EPOLLIN)
            assert ep.poll(1.0)
            recs = rb.read()
            assert [struct.unpack("<QQ", r) for r in recs] == [(0, 10), (1, 20), (2, 30)]
            assert not rb.pending() and not ep.poll(0)
            assert lost.poll() == 0
            # wrap around the 4 KiB buffer many times (the data area is mapped twice)
            seen = []
            for i in range(200):
                attach.run_once(obj.programs["prog_0"].fd)
                seen.extend(struct.unpack("<QQ", r)[1] for r in rb.read())
            assert seen == [10, 20, 30] * 200
            # fill it up without reading: 4096 / 24 = 170 records fit
            for i in range(100):
                attach.run_once(obj.programs["prog_0"].fd)
            recs = rb.read()
            assert 150 <= len(recs) < 300
            assert lost.poll() == 300 - len(recs)
            assert lost.poll() == 0
            # discard_pending skips everything available
            attach.run_once(obj.programs["prog_0"].fd)
            assert rb.discard_pending() == 3 and rb.read() == []
            ep.close()


# ------------------------------------------------------------------ verifier

def test_verifier_rejection_has_log():
    ir = r'''
define i64 @prog_0(ptr %ctx) #0 section "raw_tracepoint/begin" {
entry:
  %k = alloca i32, align 4
  store i32 0, ptr %k
  %v = call ptr inttoptr (i64 1 to ptr)(ptr @map_c, ptr %k)
  %o = load i64, ptr %v
  ret i64 %o
}
'''
    before_p, before_m = set(S.prog_ids()), set(S.map_ids())
    elf = build_module(ir, [Map("map_c", U.BPF_MAP_TYPE_HASH, 4, 8, 16)],
                       manifest([prog("prog_0", "raw_tracepoint/begin", 17, [], "BEGIN")]))
    with pytest.raises(LoadError) as ei:
        loader.load(objfile.parse(elf))
    e = ei.value
    assert e.program == "prog_0"
    assert "map_value_or_null" in e.log or "invalid mem access" in e.log
    assert e.log_tail and len(e.log_tail) <= 20
    assert e.message == "Error loading program: prog_0 (BEGIN) (try -v)"
    assert wait_no_new_objects(before_p, before_m)  # the map was closed again


# ------------------------------------------------------------------ maps

def test_map_dump_batch_and_fallback():
    ir = ir_function("prog_0", "raw_tracepoint/begin", "")
    mp = [Map("h", U.BPF_MAP_TYPE_HASH, 8, 16, 10000),
          Map("ph", U.BPF_MAP_TYPE_PERCPU_HASH, 12, 4, 100)]
    with load_ir(ir, mp, [prog("prog_0", "raw_tracepoint/begin", 17)]) as obj:
        h, ph = obj.maps["h"], obj.maps["ph"]
        assert maps.dump(h) == []
        for i in range(5000):
            maps.update(h, struct.pack("<Q", i), struct.pack("<qq", i, -i))
        d = maps.dump(h)
        assert len(d) == 5000
        assert sorted(d) == sorted(maps._dump_keys(h))
        assert all(struct.unpack("<qq", v[0]) == (u64(k), -u64(k)) for k, v in d)
        d2 = maps.dump(h, batch_size=7)  # many small batches (and ENOSPC growth)
        assert sorted(d2) == sorted(d)
        maps.zero(h)
        assert all(v == [bytes(16)] for _, v in maps.dump(h))
        maps.clear(h)
        assert maps.dump(h) == []

        for i in range(10):
            maps.update(ph, struct.pack("<III", i, 0, 1),
                        [struct.pack("<I", i * 10 + c) for c in range(NCPU)])
        d = maps.dump(ph)
        assert len(d) == 10
        for k, vals in d:
            i = struct.unpack("<III", k)[0]
            assert vals == [struct.pack("<I", i * 10 + c) for c in range(NCPU)]
        assert sorted(d) == sorted(maps._dump_keys(ph))
        maps.clear(ph)
        assert maps.dump(ph) == []


def test_object_ids_and_close():
    ir = ir_function("prog_0", "raw_tracepoint/begin", ir_increment("m", "0", "a", "d"))
    before_p = set(S.prog_ids())
    obj = load_ir(ir, [Map("m", U.BPF_MAP_TYPE_ARRAY, 4, 8, 1)],
                  [prog("prog_0", "raw_tracepoint/begin", 17)])
    pid_ = S.prog_info(obj.programs["prog_0"].fd)["id"]
    mid = S.map_info(obj.maps["m"].fd)["id"]
    assert pid_ in S.prog_ids() and mid in S.map_ids()
    obj.close()
    # the kernel frees programs/maps after an RCU grace period: wait for it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (pid_ in S.prog_ids() or mid in S.map_ids()):
        time.sleep(0.01)
    assert pid_ not in S.prog_ids() and mid not in S.map_ids()
    assert set(S.prog_ids()) <= before_p | set()


# ------------------------------------------------------------------ tracefs

def test_tracefs():
    root = tracefs.ensure_mounted()
    assert os.path.isdir(os.path.join(root, "events"))
    tps = tracefs.list_tracepoints()
    assert tps == sorted(tps)
    assert ("syscalls", "sys_enter_getppid") in tps
    assert tracefs.event_id("syscalls", "sys_enter_getppid") > 0
    fs = tracefs.tracepoint_format("syscalls", "sys_enter_openat")
    assert [f.name for f in fs] == ["__syscall_nr", "dfd", "filename", "flags", "mode"]
    assert fs[0].offset == 8 and fs[2].type == "const char *" and fs[2].offset == 24
    sw = {f.name: f for f in tracefs.tracepoint_format("sched", "sched_switch")}
    assert sw["prev_comm"].type == "char[16]" and sw["prev_comm"].array_len == 16
    from pytrace.runtime.errors import TracepointNotFound
    with pytest.raises(TracepointNotFound):
        tracefs.event_id("nosuch", "thing")
    with pytest.raises(TracepointNotFound):
        tracefs.tracepoint_format("..", "x")


def test_zero_keeps_min_max_is_set_flag():
    ir = ir_function("prog_0", "raw_tracepoint/begin", "")
    with load_ir(ir, [Map("mx", U.BPF_MAP_TYPE_PERCPU_HASH, 8, 16, 8)],
                 [prog("prog_0", "raw_tracepoint/begin", 17)]) as obj:
        m = obj.maps["mx"]
        slots = [struct.pack("<qQ", 9, 1)] + [struct.pack("<qQ", 0, 0)] * (NCPU - 1)
        maps.update(m, bytes(8), slots)
        maps.zero(m, "max")
        assert maps.dump(m) == [(bytes(8), [struct.pack("<qQ", 0, 1)] + slots[1:])]
        maps.zero(m)
        assert maps.dump(m) == [(bytes(8), [bytes(16)] * NCPU)]


def test_full_counter_reads_data_and_an_older_objects_percpu_array():
    from types import SimpleNamespace as UserMap        # (what FullCounter reads of one)
    users = [(UserMap(name="@a", full_slot=0), 10), (UserMap(name="@b", full_slot=2), 20)]
    ir = ir_function("prog_0", "raw_tracepoint/begin", "")
    with load_ir(ir, [Map("full", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 3)],
                 [prog("prog_0", "raw_tracepoint/begin", 17)]) as obj:
        old = obj.maps["full"]                  # an older object's: per CPU, an entry a slot
        fc = FullCounter(old, users)
        maps.update(old, struct.pack("<I", 2), [struct.pack("<Q", 3)] * NCPU)
        assert fc.poll() == [("@b", 20, 3 * NCPU)] and fc.poll() == []
    spec = objfile.parse(build_module(ir, [], manifest([prog("prog_0", "raw_tracepoint/begin", 17)])))
    spec.data = bytes(24)                       # .data: a u64 a slot, added to atomically
    with loader.load(spec) as obj:
        data = obj.maps[objfile.DATA_SECTION]
        fc = FullCounter(data, users)
        assert fc.poll() == []
        maps.update(data, bytes(4), [struct.pack("<3Q", 4, 0, 1)])
        assert fc.poll() == [("@a", 10, 4), ("@b", 20, 1)]
        maps.update(data, bytes(4), [struct.pack("<3Q", 4, 0, 6)])
        assert fc.poll() == [("@b", 20, 5)]


# ------------------------------------------------------------------ the ring buffer, made early

def _ringbuf_object():
    ir = ir_function("prog_0", "raw_tracepoint/begin", ir_increment("map_c", "0", "a", "done"))
    return objfile.parse(build_module(ir, [Map("map_c", U.BPF_MAP_TYPE_ARRAY, 4, 8, 1),
                                           Map("rb", U.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16)],
                                      manifest([prog("prog_0", "raw_tracepoint/begin", 17,
                                                     [{"kind": "begin"}], "BEGIN")])))


def test_load_takes_the_ring_buffer_made_early():
    spec = _ringbuf_object()
    early = loader.EarlyMaps(spec)
    with loader.load(spec, early=early) as obj:
        rb = obj.maps["rb"]
        assert (S.map_info(rb.fd)["type"], rb.max_entries) == (U.BPF_MAP_TYPE_RINGBUF, 1 << 16)
        assert early.take("map_c") is None          # only the ring buffer is made early


def test_an_early_ring_buffer_nobody_takes_is_closed():
    before_maps = set(S.map_ids())
    early = loader.EarlyMaps(_ringbuf_object())
    early.close()
    assert wait_no_new_objects(None, before_maps)
