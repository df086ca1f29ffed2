"""User-space probes on the real kernel: uprobe / uretprobe / usdt, their builtins,
listing and errors. A small C program is built with gcc; USDT probes are those of
/usr/bin/python3.11 (python:*), which this machine always has."""
import os
import shutil
import subprocess
import sys
import time

import pytest

PYTRACE = [sys.executable, "-m", "pytrace.cli"]
PYTHON_SDT = "/usr/bin/python3.11"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed")

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int g_counter = 42;

__attribute__((noinline)) int add(int a, int b) { __asm__ volatile(""); return a + b; }
__attribute__((noinline)) int add3(int a, int b, int c) { __asm__ volatile(""); return a + b + c; }
__attribute__((noinline)) long greet(const char *s) { __asm__ volatile(""); return (long)strlen(s); }
__attribute__((noinline)) int neg(int a) { __asm__ volatile(""); return -a; }

/* prog N WORD [wait]: N calls of add(i, 10) and add3(1, 2, 3), greet(WORD), neg(7),
   getpid(); with "wait", first read one byte from stdin */
int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3;
    char buf[64];
    long t = 0;
    if (argc > 3) {
        char c;
        if (read(0, &c, 1) != 1)
            return 1;
    }
    strncpy(buf, argc > 2 ? argv[2] : "hello", sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    for (int i = 0; i < n; i++)
        t += add(i, 10) + add3(1, 2, 3);
    t += greet(buf) + neg(7);
    getpid();
    return t == 12345;
}
"""


def run(args, timeout=60, **kw):
    return subprocess.run(PYTRACE + args, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed")
    d = tmp_path_factory.mktemp("uprobe")
    src = d / "prog.c"
    src.write_text(SOURCE)
    out = {}
    for name, flags in (("prog", []), ("prog_nopie", ["-no-pie"])):
        subprocess.run(["gcc", "-O2", *flags, "-o", str(d / name), str(src)], check=True)
        out[name] = str(d / name)
    return out


def trace(script, command, *extra, timeout=60):
    r = run([*extra, "-c", command, "-e", script], timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def map_lines(out):
    return [line for line in out.splitlines() if line.startswith("@")]


# ------------------------------------------------------------------ uprobe / uretprobe

@needs_root
def test_uprobe_call_count_and_args(prog):
    p = prog["prog"]
    out = trace(f"uprobe:{p}:add {{ @calls = count(); @a[arg0, arg1] = count(); }}", f"{p} 7 x")
    lines = map_lines(out)
    assert "@calls: 7" in lines
    assert [f"@a[{i}, 10]: 1" for i in range(7)] == [ln for ln in lines if ln.startswith("@a[")]


@needs_root
def test_uprobe_three_args_and_func(prog):
    p = prog["prog"]
    out = trace(f'uprobe:{p}:add3 {{ @[func, arg0, arg1, arg2] = count(); }}', f"{p} 4 x")
    assert map_lines(out) == ["@[add3, 1, 2, 3]: 4"]


@needs_root
def test_uretprobe_retval_and_func(prog):
    p = prog["prog"]
    out = trace(f'uretprobe:{p}:add {{ @sum = sum(retval); @[func] = count(); }} '
                f'ur:{p}:neg {{ printf("neg %d\\n", (int32)retval); }}', f"{p} 5 x")
    assert "neg -7" in out.splitlines()
    assert "@sum: 60" in map_lines(out)          # (0..4) + 5 * 10
    assert "@[add]: 5" in map_lines(out)


@needs_root
def test_uprobe_str_of_string_argument(prog):
    p = prog["prog"]
    out = trace(f'uprobe:{p}:greet {{ printf("<%s> <%s> %s\\n", str(arg0), str(arg0, 2), func); }}',
                f"{p} 1 pytrace-word")
    assert "<pytrace-word> <py> greet" in out.splitlines()


@needs_root
def test_uprobe_wildcard_probe_names(prog):
    p = prog["prog"]
    out = trace(f"u:{p}:add* {{ @[probe] = count(); @f[func] = count(); }}", f"{p} 3 x")
    lines = map_lines(out)
    assert f"@[uprobe:{p}:add]: 3" in lines
    assert f"@[uprobe:{p}:add3]: 3" in lines
    assert "@f[add]: 3" in lines and "@f[add3]: 3" in lines
    assert out.startswith("Attaching 2 probes...")


@needs_root
def test_uprobe_wildcarded_file(prog):
    # every binary the pattern matches that has the function (prog and prog_nopie)
    p, nopie = prog["prog"], prog["prog_nopie"]
    pattern = p + "*"
    out = trace(f"uprobe:{pattern}:add {{ @[probe] = count(); }} "
                f"uprobe:{pattern}:add3* {{ @w[probe] = count(); }}", f"{nopie} 2 x")
    assert out.startswith("Attaching 4 probes..."), out
    assert map_lines(out) == [f"@[uprobe:{nopie}:add]: 2", f"@w[uprobe:{nopie}:add3]: 2"]
    r = run(["-e", f"uprobe:{pattern}:nosuchfn {{ exit(); }}"])
    assert r.returncode == 1
    assert r.stderr.startswith(f"stdin:1:1-{len(pattern) + 17}: ERROR: No probes found for "
                               f"uprobe:{pattern}:nosuchfn\n"), r.stderr


@needs_root
def test_uprobe_offset_and_address(prog):
    from elftools.elf.elffile import ELFFile
    p = prog["prog"]
    with open(p, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name("add")[0]
    addr = sym["st_value"]
    out = trace(f"uprobe:{p}:add+0 {{ @off = count(); }} uprobe:{p}:{addr:#x} {{ @addr[probe] = count(); }}",
                f"{p} 6 x")
    lines = map_lines(out)
    assert "@off: 6" in lines
    assert f"@addr[uprobe:{p}:{addr:#x}]: 6" in lines


@needs_root
def test_uprobe_quoted_path(prog, tmp_path):
    spaced = tmp_path / "dir with space"
    spaced.mkdir()
    p = spaced / "prog"
    shutil.copy(prog["prog"], p)
    link = tmp_path / "prog_link"       # -c is split at spaces (as bpftrace splits it)
    link.symlink_to(p)
    out = trace(f'uprobe:"{p}":add {{ @ = count(); }}', f"{link} 2 x")
    assert "@: 2" in map_lines(out)


@needs_root
def test_uprobe_reg_and_uaddr(prog):
    for name in ("prog", "prog_nopie"):
        p = prog[name]
        out = trace(f'uprobe:{p}:neg {{ printf("%d %d %d\\n", reg("di"), arg0 == reg("di"), '
                    f'*uaddr("g_counter")); }}', f"{p} 1 x")
        assert "7 1 42" in out.splitlines(), (name, out)


@needs_root
def test_uprobe_library_by_name_for_child(prog):
    p = prog["prog"]
    out = trace("uprobe:libc:getpid /pid == cpid/ { @[probe] = count(); }", f"{p} 1 x")
    lines = map_lines(out)
    assert len(lines) == 1
    assert lines[0].startswith("@[uprobe:/") and "libc.so" in lines[0] and lines[0].endswith(":getpid]: 1")


@needs_root
def test_uprobe_pid_restricts_to_process(prog):
    p = prog["prog"]
    target = subprocess.Popen([p, "4", "x", "wait"], stdin=subprocess.PIPE)
    other = subprocess.Popen([p, "9", "x", "wait"], stdin=subprocess.PIPE)
    tracer = subprocess.Popen(PYTRACE + ["-p", str(target.pid), "-e",
                                         f"uprobe:{p}:add {{ @[pid] = count(); }}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stdout.readline().startswith("Attaching 1 probe")
        time.sleep(1.0)                 # the uprobe is attached once BEGIN has run
        for proc in (other, target):
            proc.stdin.write(b"x")
            proc.stdin.close()
            proc.wait(timeout=10)
        out, err = tracer.communicate(timeout=30)   # -p: exits when the process exits
    finally:
        for proc in (target, other, tracer):
            if proc.poll() is None:
                proc.kill()
    assert tracer.returncode == 0, err
    assert map_lines(out) == [f"@[{target.pid}]: 4"]


@needs_root
def test_uprobes_of_a_program_share_one_uprobe_multi_link(prog):
    from pytrace.runtime import attach, syscall, uapi
    if not attach.uprobe_multi_supported():
        pytest.skip("the kernel has no uprobe_multi links (Linux 6.6+)")

    def new_links():
        out = []
        for link_id in set(syscall.link_ids()) - before:
            try:
                fd = syscall.link_get_fd_by_id(link_id)
            except OSError:
                continue
            try:
                out.append(syscall.link_info(fd)["type"])
            finally:
                syscall.close(fd)
        return out

    p = prog["prog"]
    before = set(syscall.link_ids())
    tracer = subprocess.Popen(
        PYTRACE + ["-c", f"{p} 3 x wait", "-e",
                   f"uprobe:{p}:add* {{ @[probe] = count(); }} "
                   f"uretprobe:{p}:neg {{ @[probe] = count(); }}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stdout.readline().startswith("Attaching 3 probes")
        deadline = time.monotonic() + 10
        while new_links().count(uapi.BPF_LINK_TYPE_UPROBE_MULTI) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        # one link per program: add and add3 share one, the uretprobe has its own
        assert sorted(new_links()) == [uapi.BPF_LINK_TYPE_UPROBE_MULTI] * 2
        # the -c child reads this, then calls the functions
        out, err = tracer.communicate(input="x", timeout=30)
    finally:
        if tracer.poll() is None:
            tracer.kill()
    assert tracer.returncode == 0, err
    assert map_lines(out) == [f"@[uretprobe:{p}:neg]: 1", f"@[uprobe:{p}:add]: 3",
                              f"@[uprobe:{p}:add3]: 3"]
    assert new_links() == []


@needs_root
def test_uprobe_objects_are_cached_until_the_binary_changes(prog, tmp_path):
    binary = tmp_path / "prog"
    shutil.copy(prog["prog"], binary)
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTRACE_CACHE_DIR=str(cache))
    env.pop("PYTRACE_NO_CACHE", None)
    script = f"uprobe:{binary}:add {{ @ = count(); }}"

    def traced():
        r = run(["-c", f"{binary} 2 x", "-e", script], env=env)
        assert r.returncode == 0, r.stderr
        assert map_lines(r.stdout) == ["@: 2"]
        (obj,) = cache.glob("*.o")
        return obj.stat().st_mtime_ns

    first = traced()
    assert len(list(cache.glob("*.deps"))) == 1
    assert traced() == first                    # served from the cache
    os.utime(binary, ns=(first + 10**9, first + 10**9))
    assert traced() > first                     # the binary changed: compiled again


# ------------------------------------------------------------------ usdt

needs_python_sdt = pytest.mark.skipif(not os.path.exists(PYTHON_SDT), reason="no python3.11")


def python_running(tmp_path, code):
    """A -c command running `code` (-c is split at spaces, as bpftrace splits it)."""
    script = tmp_path / "code.py"
    script.write_text(code + "\n")
    return f"{PYTHON_SDT} -S {script}"


@needs_root
@needs_python_sdt
def test_usdt_string_argument(tmp_path):
    out = trace(f'usdt:{PYTHON_SDT}:python:import__find__load__start /pid == cpid/ '
                f'{{ @[str(arg0)] = count(); }}', python_running(tmp_path, "import json"))
    lines = map_lines(out)
    assert [ln for ln in lines if "json" in ln] == [
        "@[_json]: 1", "@[json]: 1", "@[json.decoder]: 1", "@[json.encoder]: 1", "@[json.scanner]: 1"]


@needs_root
@needs_python_sdt
def test_usdt_memory_argument_and_short_form(tmp_path):
    # gc__start's argument is `-4@112(%rsp)`: read from the stack
    out = trace(f'U:{PYTHON_SDT}:gc__start /pid == cpid/ {{ @[arg0] = count(); }} '
                f'usdt:{PYTHON_SDT}:python:gc__done /pid == cpid/ {{ @done = count(); }}',
                python_running(tmp_path, "import gc; gc.disable(); gc.collect(1); gc.collect(1); "
                               "gc.collect(2)"))
    counts = {}
    for line in map_lines(out):
        key, value = line.rsplit(": ", 1)
        counts[key] = int(value)
    assert counts.get("@[1]", 0) >= 2 and counts.get("@[2]", 0) >= 1
    assert counts["@done"] == sum(v for k, v in counts.items() if k.startswith("@["))


@needs_root
@needs_python_sdt
def test_usdt_wildcard_probe_names(tmp_path):
    out = trace(f'usdt:{PYTHON_SDT}:python:import* /pid == cpid/ {{ @[probe] = count(); }}',
                python_running(tmp_path, "import json"))
    names = {line.split("]")[0][2:] for line in map_lines(out)}
    assert names == {f"usdt:{PYTHON_SDT}:python:import__find__load__start",
                     f"usdt:{PYTHON_SDT}:python:import__find__load__done"}


def test_usdt_argument_specs():
    from pytrace.providers.usdt import parse_arg
    assert parse_arg("-4@%edi") == {"size": 4, "signed": True, "kind": "reg", "reg": ("di", 32)}
    assert parse_arg("8@-16(%rbp)")["disp"] == -16
    assert parse_arg("8@(%rax,%rbx,8)")["scale"] == 8
    assert parse_arg("4@$5") == {"size": 4, "signed": False, "kind": "const", "value": 5}
    assert parse_arg("8@foo(%rip)")["symbol"] == "foo"     # resolved against the file (usdt.resolve_symbol)


# ------------------------------------------------------------------ listing

def test_list_uprobe_functions(prog):
    p = prog["prog"]
    r = run(["-l", f"uprobe:{p}:*"])
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for fn in ("add", "add3", "greet", "main", "neg"):
        assert f"uprobe:{p}:{fn}" in lines
    assert lines == sorted(lines)
    assert run(["-l", f"uprobe:{p}:add*"]).stdout.splitlines() == [f"uprobe:{p}:add", f"uprobe:{p}:add3"]


def test_list_uprobe_library():
    r = run(["-l", "u:libc:getpi*"])
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("uprobe:/") and lines[0].endswith("libc.so.6:getpid")


@needs_python_sdt
def test_list_usdt_notes():
    lines = run(["-l", f"usdt:{PYTHON_SDT}:*"]).stdout.splitlines()
    assert f"usdt:{PYTHON_SDT}:python:function__entry" in lines
    assert f"usdt:{PYTHON_SDT}:python:gc__start" in lines
    assert len(lines) == 8 and lines == sorted(lines)
    assert run(["-l", f"U:{PYTHON_SDT}:python:gc*"]).stdout.splitlines() == [
        f"usdt:{PYTHON_SDT}:python:gc__done", f"usdt:{PYTHON_SDT}:python:gc__start"]


# ------------------------------------------------------------------ errors

def _error(script):
    r = run(["--emit-elf", os.devnull, "-e", script])
    assert r.returncode == 1
    return r.stderr


def test_error_unknown_binary():
    assert _error("uprobe:/no/such/bin:foo { }") == (
        "stdin:1:1-24: ERROR: uprobe target file '/no/such/bin' does not exist or is not executable\n"
        "uprobe:/no/such/bin:foo { }\n"
        "~~~~~~~~~~~~~~~~~~~~~~~\n")


def test_error_unknown_symbol(prog):
    p = prog["prog"]
    ap = f"uprobe:{p}:nosuch"
    assert _error(f"{ap} {{ }}") == (
        f"stdin:1:1-{len(ap) + 1}: ERROR: Could not resolve symbol: {p}:nosuch\n"
        f"{ap} {{ }}\n" + "~" * len(ap) + "\n")
    assert f"ERROR: No probes found for uprobe:{p}:zz*" in _error(f"uprobe:{p}:zz* {{ }}")


def test_error_bad_offsets(prog):
    p = prog["prog"]
    assert "ERROR: Offset outside the function bounds ('add' size is" in _error(f"uprobe:{p}:add+100000 {{ }}")
    assert f"ERROR: Could not resolve address: {p}:0x1\n" in _error(f"uprobe:{p}:0x1 {{ }}")
    # a decimal address is named in hex, as 0.17 names it
    assert f"ERROR: Could not resolve address: {p}:0xa\n" in _error(f"uprobe:{p}:10 {{ }}")
    assert "ERROR: Offset not allowed\n" in _error(f"uretprobe:{p}:add+1 {{ }}")


def test_error_builtins(prog):
    p = prog["prog"]
    assert "ERROR: x86_64 doesn't support arg6" in _error(f"uprobe:{p}:add {{ print(arg6); }}")
    assert ("ERROR: The retval builtin can only be used with 'kretprobe' and 'uretprobe' and 'kfunc' "
            "probes\n") in _error(f"uprobe:{p}:add {{ print(retval); }}")
    assert "ERROR: The arg0 builtin can only be used with 'kprobes', 'uprobes' and 'usdt' probes" in \
        _error(f"uretprobe:{p}:add {{ print(arg0); }}")
    assert "ERROR: 'foo' is not a valid register on this architecture (x86_64)" in \
        _error(f'uprobe:{p}:add {{ print(reg("foo")); }}')
    assert 'ERROR: reg can not be used with "tracepoint" probes' in \
        _error('tracepoint:syscalls:sys_enter_read { print(reg("ax")); }')
    assert f"ERROR: Could not resolve symbol: {p}:nosuch" in _error(f'uprobe:{p}:add {{ print(uaddr("nosuch")); }}')
    assert "ERROR: The func builtin can not be used with 'tracepoint' probes" in \
        _error("tracepoint:syscalls:sys_enter_read { print(func); }")


@needs_python_sdt
def test_error_usdt():
    assert f"ERROR: No USDT probes found for {PYTHON_SDT}:nosuch" in _error(f"usdt:{PYTHON_SDT}:nosuch {{ }}")
    assert "ERROR: usdt probe python:gc__done has only 1 argument (arg1 used here)" in \
        _error(f"usdt:{PYTHON_SDT}:gc__done {{ print(arg1); }}")


def test_manifest_attach_entries(prog, tmp_path):
    """-p reaches the manifest; usdt semaphores become ref_ctr_offset (a file offset)."""
    from pytrace.runtime import objfile
    p = prog["prog"]
    obj = tmp_path / "o.elf"
    r = run(["-p", "1", "--emit-elf", str(obj), "-e",
             f"uprobe:{p}:add {{ @ = count(); }} uretprobe:{p}:add {{ @r = count(); }}"])
    assert r.returncode == 0, r.stderr
    progs = objfile.parse(obj.read_bytes()).manifest["programs"]
    assert [(a["kind"], a["path"], a["pid"]) for pr in progs for a in pr["attach"]] == [
        ("uprobe", p, 1), ("uretprobe", p, 1)]
    assert all(pr["prog_type"] == 2 for pr in progs)
    if os.path.exists(PYTHON_SDT):
        r = run(["--emit-elf", str(obj), "-e", f"usdt:{PYTHON_SDT}:python:gc__start {{ @ = count(); }}"])
        assert r.returncode == 0, r.stderr
        (entry,) = objfile.parse(obj.read_bytes()).manifest["programs"][0]["attach"]
        assert entry["kind"] == "usdt" and entry["pid"] == -1 and entry["ref_ctr_offset"] > 0


def test_unresolved_symbols_are_skipped_when_other_probes_remain(prog):
    """As bpftrace 0.17 (bpftrace's ssl tools on a stripped libcrypto): an attach
    point whose symbol the binary lacks is skipped, with a located warning, when the
    script has other probes; alone it stays an error."""
    p = prog["prog"]
    r = run(["-e", f'uprobe:{p}:nosuch, uprobe:{p}:add {{ }} BEGIN {{ printf("began\\n"); exit(); }}'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Attaching 2 probes...\nbegan\n"), r.stdout
    assert r.stderr.startswith(f"stdin:1:1-{len(p) + 15}: WARNING: Could not resolve symbol: "
                               f"{p}:nosuch (the probe is skipped)\n"), r.stderr
    assert "ERROR: Could not resolve symbol" in _error(f"uprobe:{p}:nosuch {{ }}")


def test_a_stub_library_resolves_through_the_libraries_it_needs(tmp_path):
    """glibc 2.34 left libpthread.so.0 a stub: pthread_create is libc's, which the
    stub needs (DT_NEEDED); bpftrace's threadsnoop.bt traces it there."""
    from pytrace.providers.elf import needed_libraries, resolve_binary
    stub = resolve_binary("libpthread")
    lib = stub and next((n for n in needed_libraries(stub) if "libc.so" in n), None)
    if lib is None or "pthread_create" in (read_elf_functions(stub)):
        pytest.skip("libpthread is not a stub of libc here")
    src = tmp_path / "t.c"
    src.write_text("#include <pthread.h>\nstatic void *f(void *a) { return a; }\n"
                   "int main(void) { pthread_t t; pthread_create(&t, 0, f, 0); "
                   "pthread_join(t, 0); return 0; }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "t"), str(src), "-lpthread"], check=True)
    r = run(["-c", str(tmp_path / "t"), "-e",
             'uprobe:libpthread:pthread_create /pid == cpid/ { printf("%s\\n", probe); }'])
    assert r.returncode == 0, r.stderr
    assert f"uprobe:{lib}:pthread_create\n" in r.stdout, r.stdout


def read_elf_functions(path):
    from pytrace.providers.elf import read_elf
    elf = read_elf(path)
    return elf.functions if elf is not None else {}


def test_versioned_symbol_names(tmp_path):
    """A .symver name of the symbol table (`pthread_create@@GLIBC_2.34`, from libc's
    debug file) is listed beside the plain name, as bpftrace lists it; a wildcard
    without `@` takes only the plain names (each address once)."""
    r = run(["-l", "uprobe:libc:pthread_create*"])
    versioned = [line for line in r.stdout.splitlines() if "@" in line]
    if not versioned:
        pytest.skip("no .symver names in libc's symbols here (libc6-dbg not installed)")
    assert any(line.endswith(":pthread_create@@GLIBC_2.34") for line in versioned), r.stdout
    src = tmp_path / "t.c"
    src.write_text("#include <pthread.h>\nstatic void *f(void *a) { return a; }\n"
                   "int main(void) { pthread_t t; pthread_create(&t, 0, f, 0); "
                   "pthread_join(t, 0); return 0; }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "t"), str(src)], check=True)
    r = run(["-c", str(tmp_path / "t"), "-e",
             'uprobe:libc:pthread_create* /pid == cpid/ { @[probe] = count(); }'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("]: 1\n") == 1 and ":pthread_create]: 1\n" in r.stdout, r.stdout
