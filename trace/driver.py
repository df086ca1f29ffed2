"""Compile a program (through the object cache) and run it: the one path of the CLI
(`cli.py`) and the Python API (`api.py`).

    req = Request(source, "stdin", params, command=..., pid=..., unsafe=...)
    compiled = build(req)                       # errors.CompileError
    check_privilege()                           # errors.PrivilegeError
    sess = session(compiled, req, out=..., ...) # runtime.session.RunOptions fields
    status = execute(sess, compiled, req)       # errors.TraceError and subclasses

Errors are `errors.Error`s whose text is what the CLI prints.  Nothing here imports
the compiler or the runtime at module level: a cached object runs without lark or
llvmlite.
"""
from __future__ import annotations

import os
import sys

from .cache import Lookup, enabled as cache_enabled
from .errors import AttachError, CompileError, LoadError, PrivilegeError, TraceError
from .runtime import environment
from .runtime.record import field, record

PID_MAX_LIMIT = 4194304      # the kernel's largest pid_max (bpftrace checks against it)


@record
class Request:
    """A program and the options that decide its object and its run."""
    source: str
    filename: str = "stdin"       # where diagnostics say the source is
    params: list[str] = field(default_factory=list)    # $1, $2, ...
    command: str | None = None     # -c
    pid: int | None = None         # -p
    unsafe: bool = False
    helper_errors: int = 0            # -k / -kk
    include_dirs: list[str] = field(default_factory=list)    # -I
    includes: list[str] = field(default_factory=list)        # --include


@record
class Compiled:
    elf: bytes
    warnings: str = ""            # rendered as the CLI prints them
    manifest: dict | None = None   # the object's (decoded); None: a .o file
    state: object = None          # the compiler's State (None: not compiled now)


def pid_problem(pid: int, text: str = "") -> str:
    """What is wrong with -p PID (bpftrace 0.17's checks), or ''."""
    if not 1 <= pid <= PID_MAX_LIMIT:
        return f"pid '{text or pid}' out of valid pid range [1,{PID_MAX_LIMIT}]"
    if not os.path.isdir(f"/proc/{pid}"):
        # before listing or compiling: -p's probes are searched in the process
        return f"process {pid} does not exist"
    return ""


def build(req: Request) -> Compiled:
    """The object to run: the cached one, else compiled now (and cached)."""
    key = None      # a cache.Lookup
    if cache_enabled():
        # -c's text matters only to watchpoint:func+argN (it probes the command's binary)
        command = req.command if req.command and "watchpoint" in req.source else bool(req.command)
        key = Lookup(req.source, list(req.params), command, req.unsafe,
                     environment.number("BPFTRACE_MAP_KEYS_MAX"),
                     environment.number("BPFTRACE_STRLEN"), req.pid,
                     req.helper_errors, req.include_dirs, req.includes)
        hit = key.load()
        if hit is not None:
            return Compiled(*hit)
    out = compile_program(req, literals=key.literals if key is not None else None,
                          meanwhile=_import_runtime)
    files = _probed_files(out.manifest)
    if key is not None and not (files and req.pid) and not _globs_files(out.state):
        # lazy: start-up time (with the compiler)
        from .compiler import lifted_literals
        key.store(out.elf, out.warnings, files, lifted_literals(out.state),   # -p: process-specific
                  out.manifest)
    return out


def compile_program(req: Request, dump_after: str | None = None, dump=None,
                    literals=None, meanwhile=None) -> Compiled:
    """Compile now (no cache); with `dump_after`, stop after that pass (its dump to
    `dump`); with `literals` (a cache.Literals), the literals a cached object may take
    at load time are lowered from `.rodata`; `meanwhile` runs while LLVM compiles.
    Raises errors.CompileError."""
    emitter = None
    if dump_after is None:
        # lazy: start-up time (only when compiling)
        from .codegen.emit import BackgroundEmitter
        try:
            emitter = BackgroundEmitter(meanwhile=meanwhile)
        except OSError:     # no fork or memfd here (limits, seccomp): compile in-process
            emitter = None
    try:
        return _compile(req, dump_after, dump, emitter, literals)
    finally:
        if emitter is not None:
            emitter.close()


def _compile(req: Request, dump_after, dump, emitter, literals) -> Compiled:
    # lazy: start-up time (a cached object needs no compiler)
    from .compiler import CompileOptions, compile_source

    # lazy: start-up time (with the compiler)
    from .language import diagnostics

    options = CompileOptions(has_child=bool(req.command), command=req.command,
                             unsafe=req.unsafe, params=[str(p) for p in req.params],
                             include_dirs=list(req.include_dirs), includes=list(req.includes),
                             max_map_keys=environment.number("BPFTRACE_MAP_KEYS_MAX"),
                             pid=req.pid, dump_after=dump_after, emitter=emitter,
                             helper_errors=req.helper_errors, literals=literals)
    if dump is not None:
        options.dump = dump
    try:
        st = compile_source(req.source, req.filename, options)
    except diagnostics.CompileError as e:
        text = "".join(diagnostics.render(d, req.source, req.filename) for d in e.diagnostics)
        raise CompileError(e.diagnostics, text) from None
    warnings = "".join(diagnostics.render(w, req.source, req.filename) for w in st.warnings)
    return Compiled(st.elf, warnings, st.manifest, st)


def _import_runtime():
    """What a run needs next, imported while LLVM compiles (not for --emit-elf: on two
    CPUs it would take time from the two workers of a large program)."""
    from .runtime import output, session  # noqa: F401  (what a run needs)


def check_privilege() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError()


def session(compiled: Compiled, req: Request, **options):
    """The runtime session that runs `compiled`: -c's argv and -p from the request,
    the other RunOptions fields from `options`."""
    # lazy: start-up time (-l, --help and --emit-elf run nothing)
    from .runtime.command import command_argv
    from .runtime.session import RunOptions, Session
    child = command_argv(req.command) if req.command else None
    return Session(compiled.elf, RunOptions(child_argv=child, pid=req.pid, **options),
                   manifest=compiled.manifest)


def execute(sess, compiled: Compiled, req: Request) -> int:
    """Run the session to its end (torn down on every path); its exit status."""
    # lazy: start-up time (with the runtime)
    from .runtime import errors as failures
    from .runtime.session import run_session
    try:
        return run_session(sess)
    except failures.RuntimeFailure as e:
        raise _trace_error(e, compiled, req) from e
    finally:
        emit = sys.modules.get(f"{__package__}.codegen.emit")
        if emit is not None:        # the LLVM worker of a compile, killed and not yet reaped
            emit.reap_exited(block=True)


def _trace_error(e, compiled: Compiled, req: Request) -> TraceError:
    """The failure as the CLI prints it: located in the source at its probe, if
    there is a source (not for a .o file run alone)."""
    # lazy: start-up time (only to print a diagnostic)
    from .language.diagnostics import Diagnostic, render
    from .runtime import errors as failures
    message = str(e.message)
    span = _failure_span(e, compiled) if req.source else None
    text = render(Diagnostic(message, span), req.source, req.filename)
    for failure, error in ((failures.PermissionFailure, PrivilegeError),
                           (failures.AttachError, AttachError),
                           (failures.LoadError, LoadError)):
        if isinstance(e, failure):
            return error(message, text)
    return TraceError(message, text)


def _failure_span(e, compiled: Compiled):
    # lazy: start-up time (only to print a diagnostic)
    from .language.ast import Span
    manifest = compiled.manifest
    if manifest is None:
        # lazy: start-up time (only to run a cached or .o object)
        from .runtime import objfile
        try:
            manifest = objfile.parse(compiled.elf).manifest
        except Exception:
            manifest = {}
    symbol = getattr(e, "program_symbol", None) or getattr(e, "symbol", None)
    probe = getattr(e, "probe", None)
    for prog in manifest.get("programs", []):
        names = {a.get("probe") for a in prog["attach"]}
        cookies = {a.get("cookie") for a in prog["attach"]}
        probe_names = {manifest["probes"][c] for c in cookies if isinstance(c, int)}
        if prog["symbol"] == symbol or (probe and (probe in names or probe in probe_names)):
            line, col, end_line, end_col = prog["span"]
            return Span(line, col, end_line, end_col)
    return None


def _probed_files(manifest) -> list:
    """The files whose offsets the object holds (uprobe, usdt): the cache keeps the
    object only while they are unchanged."""
    return [a["path"] for p in manifest.get("programs", []) for a in p.get("attach", [])
            if "path" in a]


def _globs_files(st) -> bool:
    """Whether a probe names its files with a wildcard (`usdt:./bin*:*`): which files
    match can change without any recorded file changing, so the object is not cached."""
    return any(u.provider.lists_targets and "*" in ap.target
               for u in st.units for ap in u.probe.attach_points if ap.provider == u.provider.name)
