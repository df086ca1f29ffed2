"""pytrace's build backend: setuptools' (PEP 517 and 660), plus the `pytrace` command.

The command is not a console script. pip writes those with `#!<python>` as the
first line, so every run starts with `site`, which processes every `.pth` file
in site-packages: an editable install's finder and whatever else the machine
keeps there (~35 ms here, most of a cached one-liner's start: docs/performance.md).
The wheel instead gets a launcher (`pytrace-VERSION.data/scripts/pytrace`), a
file that is both a shell script and a Python one: the shell part starts the
interpreter that built the wheel with `-S`; the Python part puts the
site-packages directories on `sys.path` without their `.pth` files, finds
pytrace's own packages where an editable install left them, and runs
`pytrace.cli.command`. A module not found that way makes it run `site.main()`
once and look again, so a dependency that needs a `.pth` file still loads.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import os
import re
import shlex
import sys
import zipfile

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every other hook, unchanged)

COMMAND = "pytrace"
ENTRY = "pytrace.cli:command"
IMPORT_NAMES = {"pyelftools": "elftools"}      # distribution -> top-level module, where they differ
HERE = os.path.dirname(os.path.abspath(__file__))

LAUNCHER = '''#!/bin/sh
"""true"
# The shell reads this part; Python sees a string. Written by pytrace's build
# backend (scripts/pytrace_build.py): the interpreter that built the wheel,
# started without `site` (see docs/performance.md).
py=%(python)s
[ -x "$py" ] && exec "$py" -S "$0" "$@"
exec python3 "$0" "$@"
"""
import sys

SOURCES = %(sources)r    # an editable install's packages: name -> directory
DEPENDENCIES = %(dependencies)r    # their top-level modules


class _Sources:
    """Finds the packages an editable install maps to its source directories."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        where = SOURCES.get(name)
        if where is None:
            return None
        from importlib._bootstrap_external import spec_from_file_location
        return spec_from_file_location(name, where + "/__init__.py",
                                       submodule_search_locations=[where])


class _Site:
    """Last on sys.meta_path: a dependency found nowhere (installed in a way that
    needs a .pth file's import line, an editable install of it, say) makes `site`
    process the .pth files once, then every finder looks again. Other misses are
    the usual probes for optional modules, and stay misses."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in DEPENDENCIES:
            return None
        sys.meta_path.remove(cls)
        import site
        site.main()
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                return spec
        return None


def _without_site():
    import os
    import site          # with -S, importing site runs none of it
    site.venv(None)
    dirs = []
    if site.check_enableusersite():
        dirs.append(site.getusersitepackages())
    dirs += site.getsitepackages()
    for d in dirs:
        if os.path.isdir(d) and d not in sys.path:
            sys.path.append(d)
            sys.path += _pth_paths(d)
    sys.meta_path.insert(0, _Sources)
    sys.meta_path.append(_Site)


def _pth_paths(directory):
    """The directories a site directory's .pth files name (their import lines
    are what the launcher skips)."""
    import os
    paths = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".pth"):
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.rstrip()
                    if line and not line.startswith(("#", "import ", "import\t")):
                        path = os.path.join(directory, line)
                        if os.path.isdir(path) and path not in sys.path:
                            paths.append(path)
    return paths


if sys.flags.no_site:
    _without_site()
from %(module)s import %(function)s
sys.exit(%(function)s())
'''


def launcher(python: str, sources: dict[str, str]) -> str:
    """The launcher's text: `python` is the interpreter it starts, `sources` the
    editable install's package directories (empty for a regular install)."""
    module, function = ENTRY.split(":")
    return LAUNCHER % {"python": shlex.quote(python), "sources": sources,
                       "dependencies": dependency_modules(), "module": module, "function": function}


def dependency_modules() -> tuple:
    """The top-level modules of pytrace's dependencies (pyproject.toml's, optional
    ones too): the distribution's name, but for those IMPORT_NAMES names."""
    try:
        import tomllib
    except ImportError:         # Python 3.10
        from setuptools.extern import tomli as tomllib
    with open(os.path.join(os.path.dirname(HERE), "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    names = {re.match(r"[A-Za-z0-9._-]+", r).group().lower().replace("-", "_") for r in requirements}
    return tuple(sorted(IMPORT_NAMES.get(n, n) for n in names))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    add_launcher(os.path.join(wheel_directory, name), editable=False)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    add_launcher(os.path.join(wheel_directory, name), editable=True)
    return name


def add_launcher(wheel: str, *, editable: bool) -> None:
    """Rewrites `wheel` with the launcher among its scripts and in its RECORD."""
    with zipfile.ZipFile(wheel) as old:
        entries = [(info, old.read(info)) for info in old.infolist()]
    names = [info.filename for info, _ in entries]
    record = next(n for n in names if n.endswith(".dist-info/RECORD"))
    dist = record[:-len(".dist-info/RECORD")]
    sources = editable_sources(entries) if editable else {}
    text = launcher(sys.executable, sources).encode()
    script = zipfile.ZipInfo(f"{dist}.data/scripts/{COMMAND}", date_time=(1980, 1, 1, 0, 0, 0))
    script.external_attr = 0o100755 << 16
    script.compress_type = zipfile.ZIP_DEFLATED
    tmp = wheel + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as new:
        for info, data in entries:
            if info.filename == record:
                data = data.rstrip(b"\n") + b"\n" + _record_line(script.filename, text)
                new.writestr(script, text)
            new.writestr(info, data)
    os.replace(tmp, wheel)


def editable_sources(entries) -> dict[str, str]:
    """setuptools' own mapping (package -> source directory), read from the
    finder module it put in the editable wheel."""
    for info, data in entries:
        if info.filename.endswith("_finder.py"):
            for node in ast.parse(data).body:
                if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MAPPING":
                    return ast.literal_eval(node.value)
    return {}      # none: what a .pth file adds is found by the _Site fallback


def _record_line(path: str, data: bytes) -> bytes:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n".encode()
