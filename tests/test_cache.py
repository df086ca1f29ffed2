"""trace/cache.py: compiled objects by content, and the files an object probes."""
import os

import pytest

from pytrace import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTRACE_CACHE_DIR", str(tmp_path / "objects"))
    return tmp_path


def test_key_covers_source_and_options():
    assert cache.key("BEGIN {}", [], False) == cache.key("BEGIN {}", [], False)
    assert cache.key("BEGIN {}", [], False) != cache.key("BEGIN { }", [], False)
    assert cache.key("BEGIN {}", ["1"], False) != cache.key("BEGIN {}", [], False)


def test_store_and_load_with_warnings(cache_dir):
    cache.store("k1", b"\x7fELF1", "stdin:1:1: WARNING: w\n")
    assert cache.load("k1") == (b"\x7fELF1", "stdin:1:1: WARNING: w\n", None)
    assert cache.load("missing") is None


def test_the_manifest_is_kept_decoded_beside_the_object(cache_dir):
    manifest = {"version": 1, "programs": [{"symbol": "prog_0", "span": [1, 1, 1, 5]}],
                "probes": ["BEGIN"], "internal": {"ringbuf": "ringbuf"}, "async": []}
    cache.store("k5", b"obj", "", (), manifest)
    assert cache.load("k5") == (b"obj", "", manifest)
    (cache_dir / "objects" / "k5.man").write_bytes(b"\xff not marshal")
    assert cache.load("k5") == (b"obj", "", None)          # the object's own is read instead


def test_probed_files_invalidate(cache_dir, monkeypatch):
    target = cache_dir / "binary"
    target.write_bytes(b"v1")
    cache.store("k2", b"obj", "", [str(target)])
    assert cache.load("k2") == (b"obj", "", None)
    target.write_bytes(b"v2, longer")                  # size and mtime change
    assert cache.load("k2") is None
    cache.store("k2", b"obj2", "", [str(target)])
    assert cache.load("k2") == (b"obj2", "", None)
    target.unlink()
    assert cache.load("k2") is None


def test_relative_paths_depend_on_cwd_and_path(cache_dir, monkeypatch):
    target = cache_dir / "binary"
    target.write_bytes(b"v1")
    cache.store("k3", b"obj", "", [str(target)])
    monkeypatch.chdir(cache_dir)
    assert cache.load("k3") is None                   # another working directory
    cache.store("k3", b"obj", "", [str(target)])
    monkeypatch.setenv("PATH", "/nowhere")
    assert cache.load("k3") is None                   # another PATH


def test_unwritable_directory_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PYTRACE_CACHE_DIR", str(blocker / "objects"))
    cache.store("k4", b"obj")
    assert cache.load("k4") is None
    assert not os.path.exists(blocker / "objects")


def test_literals_blank_decimal_literals_keeping_every_span():
    src = 'k:f /pid == 1234/ { printf("5 %d\\n", 0x10 + 7); $a = 010; // 9\n @x[3] = 1e6; }'
    lits = cache.Literals(src)
    assert lits.values == [1234, 7, 3]
    assert lits.spans == [(1, 13, 17), (1, 45, 46), (2, 5, 6)]
    assert len(lits.shape) == len(src)
    assert lits.shape == src.replace("1234", "\1" * 4).replace("+ 7", "+ \1").replace(
        "[3]", "[\1]")
    assert cache.Literals(src.replace("1234", "4321")).shape == lits.shape
    assert cache.Literals(src.replace("1234", "12345")).shape != lits.shape


def _objects(directory):
    return {p.name: p.stat().st_ino for p in directory.glob("*.o")}


def _run(source, cache_dir, *args):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "pytrace.cli", "-e", source, *args],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTRACE_CACHE_DIR": str(cache_dir)})
    assert r.returncode == 0, r.stderr
    return r.stdout


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")


@needs_root
def test_programs_differing_in_literals_share_one_object(tmp_path):
    # the loop's bound comes from .rodata: the verifier must see it as a constant
    prog = 'BEGIN {{ $i = 0; while ($i < {}) {{ $i++; }} printf("%d %d\\n", $i, {} + 1); exit(); }}'
    assert _run(prog.format(100, 41), tmp_path) == "Attaching 1 probe...\n100 42\n\n\n"
    first = _objects(tmp_path)
    assert len(first) == 1
    assert _run(prog.format(250, 99), tmp_path) == "Attaching 1 probe...\n250 100\n\n\n"
    assert _objects(tmp_path) == first            # loaded with the new values, not compiled
    assert _run(prog.format(100, 41), tmp_path) == "Attaching 1 probe...\n100 42\n\n\n"
    assert _objects(tmp_path) == first


@needs_root
def test_literals_a_pass_reads_stay_in_the_key(tmp_path):
    prog = 'BEGIN {{ @h = lhist({}, 0, {}, 1); print(@h); clear(@h); exit(); }}'
    a = _run(prog.format(1, 4), tmp_path)
    b = _run(prog.format(5, 3), tmp_path)
    assert len(_objects(tmp_path)) == 2           # lhist's bounds decide the object
    assert "[1, 2)" in a and "[3, ...)" in b
    warned = 'BEGIN {{ $a = -1; if ($a < pid) {{ printf("{} %d\\n", {}); }} exit(); }}'
    _run(warned.format("x", 1), tmp_path)
    _run(warned.format("x", 2), tmp_path)
    assert len(_objects(tmp_path)) == 4           # warnings quote the source: not shared


def test_bytecode_cache_only_when_python_writes_none(tmp_path):
    import subprocess
    import sys
    code = ("import pytrace.compiler as c, sys; "
            "print(type(c.__spec__.loader).__name__)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTRACE_NO_BYTECODE_CACHE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert out == "CachingLoader\n"
    cached = list((tmp_path / "pytrace" / "bytecode").rglob("compiler.py.*.pyc"))
    assert len(cached) == 1
    env["PYTRACE_NO_BYTECODE_CACHE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out == "SourceFileLoader\n"


@needs_root
def test_commands_share_an_object_without_watchpoints(tmp_path):
    prog = 'BEGIN { printf("%d\\n", cpid > 0); exit(); }'
    for cmd in ("/bin/true", "/bin/true 1 2", "/bin/false"):
        assert _run(prog, tmp_path, "-c", cmd) == "Attaching 1 probe...\n1\n\n\n"
    assert len(_objects(tmp_path)) == 1
