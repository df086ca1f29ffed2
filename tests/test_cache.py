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
    assert cache.load("k1") == (b"\x7fELF1", "stdin:1:1: WARNING: w\n")
    assert cache.load("missing") is None


def test_probed_files_invalidate(cache_dir, monkeypatch):
    target = cache_dir / "binary"
    target.write_bytes(b"v1")
    cache.store("k2", b"obj", "", [str(target)])
    assert cache.load("k2") == (b"obj", "")
    target.write_bytes(b"v2, longer")                  # size and mtime change
    assert cache.load("k2") is None
    cache.store("k2", b"obj2", "", [str(target)])
    assert cache.load("k2") == (b"obj2", "")
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
