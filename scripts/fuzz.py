#!/usr/bin/env python3
"""A grammar-aware fuzzer for the pytrace compiler (see docs/errors.md, "Fuzzing").

    python3 scripts/fuzz.py [--count N] [--seed S] [--jobs J] [--timeout SEC]
                            [--load-every K] [--crashes FILE]

Generates bpftrace programs (probes of several types, predicates, maps with
keys, variables, every builtin and function with right and wrong arities and
argument types, printf formats, casts, struct declarations, ternaries,
if/else/while/unroll, tuples, literals, positional parameters) and byte-level
mutations of them, and drives each through parse → check → codegen → LLVM → ELF
in worker processes. The property: every program ends in an object or a
CompileError whose diagnostics are located inside the source. Anything else —
another exception, a worker killed by LLVM, a program over the time limit — is
a crash; each distinct crash is minimized and printed. With --load-every K,
every K-th compiled program with only BEGIN/END/interval probes is also run
by the CLI (as root) and the kernel is checked for programs it left loaded.

The generator draws through a `Chooser`, so the same code runs under
hypothesis (tests/test_fuzz.py) and from a seeded random.Random (here).
"""
from __future__ import annotations

import argparse
import os
import random
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ====================================================================== choosers


class RandomChooser:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def int(self, lo, hi):
        return self.r.randint(lo, hi)

    def bool(self, p=0.5):
        return self.r.random() < p


class HypothesisChooser:
    """Draws through hypothesis's `draw`, so that it can shrink the program."""

    def __init__(self, draw):
        from hypothesis import strategies as st   # lazy: only under hypothesis
        self.draw, self.st = draw, st

    def choice(self, seq):
        return self.draw(self.st.sampled_from(list(seq)))

    def int(self, lo, hi):
        return self.draw(self.st.integers(lo, hi))

    def bool(self, p=0.5):
        return self.draw(self.st.integers(0, 99)) < p * 100


# ====================================================================== vocabulary

UPROBE_BIN = "/bin/sh"       # replaced by the test binary when there is one
PROBES_PLAIN = ["BEGIN", "END", "interval:s:1", "interval:ms:100", "interval:us:5000",
                "profile:hz:99", "software:cpu-clock:100000", "i:s:1"]
PROBES_CTX = ["tracepoint:syscalls:sys_enter_openat", "tracepoint:syscalls:sys_exit_read",
              "tracepoint:sched:sched_switch", "t:syscalls:sys_enter_write",
              "rawtracepoint:sched_switch", "kfunc:vfs_read", "kretfunc:vfs_read",
              "kprobe:vfs_read", "kretprobe:vfs_read", "tracepoint:sched:sched_process_*"]
PROBES_BAD = ["interval:xs:1", "tracepoint:nosuch:event", "interval:s:0", "profile:hz:",
              "BEGIN:x", "uprobe:/nonexistent:foo", "kfunc:no_such_function_xyz",
              "iter:task", "watchpoint:0x1000:8:w", "usdt:/bin/sh:x:y", "hardware:cache-misses:100",
              "tracepoint:syscalls:sys_enter_*"]
BUILTIN_VARS = ["pid", "tid", "uid", "gid", "nsecs", "elapsed", "cpu", "comm", "kstack",
                "ustack", "rand", "cgroup", "curtask", "ctx", "arg0", "arg1", "arg5", "retval",
                "func", "probe", "username", "numaid", "args", "cpid", "sarg0", "$1", "$2", "$#",
                "jiffies", "__builtin_pid", "nsecs(boot)", "nsecs(tai)"]
FUNCTIONS = ["printf", "print", "time", "exit", "str", "buf", "join", "ksym", "usym", "kaddr",
             "uaddr", "reg", "ntop", "pton", "macaddr", "bswap", "strerror", "cgroup_path",
             "strftime", "cgroupid", "system", "cat", "signal", "debugf", "override", "kptr",
             "uptr", "strncmp", "strcontains", "delete", "clear", "zero", "kstack", "ustack",
             "count", "sum", "min", "max", "avg", "stats", "hist", "lhist", "unwatch",
             "sizeof", "offsetof", "path", "skboutput", "nosuchfunc", "len", "percpu_kaddr"]
AGGREGATIONS = ["count()", "sum({e})", "min({e})", "max({e})", "avg({e})", "stats({e})",
                "hist({e})", "lhist({e}, 0, 100, 10)", "hist({e}, 2)", "lhist({e}, {e}, {e}, {e})"]
FORMATS = ["%d", "%s", "%x", "%lu", "%-5d", "%c", "%p", "%r", "%%", "%08lx", "%u", "%ld",
           "%llx", "%5s", "%-10s", "%rx", "%rh", "%q", "%", "%.3s", "%*d", "%hhd", "%zd", "\\n",
           "\\t", "\\x41", "\\0", "\\\\", "\\\"", "é"]
INTS = ["0", "1", "-1", "42", "0x10", "0xffffffffffffffff", "18446744073709551616", "-9223372036854775808",
        "9223372036854775807", "1e3", "1_000", "0777", "1000000000000000000000", "'a'", "255", "256"]
STRINGS = ['""', '"a"', '"hello world"', '"%s"', '"\\x00\\xff"', '"' + "x" * 70 + '"',
           '"\\n\\t"', '"/tmp"', '"\\777"', '"é"']
TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "char",
         "int", "long", "bool", "void *", "int8 *", "uint64 *", "struct Foo *", "struct Foo",
         "struct task_struct *", "char[8]", "uint8[4]", "struct nosuch *", "string", "inet", "void"]
BINOPS = ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "==", "!=", "<", "<=", ">", ">=",
          "&&", "||"]
UNOPS = ["-", "!", "~", "*", "&", "++", "--"]
ASSIGN_OPS = ["=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="]
FIELDS = ["filename", "flags", "count", "fd", "prev_comm", "next_pid", "a", "b", "next", "comm",
          "pid", "nosuch", "ret"]
STRUCT_DECLS = ["struct Foo { int a; char b[8]; struct Foo *next; long c; }",
                "struct Bar { unsigned int x : 3; unsigned int y : 5; union { int u; char v; } w; }",
                "#define FOO 7\nenum E { EA = 1, EB }",
                "#include <linux/types.h>", "struct Foo { int a; }",
                "struct Empty { }", "typedef struct { int z; } T;", "#include <nosuch.h>"]


# ====================================================================== generator


class Gen:
    """One program from a chooser. `depth` bounds expression nesting."""

    def __init__(self, ch, uprobe_bin=UPROBE_BIN, uprobe_funcs=("main",)):
        self.ch = ch
        self.wild = ch.bool(0.5)     # tame programs are small and mostly well typed
        self.p_bad = 0.1 if self.wild else 0.0
        self.size = 4 if self.wild else 2
        self.uprobes = [f"uprobe:{uprobe_bin}:{f}" for f in uprobe_funcs] + \
            [f"uretprobe:{uprobe_bin}:{uprobe_funcs[0]}", f"u:{uprobe_bin}:{uprobe_funcs[0][:2]}*"]
        self.vars, self.maps, self.written = [], ["@a", "@b", "@"], set()

    # ---------------------------------------------------------------- expressions
    def expr(self, depth=3):
        c = self.ch
        depth = min(depth, self.size - 1)
        if depth <= 0 or c.bool(0.3):
            return self.atom()
        kind = c.int(0, 12) if self.wild else c.choice([0, 1, 2, 4, 5, 9, 10, 11, 12])
        e = lambda: self.expr(depth - 1)   # noqa: E731
        if kind <= 2:
            return f"{e()} {c.choice(BINOPS)} {e()}"
        if kind == 3:
            return f"{c.choice(UNOPS[:4])}{e()}" if c.bool(0.8) or not self.wild else f"{self.lvalue()}{c.choice(['++', '--'])}"
        if kind == 4:
            return f"{e()} ? {e()} : {e()}"
        if kind == 5:
            return f"({pick(c, TYPES[:-8], TYPES[-8:], self.p_bad)}){e()}"
        if kind == 6:
            return "(" + ", ".join(e() for _ in range(c.int(1, 3))) + ")" if c.bool(0.7) else f"({e()})"
        if kind == 7:
            return f"{e()}{c.choice(['->', '.'])}{c.choice(FIELDS + ['0', '1', '2'])}"
        if kind == 8:
            return f"{e()}[{e()}]"
        if kind == 9:
            return self.map_ref(depth - 1)
        return self.call(depth - 1)

    def atom(self):
        c = self.ch
        kind = c.int(0, 6) if self.wild else c.choice([0, 0, 1, 2, 3, 5])
        if kind == 0:
            return pick(c, INTS[:5] + INTS[8:10] + INTS[-2:], INTS[5:8] + INTS[10:-2], self.p_bad)
        if kind == 1:
            return pick(c, STRINGS[:4] + STRINGS[6:8], STRINGS[4:6] + STRINGS[8:], self.p_bad)
        if kind == 2 and self.vars:
            return c.choice(self.vars)
        if kind == 3:
            return self.map_ref(0)
        if kind == 4:
            return c.choice(["args->filename", "args.filename", "args->count", "args->fd", "args->ret",
                             "args->prev_comm", "retval", "arg0", "curtask->comm", "curtask->pid",
                             "FOO", "EA", "sizeof(struct Foo)", "sizeof(int)", "sizeof(arg0)"])
        return c.choice(BUILTIN_VARS if self.wild else BUILTIN_VARS[:10] + ["username", "$1"])

    def map_ref(self, depth, write=False, agg=False):
        c = self.ch
        if self.wild:
            name, n = c.choice(self.maps), c.choice([0, 0, 1, 2, 3])
        else:   # tame: one key count and one kind of value per map, read once written
            names = [m for m in ("@a", "@b", "@") if write or m in self.written]
            if not names:
                return c.choice(INTS[:5])
            name = "@c" if agg else c.choice(names)
            n = {"@a": 0, "@b": 1, "@": 2, "@c": 1}[name]
            self.written.add(name)
        if not n:
            return name
        keys = [self.expr(depth) for _ in range(n)]
        return f"{name}[{', '.join(keys)}]"

    def lvalue(self):
        c = self.ch
        if c.bool(0.5) or not self.vars:
            return self.map_ref(1)
        return c.choice(self.vars)

    def args(self, n, depth):
        return ", ".join(self.expr(depth) for _ in range(n))

    def call(self, depth):
        c = self.ch
        name = pick(c, FUNCTIONS[:-6], FUNCTIONS[-6:], self.p_bad)
        if name == "printf" or name == "system" or name == "cat" or name == "debugf":
            return self.printf(name, depth)
        if self.wild and c.bool(0.25):   # a deliberately odd arity
            return f"{name}({self.args(c.int(0, 5), depth)})"
        shapes = {"print": ["{m}", "{m}, {e}", "{m}, {e}, {e}", "{e}"], "str": ["{e}", "{e}, {e}"],
                  "buf": ["{e}", "{e}, {e}"], "join": ["{e}", "{e}, {s}"], "time": ["", "{s}"],
                  "exit": ["", "{e}"], "delete": ["{m}", "{m}[{e}]"], "clear": ["{m}"], "zero": ["{m}"],
                  "kstack": ["", "{e}", "perf, {e}", "bpftrace", "raw"], "ustack": ["", "{e}", "perf"],
                  "reg": ['"ip"', '"sp"', '"nosuch"', "{e}"], "signal": ['"KILL"', "{e}", '"SIGFOO"'],
                  "strncmp": ["{e}, {e}, {e}"], "strcontains": ["{e}, {e}"], "lhist": ["{e}, {e}, {e}, {e}"],
                  "strftime": ["{s}, {e}"], "ntop": ["{e}", "{e}, {e}"], "cgroup_path": ["{e}", "{e}, {s}"],
                  "sizeof": ["{t}", "{e}"], "offsetof": ["struct Foo, a", "{e}, {e}"], "kaddr": ["{s}"],
                  "uaddr": ["{s}"], "cgroupid": ["{s}"], "override": ["{e}"], "unwatch": ["{e}"]}
        shape = c.choice(shapes.get(name, ["{e}", "", "{e}, {e}"]))
        while "{" in shape:
            shape = shape.replace("{m}", c.choice(self.maps), 1).replace("{s}", c.choice(STRINGS), 1)
            shape = shape.replace("{t}", c.choice(TYPES), 1).replace("{e}", self.expr(depth), 1)
        return f"{name}({shape})"

    def printf(self, name, depth):
        c = self.ch
        parts = [c.choice(FORMATS) if c.bool(0.6) else c.choice(["x", " ", "a b", ":"])
                 for _ in range(c.int(0, 5))]
        fmt = '"' + "".join(parts) + '"' if c.bool(0.95) else self.expr(0)
        n = sum(p.count("%") for p in parts) + c.choice([0, 0, 0, -1, 1])
        args = [self.expr(depth) for _ in range(max(n, 0))]
        return f"{name}({', '.join([fmt] + args)})"

    # ---------------------------------------------------------------- statements
    def stmt(self, depth=2):
        c = self.ch
        kind = c.int(0, 11) if self.wild else c.choice([0, 1, 2, 3, 4, 5, 6, 10, 11])
        if kind <= 1:
            return f"{self.map_ref(1, True, True)} = {c.choice(AGGREGATIONS).format(e=self.expr(1))}"
        if kind <= 3:
            target = self.map_ref(1, True) if c.bool(0.5) else self.new_var()
            return f"{target} {c.choice(ASSIGN_OPS) if c.bool(0.2) else '='} {self.expr()}"
        if kind == 4 and depth > 0:
            out = f"if ({self.expr(2)}) {self.block(depth - 1)}"
            if c.bool(0.5):
                out += f" else {self.block(depth - 1) if c.bool(0.7) else self.stmt(depth - 1).join(['if (1) { ', ' }'])}"
            return out
        if kind == 5 and depth > 0:
            var = self.new_var()
            body = seq([f"{var}++", self.stmt(depth - 1), c.choice(["", "break", "continue"])])
            return f"{var} = 0; while ({var} < {c.choice(['3', '10', '$1', 'pid', '1000000'])}) {{ {body} }}"
        if kind == 6 and depth > 0:
            return f"unroll({pick(c, ['1', '3', '100'], ['0', '101', '$1', 'pid', '-1'], self.p_bad)}) {self.block(depth - 1)}"
        if kind == 7:
            return c.choice(["return", "exit()", "break", "continue"])
        if kind == 8:
            return f"{self.lvalue()}{c.choice(['++', '--'])}" if c.bool(0.5) else f"{c.choice(['++', '--'])}{self.lvalue()}"
        if kind == 9:
            return f"delete({self.map_ref(1)})"
        return self.call(2)

    def new_var(self):
        c = self.ch
        if self.vars and c.bool(0.5):
            return c.choice(self.vars)
        var = c.choice(["$x", "$y", "$s", "$t", "$i", "$_", "$longer_name"])
        if var not in self.vars:
            self.vars.append(var)
        return var

    def block(self, depth):
        body = seq([self.stmt(depth) for _ in range(self.ch.int(0 if self.wild else 1, self.size))])
        if body and not body.endswith("}") and self.ch.bool(0.5):
            body += ";"
        return "{ " + body + " }"

    def probe(self):
        c = self.ch
        self.vars = []
        pool = c.choice([PROBES_PLAIN, PROBES_PLAIN, PROBES_CTX, self.uprobes]) if not self.wild or c.bool(0.85) else PROBES_BAD
        points = [c.choice(pool) for _ in range(1 if c.bool(0.8) else 2)]
        out = ", ".join(points)
        if c.bool(0.3):
            out += f" / {self.expr(2)} /"
        return out + " " + self.block(2)

    def program(self):
        c = self.ch
        parts = []
        if c.bool(0.15):
            parts.append(c.choice(STRUCT_DECLS) + (";" if c.bool(0.8) else ""))
        parts += [self.probe() for _ in range(c.int(1, 3))]
        return c.choice(["\n", " ", "\n\n"]).join(parts)


def seq(stmts):
    """Statements joined as the grammar wants: `;` between them, none after a block."""
    out = ""
    for s in filter(None, stmts):
        out += s if not out else (" " if out.endswith("}") else "; ") + s
    return out


def pick(ch, good, bad, p_bad=0.1):
    return ch.choice(bad) if p_bad and ch.bool(p_bad) else ch.choice(good)


# ====================================================================== mutations

TOKENS = ["{", "}", "(", ")", ";", ",", "/", "@", "$", '"', "'", "[", "]", ":", "->", ".", "?",
          "0", "-", "*", "\\", "\n", "\t", "\0", "\xff", "//", "/*", "*/", "#", "struct", "if",
          "else", "unroll", "while", "$1", "@x[", "printf(", "é", "🙂", " " * 40]


def mutate(ch, src: str) -> str:
    """Byte-level edits of a program: delete, insert, replace, duplicate, swap."""
    for _ in range(ch.int(1, 4)):
        if not src:
            src = ch.choice(TOKENS)
            continue
        i = ch.int(0, len(src) - 1)
        j = min(len(src), i + ch.int(1, 8))
        op = ch.int(0, 5)
        if op == 0:
            src = src[:i] + src[j:]
        elif op == 1:
            src = src[:i] + ch.choice(TOKENS) + src[i:]
        elif op == 2:
            src = src[:i] + chr(ch.int(0, 127)) + src[i + 1:]
        elif op == 3:
            src = src[:i] + src[i:j] * ch.int(2, 4) + src[j:]
        elif op == 4:
            k = ch.int(0, len(src) - 1)
            src = src[:i] + src[k:k + (j - i)] + src[j:]
        else:
            src = src[:i] + ch.choice(["(" * 30, "-" * 30, "!" * 30, "{" * 20]) + src[i:]
    return src


def generate(ch, uprobe_bin=UPROBE_BIN, uprobe_funcs=("main",)):
    """(source, params): a program and its positional parameters."""
    src = Gen(ch, uprobe_bin, uprobe_funcs).program()
    if ch.bool(0.3):
        src = mutate(ch, src)
    params = ch.choice([["1"], ["5", "abc"], ["abc"], ["0x10", "", "-3"], []])
    return src, params


# ====================================================================== the property


def located(diag, source: str) -> bool:
    """A diagnostic with a line and column inside the source."""
    span = diag.span
    if span is None or span.line < 1:
        return False
    lines = source.split("\n")
    if span.line > len(lines) or span.end_line < span.line or span.end_line > len(lines):
        return False
    return 1 <= span.col <= len(lines[span.line - 1]) + 1


def _crash_signature(exc: BaseException) -> str:
    """The exception type and the innermost pytrace frame: one per distinct bug."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "pytrace" in f.filename
              or "/trace/" in f.filename or "/runtime/" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


def check_program(source: str, params=(), options=None, emitter_factory=None):
    """("compiled" | "rejected" | "crash", detail) for one program, in this process.
    detail is None, or for a crash (signature, text)."""
    from pytrace.compiler import CompileOptions, compile_source      # lazy: the workers import
    from pytrace.language.diagnostics import CompileError
    opts = CompileOptions(params=list(params), **(options or {}))
    if emitter_factory is not None:
        opts.emitter = emitter_factory()
    try:
        compile_source(source, "stdin", opts)
    except CompileError as e:
        bad = [d for d in e.diagnostics if d.level == "ERROR" and not located(d, source)]
        if not e.diagnostics or bad:
            msg = "; ".join(d.message for d in (bad or e.diagnostics)) or "(no diagnostic)"
            return "crash", (f"unlocated CompileError: {msg[:40]}", repr(bad or e))
        return "rejected", None
    except RecursionError as e:
        return "crash", (_crash_signature(e), traceback.format_exc()[-3000:])
    except Exception as e:   # the property: nothing else may escape
        return "crash", (_crash_signature(e), traceback.format_exc()[-3000:])
    return "compiled", None


# ====================================================================== workers


def _worker_main(conn, cli_emit):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    factory = None
    if cli_emit:
        from pytrace.codegen.emit import BackgroundEmitter   # lazy: the worker only
        factory = BackgroundEmitter
    while True:
        try:
            job = conn.recv()
        except EOFError:
            os._exit(0)
        source, params, options = job
        conn.send(check_program(source, params, options, factory))


class Worker:
    """A forked process that checks programs one at a time. LLVM's aborts and
    exits kill only the worker; a program over `timeout` seconds is killed."""

    def __init__(self, timeout=20.0, cli_emit=False):
        self.timeout, self.cli_emit = timeout, cli_emit
        self.proc = self.conn = None

    def _start(self):
        import multiprocessing   # lazy: start-up time
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.cli_emit), daemon=True)
        self.proc.start()
        child.close()

    def submit(self, source, params=(), options=None):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((source, list(params), options or {}))

    def result(self):
        """The answer to the last submit; a hang or a dead worker is a crash."""
        if not self.conn.poll(self.timeout):
            self.close()
            return "crash", (f"hang (over {self.timeout:g} s)", "")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.close()
            what = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
            return "crash", (f"worker died ({what}): LLVM abort?", "")

    def check(self, source, params=(), options=None):
        self.submit(source, params, options)
        return self.result()

    def close(self):
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
            self.conn.close()
        self.proc = self.conn = None


# ====================================================================== minimizing


def minimize(worker, source, params, signature, budget=400):
    """Delta debugging over characters: the smallest program (within `budget`
    checks) that still crashes with the same signature."""
    def same(src):
        status, detail = worker.check(src, params)
        return status == "crash" and detail[0] == signature

    chunk = max(1, len(source) // 2)
    while chunk >= 1 and budget > 0:
        i, progressed = 0, False
        while i < len(source) and budget > 0:
            candidate = source[:i] + source[i + chunk:]
            budget -= 1
            if candidate.strip() and same(candidate):
                source, progressed = candidate, True
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    return source


# ====================================================================== loading a sample


def _tracefs_events():
    out = set()
    for name in ("uprobe_events", "kprobe_events"):
        try:
            out |= set(Path("/sys/kernel/tracing", name).read_text().splitlines())
        except OSError:
            pass
    return out


def load_and_check(source, params, timeout=3.0):
    """Run the program with the CLI for at most `timeout` seconds; return None, or
    what it left in the kernel: programs of its names, links, tracefs events."""
    from pytrace.runtime import syscall   # lazy: root only
    before, events = set(syscall.prog_ids()), _tracefs_events()
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "pytrace.cli", "-e", source, *params],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "the CLI did not stop within 10 s of SIGINT"
    for _ in range(20):   # programs are freed after an RCU grace period
        left = _our_programs(set(syscall.prog_ids()) - before, source)
        if not left:
            break
        time.sleep(0.1)
    extra = _tracefs_events() - events
    if left or extra:
        return f"left loaded: programs {sorted(left)} events {sorted(extra)}"
    return None


def _our_programs(ids, source):
    from pytrace.runtime import syscall   # lazy: root only
    out = []
    for id_ in ids:
        try:
            fd = syscall.prog_get_fd_by_id(id_)
        except OSError:
            continue
        try:
            name = syscall.prog_info(fd)["name"]
        finally:
            os.close(fd)
        if name and name in source.replace(":", "_"):
            out.append(f"{id_}:{name}")
    return out


# ====================================================================== the command


def _uprobe_target():
    """The test binary (tests/workload, built with gcc) and its functions, else /bin/sh."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from conftest import build_workload   # lazy: needs gcc
        return build_workload(), ("add", "add3", "greet")
    except Exception:
        return UPROBE_BIN, ("main",)
    finally:
        sys.path.pop(0)


class Run:
    def __init__(self, args):
        self.args = args
        self.counts = {"run": 0, "compiled": 0, "rejected": 0, "crash": 0, "loaded": 0, "leaks": 0}
        self.crashes = {}     # signature → (program, params, text)
        self.target = _uprobe_target()
        self.workers = [Worker(args.timeout) for _ in range(args.jobs)]
        self.recheck = Worker(args.timeout, cli_emit=True)
        self.minimizer = Worker(args.timeout)

    def program(self, i):
        return generate(RandomChooser((self.args.seed, i).__hash__()), *self.target)

    def record(self, source, params, status, detail):
        if status == "crash" and detail[0].startswith("worker died"):
            status, detail = self.recheck.check(source, params)   # the CLI's LLVM worker path
        self.counts["run"] += 1
        self.counts[status] += 1
        if status == "crash" and detail[0] not in self.crashes:
            cli = detail[0].startswith("worker died")
            budget = 0 if detail[0].startswith("hang") else 400    # each try of a hang takes --timeout
            small = minimize(self.recheck if cli else self.minimizer, source, params, detail[0], budget)
            self.crashes[detail[0]] = (small, params, detail[1])
            print(f"\nCRASH {detail[0]}\n  program: {small!r}\n  params: {params}\n{detail[1]}",
                  flush=True)
        if status == "compiled" and self.args.load_every and \
                self.counts["compiled"] % self.args.load_every == 0:
            self.counts["loaded"] += 1
            leak = load_and_check(source, params)
            if leak:
                self.counts["leaks"] += 1
                print(f"\nLEAK {leak}\n  program: {source!r}", flush=True)

    def batch(self, start):
        jobs = [(w, *self.program(start + k)) for k, w in enumerate(self.workers)]
        jobs = jobs[: max(0, self.args.count - start)]
        for w, source, params in jobs:
            w.submit(source, params)
        for w, source, params in jobs:
            self.record(source, params, *w.result())
        return len(jobs)

    def main(self):
        t0, last, i = time.time(), 0.0, 0
        while i < self.args.count:
            i += self.batch(i)
            if time.time() - last > self.args.progress:
                last = time.time()
                self.report(t0, "progress")
        self.report(t0, "total")
        for w in self.workers + [self.recheck, self.minimizer]:
            w.close()
        return 1 if self.crashes else 0

    def report(self, t0, what):
        dt = time.time() - t0
        c = self.counts
        print(f"{what}: {c['run']} programs in {dt:.0f} s ({c['run'] / max(dt, 1e-9):.1f}/s): "
              f"{c['compiled']} compiled, {c['rejected']} rejected with located errors, "
              f"{c['crash']} crashing ({len(self.crashes)} distinct); "
              f"{c['loaded']} loaded, {c['leaks']} left something loaded", flush=True)


def main(argv=None):
    import pytrace.compiler   # noqa: F401  (imported once here, before the workers fork)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per program")
    p.add_argument("--load-every", type=int, default=0,
                   help="run every K-th compiled program with the CLI (root) and check the kernel")
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines")
    args = p.parse_args(argv)
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())
