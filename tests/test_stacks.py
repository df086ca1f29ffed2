"""Stacks, symbols and user-space formatted values on the real kernel: kstack/ustack
(bpftrace and perf modes, map keys and values, printf/print), ksym/usym/kaddr, buf,
ntop/pton, bswap, strerror, strftime, macaddr; plus the output layer's stack decoding
with a fake maps reader."""
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest

PYTRACE = [sys.executable, "-m", "pytrace.cli"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")

# main -> f -> g -> h -> k, all with frame pointers. A probe on k's entry sees k, h, g, f,
# main (this kernel's unwinder also reports the caller of a function whose uprobe fires at
# its entry, before the callee has pushed its frame pointer).
CHAIN = r"""
#include <unistd.h>
__attribute__((noinline)) int k(int x) { __asm__ volatile(""); return x * 3; }
__attribute__((noinline)) int h(int x) { __asm__ volatile(""); return k(x) + 1; }
__attribute__((noinline)) int g(int x) { __asm__ volatile(""); return h(x + 1) + 1; }
__attribute__((noinline)) int f(int x) { __asm__ volatile(""); return g(x + 2) + 1; }
int main(int argc, char **argv)
{
    int r = f(argc);
    usleep(1500000);     /* still alive while pytrace resolves its user symbols */
    return r == 12345;
}
"""


def run(args, timeout=60):
    return subprocess.run(PYTRACE + args, capture_output=True, text=True, timeout=timeout)


def trace(script, *extra, timeout=60):
    r = run([*extra, "-e", script], timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed")
    d = tmp_path_factory.mktemp("stacks")
    src = d / "chain.c"
    src.write_text(CHAIN)
    out = {}
    for name, flags in (("chain", []), ("chain_nopie", ["-no-pie"])):
        subprocess.run(["gcc", "-O0", "-fno-omit-frame-pointer", *flags, "-o", str(d / name),
                        str(src)], check=True)
        out[name] = str(d / name)
    return out


def stack_frames(text, indent):
    return [line[indent:] for line in text.splitlines() if line.startswith(" " * indent)
            and not line.startswith(" " * (indent + 1))]


# ---------------------------------------------------------------- kernel stacks

@needs_root
def test_kstack_map_key(workload, tracefs):
    out = trace("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @[kstack] = count(); }",
                "-c", f"{workload} getppid 5")
    m = re.search(r"@\[\n((?:    \S+\n)+)\]: (\d+)\n", out)
    assert m, out
    frames = [f.strip() for f in m.group(1).splitlines()]
    assert int(m.group(2)) == 5
    assert all(re.fullmatch(r"[\w.$]+\+\d+", f) for f in frames), frames
    assert any("do_syscall_64" in f or "getppid" in f for f in frames), frames


@needs_root
def test_kstack_perf_mode_and_limit(workload, tracefs):
    out = trace("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ "
                "{ @p[kstack(perf, 3)] = count(); @k[kstack(2)] = count(); }",
                "-c", f"{workload} getppid 2")
    m = re.search(r"@p\[\n((?:\t[0-9a-f]+ \S+\n)+)\]: 2\n", out)
    assert m, out
    lines = m.group(1).splitlines()
    assert len(lines) == 3
    for line in lines:
        addr, sym = line[1:].split(" ")
        assert int(addr, 16) >= 0xffff800000000000
        assert re.fullmatch(r"[\w.$]+\+\d+", sym)
    m = re.search(r"@k\[\n((?:    \S+\n)+)\]: 2\n", out)
    assert m and len(m.group(1).splitlines()) == 2, out


@needs_root
def test_kstack_as_value_print_and_printf(workload, tracefs):
    out = trace("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ "
                "{ @v = kstack(2); print(kstack(2)); printf(\"[%s]\\n\", kstack(1)); exit(); }",
                "-c", f"{workload} getppid 1")
    lines = out.split("\n")
    # print(): a leading newline, frames with an 8-space indent, then print's newline
    i = lines.index("")
    assert lines[i + 1].startswith("        ") and lines[i + 2].startswith("        ")
    assert lines[i + 3] == ""
    assert re.search(r"\[\n        \S+\n\]\n", out), out
    # a stack value in a map: 8 spaces, entry ends with a blank line
    assert re.search(r"@v: \n        \S+\n        \S+\n\n$", out), out


@needs_root
def test_kstack_same_stack_same_key(workload, tracefs):
    out = trace("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @[kstack, comm] = count(); }",
                "-c", f"{workload} getppid 4")
    assert out.count("@[") == 1 and "]: 4" in out, out


# ---------------------------------------------------------------- user stacks

@needs_root
@pytest.mark.parametrize("binary", ["chain", "chain_nopie"])
def test_ustack_uprobe(chain, binary):
    path = chain[binary]
    out = trace(f"uprobe:{path}:k {{ printf(\"%s\", ustack); @[ustack(4)] = count(); "
                f"@p[ustack(perf, 2)] = count(); exit(); }}", "-c", path)
    frames = stack_frames(out.split("\n\n\n")[0], 8)
    names = [f.split("+")[0] for f in frames]
    assert names[:5] == ["k", "h", "g", "f", "main"], out
    assert frames[0] == "k+0"
    key = re.search(r"@\[\n((?:    \S+\n)+)\]: 1\n", out)
    assert key, out
    assert [f.strip().split("+")[0] for f in key.group(1).splitlines()] == ["k", "h", "g", "f"]
    perf = re.search(r"@p\[\n\t([0-9a-f]+) k\+0 \((\S+)\)\n\t[0-9a-f]+ h\+\d+ \((\S+)\)\n\]: 1\n", out)
    assert perf, out
    assert perf.group(2) == path and perf.group(3) == path


@needs_root
def test_ustack_resolves_after_the_child_exits(workload, tracefs):
    # printed at exit, after the process is gone: the runtime kept its memory map
    # while it ran (bpftrace 0.17 prints `0x... ([unknown])` here)
    out = trace("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ "
                "{ @[ustack(perf, 1)] = count(); }", "-c", f"{workload} sleep 300 getppid 1")
    m = re.search(r"@\[\n\t([0-9a-f]+) (\S+) \((\S+)\)\n\]: 1\n", out)
    assert m, out
    assert m.group(2).startswith("syscall+") and m.group(3) == workload, out


@needs_root
def test_usym_uprobe(chain):
    path = chain["chain"]
    out = trace(f"uprobe:{path}:g {{ printf(\"%s|%s\\n\", usym(reg(\"ip\")), usym(0)); "
                f"@[usym(reg(\"ip\"))] = count(); exit(); }}", "-c", path)
    assert "g|0x0\n" in out, out
    assert "@[g]: 1" in out


# ---------------------------------------------------------------- kernel symbols

def _kallsyms(name):
    with open("/proc/kallsyms") as f:
        for line in f:
            a, _, n = line.split()[:3]
            if n == name:
                return int(a, 16)
    return None


@needs_root
def test_ksym_kaddr():
    addr = _kallsyms("vfs_read")
    out = trace('BEGIN { print(kaddr("vfs_read")); print(ksym(kaddr("vfs_read") + 5)); '
                'printf("%s %s\\n", ksym(kaddr("vfs_write")), ksym(0)); exit(); }')
    lines = out.splitlines()
    assert lines[1] == str(addr)
    assert lines[2] == "vfs_read"
    assert lines[3] == "vfs_write 0x0"


def test_kaddr_unknown_symbol():
    r = run(["-e", 'BEGIN { print(kaddr("no_such_symbol_q")); }'])
    assert r.returncode != 0
    assert "Failed to resolve kernel symbol: no_such_symbol_q" in r.stderr


# ---------------------------------------------------------------- values

@needs_root
def test_buf_formats_and_values():
    out = trace(r'BEGIN { printf("%r|%rx|%rh\n", buf("AB\x01\xff", 4), buf("AB", 2), buf("AB", 2)); '
                r'$n = 3; printf("[%r]\n", buf("hello", $n)); @b = buf("xy\n", 3); exit(); }')
    assert "AB\\x01\\xff|\\x41\\x42|41 42\n" in out
    assert "[hel]\n" in out
    assert "@b: xy\\x0a\n" in out


@needs_root
def test_buf_reads_user_memory(chain):
    # uprobe arg: argv of main is not reachable here; read the probed function's own code
    path = chain["chain"]
    out = trace(f"uprobe:{path}:k {{ printf(\"%rh\\n\", buf(reg(\"ip\"), 1)); exit(); }}",
                "-c", path)
    # k+0 is an int3 (0xcc) in memory while the uprobe is set, or the original push %rbp
    assert re.search(r"^(cc|55|f3)$", out, re.M), out


@needs_root
def test_ntop_pton_bswap_strerror():
    out = trace('BEGIN { print(ntop(0x0100007f)); print(ntop(pton("::1"))); print(pton("10.0.0.1")); '
                'print(ntop(10, pton("fe80::2"))); printf("%x %s\\n", bswap((uint32)0x12345678), '
                'strerror(2)); @e[strerror(13)] = 1; @a[ntop(pton("1.2.3.4"))] = 2; exit(); }')
    assert out.splitlines()[1:6] == ["127.0.0.1", "::1", "[10,0,0,1]", "fe80::2",
                                     "78563412 No such file or directory"]
    assert "@a[1.2.3.4]: 2" in out and "@e[Permission denied]: 1" in out


def test_macaddr_size_error():
    r = run(["-e", 'BEGIN { @m = macaddr(pton("::1")); exit(); }'])
    assert r.returncode != 0
    assert "macaddr() argument must be 6 bytes in size" in r.stderr


@needs_root
def test_strftime():
    out = trace('BEGIN { printf("%s|%s|%s\\n", strftime("%Y", nsecs), strftime("%f", 0), '
                'strftime("x", 1)); exit(); }')
    year, us, x = out.splitlines()[1].split("|")
    assert abs(int(year) - int(__import__("time").strftime("%Y"))) <= 1
    assert re.fullmatch(r"\d{6}", us) and x == "x"


@needs_root
def test_macaddr_from_memory(chain):
    path = chain["chain"]
    out = trace(f"uprobe:{path}:k {{ printf(\"%s\\n\", macaddr(reg(\"ip\"))); exit(); }}", "-c", path)
    assert re.search(r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$", out, re.M), out


@needs_root
def test_stack_json_output(workload, tracefs):
    r = run(["-f", "json", "-e", "tracepoint:syscalls:sys_enter_getppid /pid == cpid/ "
             "{ @[kstack(2)] = count(); }", "-c", f"{workload} getppid 1"])
    assert r.returncode == 0, r.stderr
    import json
    maps = [json.loads(line) for line in r.stdout.splitlines() if '"map"' in line]
    assert maps, r.stdout
    (key, value), = maps[0]["data"]["@"].items()
    assert value == 1 and key.startswith("\n    ") and key.count("\n") == 3


# ---------------------------------------------------------------- output layer, no kernel

class FakeMaps:
    def __init__(self, stacks):
        self.stacks = stacks

    def lookup(self, symbol, key):
        sid = struct.unpack("<I", key)[0]
        frames = self.stacks.get((symbol, sid))
        if frames is None:
            return None
        return [b"".join(struct.pack("<Q", a) for a in frames).ljust(8 * 127, b"\0")]


class FakeSyms:
    def ksym(self, addr, offset=False):
        return "func_%x" % (addr & 0xff) + ("+%d" % (addr >> 8 & 0xf) if offset else "")

    def usym(self, pid, addr, offset=False, module=False):
        return "u%d_%x" % (pid, addr) + ("+0" if offset else "") + (" (/bin/x)" if module else "")


def test_output_stack_layout():
    import io
    from pytrace.runtime.manifest import Manifest, UserMap
    from pytrace.runtime.output import make_output
    from pytrace.runtime.output.values import DecodeContext
    kdesc = {"kind": "kstack", "mode": "bpftrace", "limit": 127, "map": "stack_127"}
    pdesc = {"kind": "kstack", "mode": "perf", "limit": 127, "map": "stack_127"}
    udesc = {"kind": "ustack", "mode": "perf", "limit": 127, "map": "stack_127"}
    manifest = Manifest.from_json({"probes": ["BEGIN"], "maps": []})
    buf = io.StringIO()
    out = make_output(manifest, buf)
    out.ctx._symbols = FakeSyms()
    out.set_maps_reader(FakeMaps({("stack_127", 3): [0x1a1, 0x2b2], ("stack_127", 4): [0x7f01]}))
    key = struct.pack("<q", 3)
    out.print_map(UserMap.from_json({"name": "@", "kind": "count", "key": {"size": 8, "fields": [
        {"offset": 0, "type": kdesc}]}, "value": {"kind": "int", "signed": False}}),
        [(key, [struct.pack("<Q", 2)])])
    out.print_map(UserMap.from_json({"name": "@v", "kind": "plain", "key": {"size": 8, "fields": []},
                                     "value": pdesc}), [(bytes(8), [struct.pack("<q", 3)])])
    out.print_value(udesc, struct.pack("<qQ", 4, 42))
    out.print_value(kdesc, struct.pack("<q", -14))        # a failed get_stackid: nothing
    assert buf.getvalue() == (
        "@[\n    func_a1+1\n    func_b2+2\n]: 2\n"
        "@v: \n\t1a1 func_a1+1\n\t2b2 func_b2+2\n\n"
        "\n\t7f01 u42_7f01+0 (/bin/x)\n\n"
        "\n")
    assert isinstance(out.ctx, DecodeContext)
