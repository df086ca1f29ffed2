#!/usr/bin/env python3
"""Benchmark pytrace against bpftrace on the same programs, in the same run.

    python scripts/bench.py [--rounds N] [--only ROW[,ROW...]] [--markdown FILE]

Rows (see docs/performance.md for what each measures and the latest table):

  firstevent `tracepoint:syscalls:sys_enter_getppid /pid == N/ { printf("ok\\n");
             exit(); }` with N a waiting workload's pid: time from process start
             to the `ok` line, for a program differing only in N from the run
             before (a fresh workload each run), a repeated one (the same N) and
             a never-seen one (pytrace: an empty object cache), pytrace with and
             without PYTHONDONTWRITEBYTECODE=1
  startup    BEGIN { printf("hi\\n"); exit(); }: wall time from process start to
             exit and peak RSS (os.wait4's rusage), cold (pytrace: a fresh
             empty PYTRACE_CACHE_DIR each run; bpftrace has no cache) and
             repeated
  overhead   per-event overhead: a C workload (scripts/bench_getppid.c, built
             with gcc) makes 2,000,000 getppid() calls under -c and reports ns
             per call; overhead = traced minus untraced; counts checked exact.
             Also the cost to a syscall the program does not trace (getpid)
  printf     printf() throughput with the workload calling getppid() as fast
             as it can: events delivered per second, lost events; then pytrace
             alone with the workload paced at 3x bpftrace's events per second
  mapdump    a 100,000-key map: time from SIGINT to exit
  wildcard   tracepoint:syscalls:sys_enter_* (about 360 probes): time to
             attach (until the -c workload starts), SIGINT to exit, total;
             pytrace also with a cold cache
  compile    compile time against the number of probes: 10, 40 and 160
             probes with distinct bodies compiled to an object (--emit-elf,
             nothing attached; pytrace's object cache is not used there), the
             growth of the marginal cost per probe, and the programs in the
             object for one body over every sched:sched_* tracepoint
  uprobes    uprobe:libc:str* (about 80-100 uprobes) under -c /bin/true: process
             start to exit (pytrace compiles every run: objects with uprobes are
             not cached)
  stop       SIGINT to exit under load, at least 10 runs per tool: a printf on
             every system call (the tracer's own writes are traced) and a
             system() on every context switch, both with an END that must print

Each round runs pytrace then bpftrace (A B A B ...) on the same program; the
table shows both tools' medians, the ratio pytrace/bpftrace of the medians,
and PASS/FAIL against the target.  A tool that fails a run (exit code, wrong
counts, timeout) shows the failure in its cell; the other tool's numbers stay.
Standard library only; needs root, gcc, bpftrace and pytrace (by default the
console script installed beside this Python; --pytrace to choose).  Everything
it makes lives in one temporary directory, removed at exit, pytrace's caches
included: it runs with a private PYTRACE_CACHE_DIR and XDG_CACHE_HOME, warmed
by one untimed run of each program before the timed rounds.
PYTHONDONTWRITEBYTECODE is removed from pytrace's environment (an installed
package has its bytecode; Python writes it under a private PYTHONPYCACHEPREFIX,
not beside the sources), except in the first-event rows' runs that set it.
About 5-7 minutes at the default 5 rounds, most of it bpftrace leaving the
wildcard program (~30 s a run).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD_SRC = os.path.join(HERE, "bench_getppid.c")
WORKLOAD_COMM = "bench_getppid"

TP = "tracepoint:syscalls:sys_enter_getppid"
START_PROG = 'BEGIN { printf("hi\\n"); exit(); }'
OVERHEAD_CALLS = 2_000_000
OVERHEAD_PROGS = [   # name, program, the system call the workload makes
    ("floor", TP + " { }", "getppid"),
    ("count", TP + " { @[comm] = count(); }", "getppid"),
    ("multi", TP + " { @c[pid, comm] = count(); @h = hist(nsecs & 0xffff); }", "getppid"),
    # the cost to the rest of the system: a syscall that the program does not trace
    ("other", TP + " { @[comm] = count(); }", "getpid"),
]
PRINTF_CALLS = 200_000
# `cpid` is the pid of the -c workload, a constant in both tools: this is
# `/pid == N/` with N the workload's pid, known before the program is built.
PRINTF_PROG = TP + ' /pid == cpid/ { printf("%d %s\\n", pid, comm); }'
MAPDUMP_KEYS = 100_000
MAPDUMP_PROG = TP + " { @[nsecs] = count(); }"
MAP_KEYS_MAX = "200000"
WILDCARD_CALLS = 1000
WILDCARD_PROG = "tracepoint:syscalls:sys_enter_* { @[probe] = count(); }"

UPROBE_PROG = "uprobe:libc:str* /pid == cpid/ { @[probe] = count(); }"
COMPILE_SIZES = (10, 40, 160)
SHARED_PROG = "tracepoint:sched:sched_* { @[probe] = count(); }"

STOP_PROGS = [   # name, program, extra options, bytes of output before the SIGINT
    ("printf flood", 'tracepoint:raw_syscalls:sys_enter /pid != 1/ { printf("%d\\n", pid); } '
     'END { printf("end\\n"); }', [], 100_000),
    ("system() storm", 'tracepoint:sched:sched_switch { system("echo foo"); } '
     'END { printf("end\\n"); }', ["--unsafe"], 400),
]
STOP_MIN_RUNS = 10

ROWS = ["firstevent", "startup", "overhead", "printf", "mapdump", "wildcard", "compile", "uprobes",
        "stop"]
TOOLS = ("pytrace", "bpftrace")   # A, B: the order within every round

RLIMIT_NOISE = re.compile(r"couldn't set RLIMIT_MEMLOCK")
LOST_RE = re.compile(r"^Lost (\d+) events$", re.M)
ATTACHING_RE = re.compile(r"^Attaching (\d+) probes?\.\.\.$", re.M)


class Failed(Exception):
    """One tool failed one measurement; the row goes on without it."""


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, pid, t_spawn, out_path, err_path):
        self.pid = pid
        self.t_spawn = t_spawn
        self.out_path = out_path
        self.err_path = err_path
        self.pidfd = os.pidfd_open(pid)
        self.t_exit = None
        self.status = None
        self.rusage = None

    def exited(self, timeout: float = 0.0) -> bool:
        """Wait up to ``timeout`` seconds for the process to end (not reaping it)."""
        if self.status is not None:
            return True
        r, _, _ = select.select([self.pidfd], [], [], timeout)
        return bool(r)

    def reap(self, timeout: float):
        """Wait for exit, killing the process group after ``timeout`` s."""
        if self.status is not None:
            return
        timed_out = not self.exited(timeout)
        if timed_out:
            kill_group(self.pid, signal.SIGKILL)
        _, status, ru = os.wait4(self.pid, 0)
        self.t_exit = time.monotonic()
        os.close(self.pidfd)
        self.status, self.rusage = status, ru
        kill_group(self.pid, signal.SIGKILL)   # anything it left in its session
        if timed_out:
            raise Failed(f"timed out after {timeout:g} s")

    @property
    def wall(self) -> float:
        return self.t_exit - self.t_spawn

    @property
    def rss_mb(self) -> float:
        return self.rusage.ru_maxrss / 1024.0   # ru_maxrss is in KiB

    def stdout(self) -> str:
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def stderr(self) -> str:
        with open(self.err_path, errors="replace") as f:
            return "".join(l for l in f if not RLIMIT_NOISE.search(l))

    def check_exit(self) -> None:
        code = os.waitstatus_to_exitcode(self.status)
        if code != 0:
            err = self.stderr().strip().splitlines()
            tail = err[-1] if err else ""
            raise Failed(f"exit code {code}" + (f": {tail[:160]}" if tail else ""))


def kill_group(pgid: int, sig) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="pytrace-bench-")
        self.running: set[int] = set()
        self.seq = 0
        self.warming = False
        self.cache_misses = 0
        self.warnings = []
        self.cache_dir = os.path.join(self.tmp, "pytrace-cache")
        os.mkdir(self.cache_dir)
        self.workload = os.path.join(self.tmp, WORKLOAD_COMM)
        self.pytrace = args.pytrace
        self.bpftrace = args.bpftrace
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for k in ("PYTRACE_NO_CACHE", "PYTRACE_DEBUG", "BPFTRACE_MAP_KEYS_MAX"):
            env.pop(k, None)
        env["PYTRACE_CACHE_DIR"] = self.cache_dir
        # the bytecode Python writes goes here, not beside pytrace's sources (which
        # the PYTHONDONTWRITEBYTECODE=1 runs of the first-event row must not find)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(self.tmp, "pycache")
        # pytrace keeps its analysed grammar under $XDG_CACHE_HOME/pytrace: a private
        # one, filled by the first (untimed) run, leaves the user's alone
        env["XDG_CACHE_HOME"] = os.path.join(self.tmp, "xdg-cache")
        self.env = env

    # -- set-up and clean-up

    def build_workload(self) -> None:
        cc = os.environ.get("CC", "gcc")
        subprocess.run([cc, "-O2", "-o", self.workload, WORKLOAD_SRC], check=True)

    def close(self) -> None:
        for pid in list(self.running):
            kill_group(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> str:
        self.seq += 1
        return os.path.join(self.tmp, f"{self.seq:04d}-{name}")

    # -- running things

    def spawn(self, argv, env=None, name="run") -> Proc:
        out, err = self.path(name + ".out"), self.path(name + ".err")
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        ]
        t0 = time.monotonic()
        pid = os.posix_spawn(argv[0], argv, env if env is not None else self.env,
                             file_actions=actions, setsid=True)
        self.running.add(pid)
        proc = Proc(pid, t0, out, err)
        if (env or self.env).get("PYTRACE_CACHE_DIR") == self.cache_dir and argv[:1] == \
                self.pytrace[:1]:
            proc.cache_before = set(os.listdir(self.cache_dir))
        return proc

    def finish(self, proc: Proc, timeout: float) -> None:
        try:
            proc.reap(timeout)
        finally:
            if proc.status is not None:   # else close() kills it
                self.running.discard(proc.pid)
            before = getattr(proc, "cache_before", None)
            if before is not None and not self.warming and \
                    set(os.listdir(self.cache_dir)) - before:
                self.cache_misses += 1
                proc.cache_miss = True
                log("  (pytrace compiled: a repeated run missed its cache; "
                    "did pytrace's source change?)")

    def tool_argv(self, tool: str, prog: str, cmd: str | None = None) -> list:
        argv = list(self.pytrace if tool == "pytrace" else [self.bpftrace])
        if cmd is not None:
            argv += ["-c", cmd]
        return argv + ["-e", prog]

    def tool_env(self, tool: str, extra=None, cache_dir=None) -> dict:
        env = dict(self.env)
        if cache_dir is not None:
            env["PYTRACE_CACHE_DIR"] = cache_dir
        env.update(extra or {})
        return env

    def run_tool(self, tool, prog, cmd=None, extra_env=None, timeout=60.0, cache_dir=None) -> Proc:
        p = self.spawn(self.tool_argv(tool, prog, cmd), self.tool_env(tool, extra_env, cache_dir),
                       name=tool)
        self.finish(p, timeout)
        p.check_exit()
        return p

    def warm(self, prog, cmd=None, extra_env=None) -> None:
        """One untimed run of each tool: pytrace's cache and bytecode, the page cache."""
        self.warming = True
        try:
            for tool in TOOLS:
                try:
                    self.run_tool(tool, prog, cmd, extra_env, timeout=120.0)
                except Failed as e:
                    log(f"  warm-up {tool}: {e}")
        finally:
            self.warming = False

    def interrupt_when_held(self, tool, prog, calls, timeout, extra_env=None, cache_dir=None):
        """Run `prog` under -c with the workload making `calls` calls and then holding;
        send SIGINT once it holds; wait for the tool's exit, then kill the workload.
        Returns (the tool's Proc, the workload's result, the SIGINT's monotonic time)."""
        res_path = self.path(f"{tool}.res")
        p = self.spawn(self.tool_argv(tool, prog, self.workload_cmd(calls, res_path, hold=True)),
                       self.tool_env(tool, extra_env, cache_dir), name=tool)
        wpid = None
        try:
            try:
                wait_for_file(res_path, p, timeout)
                res = read_result(res_path)
                wpid = res["pid"]
                t_sigint = time.monotonic()
                os.kill(p.pid, signal.SIGINT)
            except Failed:
                kill_group(p.pid, signal.SIGKILL)
                self.finish(p, 10.0)
                raise
            self.finish(p, timeout)
            p.check_exit()
            return p, res, t_sigint
        finally:
            if wpid:
                kill_workload(wpid)

    def snapshot(self, rev: str) -> str:
        """Lay out pytrace as of commit ``rev`` of this checkout (git archive) as an
        importable package in the temp dir; pytrace's runs use it.  Returns the commit."""
        root = os.path.dirname(HERE)
        try:
            sha = subprocess.run(["git", "-C", root, "rev-parse", "--verify", rev + "^{commit}"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            tar = os.path.join(self.tmp, "src.tar")
            subprocess.run(["git", "-C", root, "archive", "--format=tar", "-o", tar, sha],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"bench.py: cannot snapshot {rev!r}: {e}") from None
        src, site = os.path.join(self.tmp, "src"), os.path.join(self.tmp, "site")
        with tarfile.open(tar) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(src, filter="data")
            else:
                t.extractall(src)
        os.unlink(tar)
        for pkg, d in package_dirs(os.path.join(src, "pyproject.toml")).items():
            target = os.path.join(site, *pkg.split("."))
            os.makedirs(target, exist_ok=True)
            folder = os.path.join(src, d)
            for name in os.listdir(folder):
                if os.path.isfile(os.path.join(folder, name)):
                    shutil.copy2(os.path.join(folder, name), target)
        self.env["PYTHONPATH"] = site    # ahead of the installed (or editable) pytrace
        self.pytrace = snapshot_launcher(src, site) or [sys.executable, "-m", "pytrace.cli"]
        where = subprocess.run(
            [sys.executable, "-c", "import pytrace.cli; print(pytrace.cli.__file__)"],
            env=self.env, capture_output=True, text=True).stdout.strip()
        if not where.startswith(site + os.sep):
            raise SystemExit(f"bench.py: the snapshot of {rev} does not import "
                             f"({where or 'failed'})")
        return sha

    def workload_cmd(self, calls: int, result: str, hold: bool = False, rate=None,
                     call="getppid") -> str:
        return " ".join([shlex.quote(self.workload), str(calls), shlex.quote(result)]
                        + (["hold"] if hold else []) + ([f"rate={rate:.0f}"] if rate else [])
                        + ([f"call={call}"] if call != "getppid" else []))


def read_result(path: str) -> dict:
    try:
        with open(path) as f:
            line = f.read()
    except FileNotFoundError:
        raise Failed("the workload did not report (not started?)") from None
    res = {}
    for item in line.split():
        k, _, v = item.partition("=")
        res[k] = float(v) if "." in v else int(v)
    return res


def kill_workload(pid: int) -> None:
    """The held workload, if its tracer left it running (checked by name)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != WORKLOAD_COMM:
                return
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def wait_for_file(path: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.exited(0.001):
            proc.reap(1.0)
            err = proc.stderr().strip().splitlines()
            raise Failed(f"exited ({os.waitstatus_to_exitcode(proc.status)}) before the "
                         "workload reported" + (f": {err[-1][:160]}" if err else ""))
        if time.monotonic() > deadline:
            raise Failed(f"the workload did not report within {timeout:g} s")


# ---------------------------------------------------------------- results

class Row:
    """One table row: samples per tool, a target, a verdict."""

    def __init__(self, group, label, unit, fmt="{:.1f}", target=None, check=None):
        self.group, self.label, self.unit, self.fmt = group, label, unit, fmt
        self.target = target          # text for the table
        self.check = check            # (py_median, bt_median, row) -> bool, or None
        self.samples = {t: [] for t in TOOLS}
        self.errors = {t: [] for t in TOOLS}
        self.dropped = {t: 0 for t in TOOLS}

    def add(self, tool, value):
        self.samples[tool].append(value)

    def fail(self, tool, reason):
        self.errors[tool].append(reason)

    def drop(self, tool):
        """A repeated pytrace run that compiled (its source changed under it): not counted."""
        self.dropped[tool] += 1

    def median(self, tool):
        s = self.samples[tool]
        return statistics.median(s) if s else None

    def cell(self, tool):
        m = self.median(tool)
        n_ok, n_err = len(self.samples[tool]), len(self.errors[tool])
        if m is None:
            if n_err:
                return "failed: " + self.errors[tool][0]
            return "—"
        text = self.fmt.format(m)
        if n_err:
            text += f" ({n_ok}/{n_ok + n_err} ok: {self.errors[tool][0]})"
        if self.dropped[tool]:
            text += f" ({self.dropped[tool]} cache-miss runs dropped)"
        return text

    def ratio(self):
        p, b = self.median("pytrace"), self.median("bpftrace")
        if p is None or b is None or b == 0:
            return None
        return p / b

    def verdict(self):
        if self.check is None:
            return ""
        if self.errors["pytrace"]:
            return "FAIL"
        p, b = self.median("pytrace"), self.median("bpftrace")
        try:
            ok = self.check(p, b, self)
        except (TypeError, ValueError):   # a median or the samples are missing
            return "n/a"
        if ok is None:
            return "n/a"
        return "PASS" if ok else "FAIL"


def render(rows) -> str:
    head = ["row", "measurement", "bpftrace", "pytrace", "pytrace/bpftrace", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = r.ratio()
        lines.append("| " + " | ".join([
            r.group, f"{r.label} ({r.unit})", r.cell("bpftrace"), r.cell("pytrace"),
            f"{ratio:.2f}" if ratio is not None else "—", r.target or "—", r.verdict(),
        ]) + " |")
    return "\n".join(lines) + "\n"


def ratio_le(limit):
    return lambda p, b, row: p / b <= limit


# ---------------------------------------------------------------- rows

FIRST_PROG = TP + ' /pid == {pid}/ {{ printf("ok\\n"); exit(); }}'
FIRST_RATE = 5000          # the waiting workload's getppid() calls per second (one each 0.2 ms)
FIRST_CASES = [   # name, what pytrace's object cache holds
    ("literal", "a program differing only in its literal (a fresh pid) from one run before"),
    ("repeated", "the same program text as the run before (the same pid)"),
    ("shape", "a never-seen shape: an empty object cache (a fresh PYTRACE_CACHE_DIR)"),
]
FIRST_BYTECODE = [   # name, pytrace's environment
    ("bytecode", {}),
    ("PYTHONDONTWRITEBYTECODE=1", {"PYTHONDONTWRITEBYTECODE": "1"}),
]


def first_event(bench: Bench, tool: str, pid: int, env: dict, timeout=30.0) -> float:
    """Milliseconds from posix_spawn to the `ok` line on the tool's stdout (a pipe)."""
    argv = bench.tool_argv(tool, FIRST_PROG.format(pid=pid))
    err = bench.path(tool + ".err")
    r, w = os.pipe()
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, w, 1),
               (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    t0 = time.monotonic()
    try:
        child = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    finally:
        os.close(w)
    bench.running.add(child)
    proc = Proc(child, t0, os.devnull, err)
    data, t_ok = b"", None
    try:
        deadline = t0 + timeout
        while t_ok is None:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(r, 65536) if ready else b""
            if not chunk:
                break
            data += chunk
            if re.search(rb"(^|\n)ok\n", data):
                t_ok = time.monotonic()
        proc.reap(10.0)
    finally:
        os.close(r)
        if proc.status is not None:
            bench.running.discard(child)
    if t_ok is None:
        proc.check_exit()
        raise Failed("no 'ok' line")
    return (t_ok - t0) * 1000


def row_firstevent(bench: Bench, rounds: int):
    """Time to the first event, a pytrace run per case and bytecode setting, each
    followed by a bpftrace run of the same program."""
    G = "0 first event"
    rows = {}
    for case, what in FIRST_CASES:
        for bc, _ in FIRST_BYTECODE:
            limit = 2.0 if case == "shape" else 1.0
            target, check = f"≤ {limit:.1f}", ratio_le(limit)
            rows[case, bc] = Row(G, f"{what}; pytrace with {bc}: process start to the event's "
                                 "output", "ms", "{:.0f}", target, check)
    floor = Row(G, "the floor: pytrace's Python interpreter starting and exiting as its command "
                "starts it (`python -S -c pass` behind the launcher, else `python -c pass` with its "
                "site-packages' .pth files) against bpftrace's first event, repeated", "ms", "{:.0f}")
    holds = {}      # (case, bytecode) -> the workload kept for "repeated"

    def workload():
        cmd = [bench.workload, str(FIRST_RATE * 100), "-", f"rate={FIRST_RATE}", "batch=1"]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def one(tool, case, bc, env, timed=True):
        w = holds[case, bc] if case == "repeated" else workload()
        cache = None
        try:
            env = dict(env)
            if case == "shape" and tool == "pytrace":
                cache = tempfile.mkdtemp(prefix="cold-cache-", dir=bench.tmp)
                env["PYTRACE_CACHE_DIR"] = cache
            ms = first_event(bench, tool, w.pid, env)
            if timed:
                rows[case, bc].add(tool, ms)
                log(f"  {tool:8} {case:8} {bc:26} {ms:7.1f} ms")
        except Failed as e:
            rows[case, bc].fail(tool, str(e))
            log(f"  {tool:8} {case} {bc} FAILED: {e}")
        finally:
            if case != "repeated":
                w.kill()
                w.wait()
            if cache:
                shutil.rmtree(cache, ignore_errors=True)

    bench.warnings += stale_bytecode(bench)
    envs = {bc: bench.tool_env("pytrace", extra) for bc, extra in FIRST_BYTECODE}
    for env in envs.values():        # no bytecode but what Python finds beside the sources
        if env.get("PYTHONDONTWRITEBYTECODE"):
            env.pop("PYTHONPYCACHEPREFIX", None)
    try:
        for case, _ in FIRST_CASES:
            for bc, _ in FIRST_BYTECODE:
                if case == "repeated":
                    holds[case, bc] = workload()
                for tool in TOOLS:    # warm-up: the page cache, the run before
                    one(tool, case, bc, envs[bc] if tool == "pytrace" else bench.env, False)
        for r in range(rounds):
            log(f" round {r + 1}/{rounds}")
            for case, _ in FIRST_CASES:
                for bc, _ in FIRST_BYTECODE:
                    for tool in TOOLS:
                        one(tool, case, bc, envs[bc] if tool == "pytrace" else bench.env)
            interpreter_floor(bench, floor, holds["repeated", "bytecode"].pid)
    finally:
        for w in holds.values():
            w.kill()
            w.wait()
    note = ("first event: `" + FIRST_PROG.format(pid="N") + "` with N the pid of a workload "
            f"calling getppid() {FIRST_RATE} times a second; from posix_spawn to the `ok` line "
            "on a pipe. pytrace with bytecode writes its bytecode under a private "
            "PYTHONPYCACHEPREFIX; with PYTHONDONTWRITEBYTECODE=1 Python writes none, as on "
            "these machines (bpftrace is the same program in both rows)")
    return list(rows.values()) + [floor], [note]


def interpreter_floor(bench: Bench, row: Row, pid: int) -> None:
    """`python -c pass` as pytrace's runs start it (`-S` behind the launcher), then
    bpftrace's repeated first event."""
    python = bench.pytrace[0] if bench.pytrace[1:2] == ["-m"] else sys.executable
    flags = ["-S"] if starts_without_site(bench.pytrace) else []
    p = bench.spawn([python, *flags, "-c", "pass"], bench.tool_env("pytrace"), name="python")
    bench.finish(p, 30.0)
    row.add("pytrace", p.wall * 1000)
    try:
        row.add("bpftrace", first_event(bench, "bpftrace", pid, bench.env))
    except Failed as e:
        row.fail("bpftrace", str(e))
    log(f"  python -c pass {p.wall * 1000:7.1f} ms")


def stale_bytecode(bench: Bench) -> list:
    """A `__pycache__` beside pytrace's sources would give the PYTHONDONTWRITEBYTECODE=1
    runs bytecode that a machine running from a fresh checkout does not have."""
    env = dict(bench.env, PYTHONDONTWRITEBYTECODE="1")
    where = subprocess.run([sys.executable, "-c", "import os, pytrace; "
                            "print(os.path.dirname(os.path.realpath(pytrace.__file__)))"],
                           env=env, capture_output=True, text=True).stdout.strip()
    found = []
    for d in (where, os.path.join(os.path.dirname(where), "runtime")) if where else ():
        for root, dirs, _ in os.walk(d):
            if "__pycache__" in dirs:
                found.append(os.path.join(root, "__pycache__"))
            dirs[:] = [x for x in dirs if x != "__pycache__"]
    if found:
        return [f"WARNING: bytecode beside pytrace's sources ({found[0]}, {len(found)} in all): "
                "the PYTHONDONTWRITEBYTECODE=1 rows read it; remove it for numbers as a fresh "
                "checkout runs"]
    return []


def row_startup(bench: Bench, rounds: int):
    cold_wall = Row("1 start-up", "cold: wall, process start to exit", "ms", "{:.0f}",
                    "≤ 0.6", ratio_le(0.6))
    cold_rss = Row("1 start-up", "cold: peak RSS", "MiB", "{:.1f}")
    rep_wall = Row("1 start-up", "repeated: wall, process start to exit", "ms", "{:.0f}",
                   "≤ 0.3", ratio_le(0.3))
    rep_rss = Row("1 start-up", "repeated: peak RSS", "MiB", "{:.1f}", "≤ 0.5", ratio_le(0.5))
    bench.warm(START_PROG)

    def one(tool, wall_row, rss_row, cold):
        cache = None
        if cold and tool == "pytrace":
            cache = tempfile.mkdtemp(prefix="cold-cache-", dir=bench.tmp)
        try:
            p = bench.run_tool(tool, START_PROG, timeout=30.0, cache_dir=cache)
            if "hi" not in p.stdout().splitlines():
                raise Failed("no 'hi' in the output")
            if getattr(p, "cache_miss", False):
                wall_row.drop(tool)
                rss_row.drop(tool)
            else:
                wall_row.add(tool, p.wall * 1000)
                rss_row.add(tool, p.rss_mb)
            log(f"  {tool:8} {'cold' if cold else 'repeated':8} {p.wall * 1000:7.1f} ms "
                f"{p.rss_mb:6.1f} MiB")
        except Failed as e:
            wall_row.fail(tool, str(e))
            rss_row.fail(tool, str(e))
            log(f"  {tool:8} FAILED: {e}")
        finally:
            if cache:
                shutil.rmtree(cache, ignore_errors=True)

    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for tool in TOOLS:
            one(tool, cold_wall, cold_rss, True)
        for tool in TOOLS:
            one(tool, rep_wall, rep_rss, False)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    note = (f"peak RSS comes from wait4()'s rusage; a spawned child starts from this "
            f"benchmark's own address space, so {floor:.1f} MiB is the floor")
    return [cold_wall, cold_rss, rep_wall, rep_rss], [note]


def row_overhead(bench: Bench, rounds: int):
    """Each round: for each program, the untraced workload, then pytrace, then bpftrace."""
    G = "2 per-event"
    base = {"getppid": Row(G, "untraced getppid()", "ns/call"),
            "getpid": Row(G, "untraced getpid()", "ns/call")}
    rows, traced = [base["getppid"]], {}
    for name, prog, call in OVERHEAD_PROGS:
        target, check = None, None
        if name == "count":
            target, check = "≤ 0.8", ratio_le(0.8)
        label = f"overhead `{prog[len(TP) + 1:]}`"
        if call != "getppid":
            label = (f"overhead on {call}(), a syscall not traced, while "
                     f"`{prog[len(TP) + 1:]}` traces getppid")
        traced[name] = Row(G, label, "ns/call", "{:.1f}", target, check)
        if call != "getppid":
            rows.append(base[call])
        rows.append(traced[name])
    for name, prog, call in OVERHEAD_PROGS:
        if call == "getppid":
            bench.warm(prog, bench.workload_cmd(1000, bench.path("warm.res")))

    raw = {name: {t: [] for t in TOOLS} for name, _, _ in OVERHEAD_PROGS}
    base_samples = {"getppid": [], "getpid": []}
    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for name, prog, call in OVERHEAD_PROGS:
            res_path = bench.path("untraced.res")
            p = bench.spawn(shlex.split(bench.workload_cmd(OVERHEAD_CALLS, res_path, call=call)),
                            name="untraced")
            bench.finish(p, 60.0)
            untraced = read_result(res_path)["ns_per_call"]
            base_samples[call].append(untraced)
            for tool in TOOLS:
                res_path = bench.path(f"{tool}.res")
                try:
                    p = bench.run_tool(tool, prog,
                                       bench.workload_cmd(OVERHEAD_CALLS, res_path, call=call))
                    res = read_result(res_path)
                    check_counts(name, p.stdout(), res["pid"])
                    raw[name][tool].append(res["ns_per_call"])
                    log(f"  {name:6} {tool:8} {res['ns_per_call']:7.1f} ns/call "
                        f"(untraced {untraced:.1f})")
                except Failed as e:
                    traced[name].fail(tool, str(e))
                    log(f"  {name:6} {tool:8} FAILED: {e}")
    medians = {}
    for call, samples in base_samples.items():
        medians[call] = statistics.median(samples)
        for v in samples:
            for tool in TOOLS:
                base[call].add(tool, v)
    for name, _, call in OVERHEAD_PROGS:
        for tool in TOOLS:
            for v in raw[name][tool]:
                traced[name].add(tool, v - medians[call])
    notes = ["per-event: overhead = a tool's median ns/call traced minus the median untraced "
             "ns/call of the same system call (untraced runs interleaved with the traced ones); "
             f"{OVERHEAD_CALLS:,} calls per run, the workload run with -c; counts checked exact"]
    return rows, notes


def check_counts(name: str, out: str, pid: int) -> None:
    if name == "count":
        m = re.search(rf"^@\[{WORKLOAD_COMM}\]: (\d+)$", out, re.M)
        if not m or int(m.group(1)) != OVERHEAD_CALLS:
            raise Failed(f"@[{WORKLOAD_COMM}] is {m.group(1) if m else 'missing'}, "
                         f"expected {OVERHEAD_CALLS}")
    elif name == "other":
        m = re.search(rf"^@\[{WORKLOAD_COMM}\]: (\d+)$", out, re.M)
        if m:
            raise Failed(f"@[{WORKLOAD_COMM}] is {m.group(1)}: getpid() counted as getppid()")
    elif name == "multi":
        m = re.search(rf"^@c\[{pid}, {WORKLOAD_COMM}\]: (\d+)$", out, re.M)
        if not m or int(m.group(1)) != OVERHEAD_CALLS:
            raise Failed(f"@c[{pid}, {WORKLOAD_COMM}] is {m.group(1) if m else 'missing'}, "
                         f"expected {OVERHEAD_CALLS}")
        total = sum(int(x) for x in re.findall(r"^\[[^\]\n]*[\])]\s+(\d+) \|", out, re.M))
        if total < OVERHEAD_CALLS:
            raise Failed(f"@h holds {total} values, expected at least {OVERHEAD_CALLS}")


def row_printf(bench: Bench, rounds: int):
    rate = Row("3 printf", f"events delivered per second ({PRINTF_CALLS:,} calls)", "events/s",
               "{:,.0f}", "≥ 3.0, 0 lost", None)
    lost = Row("3 printf", "lost events", "events", "{:,.0f}", "pytrace 0",
               lambda p, b, row: p == 0)
    offered = Row("3 printf", "workload's getppid() rate while traced", "calls/s", "{:,.0f}")
    missing = Row("3 printf", "events neither delivered nor reported lost", "events", "{:,.0f}",
                  "0", lambda p, b, row: max(row.samples["pytrace"]) == 0)
    paced_rate = Row("3 printf", "pytrace only, workload paced at 3× bpftrace's events/s: "
                     "events delivered per second", "events/s", "{:,.0f}")
    paced_lost = Row("3 printf", "pytrace only, paced as above: lost events", "events", "{:,.0f}",
                     "0 (extra)", lambda p, b, row: max(row.samples["pytrace"]) == 0)

    def rate_check(p, b, row):
        return p / b >= 3.0 and lost.samples["pytrace"] and max(lost.samples["pytrace"]) == 0
    rate.check = rate_check
    bench.warm(PRINTF_PROG, bench.workload_cmd(1000, bench.path("warm.res")))
    line_re = re.compile(rf"^\d+ {WORKLOAD_COMM}$", re.M)

    def one(tool, rows, pace=None):
        res_path = bench.path(f"{tool}.res")
        try:
            p = bench.run_tool(tool, PRINTF_PROG,
                               bench.workload_cmd(PRINTF_CALLS, res_path, rate=pace))
            res = read_result(res_path)
            out = p.stdout()
            got = len(line_re.findall(out))
            n_lost = sum(int(x) for x in LOST_RE.findall(out + "\n" + p.stderr()))
            secs = p.t_exit - res["loop_start_ns"] / 1e9
            loop_s = (res["loop_end_ns"] - res["loop_start_ns"]) / 1e9
            for row, v in zip(rows, (got / secs, n_lost, PRINTF_CALLS / loop_s,
                                     PRINTF_CALLS - got - n_lost)):
                if row is not None:
                    row.add(tool, v)
            log(f"  {tool:8} {got:7} delivered in {secs:.3f} s = {got / secs:9,.0f}/s, "
                f"{n_lost} lost, workload {PRINTF_CALLS / loop_s:,.0f} calls/s"
                + (f" (paced at {pace:,.0f})" if pace else ""))
        except Failed as e:
            for row in rows:
                if row is not None:
                    row.fail(tool, str(e))
            log(f"  {tool:8} FAILED: {e}")

    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for tool in TOOLS:
            one(tool, (rate, lost, offered, missing))
    rows = [rate, lost, offered, missing]
    notes = ["printf: events/s = lines printed / (tool exit - start of the workload's loop); "
             "the workload runs under -c and calls getppid() as fast as it can"]
    bt = rate.median("bpftrace")
    if bt:
        pace = 3 * bt
        log(f" pytrace with the workload paced at {pace:,.0f} calls/s")
        for r in range(rounds):
            one("pytrace", (paced_rate, paced_lost, None, None), pace)
        rows += [paced_rate, paced_lost]
        notes.append(f"printf, paced: the same {PRINTF_CALLS:,} calls at {pace:,.0f} calls/s "
                     "(3× bpftrace's median events/s), pytrace only")
    return rows, notes


def row_mapdump(bench: Bench, rounds: int):
    row = Row("4 map dump", f"{MAPDUMP_KEYS:,} keys: SIGINT to exit", "s", "{:.3f}", "≤ 0.5",
              ratio_le(0.5))
    env = {"BPFTRACE_MAP_KEYS_MAX": MAP_KEYS_MAX}
    bench.warm(MAPDUMP_PROG, bench.workload_cmd(10, bench.path("warm.res")), env)
    key_re = re.compile(r"^@\[(\d+)\]: (\d+)$", re.M)
    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for tool in TOOLS:
            try:
                p, _, t0 = bench.interrupt_when_held(tool, MAPDUMP_PROG, MAPDUMP_KEYS, 60.0, env)
                secs = p.t_exit - t0
                keys = key_re.findall(p.stdout())
                if len(keys) < MAPDUMP_KEYS or sum(int(c) for _, c in keys) < MAPDUMP_KEYS:
                    raise Failed(f"{len(keys)} keys printed, expected at least {MAPDUMP_KEYS}")
                row.add(tool, secs)
                log(f"  {tool:8} {len(keys)} keys, SIGINT to exit {secs:.3f} s")
            except Failed as e:
                row.fail(tool, str(e))
                log(f"  {tool:8} FAILED: {e}")
    return [row], [f"map dump: BPFTRACE_MAP_KEYS_MAX={MAP_KEYS_MAX} for both tools; "
                   "output to a file"]


def row_wildcard(bench: Bench, rounds: int):
    attach = Row("5 wildcard", "attach: process start to workload start", "s", "{:.3f}")
    exit_ = Row("5 wildcard", "SIGINT to exit", "s", "{:.3f}")
    total = Row("5 wildcard", "total (attach + exit)", "s", "{:.3f}", "pytrace < 1 s",
                lambda p, b, row: p < 1.0)
    cold = Row("5 wildcard", "total, pytrace cold cache (bpftrace: same runs)", "s", "{:.3f}",
               "pytrace < 1 s", lambda p, b, row: p < 1.0)
    probes = {t: set() for t in TOOLS}
    bench.warm(WILDCARD_PROG, bench.workload_cmd(1, bench.path("warm.res")))
    count_re = re.compile(rf"^@\[{TP}\]: (\d+)$", re.M)

    def one(tool, rows, cache=None):
        try:
            p, res, t0 = bench.interrupt_when_held(tool, WILDCARD_PROG, WILDCARD_CALLS, 120.0,
                                                   cache_dir=cache)
            t_attached = res["start_ns"] / 1e9
            out = p.stdout()
            m = ATTACHING_RE.search(out)
            if not m:
                raise Failed("no 'Attaching N probes...' line")
            probes[tool].add(int(m.group(1)))
            c = count_re.search(out)
            if not c or int(c.group(1)) < WILDCARD_CALLS:
                raise Failed(f"@[{TP}] is {c.group(1) if c else 'missing'}, "
                             f"expected at least {WILDCARD_CALLS}")
            a, x = t_attached - p.t_spawn, p.t_exit - t0
            miss = getattr(p, "cache_miss", False)
            for row, v in zip(rows, (a, x, a + x)):
                if row is not None:
                    if miss and row is not rows[1]:   # SIGINT to exit does not compile
                        row.drop(tool)
                    else:
                        row.add(tool, v)
            log(f"  {tool:8}{' cold' if cache else ''} {m.group(1)} probes: attach {a:.3f} s, "
                f"exit {x:.3f} s")
            return a + x
        except Failed as e:
            for row in rows:
                if row is not None:
                    row.fail(tool, str(e))
            log(f"  {tool:8} FAILED: {e}")

    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for tool in TOOLS:
            one(tool, (attach, exit_, total))
        cache = tempfile.mkdtemp(prefix="cold-cache-", dir=bench.tmp)
        try:
            one("pytrace", (None, None, cold), cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    cold.samples["bpftrace"] = list(total.samples["bpftrace"])
    counts = ", ".join(f"{t} {'/'.join(map(str, sorted(probes[t]))) or '?'}" for t in TOOLS)
    return [attach, exit_, total, cold], [f"wildcard: probes attached: {counts}; attach is "
                                          "detected by the -c workload starting (both tools "
                                          "start it once every probe is attached)"]


def distinct_probes(n: int) -> str:
    """n probes that cannot share a program: each has its own maps and constants."""
    return "".join(
        f"interval:ms:{i + 1} {{ @a{i}[comm, pid] = count(); @b{i} = hist(nsecs & {i + 1}); "
        f'if (pid > {i}) {{ printf("%d %s\\n", pid, comm); }} }}\n' for i in range(n))


def executable_sections(path: str) -> int:
    """Programs in a BPF ELF object: non-empty SHF_EXECINSTR sections."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    count = 0
    for i in range(shnum):
        _name, _type, flags, _addr, _off, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize)
        if flags & 0x4 and size:
            count += 1
    return count


def row_compile(bench: Bench, rounds: int):
    G = "6 compile"
    rows = {n: Row(G, f"{n} distinct probes: compile to an object, process start to exit",
                   "ms", "{:.0f}", *(("≤ 1.0", ratio_le(1.0)) if n >= 40 else ()))
            for n in COMPILE_SIZES}
    a, b, c = COMPILE_SIZES
    growth = Row(G, f"marginal cost per probe, {b}→{c} probes ÷ {a}→{b} probes", "×", "{:.2f}",
                 "pytrace ≤ 1.3 (linear)", lambda p, bt, row: p <= 1.3)
    shared = Row(G, "one body over every sched:sched_* tracepoint: programs in the object",
                 "programs", "{:.0f}", "pytrace 1", lambda p, bt, row: p == 1)
    files = {}
    for n in COMPILE_SIZES:
        files[n] = bench.path(f"probes{n}.bt")
        with open(files[n], "w") as f:
            f.write(distinct_probes(n))

    def compile_once(tool, program_args):
        out = bench.path(f"{tool}.o")
        argv = list(bench.pytrace if tool == "pytrace" else [bench.bpftrace])
        p = bench.spawn(argv + ["--emit-elf", out] + program_args, bench.tool_env(tool),
                        name=tool)
        bench.finish(p, 120.0)
        p.check_exit()
        return p, out

    bench.warming = True
    try:                                   # bytecode, grammar cache, page cache
        for tool in TOOLS:
            compile_once(tool, [files[a]])
    except Failed as e:
        log(f"  warm-up: {e}")
    finally:
        bench.warming = False
    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for n in COMPILE_SIZES:
            for tool in TOOLS:
                try:
                    p, _ = compile_once(tool, [files[n]])
                    rows[n].add(tool, p.wall * 1000)
                    log(f"  {tool:8} {n:4} probes {p.wall * 1000:7.0f} ms")
                except Failed as e:
                    rows[n].fail(tool, str(e))
                    log(f"  {tool:8} {n} probes FAILED: {e}")
    for tool in TOOLS:
        t = [rows[n].median(tool) for n in COMPILE_SIZES]
        if None not in t:
            growth.add(tool, ((t[2] - t[1]) / (c - b)) / ((t[1] - t[0]) / (b - a)))
        try:
            _, out = compile_once(tool, ["-e", SHARED_PROG])
            shared.add(tool, executable_sections(out))
        except Failed as e:
            shared.fail(tool, str(e))
    events = len([e for e in os.listdir("/sys/kernel/tracing/events/sched")
                  if e.startswith("sched_")]) if os.path.isdir("/sys/kernel/tracing/events/sched") \
        else "?"
    note = (f"compile: each probe is `interval:ms:K {{ @aK[comm, pid] = count(); "
            f"@bK = hist(nsecs & K); if (pid > K) {{ printf(...); }} }}`; both tools with "
            f"--emit-elf; the marginal cost is (t{c} - t{b}) / {c - b} ÷ (t{b} - t{a}) / {b - a} "
            f"of the medians: 1 is linear, 4 would be quadratic; sched:sched_* has {events} "
            f"tracepoints")
    return [*rows.values(), growth, shared], [note]


def row_uprobes(bench: Bench, rounds: int):
    row = Row("7 uprobes", "uprobe:libc:str* with -c /bin/true: process start to exit", "s",
              "{:.3f}")
    probes = {t: set() for t in TOOLS}
    bench.warm(UPROBE_PROG, "/bin/true")
    for r in range(rounds):
        log(f" round {r + 1}/{rounds}")
        for tool in TOOLS:
            try:
                p = bench.run_tool(tool, UPROBE_PROG, "/bin/true", timeout=120.0)
                m = ATTACHING_RE.search(p.stdout())
                if not m:
                    raise Failed("no 'Attaching N probes...' line")
                probes[tool].add(int(m.group(1)))
                row.add(tool, p.wall)
                log(f"  {tool:8} {m.group(1)} probes {p.wall:.3f} s")
            except Failed as e:
                row.fail(tool, str(e))
                log(f"  {tool:8} FAILED: {e}")
    counts = ", ".join(f"{t} {'/'.join(map(str, sorted(probes[t]))) or '?'}" for t in TOOLS)
    return [row], [f"uprobes: probes attached: {counts} (bpftrace also reads libc's separate debug "
                   "symbols, /usr/lib/debug: local functions such as strchr_ifunc)"]


def row_stop(bench: Bench, rounds: int):
    """SIGINT to exit while the reader is flooded, END's output checked."""
    rows, notes = [], []
    runs = max(STOP_MIN_RUNS, rounds)
    for name, prog, opts, nbytes in STOP_PROGS:
        med = Row("8 stop", f"{name}: SIGINT to exit, median of {runs}", "s", "{:.3f}",
                  "pytrace ≤ 0.5 s", lambda p, b, row: p <= 0.5)
        worst = Row("8 stop", f"{name}: SIGINT to exit, worst of {runs}", "s", "{:.3f}")
        worst.median = lambda tool, w=worst: max(w.samples[tool]) if w.samples[tool] else None
        bench.warming = True
        try:                    # pytrace's object cache: the timed runs are repeated runs
            stop_once(bench, "pytrace", opts + ["-e", prog], nbytes)
        except Failed as e:
            log(f"  warm-up: {e}")
        finally:
            bench.warming = False
        for r in range(runs):
            log(f" {name}: run {r + 1}/{runs}")
            for tool in TOOLS:
                try:
                    secs = stop_once(bench, tool, opts + ["-e", prog], nbytes)
                    med.add(tool, secs)
                    worst.add(tool, secs)
                    log(f"  {tool:8} SIGINT to exit {secs:.3f} s")
                except Failed as e:
                    med.fail(tool, str(e))
                    log(f"  {tool:8} FAILED: {e}")
        rows += [med, worst]
    notes.append("stop: output to a file; the SIGINT is sent once the file holds some output; "
                 "a run counts only if END's `end` line was printed")
    return rows, notes


def stop_once(bench: Bench, tool: str, args: list, nbytes: int) -> float:
    argv = list(bench.pytrace if tool == "pytrace" else [bench.bpftrace]) + args
    p = bench.spawn(argv, bench.tool_env(tool), name=tool)
    deadline = time.monotonic() + 30
    try:
        while os.path.getsize(p.out_path) < nbytes:
            if p.exited(0.01) or time.monotonic() > deadline:
                raise Failed("no output before the SIGINT")
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        bench.finish(p, 30.0)
    except (Failed, subprocess.TimeoutExpired) as e:
        kill_group(p.pid, signal.SIGKILL)
        bench.finish(p, 10.0)
        raise Failed(str(e) or "did not stop within 30 s")
    p.check_exit()
    with open(p.out_path, "rb") as f:
        f.seek(max(0, os.path.getsize(p.out_path) - 4096))
        if b"\nend\n" not in f.read():
            raise Failed("END's output is missing")
    return p.t_exit - t0


ROW_FUNCS = {"firstevent": row_firstevent, "startup": row_startup, "overhead": row_overhead,
             "printf": row_printf, "mapdump": row_mapdump, "wildcard": row_wildcard, "compile": row_compile,
             "uprobes": row_uprobes, "stop": row_stop}


# ---------------------------------------------------------------- main

def default_pytrace() -> list:
    """The installed console script itself (a pyenv shim in front of it adds a bash and
    a pyenv process to every start); `python -m pytrace.cli` if there is none."""
    script = os.path.join(sysconfig.get_path("scripts"), "pytrace")
    if os.access(script, os.X_OK):
        return [script]
    found = shutil.which("pytrace")
    if found:
        return [found]
    return [sys.executable, "-m", "pytrace.cli"]


def starts_without_site(command: list) -> bool:
    """Whether `command` is the launcher scripts/pytrace_build.py writes (the
    interpreter without `site`) rather than a console script or `python -m`."""
    try:
        with open(command[0], "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!/bin/sh\n") and b'exec "$py" -S' in head


def snapshot_launcher(src: str, site: str) -> list:
    """The launcher a commit's build backend writes (scripts/pytrace_build.py), for
    its snapshot laid out in `site`; [] for a commit from before the launcher."""
    path = os.path.join(src, "scripts", "pytrace_build.py")
    if not os.path.exists(path):
        return []
    import importlib.util
    spec = importlib.util.spec_from_file_location("pytrace_build_snapshot", path)
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    script = os.path.join(os.path.dirname(site), "pytrace")
    with open(script, "w") as f:
        f.write(backend.launcher(sys.executable, {"pytrace": os.path.join(site, "pytrace")}))
    os.chmod(script, 0o755)
    return [script]


def package_dirs(pyproject: str) -> dict:
    """[tool.setuptools] package-dir of pyproject.toml: package -> folder."""
    try:
        import tomllib
        with open(pyproject, "rb") as f:
            dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
        if dirs:
            return dirs
    except (ImportError, OSError, KeyError, ValueError):
        pass
    return {"pytrace": "trace", "pytrace.passes": "trace/passes",
            "pytrace.language": "trace/language", "pytrace.types": "trace/types",
            "pytrace.codegen": "trace/codegen", "pytrace.providers": "trace/providers",
            "pytrace.runtime": "runtime", "pytrace.runtime.output": "runtime/output",
            "pytrace.grammar": "grammar"}


def checkout_state() -> str:
    """The commit of this checkout and whether pytrace's code differs from it."""
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--",
                                "trace", "runtime", "grammar"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if not head:
        return "not a git checkout"
    return head + (f" + uncommitted changes to {len(dirty)} file(s) of pytrace" if dirty else "")


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def tool_version(argv) -> str:
    try:
        r = subprocess.run(argv + ["-V"], capture_output=True, text=True, timeout=30)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--only", action="append", default=[],
                    help=f"run only these rows ({', '.join(ROWS)}); repeat or comma-separate")
    ap.add_argument("--pytrace", default=None,
                    help="pytrace command (default: the installed console script)")
    ap.add_argument("--bpftrace", default=shutil.which("bpftrace") or "/usr/bin/bpftrace",
                    help="bpftrace binary (default: bpftrace on PATH)")
    ap.add_argument("--rev", metavar="COMMIT",
                    help="run pytrace as of COMMIT of this checkout (git archive into the "
                         "temp dir, python -m pytrace.cli) instead of the installed one: "
                         "stable numbers while the working tree is being edited")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    args = ap.parse_args(argv)
    only = [x.strip() for item in args.only for x in item.split(",") if x.strip()] or ROWS
    bad = [x for x in only if x not in ROWS]
    if bad:
        ap.error(f"unknown row {', '.join(bad)}; rows are {', '.join(ROWS)}")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if os.geteuid() != 0:
        log("bench.py: run as root (both tools need it)")
        return 1
    args.pytrace = shlex.split(args.pytrace) if args.pytrace else default_pytrace()
    if not os.access(args.bpftrace, os.X_OK):
        log(f"bench.py: no bpftrace at {args.bpftrace}")
        return 1
    # posix_spawn wants a path
    if os.sep not in args.pytrace[0]:
        args.pytrace[0] = shutil.which(args.pytrace[0]) or args.pytrace[0]

    bench = Bench(args)
    pytrace_desc = f"{' '.join(args.pytrace)} ({tool_version(args.pytrace)})"
    if args.rev:
        try:
            sha = bench.snapshot(args.rev)
        except BaseException:
            bench.close()
            raise
        run_as = ("its launcher" if starts_without_site(bench.pytrace)
                  else "`python -m pytrace.cli`")
        pytrace_desc = f"commit {sha[:10]} ({args.rev}) of this checkout, run as {run_as} from a copy"
    dwb = os.environ.get("PYTHONDONTWRITEBYTECODE")
    header = [
        "command: " + " ".join(shlex.quote(a) for a in
                               ["python", os.path.relpath(os.path.abspath(__file__))]
                               + (argv if argv is not None else sys.argv[1:])),
        f"machine: {os.cpu_count()} CPUs ({platform.machine()}), kernel {platform.release()}, "
        f"Python {platform.python_version()}",
        f"bpftrace: {args.bpftrace} ({tool_version([args.bpftrace])})",
        f"pytrace: {pytrace_desc}",
        "PYTHONDONTWRITEBYTECODE: " + (f"set ({dwb!r}) in this environment; unset for pytrace's "
                                       "runs (an installed package has bytecode)"
                                       if dwb is not None else "not set"),
        f"rounds: {args.rounds}, each pytrace then bpftrace; cells are medians",
        f"load average at start: {loadavg()}",
        f"checkout: {checkout_state()}",
    ]
    for line in header:
        log(line)

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    rows, notes = [], []
    t_start = time.monotonic()
    try:
        bench.build_workload()
        for name in ROWS:
            if name not in only:
                continue
            log(f"== {name}")
            t = time.monotonic()
            try:
                rs, ns = ROW_FUNCS[name](bench, args.rounds)
            except Failed as e:   # a failure outside one tool's measurement
                log(f"  row {name} failed: {e}")
                continue
            rows += rs
            notes += ns
            log(f"   ({time.monotonic() - t:.1f} s)")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.close()
        for s, h in old.items():
            signal.signal(s, h)
    notes.append(f"load average at the end: {loadavg()} (the benchmark itself keeps about one "
                 "CPU busy; more means something else ran alongside)")
    if bench.cache_misses:
        notes.append(f"WARNING: {bench.cache_misses} pytrace run(s) that should have found the "
                     "program in the warmed cache compiled it (pytrace's source changed during "
                     "the run?); they are left out of the start-up and attach rows: rerun for "
                     "clean numbers")
    notes += bench.warnings
    notes.append(f"checkout at the end: {checkout_state()}")
    table = render(rows)
    text = "\n".join(header) + "\n\n" + table + "\n" + "\n".join(f"- {n}" for n in notes) + \
        f"\n\n(total {time.monotonic() - t_start:.0f} s)\n"
    sys.stdout.write(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
