"""Shared pytest fixtures.

`workload`: the absolute path of tests/workload/workload.c built with gcc.
The binary is cached in the temp dir under the hash of its source (and of
the build command), so it is built once per source version, even across
sessions.

`tracefs`: makes sure tracefs is mounted at /sys/kernel/tracing (some
machines boot without it); mounts it when missing and running as root.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

WORKLOAD_SRC = Path(__file__).resolve().parent / "workload" / "workload.c"
# Static, so that the dynamic loader makes no openat()/read() calls of its own.
WORKLOAD_CFLAGS = ["-O2", "-static", "-Wall"]


def build_workload(src=WORKLOAD_SRC):
    """Build the workload binary (or reuse the cached one); return its path."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build tests/workload/workload.c")
    source = Path(src).read_bytes()
    digest = hashlib.sha256(source + " ".join(WORKLOAD_CFLAGS).encode()).hexdigest()[:16]
    outdir = Path(tempfile.gettempdir()) / f"pytrace-workload-{digest}"
    binary = outdir / "workload"
    if binary.is_file() and os.access(binary, os.X_OK):
        return str(binary)
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = outdir / f"workload.{os.getpid()}.tmp"
    proc = subprocess.run([gcc, *WORKLOAD_CFLAGS, "-o", str(tmp), str(src)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the workload failed:\n{proc.stderr}")
    os.replace(tmp, binary)  # atomic: parallel sessions never see half a file
    return str(binary)


@pytest.fixture(scope="session")
def workload():
    return build_workload()


TRACEFS = Path("/sys/kernel/tracing")


def ensure_tracefs():
    """Mount tracefs if it is missing; return True if events are visible."""
    if (TRACEFS / "events").is_dir():
        return True
    if os.geteuid() == 0 and TRACEFS.is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)],
                       capture_output=True)
    return (TRACEFS / "events").is_dir()


@pytest.fixture(scope="session")
def tracefs():
    return ensure_tracefs()


def build_c(directory: Path, name: str, source: str, *flags: str) -> str:
    """Compile `source` with gcc into directory/name (skip the test without gcc)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed")
    (directory / f"{name}.c").write_text(source)
    subprocess.run(["gcc", *flags, "-o", str(directory / name), str(directory / f"{name}.c")],
                   check=True)
    return str(directory / name)
