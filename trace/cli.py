"""pytrace's command line: compile a program and run it, list probes, or emit the object."""
from __future__ import annotations

import ctypes
import gc
import os
import _signal as signal     # (not `signal`: its enums import enum, ~5 ms of a start)
import stat
import sys

from . import driver, errors, options
from .runtime import environment
from .version import __version__

USAGE = """USAGE:
    pytrace [options] filename
    pytrace [options] - <stdin input>
    pytrace [options] -e 'program'

OPTIONS:
    -B MODE        output buffering mode ('line', 'full', 'none'); by default a terminal
                   gets every line at once, a pipe or file each batch of events
    -f FORMAT      output format ('text', 'json', 'folded': maps keyed by a stack as
                   folded stacks for flame graphs, the rest as text)
    -k             warn when a map update or delete fails (-kk: also memory reads)
    -o file        redirect trace output to file
    -d             dump the AST after every pass and the LLVM IR, then stop
    --dump-after PASS
                   dump the AST (or IR) after PASS and stop; passes: {passes}
    -e 'program'   execute this program
    -h, --help     show this help message
    -l [search]    list probes
    -p PID         enable USDT probes on PID; exit when PID exits
    -c 'CMD'       run CMD and enable USDT probes on resulting process; exit when it exits
    --unsafe       allow unsafe builtin functions
    --usdt-file-activation
                   activate usdt semaphores based on file path (always so: the kernel
                   activates them in every process of the file)
    -I DIR         add DIR to the search path of the script's #include
    --include FILE add an #include of FILE before the script's C declarations
    -q             keep messages quiet
    -v             verbose messages
    --emit-elf FILE
                   write the compiled BPF ELF object to FILE and stop (no root needed)
    --emit-llvm FILE
                   write the LLVM IR to FILE and stop
    -V, --version  pytrace version
    --info         the system, the build and what this kernel supports
    --metrics HOST:PORT
                   serve the maps at http://HOST:PORT/metrics for Prometheus while tracing

ENVIRONMENT:
    BPFTRACE_STRLEN             [default: 64] bytes on BPF stack per str()
    BPFTRACE_MAP_KEYS_MAX       [default: 4096] max keys in a map
    BPFTRACE_CAT_BYTES_MAX      [default: 10k] maximum bytes read by cat builtin
    BPFTRACE_PERF_RB_PAGES      [default: 64] pages per CPU to allocate for ring buffer

EXAMPLES:
pytrace -l '*sleep*'
    list probes containing "sleep"
pytrace -e 'tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }'
    count openat() calls by process name
pytrace -c 'ls' -e 'tracepoint:syscalls:sys_enter_write /pid == cpid/ { @ = count(); }'
    count the writes of one command
"""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Imports and a compile make many objects and few cycles: the cyclic collector's
    # passes over them were ~40% of a large script's compile. It runs again for the
    # trace (run_object), and after main() for a caller that had it on.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    except errors.Error as e:   # the program does not compile, or could not run
        sys.stderr.write(str(e))
        return e.status
    except KeyboardInterrupt:   # SIGINT before a session, or a second one during it (torn down)
        _drop_unwritable_stdout()
        return 130
    except BrokenPipeError:     # `pytrace ... | head`: the session is torn down by now
        _end_by_sigpipe()
    except Exception as e:   # a bug in pytrace: one line, the traceback only on request
        if os.environ.get("PYTRACE_DEBUG"):
            raise
        sys.stderr.write(f"ERROR: internal error: {type(e).__name__}: {e} "
                         f"(set PYTRACE_DEBUG=1 for the traceback)\n")
        return 1
    finally:
        if collecting:
            gc.enable()


def command():
    """The `pytrace` command: main(), then the process ends without the interpreter's
    teardown (a collection and a release of every object the compile made, ~15 ms
    after a 40-probe compile) once stdout and stderr are flushed. Nothing is left to
    do by then: the session has closed what it opened (and the kernel drops a closed
    process's BPF objects), and the threads still running are daemons."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:       # (a reader gone: Python's own exit reports it)
        sys.exit(status)
    os._exit(status)


def _drop_unwritable_stdout():
    """What stdout still buffers is written if it can be without waiting; a pipe
    nobody reads or a terminal stopped by ^S (the reason a second signal was
    needed) would otherwise hang the exit's flush, so stdout then goes to /dev/null."""
    try:
        if stat.S_ISREG(os.fstat(1).st_mode):
            return              # a file: a write does not wait for a reader
        os.set_blocking(1, False)
        try:
            sys.stdout.flush()
            return
        except OSError:
            pass
        finally:
            os.set_blocking(1, True)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    except (OSError, ValueError):
        pass


def _end_by_sigpipe():
    """End quietly, killed by SIGPIPE as bpftrace is (status 141 in a shell); stdout
    goes to /dev/null first so nothing complains about the unflushed rest."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    return 141


FORMATS = ("text", "json", "folded")     # runtime.output.OUTPUTS has a class for each


def _bad_option(args) -> str:
    """bpftrace 0.17's checks of -B, -f and -p (args.pid becomes an int), and --metrics;
    the error text, or '' if they are fine."""
    if args.buffering not in (None, "line", "full", "none"):
        return "ERROR: USAGE: -B must be either 'line', 'full', or 'none'.\n"
    if args.format not in FORMATS:
        return (f'ERROR: Invalid output format "{args.format}"\n'
                f"Valid formats: {', '.join(repr(f) for f in FORMATS)}\n")
    if args.pid is not None:
        text = args.pid
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()):
            return f"ERROR: pid '{text}' is not a valid decimal number\n"
        args.pid = int(text)
        problem = driver.pid_problem(args.pid, text)
        if problem:
            return f"ERROR: {problem}\n"
    if args.metrics is not None:
        return _bad_metrics(args)
    return ""


def _bad_metrics(args) -> str:
    """--metrics HOST:PORT (args.metrics becomes (host, port)); the error text or ''."""
    try:
        # lazy: start-up time (only --metrics; prometheus_client is the metrics extra)
        from .runtime import metrics
    except ImportError as e:
        package = (e.name or "prometheus_client").partition(".")[0]
        return (f"ERROR: --metrics needs the Python package {package} "
                f"(pip install {package}, or pytrace's extra: pip install -e '.[metrics]')\n")
    try:
        args.metrics = metrics.parse_address(args.metrics)
    except ValueError as e:
        return f"ERROR: {e}\n"
    return ""


def _main(argv) -> int:
    try:
        args = options.parse(argv)
    except options.UsageError as e:     # getopt_long's words, as bpftrace prints them
        sys.stderr.write(f"pytrace: {e}\n" + _usage())
        return 1
    problem = _bad_option(args) or environment.check()
    if problem:
        sys.stderr.write(problem)
        return 1
    if args.help:
        sys.stdout.write(_usage())
        return 0
    if args.version:
        print(f"pytrace v{__version__}")
        return 0
    if args.info:
        # lazy: start-up time (only --info probes the kernel's features)
        from .info import report
        sys.stderr.write(report())
        return 0
    if args.list:
        # lazy: start-up time (only -l lists probes)
        from .listing import list_probes
        pattern = args.rest[0] if args.rest else (args.program or "")
        return list_probes(pattern, args.verbose, pid=args.pid)
    if args.command and args.pid:
        sys.stderr.write("ERROR: -p and -c are mutually exclusive\n")
        return 1

    rest = list(args.rest)
    if args.program is not None:
        source, filename = args.program, "stdin"
    elif rest:
        path = rest.pop(0)
        if path == "-":
            source, filename = sys.stdin.read(), "stdin"
        else:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                sys.stderr.write(f"ERROR: failed to open file '{path}': {e.strerror}\n")
                return 255
            if data[:4] == b"\x7fELF":
                # an object from --emit-elf: run it without the compiler (nor its source)
                return run_object(driver.Compiled(data), _request(args, "", path, rest), args)
            source, filename = data.decode("utf-8", "replace"), path
    else:
        sys.stderr.write("ERROR: No program specified\n" + _usage())
        return 1

    req = _request(args, source, filename, rest)
    if args.dump_after or args.dump_all or args.emit_elf or args.emit_llvm:
        return _compile_only(req, args)
    compiled = driver.build(req)
    sys.stderr.write(compiled.warnings)
    return run_object(compiled, req, args)


def _request(args, source: str, filename: str, params: list) -> driver.Request:
    return driver.Request(source, filename, params, command=args.command, pid=args.pid,
                          unsafe=args.unsafe, helper_errors=args.helper_errors,
                          include_dirs=args.include_dirs, includes=args.includes)


def _compile_only(req: driver.Request, args) -> int:
    """-d, --dump-after, --emit-elf, --emit-llvm: compile and stop."""
    dump_after, dump = args.dump_after, None
    if dump_after:
        # lazy: start-up time (with the compiler)
        from .compiler import PASS_NAMES
        if dump_after not in PASS_NAMES:
            sys.stderr.write(f"ERROR: unknown pass '{dump_after}'; passes are: {', '.join(PASS_NAMES)}\n")
            return 1
    if args.dump_all:
        dump_after = "codegen"
        dump = lambda text: sys.stdout.write(text if text.endswith("\n") else text + "\n")  # noqa: E731
    compiled = driver.compile_program(req, dump_after, dump)
    sys.stderr.write(compiled.warnings)
    if dump_after:
        return 0
    if args.emit_llvm:
        with open(args.emit_llvm, "w") as f:
            f.write(compiled.state.llvm_ir)
    if args.emit_elf:
        with open(args.emit_elf, "wb") as f:
            f.write(compiled.elf)
    return 0


def run_object(compiled: driver.Compiled, req: driver.Request, args) -> int:
    driver.check_privilege()
    _set_process_name(b"pytrace")
    out = sys.stdout
    if args.output:
        try:
            out = open(args.output, "w")
        except OSError as e:    # bpftrace's words
            sys.stderr.write(f'ERROR: Failed to open output file: "{args.output}": {e.strerror}\n')
            return 1
    try:
        gc.freeze()     # what start-up made stays out of the trace's collections (and
        gc.enable()     # the first one is not a pass over all of it before the first event)
        sess = driver.session(compiled, req, out=out, fmt=args.format, quiet=args.quiet,
                              buffering=args.buffering, verbose=args.verbose, exiting=True,
                              metrics=args.metrics)
        return driver.execute(sess, compiled, req)
    finally:
        gc.unfreeze()   # (for a caller of main() that goes on)
        if out is not sys.stdout:
            try:
                out.close()
            except OSError:     # a write error: reported by the run already
                pass


def _set_process_name(name: bytes):
    """comm is `pytrace` in BEGIN/END however we were started (python -m, a shim)."""
    PR_SET_NAME = 15
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _usage():
    # lazy: start-up time (only for --help)
    from .compiler import PASS_NAMES
    return USAGE.replace("{passes}", ", ".join(PASS_NAMES))


if __name__ == "__main__":
    command()
