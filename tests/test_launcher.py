"""The `pytrace` command: the launcher scripts/pytrace_build.py writes into the
wheel (a shell and Python file that starts the interpreter without `site`)."""
import base64
import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import pytrace_build  # noqa: E402

PROBE = """
import builtins, sys
def command():
    print("no_site", sys.flags.no_site)
    print("site ran", hasattr(builtins, "quit"))      # site.main() defines quit()
    try:
        import org.python.core     # an optional module probed for (pickle does): stays a miss
    except ImportError:
        print("after an optional module, site ran", hasattr(builtins, "quit"))
    try:
        import pytrace_no_such_module   # a dependency found nowhere: site.main() runs once
    except ImportError:
        print("after a missing module, site ran", hasattr(builtins, "quit"))
    return 3
"""


def _write_launcher(tmp_path, sources, dependencies=None):
    text = pytrace_build.launcher(sys.executable, sources)
    if dependencies is not None:
        text = text.replace(f"DEPENDENCIES = {pytrace_build.dependency_modules()!r}",
                            f"DEPENDENCIES = {dependencies!r}")
    path = tmp_path / "pytrace"
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_launcher_runs_the_interpreter_without_site(tmp_path):
    pkg = tmp_path / "fake"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(PROBE)
    # the fake package is found only through SOURCES (as an editable install's are)
    launcher = _write_launcher(tmp_path, {"pytrace": str(pkg)}, ("pytrace_no_such_module",))
    r = subprocess.run([launcher], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines() == [
        "no_site 1", "site ran False", "after an optional module, site ran False",
        "after a missing module, site ran True"], r.stderr


def test_launcher_runs_pytrace(tmp_path):
    sources = {"pytrace": os.path.join(ROOT, "trace"), "pytrace.runtime": os.path.join(ROOT, "runtime"),
               "pytrace.grammar": os.path.join(ROOT, "grammar")}
    launcher = _write_launcher(tmp_path, sources)
    r = subprocess.run([launcher, "-e", 'BEGIN { printf("%d %s\\n", $1, str($2)); exit(); }', "7", "x"],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Attaching 1 probe...\n7 x\n\n\n", "")
    # it ends with os._exit: the status and what was written still come out
    r = subprocess.run([launcher, "-e", "BEGIN { @x = ; }"], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr.count("ERROR: syntax error")) == (1, "", 1), r.stderr


def test_launcher_falls_back_to_python3_on_path(tmp_path):
    path = tmp_path / "pytrace"
    path.write_text(pytrace_build.launcher("/nonexistent/python3", {}))
    path.chmod(0o755)
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    r = subprocess.run([str(path), "--version"], capture_output=True, text=True, env=env)
    assert (r.returncode, r.stdout.startswith("pytrace v")) == (0, True), r.stderr


def test_the_wheel_carries_the_launcher_in_its_record(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "-w", str(tmp_path), ROOT], capture_output=True, text=True)
    if r.returncode and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    wheel, = tmp_path.glob("pytrace-*.whl")
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo("pytrace-0.1.0.data/scripts/pytrace")
        text = z.read(info)
        record = z.read("pytrace-0.1.0.dist-info/RECORD").decode().splitlines()
        entry_points = [n for n in z.namelist() if n.endswith("entry_points.txt")]
        scripts = [z.read(n).decode() for n in entry_points]
    assert info.external_attr >> 16 == 0o100755
    assert text.startswith(b"#!/bin/sh\n") and b"SOURCES = {}" in text
    digest = base64.urlsafe_b64encode(hashlib.sha256(text).digest()).rstrip(b"=").decode()
    assert f"pytrace-0.1.0.data/scripts/pytrace,sha256={digest},{len(text)}" in record
    assert not any("console_scripts" in s for s in scripts)   # no second `pytrace` for pip to write


def test_dependency_modules_are_pyprojects():
    assert {"lark", "llvmlite", "elftools", "pycparser", "pcpp", "prometheus_client"} \
        <= set(pytrace_build.dependency_modules())


def test_editable_sources_come_from_setuptools_finder():
    finder = (b"MAPPING: dict[str, str] = {'pytrace': '/src/trace', 'pytrace.runtime': '/src/runtime'}\n"
              b"NAMESPACES: dict[str, list[str]] = {}\n")
    entries = [(zipfile.ZipInfo("__editable___pytrace_0_1_0_finder.py"), finder)]
    assert pytrace_build.editable_sources(entries) == {"pytrace": "/src/trace", "pytrace.runtime": "/src/runtime"}
