"""skboutput(path, skb, len, offset): its checks, its code, and its runtime side (perf
buffers → PCAP files) on the real kernel.

This kernel has no BPF trampolines, and bpf_skb_output may only be called from
them, so the check gives 0.17's located "not available" error here; the code is
checked with the kernel probe forced to say yes (compiled only, not loaded); and
the runtime side is run with a BEGIN program that writes skboutput's record
layout with bpf_perf_event_output (helper 25) into the same perf event array,
through the CLI, and the PCAP files it leaves are parsed strictly.
"""
import os
import shutil
import struct
import subprocess
import sys
import time

import pytest

from pytrace.compiler import CompileOptions, compile_source
from pytrace.language.diagnostics import CompileError, render
from pytrace.runtime import objfile, pcap
from pytrace.runtime import uapi as U

PYTRACE = [sys.executable, "-m", "pytrace.cli"]
XMIT = 'kfunc:dev_queue_xmit { $r = skboutput("out.pcap", args->skb, %s, %s); }'
root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")


def _errors(src: str) -> list:
    with pytest.raises(CompileError) as exc:
        compile_source(src, "stdin", CompileOptions())
    return [render(d, src, "stdin").splitlines()[0] for d in exc.value.diagnostics]


@pytest.fixture
def available(monkeypatch):
    """The kernel probe says yes (the code is compiled, never loaded here)."""
    import pytrace.info
    monkeypatch.setattr(pytrace.info, "skb_output_available", lambda: True)


# ---------------------------------------------------------------- checks

@root
def test_this_kernel_gets_0_17s_located_error():
    r = subprocess.run(PYTRACE + ["--emit-elf", os.devnull, "-e",
                                  'BEGIN { $r = skboutput("/tmp/o.pcap", 0, 100, 0); }'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == ("stdin:1:14-49: ERROR: BPF_FUNC_skb_output is not "
                                        "available for your kernel version")


@root
def test_errors_0_17_reports_together_come_together():
    """0.17 reports the kernel's lack with what it checks in every pass."""
    assert _errors('BEGIN { skboutput("/tmp/o.pcap", 0, 100, 0); }') == [
        "stdin:1:9-44: ERROR: BPF_FUNC_skb_output is not available for your kernel version",
        "stdin:1:9-44: ERROR: skboutput() should be assigned to a variable"]
    assert _errors('BEGIN { $r = skboutput("/tmp/o.pcap", 0, 100); }') == [
        "stdin:1:14-46: ERROR: BPF_FUNC_skb_output is not available for your kernel version",
        "stdin:1:14-46: ERROR: skboutput() requires 4 arguments (3 provided)"]


@pytest.mark.parametrize("src, message", [
    ('kfunc:dev_queue_xmit { skboutput("o", args->skb, 1, 0); }',
     "stdin:1:24-55: ERROR: skboutput() should be assigned to a variable"),
    ('kfunc:dev_queue_xmit { @m = skboutput("o", args->skb, 1, 0); }',
     "stdin:1:29-60: ERROR: skboutput() should be assigned to a variable"),
    ('kfunc:dev_queue_xmit { $r = 0; $r += skboutput("o", args->skb, 1, 0); }',
     "stdin:1:38-69: ERROR: skboutput() should be assigned to a variable"),
    ('kfunc:dev_queue_xmit { $r = skboutput("o", args->skb, 1); }',
     "stdin:1:29-57: ERROR: skboutput() requires 4 arguments (3 provided)"),
    ('kfunc:dev_queue_xmit { $r = skboutput(1, args->skb, 1, 0); }',
     "stdin:1:29-58: ERROR: skboutput() expects a string literal (integer provided)"),
    ('kfunc:dev_queue_xmit { $r = skboutput("o", 1, 1, 0); }',
     "stdin:1:29-52: ERROR: skboutput() only supports pointer arguments (integer provided)"),
    ('kfunc:dev_queue_xmit { $r = skboutput("o", args->skb, "a", 0); }',
     "stdin:1:29-62: ERROR: skboutput() only supports integer arguments (string provided)"),
    ('kfunc:dev_queue_xmit { $r = skboutput("o", args->skb, args->skb, 0); }',
     "stdin:1:29-68: ERROR: skboutput() only supports integer arguments (pointer provided)"),
    ('kfunc:dev_queue_xmit { $r = skboutput("o", args->skb, 1, args->skb->len); }',
     "stdin:1:29-73: ERROR: skboutput() expects a integer literal (integer provided)"),
    ('kfunc:dev_queue_xmit { $r = skboutput("o", args->skb, 1, -1); }',
     "stdin:1:29-61: ERROR: skboutput() offset must not be negative (-1 provided)"),
])
def test_argument_errors(available, src, message):
    assert _errors(src)[0] == message


def test_programs_without_skboutput_never_ask_the_kernel(monkeypatch):
    import pytrace.info

    def asked():
        raise AssertionError("the kernel was asked")
    monkeypatch.setattr(pytrace.info, "skb_output_available", asked)
    compile_source('BEGIN { printf("%d\\n", 1); }', "stdin", CompileOptions())


# ---------------------------------------------------------------- code

def _insns(code: bytes):
    return [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]


def test_code_calls_bpf_skb_output_on_a_perf_event_array(available):
    st = compile_source(XMIT % (100, 14), "stdin", CompileOptions())
    spec = objfile.parse(st.elf)
    action = spec.manifest["async"][0]
    assert action == {"kind": "skboutput", "path": "out.pcap", "offset": 14, "map": "perf_events"}
    pm = spec.maps["perf_events"]
    assert (pm.type, pm.key_size, pm.value_size, pm.max_entries) == (
        U.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0)          # the loader: one slot per CPU
    (prog,) = spec.programs.values()
    insns = _insns(prog.insns)
    assert (0x85, 0, 0, 111) in insns                    # call bpf_skb_output
    assert (0x85, 0, 0, 125) in insns                    # the header's boot ns
    # flags: len << 32 | BPF_F_CURRENT_CPU, one constant for a literal len
    lo, hi = U.BPF_F_CURRENT_CPU, 100
    wide = [(a[3] & 0xFFFFFFFF, b[3] & 0xFFFFFFFF) for a, b in zip(insns, insns[1:])
            if a[0] == 0x18]
    assert (lo, hi) in wide
    call = insns.index((0x85, 0, 0, 111))
    assert any(i[0] == 0xB7 and i[1] & 15 == 5 and i[3] == 24 for i in insns[:call])  # r5 = 24
    relocated = {r.map_symbol for r in prog.relocations}
    assert "perf_events" in relocated


def test_calls_share_one_map_and_each_has_its_action(available):
    src = ('kfunc:dev_queue_xmit { $a = skboutput("a.pcap", args->skb, 60, 14); '
           '$b = skboutput("b.pcap", args->skb, args->skb->len, 0); }')
    spec = objfile.parse(compile_source(src, "stdin", CompileOptions()).elf)
    assert [(a["path"], a["offset"]) for a in spec.manifest["async"]] == [("a.pcap", 14),
                                                                       ("b.pcap", 0)]
    assert [s for s, m in spec.maps.items() if m.type == U.BPF_MAP_TYPE_PERF_EVENT_ARRAY] == [
        "perf_events"]
    (prog,) = spec.programs.values()
    assert _insns(prog.insns).count((0x85, 0, 0, 111)) == 2


# ---------------------------------------------------------------- runtime, real kernel

def _ip_packet(payload: bytes) -> bytes:
    """An IPv4/UDP packet 127.0.0.1:1234 → 127.0.0.1:5678, checksummed."""
    udp = struct.pack(">HHHH", 1234, 5678, 8 + len(payload), 0) + payload
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    s = sum(struct.unpack(">10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    return hdr[:10] + struct.pack(">H", ~s & 0xFFFF) + hdr[12:] + udp


ETH = bytes(12) + b"\x08\x00"


def _ir_sample(aid: int, packet: bytes, tag: str, times: int = 1) -> str:
    """``times`` bpf_perf_event_output(ctx, perf_events, BPF_F_CURRENT_CPU, &rec, size) of
    skboutput's record {u64 aid; u64 captured length; u64 boot ns; packet}; each
    result is sent as a printf (async id 2) record.  (One buffer: 512 bytes of stack.)"""
    words = (packet + bytes(-len(packet) % 8))
    lines = [f"  %b_{tag} = alloca [{3 + len(words) // 8} x i64], align 8",
             f"  %o_{tag} = alloca [2 x i64], align 8",
             f"  store i64 {aid}, ptr %b_{tag}",
             f"  %l_{tag} = getelementptr i64, ptr %b_{tag}, i64 1",
             f"  store i64 {len(packet)}, ptr %l_{tag}",
             f"  %t_{tag} = getelementptr i64, ptr %b_{tag}, i64 2"]
    for i in range(0, len(words), 8):
        w = int.from_bytes(words[i:i + 8], "little", signed=True)
        lines += [f"  %w{i}_{tag} = getelementptr i64, ptr %b_{tag}, i64 {3 + i // 8}",
                  f"  store i64 {w}, ptr %w{i}_{tag}"]
    for n in range(times):
        t = f"{tag}_{n}"
        lines += [f"  %ns_{t} = call i64 inttoptr (i64 125 to ptr)()",
                  f"  store i64 %ns_{t}, ptr %t_{tag}",
                  f"  %r_{t} = call i64 inttoptr (i64 25 to ptr)(ptr %ctx, ptr @perf_events, "
                  f"i64 {U.BPF_F_CURRENT_CPU}, ptr %b_{tag}, i64 {24 + len(packet)})",
                  f"  store i64 2, ptr %o_{tag}",
                  f"  %p_{t} = getelementptr i64, ptr %o_{tag}, i64 1",
                  f"  store i64 %r_{t}, ptr %p_{t}",
                  f"  %x_{t} = call i64 inttoptr (i64 130 to ptr)(ptr @ringbuf, ptr %o_{tag}, "
                  f"i64 16, i64 0)"]
    return "\n".join(lines)


def _object(tmp_path, begin_samples, end_samples=(), pcap_dir=None):
    """BEGIN (and END) writing the given (async id, packet, times) samples; BEGIN then exits.
    Async ids: 0 skboutput to a.pcap from offset 14, 1 to b.pcap from 0, 2 printf, 3 exit."""
    from bpfobj import Map, build_module, ir_emit
    def prog(name, section, samples, tail=""):
        body = "\n".join(_ir_sample(aid, pkt, f"{name}{i}", n)
                         for i, (aid, pkt, n) in enumerate(samples))
        return (f'define i64 @{name}(ptr %ctx) #0 section "{section}" {{\nentry:\n{body}\n{tail}'
                f'\n  ret i64 0\n}}\n')
    exit_ir = ir_emit("ringbuf", 3, "0", "exit")
    pcap_dir = pcap_dir or tmp_path
    functions = prog("p_begin", "raw_tracepoint/begin", begin_samples, exit_ir[0] + exit_ir[1])
    programs = [{"symbol": "p_begin", "section": "raw_tracepoint/begin", "prog_type": 17,
                 "name": "BEGIN", "attach": [{"kind": "begin"}]}]
    if end_samples:
        functions += prog("p_end", "raw_tracepoint/end", end_samples)
        programs.append({"symbol": "p_end", "section": "raw_tracepoint/end", "prog_type": 17,
                         "name": "END", "attach": [{"kind": "end", "cookie": 1}]})
    actions = [
        {"kind": "skboutput", "path": str(pcap_dir / "a.pcap"), "offset": 14, "map": "perf_events"},
        {"kind": "skboutput", "path": str(pcap_dir / "b.pcap"), "offset": 0, "map": "perf_events"},
        {"kind": "printf", "format": "ret %d\n",
         "args": [{"offset": 8, "type": {"kind": "int", "signed": True}}]}, {"kind": "exit"}]
    manifest = {"version": 1, "probes": ["BEGIN", "END"][:len(programs)], "programs": programs,
                "internal": {"ringbuf": "ringbuf", "lost": "lost_events"}, "async": actions}
    maps = [Map("ringbuf", U.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16),
            Map("lost_events", U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
            Map("perf_events", U.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0)]
    path = tmp_path / "skb.o"
    path.write_bytes(build_module(functions, maps, manifest))
    return path


def read_pcap(path) -> tuple:
    """A strict reader: the global header pytrace writes, then whole records only."""
    data = path.read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, linktype = pcap.GLOBAL_HEADER.unpack_from(data)
    assert (magic, major, minor, zone, sigfigs) == (0xA1B2C3D4, 2, 4, 0, 0)
    assert (snaplen, linktype) == (65535, 101)
    pos, records = pcap.GLOBAL_HEADER.size, []
    while pos < len(data):
        sec, usec, incl, orig = pcap.RECORD_HEADER.unpack_from(data, pos)
        assert usec < 1_000_000 and incl <= orig and incl <= snaplen
        pos += pcap.RECORD_HEADER.size
        assert pos + incl <= len(data), "a truncated record"
        records.append((sec + usec / 1e6, data[pos:pos + incl]))
        pos += incl
    return records


@root
def test_samples_reach_their_pcap_files(tmp_path):
    p1, p2 = _ip_packet(b"pytrace skboutput, one"), _ip_packet(b"two" * 11)
    obj = _object(tmp_path, [(0, ETH + p1, 1), (1, p2, 1), (0, ETH + p2, 1)])
    before = time.time()
    r = subprocess.run(PYTRACE + [str(obj)], capture_output=True, text=True, timeout=60)
    after = time.time()
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ret 0\n") == 3, r.stdout          # each sample was written
    a, b = read_pcap(tmp_path / "a.pcap"), read_pcap(tmp_path / "b.pcap")
    assert [pkt for _, pkt in a] == [p1, p2]      # from the offset, exactly the captured bytes
    assert [pkt for _, pkt in b] == [p2]
    for ts, _ in a + b:                           # boot time + the event's boot ns
        assert before - 1 <= ts <= after + 1
    if shutil.which("tcpdump"):                   # a second opinion where it is installed
        out = subprocess.run(["tcpdump", "-nr", str(tmp_path / "a.pcap")],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.count("127.0.0.1.1234 > 127.0.0.1.5678: UDP") == 2


@root
def test_a_full_perf_buffer_counts_lost_samples(tmp_path):
    """One page per CPU holds nine 440-byte samples; the rest of BEGIN's twelve are
    lost, and the kernel reports how many with the next sample that fits (END's, on
    the same CPU: the run is pinned to CPU 0)."""
    big = _ip_packet(bytes(360))
    obj = _object(tmp_path, [(0, ETH + big, 12)], end_samples=[(1, big, 1)])
    r = subprocess.run(["taskset", "-c", "0"] + PYTRACE + [str(obj)], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, BPFTRACE_PERF_RB_PAGES="1"))
    assert r.returncode == 0, r.stderr
    rets = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("ret ")]
    written = rets[:12].count(0)
    assert 0 < written < 12 and rets[12] == 0, r.stdout
    assert f"Lost {12 - written} events" in r.stdout
    assert [pkt for _, pkt in read_pcap(tmp_path / "a.pcap")] == [big] * written
    assert [pkt for _, pkt in read_pcap(tmp_path / "b.pcap")] == [big]


@root
def test_a_pcap_path_that_cannot_be_opened_is_one_line(tmp_path):
    obj = _object(tmp_path, [(0, ETH + _ip_packet(b"x"), 1)], pcap_dir=tmp_path / "missing")
    r = subprocess.run(PYTRACE + [str(obj)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == (f'ERROR: Failed to create pcap file: "{tmp_path}/missing/a.pcap": '
                        f'No such file or directory\n')


@root
@pytest.mark.parametrize("pcap_dir", ["", "missing"])
def test_teardown_leaves_nothing(tmp_path, pcap_dir):
    """Every perf event, mapping, map and program closed (tests/test_teardown.py's
    launcher), after a run and after a PCAP file that cannot be created."""
    from test_teardown import Trace
    obj = _object(tmp_path, [(0, ETH + _ip_packet(b"x"), 2)], pcap_dir=tmp_path / pcap_dir)
    t = Trace(tmp_path, [str(obj)])
    rc, out, err = t.finish()
    assert rc == (1 if pcap_dir else 0), err
    perf = any(r["event"] == "create" and r["kind"] == "perf" for r in t.records())
    assert perf != bool(pcap_dir)           # no perf buffer opened when a file can't be
    if not pcap_dir:
        assert len(read_pcap(tmp_path / "a.pcap")) == 2
