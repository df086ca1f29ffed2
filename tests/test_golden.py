"""Golden-output tests: run every case in tests/golden/ and compare the output
byte for byte with what bpftrace 0.17 printed.

A case is a directory tests/golden/<name>/ with:

  script.pt  the program, passed as `-e "<contents>"` (one trailing newline of
             the file is dropped), so errors name the file `stdin`
  args       optional: one line of extra arguments, shell-split, placed before
             `-e`; `{workload}` becomes the path of the built workload binary
  posargs    optional: positional parameters (shell-split), after the program
  stdout     the expected stdout, exact bytes
  stderr     optional: the expected stderr, exact bytes (not checked if absent)
  rc         optional: the expected exit code (default 0)
  NOTE       optional: why the expected output deviates from bpftrace 0.17;
             scripts/regen_golden.py never rewrites such a case

Usage (root is required: the tool loads BPF programs):

  pytest tests/test_golden.py                         # against pytrace
  pytest tests/test_golden.py -k printf               # some cases only
  GOLDEN_TOOL=bpftrace pytest tests/test_golden.py    # against bpftrace 0.17
  GOLDEN_TOOL="/path/to/tool --flag" pytest ...       # any other command

With GOLDEN_TOOL=bpftrace, bpftrace's harmless RLIMIT_MEMLOCK line is removed
from stderr, and a case with a NOTE is expected to differ (it is reported as
xfail).  A NOTE case that matches bpftrace anyway fails, because its NOTE is
then stale, unless the NOTE contains `[may-match]` (used where bpftrace's
output is merely nondeterministic, e.g. the order of tied values).
"""

import difflib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
TIMEOUT = 30  # seconds per case
RLIMIT_LINE = b"ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK"
MAY_MATCH = "[may-match]"


@dataclass
class Case:
    name: str
    path: Path
    script: str
    args: list
    posargs: list
    stdout: bytes
    stderr: bytes | None
    rc: int
    note: str | None


def case_names():
    if not GOLDEN_DIR.is_dir():
        return []
    return sorted(p.name for p in GOLDEN_DIR.iterdir()
                  if p.is_dir() and (p / "script.pt").is_file())


def _read_text(path, default=None):
    return path.read_text() if path.is_file() else default


def load_case(name):
    d = GOLDEN_DIR / name
    script = (d / "script.pt").read_text()
    if script.endswith("\n"):
        script = script[:-1]
    stderr = d / "stderr"
    return Case(
        name=name,
        path=d,
        script=script,
        args=shlex.split(_read_text(d / "args", "")),
        posargs=shlex.split(_read_text(d / "posargs", "")),
        stdout=(d / "stdout").read_bytes() if (d / "stdout").is_file() else b"",
        stderr=stderr.read_bytes() if stderr.is_file() else None,
        rc=int(_read_text(d / "rc", "0").strip() or 0),
        note=_read_text(d / "NOTE"),
    )


def tool_from_env():
    """Return (kind, command prefix) for GOLDEN_TOOL; kind is 'pytrace',
    'bpftrace' or 'other'."""
    spec = os.environ.get("GOLDEN_TOOL", "pytrace").strip() or "pytrace"
    if spec == "pytrace":
        exe = shutil.which("pytrace")
        return "pytrace", [exe] if exe else [sys.executable, "-m", "pytrace.cli"]
    if spec == "bpftrace":
        return "bpftrace", [shutil.which("bpftrace") or "/usr/bin/bpftrace"]
    cmd = shlex.split(spec)
    kind = "bpftrace" if Path(cmd[0]).name == "bpftrace" else "other"
    return kind, cmd


def build_argv(case, tool_cmd, workload):
    args = [a.replace("{workload}", workload) for a in case.args]
    return [*tool_cmd, *args, "-e", case.script, *case.posargs]


def strip_rlimit(stderr):
    return b"".join(line for line in stderr.splitlines(keepends=True)
                    if not line.startswith(RLIMIT_LINE))


def run_argv(argv, timeout=TIMEOUT):
    """Run argv in its own session; return (stdout, stderr, rc, timed_out)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return out, err, proc.returncode, False
    except subprocess.TimeoutExpired:
        # The tool and its -c child share the new process group.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=3)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = proc.communicate()
        return out, err, proc.returncode, True


def run_case(case, kind, tool_cmd, workload, timeout=TIMEOUT):
    out, err, rc, timed_out = run_argv(build_argv(case, tool_cmd, workload), timeout)
    if kind == "bpftrace":
        err = strip_rlimit(err)
    return out, err, rc, timed_out


def _visible_lines(data):
    text = data.decode("utf-8", errors="backslashreplace")
    lines = text.split("\n")
    # Mark line ends so trailing spaces and missing final newlines show up.
    shown = [line + "$\n" for line in lines[:-1]]
    if lines[-1]:
        shown.append(lines[-1] + "   (no newline at end)\n")
    return shown


def diff(expected, actual, what):
    return "".join(difflib.unified_diff(
        _visible_lines(expected), _visible_lines(actual),
        fromfile=f"expected {what}", tofile=f"actual {what}"))


def mismatches(case, out, err, rc, timed_out):
    """Return a list of human-readable problems (empty when the case passes)."""
    problems = []
    if timed_out:
        problems.append(f"timed out after {TIMEOUT} s and was killed")
    if rc != case.rc:
        problems.append(f"exit code: expected {case.rc}, got {rc}")
    if out != case.stdout:
        problems.append("stdout differs:\n" + diff(case.stdout, out, "stdout"))
    if case.stderr is not None and err != case.stderr:
        problems.append("stderr differs:\n" + diff(case.stderr, err, "stderr"))
    return problems


@pytest.mark.parametrize("name", case_names())
def test_golden(name, workload, tracefs):
    if os.geteuid() != 0:
        pytest.skip("golden tests load BPF programs and need root (CI runs as root)")
    kind, tool_cmd = tool_from_env()
    if kind == "bpftrace" and not shutil.which(tool_cmd[0]):
        pytest.skip(f"{tool_cmd[0]} not found")
    case = load_case(name)
    out, err, rc, timed_out = run_case(case, kind, tool_cmd, workload)
    problems = mismatches(case, out, err, rc, timed_out)
    if not case.stderr and err and problems:
        problems.append("stderr (not checked):\n" + err.decode(errors="backslashreplace"))
    cmd = shlex.join(build_argv(case, tool_cmd, workload))

    if kind == "bpftrace" and case.note is not None:
        reason = case.note.strip().splitlines()[0] if case.note.strip() else "NOTE"
        if problems:
            pytest.xfail(f"deviates from bpftrace 0.17 on purpose: {reason}")
        if MAY_MATCH not in case.note:
            pytest.fail(f"{name} has a NOTE but bpftrace's output matches the "
                        f"expected output; remove the NOTE and regenerate\n$ {cmd}")
        return

    if problems:
        pytest.fail(f"golden case {name} failed\n$ {cmd}\n\n" + "\n".join(problems),
                    pytrace=False)
